//! How one room's state is laid out as plain data in a byte region: the same bytes are a `Vec`
//! in the unit tests and an nginx shared memory zone in production.
//!
//! ```text
//! Header | links: [LinkUse; 256] | sessions: [SessionSlot; S] | free: [u32; S] | tickets: [TicketSlot; T] | tree: [u32; T + 1]
//!        | front: [u32; T + 1] | arrivals: [ArrivalSlot; T / 4] | clients: [u16; 2 × (T / 2 + 1)]
//! ```
//!
//! `tree` counts the live tickets and `front` those at the front of the line (called, lapsed,
//! returned), both by ring slot, so that the k-th waiting ticket is found in O(log T) whichever
//! model calls it (see `Room::promote`).
//! `links` counts the uses of the exempt links seen (see `Room::use_link`).
//! `arrivals` remembers which first contacts have come back (see `Room::confirm`); `clients`
//! counts the places each client holds, approximately, in two rows of hashed counters (see
//! `Room::client_places`).
//!
//! Everything here is `#[repr(C)]` plain data, valid for any bit pattern, with no pointers.
//!
//! # What is touched without the lock
//!
//! Only the session slots. A visitor inside coming back is checked by reading its slot's `id`,
//! `created` and `last_seen` and writing `last_seen`, without the zone's lock (see
//! [`touch_session_unlocked`]). So those three fields are atomics and are only ever reached
//! through shared references, by everyone: the locked code, the lock-free check, and the code
//! that lays a region out (which stores zeros into them). Everything else (the header, the
//! free stack, the tickets, the tree) is read and written only by the holder of the lock,
//! through the `&mut` references of a `Room` (in `room.rs`).
//!
//! A process checks a session against the layout it saw earlier, under the lock. That is sound
//! because a region is laid out once, when its zone is new, and never again while processes
//! use it (a reload that would need another layout is refused): the slots a layout names stay
//! session slots for the life of the zone.

use core::mem::{align_of, size_of};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::control::Control;
use super::stats::{Counters, History, Pace, Tallies, WaitHistogram};

pub(super) const MAGIC: u64 = u64::from_le_bytes(*b"ngxWRoom");
/// Bump whenever the layout of any `#[repr(C)]` struct here changes.
pub const LAYOUT_VERSION: u32 = 10;
/// Longest random key kept in the region.
pub const KEY_MAX: usize = 64;
/// How many exempt links' uses the region counts at once (see `Room::use_link`): a link is
/// counted from its first use to its expiry, when its record may be taken by another.
pub const LINK_TABLE: usize = 128;
/// Set in a session slot's `client` for a session given by an exempt link (which may be
/// over `max_active`); the client tag is the low 32 bits.
pub const EXEMPT_SESSION: u64 = 1 << 32;
/// The smallest queue a region may hold.
pub const MIN_TICKETS: u64 = 64;
/// Bytes each ticket costs: its ring slot, its nodes in the two trees, a quarter of an arrival
/// slot and two halves of a client counter.
pub const BYTES_PER_TICKET: usize =
    size_of::<TicketSlot>() + 2 * size_of::<u32>() + size_of::<ArrivalSlot>() / 4 + 2;
/// Bytes each session costs: its slot plus its place on the free stack.
pub const BYTES_PER_SESSION: usize = size_of::<SessionSlot>() + size_of::<u32>();
/// Room for more sessions than `max_active` asks for, so that raising it on reload keeps the
/// room as it is: the table holds twice `max_active`, at least this many more, as long as
/// that takes no more than an eighth of the region.
const SESSION_HEADROOM_MIN: u32 = 64;

/// How many session ids are set aside, at a carry-over, for those the old zone may still hand
/// out; ticket visitors are set apart likewise by [`VISITOR_GAP`], so that nobody's cookie can
/// name somebody else's place.
pub const ADOPT_SPAN: u64 = 1 << 32;
pub const VISITOR_GAP: u64 = 1 << 24;

/// The room's time limits, from the configuration, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Longest a session lasts, however active.
    pub session_ms: u64,
    /// A session not seen for this long is over.
    pub idle_ms: u64,
    /// A waiting ticket not seen for this long is lost.
    pub queue_timeout_ms: u64,
    /// A called ticket that does not claim its slot within this long loses it.
    pub claim_window_ms: u64,
    /// A visitor whose page was left (a reload, a click, a closed tab) keeps their slot or
    /// place this long, and keeps it for good if seen again meanwhile.
    pub grace_ms: u64,
    /// A first contact's session is kept this long (at most `idle`) for its browser to come
    /// back with the cookie; a first contact sent to the line must come back within this long
    /// to take its place.
    pub confirm_ms: u64,
}

