//! A room as a compact image, independent of any layout: what a state file saves and what a
//! zone of another size is filled from.
//!
//! ```text
//! ImageHead | sessions: [SessionRecord; s], by slot | tickets: [TicketSlot; t], by number
//!           | links: [LinkUse; l]
//! ```
//!
//! Only what is live is in it (the sessions, and the tickets from `head` on), so its length
//! follows the room's occupancy, not the zone's size. The free stack and the Fenwick tree are
//! rebuilt from it. Every record keeps what a visitor's cookie names: a session its slot and
//! id, a ticket its number and visitor, and the room its epoch (and, for a room without a
//! configured secret, its key); so the cookies issued before stay valid. The uses of exempt
//! links are in it too (format 4), so that a restart does not make a used link new again.
//!
//! [`Room::import`] checks an image completely before it changes anything, so a damaged one is
//! refused as a whole: it can neither crash the process nor make up a place for anyone.

use core::mem::size_of;
use core::sync::atomic::Ordering::Relaxed;

use super::control::Control;
use super::fenwick;
use super::layout::{
    Exempt, LinkUse, People, TicketSlot, CALLED, EXEMPT_SESSION, FREE, KEY_MAX, LAPSED, LINK_TABLE,
    RECALLED, RETURNED, UNCONFIRMED, WAITING,
};
use super::room::Room;
use super::stats::{Counters, Pace};

const IMAGE_MAGIC: u64 = u64::from_le_bytes(*b"ngxWRimg");
/// Bump whenever a record of the image changes, and keep reading the older ones.
pub const IMAGE_VERSION: u32 = 4;

/// What every image starts with.
#[repr(C)]
#[derive(Clone, Copy)]
struct Peek {
    magic: u64,
    version: u32,
}

/// The head of an image of format 1 (module 0.1 and 0.2), which format 2 extends.
#[repr(C)]
#[derive(Clone, Copy)]
struct ImageHeadV1 {
    magic: u64,
    version: u32,
    key_len: u32,
    sessions: u64,
    tickets: u64,
    head: u64,
    tail: u64,
    next_session_id: u64,
    next_visitor: u64,
    epoch: u64,
    /// Where the sweep's cursors were, and when the last sweep ran.
    ticket_sweep: u64,
    session_sweep: u64,
    last_sweep: u64,
    key: [u8; KEY_MAX],
    stats: Counters,
}

/// The head of an image of format 2 (module 0.3), which format 3 extends.
#[repr(C)]
#[derive(Clone, Copy)]
struct ImageHeadV2 {
    v1: ImageHeadV1,
    people: People,
}

/// The head of an image of format 3 (module 0.4), which format 4 extends.
#[repr(C)]
#[derive(Clone, Copy)]
struct ImageHeadV3 {
    v2: ImageHeadV2,
    /// The settings in force and the configuration's, the lottery's draw and the counters of
    /// run-time control; not in older images.
    control: Control,
    /// The pace the slots turn over at, for the estimate; not in older images.
    pace: Pace,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct ImageHead {
    v3: ImageHeadV3,
    /// Exempt links used and refused, and how many link records follow the tickets; not in
    /// older images (their use tables are empty).
    exempt: Exempt,
    links: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct SessionRecordV1 {
    slot: u64,
    id: u64,
    /// With [`UNCONFIRMED`] set for a first contact that has not come back.
    created: u64,
    last_seen: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct SessionRecord {
    v1: SessionRecordV1,
    client: u64,
}

/// A ticket of format 1: a [`TicketSlot`] without its client tag.
#[repr(C)]
#[derive(Clone, Copy)]
struct TicketV1 {
    number: u64,
    joined: u64,
    stamp: u64,
    visitor: u32,
    state: u32,
}

const HEAD_LEN: usize = size_of::<ImageHead>();
const SESSION_LEN: usize = size_of::<SessionRecord>();
const TICKET_LEN: usize = size_of::<TicketSlot>();
const LINK_LEN: usize = size_of::<LinkUse>();

/// The lengths of the head, a session and a ticket in an image of format `version`.
fn lengths(version: u32) -> Option<(usize, usize, usize)> {
    match version {
        1 => Some((size_of::<ImageHeadV1>(), size_of::<SessionRecordV1>(), size_of::<TicketV1>())),
        2 => Some((size_of::<ImageHeadV2>(), SESSION_LEN, TICKET_LEN)),
        3 => Some((size_of::<ImageHeadV3>(), SESSION_LEN, TICKET_LEN)),
        4 => Some((HEAD_LEN, SESSION_LEN, TICKET_LEN)),
        _ => None,
    }
}

/// Why an image was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportError {
    /// Not an image, or one that contradicts itself.
    Damaged(&'static str),
    /// Written by another version of the module.
    OtherVersion(u32),
    /// A session is in a slot beyond this room's session table.
    Sessions { slot: u64, capacity: u32 },
    /// The line spans more ticket numbers than this room's queue holds.
    Tickets { span: u64, capacity: u64 },
}

impl core::fmt::Display for ImportError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ImportError::Damaged(why) => write!(f, "it is damaged: {why}"),
            ImportError::OtherVersion(v) => {
                write!(f, "it has format {v}, this module reads format {IMAGE_VERSION}")
            }
            ImportError::Sessions { slot, capacity } => write!(
                f,
                "a session is in slot {slot}, and this zone's session table holds {capacity}"
            ),
            ImportError::Tickets { span, capacity } => {
                write!(f, "the line spans {span} places, and this zone's queue holds {capacity}")
            }
        }
    }
}

