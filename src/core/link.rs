//! Exempt links: a signed, expiring URL argument (`wr_exempt=<link>`) that gives its bearer a
//! session at once, as many times as the link says, in the one room it was made for.
//!
//! Wire form: `base64url(payload ‖ mac)`, 39 bytes, 52 characters:
//!
//! ```text
//! payload (23 bytes): format (1) | room tag (4) | id (8, random) | expires (8, Unix seconds)
//!                     | uses (2)                                         all little-endian
//! mac (16 bytes):     HMAC-SHA256(link key, payload ‖ room name), first 16 bytes
//! link key:           HMAC-SHA256(room key, "ngx waiting room exempt link key v1")
//! ```
//!
//! The room key is the configured `waiting_room_secret` (the file's bytes without the line
//! end), or the random key kept in the zone when there is none. The cookies of
//! [`super::token`] are signed with the room key itself: a link and a cookie are signed with
//! different keys and have different lengths, so neither can pass for the other. The room's
//! name is under the MAC, so a link made for another room with the same secret fails it; the
//! room tag (4 bytes of a hash of the name, not a secret) only lets such a link be told apart
//! from a tampered one in the log.
//!
//! How often a link was used is kept in the zone, in a table of [`LINK_TABLE`] records (see
//! [`Room::use_link`]).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::layout::{Exempt, LinkUse, EXEMPT_SESSION, LINK_TABLE};
use super::room::{Room, SessionRef};
use super::token::constant_time_eq;

/// The query argument that carries a link.
pub const ARG: &[u8] = b"wr_exempt";
/// The format byte of every link; bump when the payload changes.
pub const FORMAT: u8 = 1;
const PAYLOAD_LEN: usize = 23;
const MAC_LEN: usize = 16;
/// The length of a link, encoded.
pub const ENCODED_LEN: usize = (PAYLOAD_LEN + MAC_LEN) * 4 / 3;
/// What the link key is derived with, from the room key.
pub const KEY_LABEL: &[u8] = b"ngx waiting room exempt link key v1";
/// The longest a link made by the control location may be valid.
pub const EXPIRES_MAX_SECONDS: u64 = 366 * 86_400;
/// The longest path the control location makes a link for.
const PATH_MAX: usize = 2048;

/// A link's content, once verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// Random, names the link in the use table and the log.
    pub id: u64,
    /// Unix seconds; void from then on.
    pub expires: u64,
    /// How many sessions the link gives, 1 or more.
    pub uses: u16,
}

/// Why a link gives no session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not a link: wrong length, not base64url, another format, no uses.
    Malformed,
    /// Made for another room.
    OtherRoom,
    /// The signature does not match: changed, or made with another key.
    Tampered,
    Expired,
    /// Used as many times as it allows.
    UsedUp {
        uses: u16,
    },
    /// The use table is full of unexpired links: a new one cannot be counted, so it is refused.
    TableFull,
    /// The session table is full.
    NoSession,
    /// The room stands by for another nginx (a binary upgrade).
    StandingBy,
}

impl Refusal {
    /// Whether the refusal suggests someone is forging links (logged at `warn`).
    pub fn suspicious(self) -> bool {
        self == Refusal::Tampered
    }
}

impl core::fmt::Display for Refusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Refusal::Malformed => f.write_str("it is not a link"),
            Refusal::OtherRoom => f.write_str("it was made for another room"),
            Refusal::Tampered => f.write_str("its signature does not match"),
            Refusal::Expired => f.write_str("it has expired"),
            Refusal::UsedUp { uses } => write!(f, "it was used {uses} of {uses} times already"),
            Refusal::TableFull => f.write_str(
                "the table of links in use is full of unexpired links, so a new one cannot be \
                 counted",
            ),
            Refusal::NoSession => f.write_str("the session table is full"),
            Refusal::StandingBy => f.write_str("the room stands by for another nginx"),
        }
    }
}

/// The link key of a room key.
/// HMAC takes keys of any length, so `None` is only a formality of the `hmac` crate's API.
pub fn link_key(room_key: &[u8]) -> Option<[u8; 32]> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(room_key).ok()?;
    mac.update(KEY_LABEL);
    Some(mac.finalize().into_bytes().into())
}

fn room_tag(room: &str) -> [u8; 4] {
    let d = Sha256::digest([b"waiting_room link:".as_slice(), room.as_bytes()].concat());
    [d[0], d[1], d[2], d[3]]
}

/// Makes and verifies the links of one room.
#[derive(Clone)]
pub struct LinkSigner {
    mac: Hmac<Sha256>,
    room: String,
    tag: [u8; 4],
}

impl LinkSigner {
    /// `room_key` is the configured secret, or the zone's random key.
    pub fn new(room_key: &[u8], room: &str) -> Option<LinkSigner> {
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(&link_key(room_key)?).ok()?;
        Some(LinkSigner { mac, room: room.to_owned(), tag: room_tag(room) })
    }

