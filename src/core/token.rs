//! The signed cookie a visitor carries: either a queue ticket or an admitted session.
//!
//! Wire form: `base64url(payload) "." base64url(mac)`, where the payload is a fixed 58-byte
//! little-endian record and the MAC is HMAC-SHA256 over the payload, truncated to 16 bytes.
//! Anything that does not parse, carries another room's tag or an older format, fails the MAC
//! (compared in constant time) or has expired is simply not a token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Format version carried in every token; bump when the payload changes.
pub const VERSION: u8 = 1;
const PAYLOAD_LEN: usize = 58;
const MAC_LEN: usize = 16;
/// Longest cookie value we accept; anything longer is not looked at.
pub const MAX_ENCODED_LEN: usize = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A place in the queue: `number` is the ticket number.
    Ticket = 1,
    /// An admitted visitor: `number` is the session slot, `id` the session id.
    Session = 2,
    /// A first contact sent to the line, with no place yet: `visitor` is its visitor number,
    /// `number` the moment it arrived (monotonic milliseconds). Its place is taken when it
    /// comes back (see `Room::confirm`).
    Arrival = 3,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    pub kind: Kind,
    pub number: u64,
    pub id: u64,
    pub visitor: u64,
    /// Seconds since the Unix epoch.
    pub issued: u64,
    /// Seconds since the Unix epoch; the token is void from then on.
    pub expires: u64,
    /// The layout of the room's zone it was issued for (see `Room::epoch`).
    pub epoch: u64,
}

/// Signs and verifies the tokens of one room.
#[derive(Clone)]
pub struct Signer {
    mac: Hmac<Sha256>,
    room_tag: u64,
}

/// A stable 64-bit tag for a room's name, so that one room's cookie is void in another.
pub fn room_tag(room: &str) -> u64 {
    let digest = Sha256::digest([b"waiting_room:".as_slice(), room.as_bytes()].concat());
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(tag)
}

/// A client's tag for the per-client limit: 32 bits of a hash of its key, salted with the
/// room's epoch so that nobody can pick keys that share another client's counters. Never 0.
pub fn client_tag(epoch: u64, key: &[u8]) -> u32 {
    let digest = Sha256::new().chain_update(epoch.to_le_bytes()).chain_update(key).finalize();
    let mut tag = [0u8; 4];
    tag.copy_from_slice(&digest[..4]);
    u32::from_le_bytes(tag).max(1)
}

impl Signer {
    /// `key` is the room's secret (the configuration demands at least 32 bytes). HMAC takes
    /// keys of any length, so `None` is only a formality of the `hmac` crate's API.
    pub fn new(key: &[u8], room: &str) -> Option<Self> {
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(key).ok()?;
        Some(Signer { mac, room_tag: room_tag(room) })
    }

    fn payload(&self, t: &Token) -> [u8; PAYLOAD_LEN] {
        let mut p = [0u8; PAYLOAD_LEN];
        p[0] = VERSION;
        p[1] = t.kind as u8;
        p[2..10].copy_from_slice(&self.room_tag.to_le_bytes());
        p[10..18].copy_from_slice(&t.number.to_le_bytes());
        p[18..26].copy_from_slice(&t.id.to_le_bytes());
        p[26..34].copy_from_slice(&t.visitor.to_le_bytes());
        p[34..42].copy_from_slice(&t.issued.to_le_bytes());
        p[42..50].copy_from_slice(&t.expires.to_le_bytes());
        p[50..58].copy_from_slice(&t.epoch.to_le_bytes());
        p
    }