/// What an image brought.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Imported {
    pub sessions: u32,
    pub tickets: u64,
}

/// Whether `T` is one of this module's records: plain `repr(C)` data without padding, valid
/// for any bit pattern.
trait Record: Copy {}
impl Record for Peek {}
impl Record for ImageHeadV1 {}
impl Record for ImageHeadV2 {}
impl Record for ImageHeadV3 {}
impl Record for ImageHead {}
impl Record for LinkUse {}
impl Record for SessionRecordV1 {}
impl Record for SessionRecord {}
impl Record for TicketV1 {}
impl Record for TicketSlot {}

/// The records of an image of any format, read as the current one.
struct Reader<'i> {
    image: &'i [u8],
    version: u32,
}

impl Reader<'_> {
    /// The head, and whether it carries the room's control block.
    fn head(&self) -> Option<(ImageHead, bool)> {
        let v3 = |v3| ImageHead { v3, exempt: Exempt::default(), links: 0 };
        let older =
            |v2| (v3(ImageHeadV3 { v2, control: Control::default(), pace: Pace::new() }), false);
        match self.version {
            1 => read::<ImageHeadV1>(self.image, 0)
                .map(|v1| older(ImageHeadV2 { v1, people: People::default() })),
            2 => read::<ImageHeadV2>(self.image, 0).map(older),
            3 => read::<ImageHeadV3>(self.image, 0).map(|h| (v3(h), true)),
            _ => read(self.image, 0).map(|h| (h, true)),
        }
    }

    fn session(&self, at: usize) -> Option<SessionRecord> {
        match self.version {
            1 => read::<SessionRecordV1>(self.image, at).map(|v1| SessionRecord { v1, client: 0 }),
            _ => read(self.image, at),
        }
    }

    fn ticket(&self, at: usize) -> Option<TicketSlot> {
        match self.version {
            1 => read::<TicketV1>(self.image, at).map(|t| TicketSlot {
                number: t.number,
                joined: t.joined,
                stamp: t.stamp,
                visitor: t.visitor,
                state: t.state,
                client: 0,
                _pad: 0,
            }),
            _ => read(self.image, at),
        }
    }
}

fn read<T: Record>(bytes: &[u8], at: usize) -> Option<T> {
    let src = bytes.get(at..at.checked_add(size_of::<T>())?)?;
    // SAFETY: `src` holds `size_of::<T>()` bytes; a `Record` is valid for any bit pattern, and
    // an unaligned read needs no alignment.
    Some(unsafe { core::ptr::read_unaligned(src.as_ptr() as *const T) })
}

fn write<T: Record>(bytes: &mut [u8], at: usize, value: &T) -> Option<()> {
    let dst = bytes.get_mut(at..at.checked_add(size_of::<T>())?)?;
    // SAFETY: `dst` has room for `size_of::<T>()` bytes; a `Record` has no padding, so every
    // byte written is initialised.
    unsafe { core::ptr::write_unaligned(dst.as_mut_ptr() as *mut T, *value) };
    Some(())
}

/// `t` moved by `by` milliseconds, never below 0.
fn shift(t: u64, by: i64) -> u64 {
    (t.min(i64::MAX as u64) as i64).saturating_add(by).max(0) as u64
}

/// The most bytes the image of a room with these tables can take.
pub fn image_len_max(session_cap: u32, ticket_cap: u64) -> usize {
    HEAD_LEN
        .saturating_add(SESSION_LEN.saturating_mul(session_cap as usize))
        .saturating_add(TICKET_LEN.saturating_mul(ticket_cap as usize))
        .saturating_add(LINK_LEN * LINK_TABLE)
}