    fn mac(&self, payload: &[u8]) -> [u8; MAC_LEN] {
        let mut mac = self.mac.clone();
        mac.update(payload);
        mac.update(self.room.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// The link's text, for the `wr_exempt` argument.
    pub fn encode(&self, l: &Link) -> String {
        let mut raw = [0u8; PAYLOAD_LEN + MAC_LEN];
        raw[0] = FORMAT;
        raw[1..5].copy_from_slice(&self.tag);
        raw[5..13].copy_from_slice(&l.id.to_le_bytes());
        raw[13..21].copy_from_slice(&l.expires.to_le_bytes());
        raw[21..23].copy_from_slice(&l.uses.to_le_bytes());
        let mac = self.mac(&raw[..PAYLOAD_LEN]);
        raw[PAYLOAD_LEN..].copy_from_slice(&mac);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The link in `value`, if it is one of this room's, intact and unexpired at `now`
    /// (Unix seconds).
    pub fn verify(&self, value: &[u8], now: u64) -> Result<Link, Refusal> {
        if value.len() != ENCODED_LEN {
            return Err(Refusal::Malformed);
        }
        let mut raw = [0u8; PAYLOAD_LEN + MAC_LEN];
        match URL_SAFE_NO_PAD.decode_slice(value, &mut raw) {
            Ok(n) if n == raw.len() => {}
            _ => return Err(Refusal::Malformed),
        }
        if raw[0] != FORMAT {
            return Err(Refusal::Malformed);
        }
        if raw[1..5] != self.tag {
            return Err(Refusal::OtherRoom);
        }
        let (payload, mac) = raw.split_at(PAYLOAD_LEN);
        if !constant_time_eq(&self.mac(payload), mac) {
            return Err(Refusal::Tampered);
        }
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&payload[at..at + 8]);
            u64::from_le_bytes(w)
        };
        let link = Link {
            id: word(5),
            expires: word(13),
            uses: u16::from_le_bytes([payload[21], payload[22]]),
        };
        if link.uses == 0 || link.id == 0 {
            return Err(Refusal::Malformed);
        }
        if now >= link.expires {
            return Err(Refusal::Expired);
        }
        Ok(link)
    }
}

/// The value of the `wr_exempt` argument in a query string (`a=1&wr_exempt=...`), if any: the
/// first one.
pub fn arg(args: &[u8]) -> Option<&[u8]> {
    args.split(|&b| b == b'&').find_map(|pair| {
        let rest = pair.strip_prefix(ARG)?;
        rest.strip_prefix(b"=")
    })
}

/// The queue page's own arguments (see `handlers::page`), dropped with the link's.
const ROOM_ARGS: [&[u8]; 2] = [b"wr_check", b"wr_reload"];

/// `uri` (a request's path and query, as sent) without its `wr_exempt` arguments (nor the
/// queue page's `wr_check` and `wr_reload`): where a visitor let in by a link is sent, so that
/// the link does not stay in the address bar. A path
/// that starts with more than one slash (or a backslash after it), which a browser would read
/// as another host's (`//evil.example/`), starts with one slash.
pub fn without_arg(uri: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(uri.len());
    let lead = uri.iter().take_while(|&&b| b == b'/' || b == b'\\').count();
    let uri = if lead > 1 {
        out.push(b'/');
        &uri[lead..]
    } else {
        uri
    };
    let Some(q) = uri.iter().position(|&b| b == b'?') else {
        out.extend_from_slice(uri);
        return out;
    };
    out.extend_from_slice(&uri[..q]);
    let mut first = true;
    for pair in uri[q + 1..].split(|&b| b == b'&') {
        let name = pair.split(|&b| b == b'=').next().unwrap_or_default();
        if name == ARG || ROOM_ARGS.contains(&name) || pair.is_empty() {
            continue;
        }
        out.push(if first { b'?' } else { b'&' });
        out.extend_from_slice(pair);
        first = false;
    }
    out
}

/// `path` with the link added as the `wr_exempt` argument.
pub fn with_arg(path: &str, link: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}wr_exempt={link}")
}

/// A link the control location is asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkRequest {
    /// The path (and query) the link leads to.
    pub path: String,
    pub uses: u16,
    pub expires_in: u64,
}