/// A session's slot: the only data in the region touched without the lock (see the module's
/// docs). `0` in `id` marks a free slot.
#[repr(C)]
#[derive(Debug, Default)]
pub(super) struct SessionSlot {
    /// 0 when the slot is free; otherwise a number never used before in this region.
    pub id: AtomicU64,
    /// Monotonic milliseconds.
    pub created: AtomicU64,
    /// Monotonic milliseconds.
    pub last_seen: AtomicU64,
    /// The client tag of the visitor (see `Room::client_places`); 0 when not counted.
    pub client: AtomicU64,
}

/// A session slot's values at one moment.
#[derive(Clone, Copy)]
pub(super) struct Session {
    pub id: u64,
    pub created: u64,
    pub last_seen: u64,
    /// The visitor's browser has come back with the cookie since the session was opened.
    pub confirmed: bool,
}

/// Set in a session slot's `created` while its visitor has not come back with the cookie.
pub(super) const UNCONFIRMED: u64 = 1 << 63;

/// A visitor seen again within a sixteenth of `idle` (at most a second) is not written down
/// again: it saves a write to shared memory on most requests and shifts `idle` by little.
const SEEN_GRANULARITY_MAX_MS: u64 = 1000;

impl SessionSlot {
    pub fn get(&self) -> Session {
        let created = self.created.load(Relaxed);
        Session {
            id: self.id.load(Relaxed),
            created: created & !UNCONFIRMED,
            last_seen: self.last_seen.load(Relaxed),
            confirmed: created & UNCONFIRMED == 0,
        }
    }

    /// Empties the slot. Atomic stores: another process may be reading it.
    pub fn clear(&self) {
        self.id.store(0, Relaxed);
        self.created.store(0, Relaxed);
        self.last_seen.store(0, Relaxed);
        self.client.store(0, Relaxed);
    }
}

impl Session {
    pub fn expired(&self, now: u64, t: &Timing) -> bool {
        let idle = if self.confirmed { t.idle_ms } else { t.idle_ms.min(t.confirm_ms) };
        now.saturating_sub(self.last_seen) > idle
            || now.saturating_sub(self.created) >= t.session_ms
    }

    /// Writes down that the session was seen `now`, unless it was a moment ago.
    pub fn see(&self, slot: &SessionSlot, now: u64, t: &Timing) {
        if now.saturating_sub(self.last_seen) >= (t.idle_ms / 16).min(SEEN_GRANULARITY_MAX_MS) {
            slot.last_seen.store(now, Relaxed);
        }
    }
}

pub(super) const FREE: u32 = 0;
pub(super) const WAITING: u32 = 1;
/// Called the first time: holds a reserved slot for `claim_window`.
pub(super) const CALLED: u32 = 2;
/// Called once and not come in time: holds no slot, keeps its place at the front for one more
/// `claim_window`, for a visitor who is late by a moment.
pub(super) const LAPSED: u32 = 3;
/// Lapsed, and its visitor came back: called again, before anyone waiting, as a slot frees.
pub(super) const RETURNED: u32 = 4;
/// Called the second time: holds a reserved slot for `claim_window`, with no more grace.
pub(super) const RECALLED: u32 = 5;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct TicketSlot {
    pub number: u64,
    /// Monotonic milliseconds.
    pub joined: u64,
    /// Last seen while waiting; the moment it was called while called (monotonic ms).
    pub stamp: u64,
    pub visitor: u32,
    pub state: u32,
    /// The client tag of the visitor (see `Room::client_places`); 0 when not counted.
    pub client: u32,
    pub _pad: u32,
}

/// How often an exempt link was used: one record per link, from its first use until it
/// expires. `id` 0 marks a free record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkUse {
    pub id: u64,
    /// Unix seconds: the link's expiry, after which the record may be reused.
    pub expires: u64,
    pub used: u32,
    pub _pad: u32,
}

/// Exempt links used and refused, since the zone was made.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exempt {
    pub used: u64,
    pub refused: u64,
}