/// The client tag of session slot `slot`.
fn sessions_client(room: &Room, slot: usize) -> u64 {
    room.sessions.get(slot).map_or(0, |s| s.client.load(Relaxed))
}

impl Room<'_> {
    /// The most bytes this room's image can take.
    pub fn image_len_max(&self) -> usize {
        image_len_max(self.hdr.session_cap, self.hdr.ticket_cap)
    }

    /// Writes the room's image into `out`; its length, or `None` when `out` is too short.
    /// O(sessions + the line's span); run under the lock.
    pub fn export(&self, out: &mut [u8]) -> Option<usize> {
        let mut at = HEAD_LEN;
        let mut sessions = 0u64;
        for (slot, s) in self.sessions.iter().enumerate() {
            let s = s.get();
            if s.id == 0 {
                continue;
            }
            let created = if s.confirmed { s.created } else { s.created | UNCONFIRMED };
            let rec = SessionRecord {
                v1: SessionRecordV1 {
                    slot: slot as u64,
                    id: s.id,
                    created,
                    last_seen: s.last_seen,
                },
                client: sessions_client(self, slot),
            };
            write(out, at, &rec)?;
            at += SESSION_LEN;
            sessions += 1;
        }
        let mut tickets = 0u64;
        let cap = self.hdr.ticket_cap;
        for number in self.hdr.head..self.hdr.tail {
            let t = self.tickets.get((number % cap) as usize)?;
            if t.state == FREE || t.number != number {
                continue;
            }
            write(out, at, t)?;
            at += TICKET_LEN;
            tickets += 1;
        }
        let mut links = 0u64;
        for l in self.links.iter().filter(|l| l.id != 0) {
            write(out, at, l)?;
            at += LINK_LEN;
            links += 1;
        }
        let h = &self.hdr;
        let v1 = ImageHeadV1 {
            magic: IMAGE_MAGIC,
            version: IMAGE_VERSION,
            key_len: h.key_len.min(KEY_MAX as u32),
            sessions,
            tickets,
            head: h.head,
            tail: h.tail,
            next_session_id: h.next_session_id,
            next_visitor: h.next_visitor,
            epoch: h.epoch,
            ticket_sweep: h.ticket_sweep,
            session_sweep: u64::from(h.session_sweep),
            last_sweep: h.last_sweep,
            key: h.key,
            stats: h.stats,
        };
        let head = ImageHead {
            v3: ImageHeadV3 {
                v2: ImageHeadV2 { v1, people: h.people },
                control: h.control,
                pace: h.pace,
            },
            exempt: h.exempt,
            links,
        };
        write(out, 0, &head)?;
        Some(at)
    }

    /// Empties the room, keeping its layout, key, epoch and settings: sessions are ended,
    /// the line is emptied, the counters start again.
    pub fn reset(&mut self) {
        for s in self.sessions {
            s.clear();
        }
        self.tickets.fill(TicketSlot::default());
        self.tree.fill(0);
        self.front.fill(0);
        self.arrivals.fill(Default::default());
        self.clients.fill(0);
        self.links.fill(LinkUse::default());
        let h = &mut *self.hdr;
        (h.active, h.called, h.lapsed, h.returned) = (0, 0, 0, 0);
        (h.head, h.tail, h.live, h.ticket_sweep, h.last_sweep, h.session_sweep) =
            (0, 0, 0, 0, 0, 0);
        h.stats = Counters::default();
        h.pace = Pace::new();
        h.people = People::default();
        h.people_logged = People::default();
        h.people_logged_at = 0;
        h.adopt_from = 0;
        h.exempt = Exempt::default();
        self.rebuild_free();
    }

    /// Refills the free stack with every empty session slot, the lowest on top.
    fn rebuild_free(&mut self) {
        let mut top = 0;
        for (slot, s) in self.sessions.iter().enumerate().rev() {
            if s.id.load(Relaxed) == 0 {
                self.free[top] = slot as u32;
                top += 1;
            }
        }
        self.hdr.free_top = top as u32;
    }

    /// Fills this room, which must be empty (new, or [`Room::reset`]), from `image`, with
    /// every monotonic time moved by `shift_ms` (the difference between the clock the image
    /// was taken by and this room's). The room's layout stays; its epoch, key, ids, sessions,
    /// line, counters and settings become the image's (an image from before settings were
    /// kept leaves this room's). The image is checked whole before anything changes.
    pub fn import(&mut self, image: &[u8], shift_ms: i64) -> Result<Imported, ImportError> {
        self.take(image, shift_ms, false)
    }

    /// Whether [`Room::import`] would take `image` into this room (once emptied); changes
    /// nothing.
    pub fn check_image(&mut self, image: &[u8]) -> Result<Imported, ImportError> {
        self.take(image, 0, true)
    }

    fn take(&mut self, image: &[u8], shift_ms: i64, dry: bool) -> Result<Imported, ImportError> {
        use ImportError::Damaged;
        let peek: Peek = read(image, 0).ok_or(Damaged("it is shorter than its header"))?;
        if peek.magic != IMAGE_MAGIC {
            return Err(Damaged("it is not a room's image"));
        }
        let (head_len, session_len, ticket_len) =
            lengths(peek.version).ok_or(ImportError::OtherVersion(peek.version))?;
        let r = Reader { image, version: peek.version };
        let (full, has_control) = r.head().ok_or(Damaged("it is shorter than its header"))?;
        let h = full.v3.v2.v1;
        if full.links > LINK_TABLE as u64 {
            return Err(Damaged("it holds more links than a room counts"));
        }
        let links_len = full.links as usize * LINK_LEN;
        let len = usize::try_from(h.sessions)
            .ok()
            .and_then(|s| s.checked_mul(session_len))
            .zip(usize::try_from(h.tickets).ok().and_then(|t| t.checked_mul(ticket_len)))
            .and_then(|(s, t)| s.checked_add(t)?.checked_add(head_len)?.checked_add(links_len));
        if len != Some(image.len()) {
            return Err(Damaged("its length does not match its counts"));
        }
        if h.key_len as usize > KEY_MAX || h.tail < h.head || h.next_session_id == 0 {
            return Err(Damaged("its header is inconsistent"));
        }
        let sessions_at = head_len;
        let tickets_at = sessions_at + h.sessions as usize * session_len;
        let session_at = |i: usize| r.session(sessions_at + i * session_len);
        let ticket_at = |i: usize| r.ticket(tickets_at + i * ticket_len);
        let links_at = tickets_at + h.tickets as usize * ticket_len;
        let link_at = |i: usize| read::<LinkUse>(image, links_at + i * LINK_LEN);

        // Check everything first.
        let cap = self.hdr.session_cap;
        let mut last_slot = None;
        for i in 0..h.sessions as usize {
            let s = session_at(i).ok_or(Damaged("a session record is cut short"))?.v1;
            if s.id == 0 || last_slot.is_some_and(|l| s.slot <= l) {
                return Err(Damaged("its sessions are not in order"));
            }
            if s.slot >= u64::from(cap) {
                return Err(ImportError::Sessions { slot: s.slot, capacity: cap });
            }
            last_slot = Some(s.slot);
        }
        let mut last_number = None;
        for i in 0..h.tickets as usize {
            let t = ticket_at(i).ok_or(Damaged("a ticket record is cut short"))?;
            if t.number < h.head
                || t.number >= h.tail
                || last_number.is_some_and(|l| t.number <= l)
                || !(WAITING..=RECALLED).contains(&t.state)
            {
                return Err(Damaged("its line is not in order"));
            }
            last_number = Some(t.number);
        }
        let first = if h.tickets > 0 { ticket_at(0).map_or(h.tail, |t| t.number) } else { h.tail };
        for i in 0..full.links as usize {
            let l = link_at(i).ok_or(Damaged("a link record is cut short"))?;
            if l.id == 0 || l.used == 0 {
                return Err(Damaged("a link record is empty"));
            }
        }
        let span = h.tail - first;
        if span > self.hdr.ticket_cap {
            return Err(ImportError::Tickets { span, capacity: self.hdr.ticket_cap });
        }

        if dry {
            return Ok(Imported { sessions: h.sessions as u32, tickets: h.tickets });
        }
        if self.hdr.active != 0 || self.hdr.live != 0 {
            return Err(Damaged("the room to fill is not empty"));
        }

        // Then fill.
        for i in 0..h.sessions as usize {
            let Some(SessionRecord { v1: s, client }) = session_at(i) else { continue };
            let Some(slot) = self.sessions.get(s.slot as usize) else { continue };
            let flag = s.created & UNCONFIRMED;
            slot.created.store(shift(s.created & !UNCONFIRMED, shift_ms) | flag, Relaxed);
            slot.last_seen.store(shift(s.last_seen, shift_ms), Relaxed);
            slot.client.store(client & (EXEMPT_SESSION | u64::from(u32::MAX)), Relaxed);
            slot.id.store(s.id, Relaxed);
            self.count_client_up(client as u32);
        }
        self.rebuild_free();
        let tcap = self.hdr.ticket_cap;
        let (mut called, mut lapsed, mut returned) = (0u32, 0u32, 0u32);
        for i in 0..h.tickets as usize {
            let Some(mut t) = ticket_at(i) else { continue };
            t.joined = shift(t.joined, shift_ms);
            t.stamp = shift(t.stamp, shift_ms);
            match t.state {
                CALLED | RECALLED => called += 1,
                LAPSED => lapsed += 1,
                RETURNED => (lapsed, returned) = (lapsed + 1, returned + 1),
                _ => {}
            }
            let idx = (t.number % tcap) as usize;
            self.tickets[idx] = t;
            fenwick::add(self.tree, idx, 1);
            if t.state != WAITING {
                fenwick::add(self.front, idx, 1);
            }
            self.count_client_up(t.client);
        }
        let hdr = &mut *self.hdr;
        hdr.active = h.sessions as u32;
        (hdr.called, hdr.lapsed, hdr.returned) = (called, lapsed, returned);
        // `head` as it was (behind the first live ticket, after drops) where this ring holds
        // that much, so that the sweep walks the same numbers as the original would.
        let head = if h.tail - h.head <= tcap { h.head } else { first };
        (hdr.head, hdr.tail, hdr.live) = (head, h.tail, h.tickets);
        hdr.ticket_sweep = h.ticket_sweep.clamp(head, h.tail);
        hdr.session_sweep =
            if h.session_sweep < u64::from(cap) { h.session_sweep as u32 } else { 0 };
        hdr.last_sweep = shift(h.last_sweep, shift_ms);
        hdr.next_session_id = h.next_session_id;
        hdr.next_visitor = h.next_visitor;
        hdr.epoch = h.epoch;
        hdr.key = h.key;
        hdr.key_len = h.key_len;
        hdr.stats = h.stats.rebased(|t| shift(t, shift_ms));
        hdr.people = full.v3.v2.people;
        hdr.people_logged = full.v3.v2.people;
        hdr.exempt = full.exempt;
        hdr.people_logged_at = hdr.last_sweep;
        for (i, rec) in self.links.iter_mut().enumerate() {
            *rec = if (i as u64) < full.links {
                link_at(i).unwrap_or_default()
            } else {
                LinkUse::default()
            };
        }
        if has_control {
            let mut c = full.v3.control;
            // The rate's allowance is counted on the old clock: start it afresh.
            c.reset_allowance();
            c.rng |= 1;
            c.draw_mark = c.draw_mark.min(h.tail);
            let live = c.live;
            hdr.control = c;
            // The image's settings came from another configuration (the nginx it was saved
            // by): the configuration of the workers that use this room is adopted anew, over
            // them, at its next lock.
            hdr.settings_stamp = 0;
            hdr.pace = full.v3.pace.rebased();
            self.put_settings(live);
        }
        Ok(Imported { sessions: h.sessions as u32, tickets: h.tickets })
    }
}