/// The link asked for by `{"link":{"path":"/checkout/","uses":1,"expires_in":3600}}`'s inner
/// object; `uses` defaults to 1 and `expires_in` to an hour.
pub fn parse_link_request(v: &Value) -> Result<LinkRequest, String> {
    let obj = v.as_object().ok_or(
        "link must be an object like {\"path\":\"/checkout/\",\"uses\":1,\"expires_in\":3600}",
    )?;
    let mut req = LinkRequest { path: String::new(), uses: 1, expires_in: 3600 };
    let mut path = None;
    for (key, val) in obj {
        match key.as_str() {
            "path" => {
                let p = val.as_str().ok_or("invalid link path, it must be a string")?;
                let fine = p.starts_with('/')
                    && p.len() <= PATH_MAX
                    && !p.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'#');
                if !fine {
                    return Err(format!(
                        "invalid link path {val}, it must start with \"/\" and hold no spaces, \
                         control characters or \"#\""
                    ));
                }
                if arg(p.split_once('?').map_or("", |(_, q)| q).as_bytes()).is_some() {
                    return Err("the link path already has a wr_exempt argument".into());
                }
                path = Some(p.to_owned());
            }
            "uses" => {
                req.uses = val.as_u64().filter(|&n| (1..=u64::from(u16::MAX)).contains(&n)).ok_or(
                    format!("invalid link uses {val}, it must be a number from 1 to 65535"),
                )? as u16;
            }
            "expires_in" => {
                req.expires_in = val
                    .as_u64()
                    .filter(|&n| (1..=EXPIRES_MAX_SECONDS).contains(&n))
                    .ok_or(format!(
                    "invalid link expires_in {val}, it must be a number of seconds from 1 \
                         to {EXPIRES_MAX_SECONDS}"
                ))?;
            }
            _ => return Err(format!("unknown link parameter \"{key}\"")),
        }
    }
    req.path = path.ok_or("the link needs a path")?;
    Ok(req)
}

/// What counting a use in the table found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    /// This is use number `n` (from 1), at record `at`.
    Use {
        n: u32,
        at: usize,
        new: bool,
    },
    UsedUp,
    Full,
}

/// Where the next use of `link` is counted in `table` at `now` (Unix seconds), without
/// counting it: its own record, or a free or expired one for a link not seen yet. O(table).
pub fn find_use(table: &[LinkUse], link: &Link, now: u64) -> Counted {
    let mut free = None;
    for (at, r) in table.iter().enumerate() {
        if r.id == link.id && r.id != 0 {
            if r.used >= u32::from(link.uses) {
                return Counted::UsedUp;
            }
            return Counted::Use { n: r.used + 1, at, new: false };
        }
        if free.is_none() && (r.id == 0 || r.expires <= now) {
            free = Some(at);
        }
    }
    match free {
        Some(at) => Counted::Use { n: 1, at, new: true },
        None => Counted::Full,
    }
}

/// Counts the use [`find_use`] found.
pub fn count_use(table: &mut [LinkUse], link: &Link, found: Counted) {
    if let Counted::Use { n, at, .. } = found {
        if let Some(r) = table.get_mut(at) {
            *r = LinkUse { id: link.id, expires: link.expires, used: n, _pad: 0 };
        }
    }
}

/// A use of a link: the session it gave, and which use it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Used {
    pub session: SessionRef,
    /// 1 for the first use.
    pub n: u32,
}

impl Room<'_> {
    /// A visitor brings `link`, verified: a session at once, as long as the link has uses
    /// left (counted in the zone's table) and the session table has a slot, whatever
    /// `max_active`, the line, the mode or the event say. An exempt session counts as active
    /// like any other, so while the room is over `max_active` nobody is called from the line
    /// (see `free_slots`). `now` is monotonic milliseconds, `wall` Unix seconds; `client` the
    /// visitor's client tag (0: not counted). A refusal is counted.
    pub fn use_link(
        &mut self,
        link: &Link,
        now: u64,
        wall: u64,
        client: u32,
    ) -> Result<Used, Refusal> {
        let r = self.use_link_counted(link, now, wall, client);
        match r {
            Ok(_) => self.hdr.exempt.used += 1,
            Err(_) => self.hdr.exempt.refused += 1,
        }
        r
    }

    fn use_link_counted(
        &mut self,
        link: &Link,
        now: u64,
        wall: u64,
        client: u32,
    ) -> Result<Used, Refusal> {
        if self.standby() {
            return Err(Refusal::StandingBy);
        }
        if wall >= link.expires {
            return Err(Refusal::Expired);
        }
        let found = match find_use(self.links, link, wall) {
            Counted::UsedUp => return Err(Refusal::UsedUp { uses: link.uses }),
            Counted::Full => return Err(Refusal::TableFull),
            found => found,
        };
        let session = self.open_session(now, client, false).ok_or(Refusal::NoSession)?;
        if let Some(s) = self.sessions.get(session.slot as usize) {
            s.client
                .store(u64::from(client) | EXEMPT_SESSION, core::sync::atomic::Ordering::Relaxed);
        }
        count_use(self.links, link, found);
        let n = match found {
            Counted::Use { n, .. } => n,
            _ => 1,
        };
        Ok(Used { session, n })
    }

    /// Counts a link refused before it reached the room (not verified).
    pub fn link_refused(&mut self) {
        self.hdr.exempt.refused += 1;
    }

    /// The exempt links used and refused since the zone was made.
    pub fn exempt(&self) -> Exempt {
        self.hdr.exempt
    }

    /// The use table's records, for tests.
    #[cfg(test)]
    pub fn link_uses(&self) -> &[LinkUse] {
        self.links
    }
}

const _: () = assert!(ENCODED_LEN == 52);
const _: () = assert!(LINK_TABLE > 0);