/// A first contact that has come back and taken its place: the low 32 bits of its visitor
/// number and of its ticket's number. Indexed by visitor number.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct ArrivalSlot {
    pub visitor: u32,
    pub number: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(super) struct Header {
    pub magic: u64,
    pub version: u32,
    pub session_cap: u32,
    pub region_len: u64,
    pub ticket_cap: u64,
    pub max_active: u32,
    pub active: u32,
    /// Tickets holding a reserved slot: `CALLED` and `RECALLED`.
    pub called: u32,
    pub free_top: u32,
    /// `LAPSED` and `RETURNED` tickets: at the front of the line, holding no slot.
    pub lapsed: u32,
    /// `RETURNED` tickets.
    pub returned: u32,
    /// No live ticket has a number below `head`.
    pub head: u64,
    /// The next ticket number to hand out.
    pub tail: u64,
    pub live: u64,
    pub next_session_id: u64,
    pub next_visitor: u64,
    pub ticket_sweep: u64,
    /// Monotonic milliseconds of the last sweep by any worker; 0 before the first.
    pub last_sweep: u64,
    pub session_sweep: u32,
    pub key_len: u32,
    /// Random, new each time the region is laid out: tokens carry it, so that a cookie from
    /// before a restart (signed with the same configured secret) cannot stand for the
    /// session or ticket that now has its number.
    pub epoch: u64,
    pub key: [u8; KEY_MAX],
    /// When the configuration whose `max_active` is in force was read (monotonic ms in the
    /// master): a worker of a newer configuration applies its own, an older one's does not.
    pub settings_stamp: u64,
    /// Non-zero while another nginx (the old master of a binary upgrade) runs this room, as
    /// its state file says: this copy, restored from the file, calls and admits nobody (see
    /// `Room::set_standby`).
    pub standby: u32,
    pub _pad: u32,
    /// Session ids from here on, up to [`ADOPT_SPAN`] more, were handed out by the zone this
    /// room was carried over from, after the carry-over (its workers go on for a moment
    /// after a reload): such a session is taken in when it comes back. 0 when none.
    pub adopt_from: u64,
    pub stats: Counters,
    pub people: People,
    /// The `people` counters when a flood was last logged, and when (monotonic ms).
    pub people_logged: People,
    pub people_logged_at: u64,
    pub control: Control,
    /// How fast the slots turn over, for the wait estimate.
    pub pace: Pace,
    pub tallies: Tallies,
    pub exempt: Exempt,
    /// For the operators' metrics, not in the state file's image: the waits of those let in
    /// from the line, and the last minutes of the room, for the status location's live page.
    pub waits: WaitHistogram,
    pub history: History,
}

/// What the room turned away or let lapse because it was not a person who wants in: counted
/// since the zone was made.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct People {
    /// First contacts sent to the line without a place yet.
    pub arrivals: u64,
    /// Of those, how many came back with the cookie and took their place.
    pub arrivals_confirmed: u64,
    /// First contacts admitted at once, and of those, how many came back with the cookie.
    pub sessions_opened: u64,
    pub sessions_confirmed: u64,
    /// Requests that could take no place: not a page load, a crawler's, over the per-client
    /// limit.
    pub refused_not_navigation: u64,
    pub refused_crawler: u64,
    pub refused_client_limit: u64,
}

/// Requests refused, or first contacts that never came back, since the last line, from which
/// the log speaks of a flood: fewer are a monitor's probes and the odd crawler.
pub const FLOOD: u64 = 100;

impl People {
    /// Whether what happened since `before` is worth a line in the log: a client over its
    /// limit, or [`FLOOD`] requests refused or first contacts that did not come back.
    pub fn worth_logging(&self, before: &People) -> bool {
        let d = |f: fn(&People) -> u64| f(self).saturating_sub(f(before));
        let refused = d(|p| p.refused_not_navigation) + d(|p| p.refused_crawler);
        let unreturned = d(|p| p.arrivals).saturating_sub(d(|p| p.arrivals_confirmed))
            + d(|p| p.sessions_opened).saturating_sub(d(|p| p.sessions_confirmed));
        d(|p| p.refused_client_limit) > 0 || refused >= FLOOD || unreturned >= FLOOD
    }
}

/// Where each table starts, for a region of a given length and session capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub region_len: usize,
    pub session_cap: u32,
    pub ticket_cap: u64,
    pub(super) links_at: usize,
    pub(super) sessions_at: usize,
    pub(super) free_at: usize,
    pub(super) tickets_at: usize,
    pub(super) tree_at: usize,
    pub(super) front_at: usize,
    pub(super) arrivals_at: usize,
    pub arrival_cap: u64,
    pub(super) clients_at: usize,
    /// The width of each of the two rows of client counters.
    pub client_width: u64,
}

/// The bytes of the link table.
const LINKS_LEN: usize = LINK_TABLE * size_of::<LinkUse>();

fn align8(n: usize) -> usize {
    (n + 7) & !7
}