/// `image` (of the current format) rewritten in format 1, as module 0.2 wrote it; for tests.
#[cfg(test)]
pub fn downgrade_to_v1(image: &[u8]) -> Vec<u8> {
    let Some(head) = read::<ImageHead>(image, 0) else { return Vec::new() };
    let mut v1 = head.v3.v2.v1;
    v1.version = 1;
    let mut out = vec![0u8; size_of::<ImageHeadV1>()];
    write(&mut out, 0, &v1);
    let mut at = HEAD_LEN;
    for _ in 0..v1.sessions {
        out.extend_from_slice(&image[at..at + size_of::<SessionRecordV1>()]);
        at += SESSION_LEN;
    }
    for _ in 0..v1.tickets {
        out.extend_from_slice(&image[at..at + size_of::<TicketV1>()]);
        at += TICKET_LEN;
    }
    out
}

/// `image` (of the current format) rewritten in format 3, as module 0.4 wrote it (without the
/// uses of exempt links); for tests.
#[cfg(test)]
pub fn downgrade_to_v3(image: &[u8]) -> Vec<u8> {
    let Some(head) = read::<ImageHead>(image, 0) else { return Vec::new() };
    let mut v3 = head.v3;
    v3.v2.v1.version = 3;
    let mut out = vec![0u8; size_of::<ImageHeadV3>()];
    write(&mut out, 0, &v3);
    let records = v3.v2.v1.sessions as usize * SESSION_LEN + v3.v2.v1.tickets as usize * TICKET_LEN;
    out.extend_from_slice(&image[HEAD_LEN..HEAD_LEN + records]);
    out
}