    fn mac(&self, payload: &[u8]) -> [u8; MAC_LEN] {
        let mut mac = self.mac.clone();
        mac.update(payload);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// The cookie value for `t`.
    pub fn encode(&self, t: &Token) -> String {
        let payload = self.payload(t);
        let mac = self.mac(&payload);
        let mut s = String::with_capacity(112);
        URL_SAFE_NO_PAD.encode_string(payload, &mut s);
        s.push('.');
        URL_SAFE_NO_PAD.encode_string(mac, &mut s);
        s
    }

    /// The token in `value`, if it is one of ours, for this room, intact and unexpired at
    /// `now` (seconds since the epoch).
    pub fn decode(&self, value: &[u8], now: u64) -> Option<Token> {
        if value.len() > MAX_ENCODED_LEN {
            return None;
        }
        let dot = value.iter().position(|&b| b == b'.')?;
        let (p64, m64) = (&value[..dot], &value[dot + 1..]);
        let mut payload = [0u8; PAYLOAD_LEN];
        let mut mac = [0u8; MAC_LEN];
        if URL_SAFE_NO_PAD.decode_slice(p64, &mut payload).ok()? != PAYLOAD_LEN
            || URL_SAFE_NO_PAD.decode_slice(m64, &mut mac).ok()? != MAC_LEN
        {
            return None;
        }
        let expected = self.mac(&payload);
        if !constant_time_eq(&expected, &mac) {
            return None;
        }
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&payload[at..at + 8]);
            u64::from_le_bytes(w)
        };
        if payload[0] != VERSION || word(2) != self.room_tag {
            return None;
        }
        let kind = match payload[1] {
            1 => Kind::Ticket,
            2 => Kind::Session,
            3 => Kind::Arrival,
            _ => return None,
        };
        let t = Token {
            kind,
            number: word(10),
            id: word(18),
            visitor: word(26),
            issued: word(34),
            expires: word(42),
            epoch: word(50),
        };
        (now < t.expires).then_some(t)
    }
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Cookies verified lately, so that a visitor's every request does not cost an HMAC: the same
/// bytes were signed by us, so they are the same token (kept per worker process). Direct-mapped by the
/// cookie's MAC (random to anyone without the key), compared in full on a hit.
#[derive(Default)]
pub struct TokenCache {
    slots: Vec<Option<Cached>>,
}

const CACHE_SLOTS: usize = 256;

struct Cached {
    len: u8,
    value: [u8; MAX_ENCODED_LEN],
    token: Token,
}

impl TokenCache {
    fn index(value: &[u8]) -> usize {
        let mut tail = [0u8; 8];
        let n = value.len().min(8);
        tail[..n].copy_from_slice(&value[value.len() - n..]);
        let h = u64::from_le_bytes(tail).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h >> 56) as usize % CACHE_SLOTS
    }

    pub fn get(&self, value: &[u8], now_s: u64) -> Option<Token> {
        let c = self.slots.get(Self::index(value))?.as_ref()?;
        (usize::from(c.len) == value.len()
            && c.value.get(..value.len()) == Some(value)
            && now_s < c.token.expires)
            .then_some(c.token)
    }

    pub fn put(&mut self, value: &[u8], token: Token) {
        if value.len() > MAX_ENCODED_LEN {
            return;
        }
        if self.slots.is_empty() {
            self.slots.resize_with(CACHE_SLOTS, || None);
        }
        let mut c = Cached { len: value.len() as u8, value: [0; MAX_ENCODED_LEN], token };
        c.value[..value.len()].copy_from_slice(value);
        if let Some(slot) = self.slots.get_mut(Self::index(value)) {
            *slot = Some(c);
        }
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;

    fn token(expires: u64) -> Token {
        Token { kind: Kind::Session, number: 3, id: 9, visitor: 9, issued: 1, expires, epoch: 5 }
    }

    #[test]
    fn a_cached_value_is_the_same_bytes_and_unexpired() {
        let mut c = TokenCache::default();
        assert_eq!(c.get(b"abc.def", 10), None);
        c.put(b"abc.def", token(100));
        assert_eq!(c.get(b"abc.def", 10), Some(token(100)));
        assert_eq!(c.get(b"abc.deg", 10), None, "other bytes");
        assert_eq!(c.get(b"xabc.def", 10), None, "a longer value with the same tail");
        assert_eq!(c.get(b"abc.def", 100), None, "expired");
        c.put(&[b'a'; MAX_ENCODED_LEN + 1], token(100));
        assert_eq!(c.get(&[b'a'; MAX_ENCODED_LEN + 1], 10), None, "too long to keep");
    }
}