impl Layout {
    /// The layout of a region of `region_len` bytes holding `session_cap` sessions, with all
    /// the rest given to the queue; `None` when that leaves fewer than [`MIN_TICKETS`].
    pub fn new(region_len: usize, session_cap: u32) -> Option<Layout> {
        let links_at = align8(size_of::<Header>());
        let sessions_at = links_at + LINKS_LEN;
        let free_at =
            sessions_at.checked_add(size_of::<SessionSlot>().checked_mul(session_cap as usize)?)?;
        let tickets_at = align8(free_at.checked_add(4usize.checked_mul(session_cap as usize)?)?);
        // T ticket slots, twice T + 1 tree nodes, T / 4 arrival slots and 2 × (T / 2 + 1) client
        // counters, each table padded to 8 bytes.
        let rest = region_len.checked_sub(tickets_at)?.checked_sub(48)?;
        let ticket_cap = (rest / BYTES_PER_TICKET) as u64;
        if ticket_cap < MIN_TICKETS || session_cap == 0 {
            return None;
        }
        let t = ticket_cap as usize;
        let tree_at = tickets_at + size_of::<TicketSlot>() * t;
        let front_at = align8(tree_at + 4 * (t + 1));
        let arrivals_at = align8(front_at + 4 * (t + 1));
        let arrival_cap = (ticket_cap / 4).max(1);
        let clients_at = align8(arrivals_at + size_of::<ArrivalSlot>() * arrival_cap as usize);
        let client_width = ticket_cap / 2 + 1;
        if clients_at + 2 * 2 * client_width as usize > region_len {
            return None;
        }
        Some(Layout {
            region_len,
            session_cap,
            ticket_cap,
            links_at,
            sessions_at,
            free_at,
            tickets_at,
            tree_at,
            front_at,
            arrivals_at,
            arrival_cap,
            clients_at,
            client_width,
        })
    }

    /// The layout a region of `region_len` bytes gets for `max_active`: a session table with
    /// headroom above `max_active` where the region has room for it, so that raising
    /// `max_active` later needs no new layout.
    pub fn for_max_active(region_len: usize, max_active: u32) -> Option<Layout> {
        let headroom = max_active.max(SESSION_HEADROOM_MIN);
        let eighth = (region_len / 8 / BYTES_PER_SESSION).min(u32::MAX as usize) as u32;
        let cap = max_active.saturating_add(headroom).min(eighth).max(max_active);
        Layout::new(region_len, cap).or_else(|| Layout::new(region_len, max_active))
    }

    /// The smallest region that holds `session_cap` sessions and [`MIN_TICKETS`] tickets.
    pub fn min_region_len(session_cap: u32) -> usize {
        align8(size_of::<Header>())
            + LINKS_LEN
            + BYTES_PER_SESSION * session_cap as usize
            + 48
            + BYTES_PER_TICKET * MIN_TICKETS as usize
            + 16
    }

    /// The session slots of a region laid out like this.
    ///
    /// # Safety
    /// `base` is the start of a region of `self.region_len` bytes, 8-byte aligned, valid for
    /// `'a`, whose session slots (by this layout) are only ever accessed as atomics.
    pub(super) unsafe fn sessions<'a>(&self, base: *mut u8) -> &'a [SessionSlot] {
        // SAFETY: by the caller's promise the slots lie inside the region, aligned (offsets
        // are multiples of 8 from an 8-aligned base), and are only accessed atomically, so a
        // shared reference to them is valid while other processes use them too.
        unsafe {
            core::slice::from_raw_parts(
                base.add(self.sessions_at) as *const SessionSlot,
                self.session_cap as usize,
            )
        }
    }
}

/// Why a region could not be used as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachError {
    /// Not 8-byte aligned, or too small for any room.
    BadRegion,
    /// Never laid out.
    NotARoom,
    /// Laid out by another version of this module.
    OtherVersion,
    /// Laid out for another size.
    LayoutChanged,
}

impl core::fmt::Display for AttachError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            AttachError::BadRegion => "the region is misaligned or too small",
            AttachError::NotARoom => "the region holds no room",
            AttachError::OtherVersion => "the room was laid out by another version of the module",
            AttachError::LayoutChanged => "the room was laid out for another size",
        })
    }
}

/// Reads the header of the region at `base` and checks that it describes a room of this
/// version laid over exactly `len` bytes.
///
/// # Safety
/// `base` is 8-byte aligned and valid for reads of `len` bytes, and nobody writes the header
/// while this runs (the caller holds the lock).
pub(super) unsafe fn read_layout(base: *const u8, len: usize) -> Result<Layout, AttachError> {
    if len < size_of::<Header>() || (base as usize) % align_of::<Header>() != 0 {
        return Err(AttachError::BadRegion);
    }
    // SAFETY: aligned and long enough (checked above); `Header` is plain data valid for any bit
    // pattern; it is copied out, and nobody writes it meanwhile (the caller's promise).
    let hdr: Header = unsafe { core::ptr::read(base as *const Header) };
    if hdr.magic != MAGIC {
        return Err(AttachError::NotARoom);
    }
    if hdr.version != LAYOUT_VERSION {
        return Err(AttachError::OtherVersion);
    }
    let l = Layout::new(len, hdr.session_cap).ok_or(AttachError::LayoutChanged)?;
    if hdr.region_len != len as u64 || hdr.ticket_cap != l.ticket_cap {
        return Err(AttachError::LayoutChanged);
    }
    Ok(l)
}
