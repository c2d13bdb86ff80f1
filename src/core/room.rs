//! One room's state, laid out as plain data in a byte region: the same bytes are a `Vec` in
//! the unit tests and an nginx shared memory zone in production.
//!
//! ```text
//! Header | sessions: [SessionSlot; S] | free: [u32; S] | tickets: [TicketSlot; T] | tree: [u32; T + 1]
//! ```
//!
//! * Sessions are admitted visitors. `S` is fixed when the region is laid out; `max_active`
//!   (at most `S`) is how many may be live at once and may change on reload.
//! * Tickets are places in line, numbered in arrival order. Ticket `n` lives in ring slot
//!   `n % T`. Live tickets are "waiting" or "called"; the called ones are always the first
//!   live tickets in number order (they are called in order and only ever leave), so the
//!   first waiting ticket is the `called + 1`-th live ticket, found in O(log T) through the
//!   Fenwick tree, and a ticket's position is a prefix sum, also O(log T).
//! * Each called ticket holds one of the `max_active` slots until it claims it (becoming a
//!   session) or its claim window passes (then the next ticket is called).
//!
//! Every operation does O(log T) work plus a bounded amount of clean-up; none scans the queue.
//! Time comes in as an argument, in milliseconds since the Unix epoch.

use super::fenwick;
use core::mem::{align_of, size_of};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

const MAGIC: u64 = u64::from_le_bytes(*b"ngxWRoom");
/// Bump whenever the layout of any `#[repr(C)]` struct here changes.
pub const LAYOUT_VERSION: u32 = 2;
/// Longest random key kept in the region.
pub const KEY_MAX: usize = 64;
/// The smallest queue a region may hold.
pub const MIN_TICKETS: u64 = 64;
/// Bytes each ticket costs: its ring slot plus its tree node.
pub const BYTES_PER_TICKET: usize = size_of::<TicketSlot>() + size_of::<u32>();
/// Bytes each session costs: its slot plus its place on the free stack.
pub const BYTES_PER_SESSION: usize = size_of::<SessionSlot>() + size_of::<u32>();
/// How many expired tickets one call may clear before it leaves the rest to the sweep.
const LAZY_BUDGET: u32 = 64;
/// The statistics window: rates are sampled over windows of at least this length.
const WINDOW_MS: u64 = 5_000;
/// Time constant of the rates' exponential smoothing.
const SMOOTHING_MS: f64 = 30_000.0;
/// The queue's pace is first published after this long of measuring it, from the first call
/// on, and at least `WARM_CALLS` calls: an average from a moment when nobody had left yet
/// would promise waits many times too long.
const WARM_MS: u64 = 20_000;
const WARM_CALLS: u64 = 3;

/// The room's time limits, from the configuration.
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
}

/// A session's slot. Its fields are atomics because a live session is checked and seen
/// without the zone's lock ([`touch_session_unlocked`]); under the lock they are read and
/// written like plain numbers (relaxed atomics compile to plain loads and stores).
#[repr(C)]
#[derive(Debug, Default)]
struct SessionSlot {
    /// 0 when the slot is free; otherwise a number never used before in this region.
    id: AtomicU64,
    created: AtomicU64,
    last_seen: AtomicU64,
}

/// A session slot's values at one moment.
#[derive(Clone, Copy)]
struct Session {
    id: u64,
    created: u64,
    last_seen: u64,
}

impl SessionSlot {
    fn get(&self) -> Session {
        Session {
            id: self.id.load(Relaxed),
            created: self.created.load(Relaxed),
            last_seen: self.last_seen.load(Relaxed),
        }
    }
}

/// A visitor seen again within a sixteenth of `idle` (at most a second) is not written down
/// again: it saves a write to shared memory on most requests and shifts `idle` by little.
const SEEN_GRANULARITY_MAX_MS: u64 = 1000;

const FREE: u32 = 0;
const WAITING: u32 = 1;
const CALLED: u32 = 2;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct TicketSlot {
    number: u64,
    joined: u64,
    /// Last seen while waiting; the moment it was called while called.
    stamp: u64,
    visitor: u32,
    state: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    admitted_total: u64,
    admitted_from_queue: u64,
    joined_total: u64,
    sessions_left: u64,
    sessions_expired: u64,
    tickets_abandoned: u64,
    tickets_missed: u64,
    tickets_left: u64,
    rejected_full: u64,
    window_start: u64,
    window_calls: u64,
    window_admits: u64,
    window_had_waiting: u32,
    call_rate_known: u32,
    admit_rate_known: u32,
    wait_known: u32,
    /// Calls and time measured so far while the pace is not yet known.
    warm_calls: u64,
    warm_ms: u64,
    /// Tickets called per minute, smoothed.
    call_rate: f64,
    /// Visitors admitted (directly or from the queue) per minute, smoothed.
    admit_rate: f64,
    /// Time from joining to being admitted, smoothed, in milliseconds.
    avg_wait_ms: f64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct Header {
    magic: u64,
    version: u32,
    session_cap: u32,
    region_len: u64,
    ticket_cap: u64,
    max_active: u32,
    active: u32,
    called: u32,
    free_top: u32,
    /// No live ticket has a number below `head`.
    head: u64,
    /// The next ticket number to hand out.
    tail: u64,
    live: u64,
    next_session_id: u64,
    next_visitor: u64,
    ticket_sweep: u64,
    last_sweep: u64,
    session_sweep: u32,
    key_len: u32,
    /// Random, new each time the region is laid out: tokens carry it, so that a cookie from
    /// before a restart (signed with the same configured secret) cannot stand for the
    /// session or ticket that now has its number.
    epoch: u64,
    key: [u8; KEY_MAX],
    stats: Counters,
}

/// Where each table starts, for a region of a given length and session capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub region_len: usize,
    pub session_cap: u32,
    pub ticket_cap: u64,
    sessions_at: usize,
    free_at: usize,
    tickets_at: usize,
    tree_at: usize,
}

fn align8(n: usize) -> usize {
    (n + 7) & !7
}

impl Layout {
    /// The layout of a region of `region_len` bytes holding `session_cap` sessions, with all
    /// the rest given to the queue; `None` when that leaves fewer than [`MIN_TICKETS`].
    pub fn new(region_len: usize, session_cap: u32) -> Option<Layout> {
        let sessions_at = align8(size_of::<Header>());
        let free_at =
            sessions_at.checked_add(size_of::<SessionSlot>().checked_mul(session_cap as usize)?)?;
        let tickets_at = align8(free_at.checked_add(4usize.checked_mul(session_cap as usize)?)?);
        // T ticket slots and T + 1 tree nodes, the tree padded to 8 bytes.
        let rest = region_len.checked_sub(tickets_at)?.checked_sub(8)?;
        let ticket_cap = (rest / BYTES_PER_TICKET) as u64;
        if ticket_cap < MIN_TICKETS || session_cap == 0 {
            return None;
        }
        let tree_at = tickets_at + size_of::<TicketSlot>() * ticket_cap as usize;
        Some(Layout {
            region_len,
            session_cap,
            ticket_cap,
            sessions_at,
            free_at,
            tickets_at,
            tree_at,
        })
    }

    /// The smallest region that holds `session_cap` sessions and [`MIN_TICKETS`] tickets.
    pub fn min_region_len(session_cap: u32) -> usize {
        align8(size_of::<Header>())
            + BYTES_PER_SESSION * session_cap as usize
            + 8
            + BYTES_PER_TICKET * MIN_TICKETS as usize
            + 16
    }
}

/// Why a region could not be used as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachError {
    /// Not 8-byte aligned, or too small for any room.
    BadRegion,
    /// Never laid out, or by another version of this module.
    NotARoom,
    /// Laid out for another size or session capacity.
    LayoutChanged,
}

/// What happened to a new visitor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    Admitted(SessionRef),
    Queued {
        ticket: TicketRef,
        position: u64,
    },
    /// The queue is as long as the region can hold.
    Full,
}

/// What a waiting visitor's ticket says now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poll {
    /// The ticket was called and has now claimed its slot.
    Admitted(SessionRef),
    Waiting {
        position: u64,
    },
    /// Unknown, timed out, or called and not claimed in time.
    Lost,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionRef {
    pub slot: u32,
    pub id: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TicketRef {
    pub number: u64,
    pub visitor: u64,
}

/// A moment's view of the room, for the status page and the estimate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Snapshot {
    pub active_sessions: u32,
    pub max_sessions: u32,
    pub session_capacity: u32,
    /// Live tickets: waiting, or called and not yet claimed.
    pub queue_length: u64,
    pub called: u32,
    pub queue_capacity: u64,
    pub admitted_total: u64,
    pub admitted_from_queue: u64,
    pub joined_total: u64,
    pub sessions_left: u64,
    pub sessions_expired: u64,
    pub tickets_abandoned: u64,
    pub tickets_missed: u64,
    pub tickets_left: u64,
    pub rejected_full: u64,
    pub admitted_per_minute: Option<f64>,
    pub called_per_minute: Option<f64>,
    pub avg_wait_seconds: Option<f64>,
}

/// What one sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub sessions: u32,
    pub tickets: u32,
}

/// A room laid over a region. Holding a `Room` means holding the region exclusively (in
/// nginx: holding the zone's lock).
pub struct Room<'a> {
    layout: Layout,
    hdr: &'a mut Header,
    sessions: &'a mut [SessionSlot],
    free: &'a mut [u32],
    tickets: &'a mut [TicketSlot],
    tree: &'a mut [u32],
}

impl<'a> Room<'a> {
    fn split(region: &'a mut [u8], l: &Layout) -> Result<Room<'a>, AttachError> {
        let base = region.as_mut_ptr();
        if region.len() != l.region_len || (base as usize) % align_of::<Header>() != 0 {
            return Err(AttachError::BadRegion);
        }
        let s = l.session_cap as usize;
        let t = l.ticket_cap as usize;
        debug_assert!(l.tree_at + 4 * (t + 1) <= region.len());
        // SAFETY: `Layout::new` placed the header and the four tables one after another,
        // each at an offset aligned for its type (all offsets are multiples of 8 from an
        // 8-aligned base), all inside `region`, without overlap; every type here is plain
        // `repr(C)` data valid for any bit pattern; and the slices borrow `region` mutably
        // for 'a, so nothing else can reach these bytes while the `Room` lives.
        unsafe {
            Ok(Room {
                layout: *l,
                hdr: &mut *(base as *mut Header),
                sessions: core::slice::from_raw_parts_mut(
                    base.add(l.sessions_at) as *mut SessionSlot,
                    s,
                ),
                free: core::slice::from_raw_parts_mut(base.add(l.free_at) as *mut u32, s),
                tickets: core::slice::from_raw_parts_mut(
                    base.add(l.tickets_at) as *mut TicketSlot,
                    t,
                ),
                tree: core::slice::from_raw_parts_mut(base.add(l.tree_at) as *mut u32, t + 1),
            })
        }
    }

    /// Lays a fresh, empty room over `region`. `key` (at most [`KEY_MAX`] bytes) is kept in
    /// the region for rooms that have no configured secret.
    pub fn create(
        region: &'a mut [u8],
        session_cap: u32,
        max_active: u32,
        key: &[u8],
        epoch: u64,
    ) -> Result<Room<'a>, AttachError> {
        let l = Layout::new(region.len(), session_cap).ok_or(AttachError::BadRegion)?;
        if (region.as_ptr() as usize) % align_of::<Header>() != 0 {
            return Err(AttachError::BadRegion);
        }
        region.fill(0);
        let room = Room::split(region, &l)?;
        let mut k = [0u8; KEY_MAX];
        let key_len = key.len().min(KEY_MAX);
        k[..key_len].copy_from_slice(&key[..key_len]);
        *room.hdr = Header {
            magic: MAGIC,
            version: LAYOUT_VERSION,
            session_cap,
            region_len: region_len_u64(l.region_len),
            ticket_cap: l.ticket_cap,
            max_active: max_active.min(session_cap),
            active: 0,
            called: 0,
            free_top: session_cap,
            head: 0,
            tail: 0,
            live: 0,
            // Ids never repeat within a layout, and hardly ever across layouts.
            next_session_id: epoch.max(1),
            next_visitor: 1,
            ticket_sweep: 0,
            last_sweep: 0,
            session_sweep: 0,
            key_len: key_len as u32,
            epoch,
            key: k,
            stats: Counters::default(),
        };
        for (i, f) in room.free.iter_mut().enumerate() {
            // Pop order is from the top: hand out slot 0 first.
            *f = session_cap - 1 - i as u32;
        }
        Ok(room)
    }

    /// The room already laid over `region`, checked against the header.
    pub fn attach(region: &'a mut [u8]) -> Result<Room<'a>, AttachError> {
        if region.len() < size_of::<Header>()
            || (region.as_ptr() as usize) % align_of::<Header>() != 0
        {
            return Err(AttachError::BadRegion);
        }
        // SAFETY: aligned and long enough (checked above); `Header` is plain data valid for
        // any bit pattern; the copy ends the borrow at once.
        let hdr: Header = unsafe { *(region.as_ptr() as *const Header) };
        if hdr.magic != MAGIC || hdr.version != LAYOUT_VERSION {
            return Err(AttachError::NotARoom);
        }
        let l = Layout::new(region.len(), hdr.session_cap).ok_or(AttachError::LayoutChanged)?;
        if hdr.region_len != region_len_u64(region.len()) || hdr.ticket_cap != l.ticket_cap {
            return Err(AttachError::LayoutChanged);
        }
        Room::split(region, &l)
    }

    /// Where the tables are, for [`touch_session_unlocked`].
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The capacity the room was laid out for.
    pub fn session_capacity(&self) -> u32 {
        self.hdr.session_cap
    }

    /// Sets how many sessions may be live at once (at most the session capacity). Lowering
    /// it ends no session: the room admits nobody until enough have left.
    pub fn set_max_active(&mut self, max_active: u32) {
        self.hdr.max_active = max_active.min(self.hdr.session_cap);
    }

    /// The number of this layout of the region, carried by every token issued for it.
    pub fn epoch(&self) -> u64 {
        self.hdr.epoch
    }

    /// The random key kept in the region.
    pub fn key(&self) -> &[u8] {
        &self.hdr.key[..(self.hdr.key_len as usize).min(KEY_MAX)]
    }

    fn free_slots(&self) -> u32 {
        self.hdr.max_active.saturating_sub(self.hdr.active.saturating_add(self.hdr.called))
    }

    fn waiting(&self) -> u64 {
        self.hdr.live - u64::from(self.hdr.called)
    }

    // ---- sessions ----

    fn open_session(&mut self, now: u64) -> Option<SessionRef> {
        if self.hdr.free_top == 0 {
            return None;
        }
        self.hdr.free_top -= 1;
        let slot = self.free[self.hdr.free_top as usize];
        let id = self.hdr.next_session_id;
        self.hdr.next_session_id = id.wrapping_add(1).max(1);
        let s = self.sessions.get(slot as usize)?;
        s.created.store(now, Relaxed);
        s.last_seen.store(now, Relaxed);
        s.id.store(id, Relaxed);
        self.hdr.active += 1;
        self.hdr.stats.admitted_total += 1;
        self.hdr.stats.window_admits += 1;
        Some(SessionRef { slot, id })
    }

    fn close_session(&mut self, slot: u32) {
        let Some(s) = self.sessions.get(slot as usize) else { return };
        if s.id.load(Relaxed) == 0 {
            return;
        }
        s.id.store(0, Relaxed);
        self.free[self.hdr.free_top as usize] = slot;
        self.hdr.free_top += 1;
        self.hdr.active -= 1;
    }

    fn live_session(&self, r: SessionRef) -> Option<Session> {
        self.sessions
            .get(r.slot as usize)
            .map(SessionSlot::get)
            .filter(|s| s.id != 0 && s.id == r.id)
    }

    /// Whether `r` is a live session; if so it is seen now. An expired one is ended here.
    pub fn touch_session(&mut self, r: SessionRef, now: u64, t: &Timing) -> bool {
        let Some(s) = self.live_session(r) else { return false };
        if s.expired(now, t) {
            self.close_session(r.slot);
            self.hdr.stats.sessions_expired += 1;
            self.promote(now, t);
            return false;
        }
        s.see(&self.sessions[r.slot as usize], now, t);
        true
    }

    /// Ends session `r` at its visitor's request; false when it was not live.
    pub fn leave_session(&mut self, r: SessionRef, now: u64, t: &Timing) -> bool {
        if self.live_session(r).is_none() {
            return false;
        }
        self.close_session(r.slot);
        self.hdr.stats.sessions_left += 1;
        self.promote(now, t);
        true
    }

    // ---- tickets ----

    fn ring(&self, number: u64) -> usize {
        (number % self.hdr.ticket_cap) as usize
    }

    /// The ring slot of the `k`-th live ticket counted from `head`.
    fn kth_live(&self, k: u64) -> Option<usize> {
        if k == 0 || k > self.hdr.live {
            return None;
        }
        let head = self.ring(self.hdr.head);
        let before_head = fenwick::prefix(self.tree, head);
        let from_head = self.hdr.live - before_head;
        if k <= from_head {
            fenwick::find_kth(self.tree, before_head + k)
        } else {
            fenwick::find_kth(self.tree, k - from_head)
        }
    }

    /// Live tickets with a number below `number` (which is in `head..tail`).
    fn live_before(&self, number: u64) -> u64 {
        let head = self.ring(self.hdr.head);
        let at = self.ring(number);
        let (p_head, p_at) = (fenwick::prefix(self.tree, head), fenwick::prefix(self.tree, at));
        if number == self.hdr.head {
            0
        } else if head < at {
            p_at - p_head
        } else {
            self.hdr.live - p_head + p_at
        }
    }

    fn drop_ticket(&mut self, idx: usize) {
        let Some(slot) = self.tickets.get_mut(idx) else { return };
        let was = slot.state;
        if was == FREE {
            return;
        }
        slot.state = FREE;
        fenwick::add(self.tree, idx, -1);
        self.hdr.live -= 1;
        if was == CALLED {
            self.hdr.called -= 1;
        }
    }

    fn find_ticket(&self, r: TicketRef) -> Option<usize> {
        let idx = self.ring(r.number);
        let s = self.tickets.get(idx)?;
        (s.state != FREE && s.number == r.number && s.visitor == r.visitor as u32).then_some(idx)
    }

    /// Moves `head` to the first live ticket.
    fn advance_head(&mut self) {
        self.hdr.head = match self.kth_live(1) {
            Some(idx) => self.tickets[idx].number,
            None => self.hdr.tail,
        };
    }

    /// Calls waiting tickets, in order, while slots are free. A waiting ticket found to have
    /// timed out is dropped instead; past a small budget that is left to the sweep.
    fn promote(&mut self, now: u64, t: &Timing) {
        let mut budget = LAZY_BUDGET;
        while self.free_slots() > 0 && self.waiting() > 0 && budget > 0 {
            budget -= 1;
            let Some(idx) = self.kth_live(u64::from(self.hdr.called) + 1) else { break };
            let slot = &mut self.tickets[idx];
            if now.saturating_sub(slot.stamp) > t.queue_timeout_ms {
                self.drop_ticket(idx);
                self.hdr.stats.tickets_abandoned += 1;
                continue;
            }
            slot.state = CALLED;
            slot.stamp = now;
            self.hdr.called += 1;
            self.hdr.stats.window_calls += 1;
        }
    }

    /// A visitor with no valid session or ticket arrives.
    pub fn enter(&mut self, now: u64, t: &Timing) -> Entry {
        self.promote(now, t);
        if self.waiting() == 0 && self.free_slots() > 0 {
            if let Some(s) = self.open_session(now) {
                return Entry::Admitted(s);
            }
        }
        self.join(now)
    }

    fn join(&mut self, now: u64) -> Entry {
        if self.hdr.tail - self.hdr.head >= self.hdr.ticket_cap {
            self.advance_head();
            if self.hdr.tail - self.hdr.head >= self.hdr.ticket_cap {
                self.hdr.stats.rejected_full += 1;
                return Entry::Full;
            }
        }
        let number = self.hdr.tail;
        self.hdr.tail += 1;
        if self.hdr.live == 0 {
            self.hdr.head = number;
        }
        let visitor = self.hdr.next_visitor;
        self.hdr.next_visitor += 1;
        let idx = self.ring(number);
        self.tickets[idx] =
            TicketSlot { number, joined: now, stamp: now, visitor: visitor as u32, state: WAITING };
        fenwick::add(self.tree, idx, 1);
        self.hdr.live += 1;
        self.hdr.stats.joined_total += 1;
        let position = self.live_before(number) + 1;
        Entry::Queued { ticket: TicketRef { number, visitor }, position }
    }

    /// A waiting visitor comes back (page load or poll): the ticket is seen now, and claims
    /// its slot if it has been called.
    pub fn poll(&mut self, r: TicketRef, now: u64, t: &Timing) -> Poll {
        let Some(idx) = self.find_ticket(r) else { return Poll::Lost };
        let s = self.tickets[idx];
        if s.state == WAITING && now.saturating_sub(s.stamp) > t.queue_timeout_ms {
            self.drop_ticket(idx);
            self.hdr.stats.tickets_abandoned += 1;
            self.promote(now, t);
            return Poll::Lost;
        }
        if s.state == CALLED && now.saturating_sub(s.stamp) > t.claim_window_ms {
            self.drop_ticket(idx);
            self.hdr.stats.tickets_missed += 1;
            self.promote(now, t);
            return Poll::Lost;
        }
        if s.state == WAITING {
            self.tickets[idx].stamp = now;
            self.promote(now, t);
        }
        // A called ticket's reserved slot becomes the session. (With no free slot at all,
        // possible only after a reload lowered the capacity, it stays called, first in line.)
        if self.tickets[idx].state == CALLED && self.hdr.free_top > 0 {
            self.drop_ticket(idx);
            if let Some(session) = self.open_session(now) {
                let st = &mut self.hdr.stats;
                st.admitted_from_queue += 1;
                let wait = now.saturating_sub(s.joined) as f64;
                st.avg_wait_ms = if st.wait_known == 0 {
                    wait
                } else {
                    st.avg_wait_ms + 0.2 * (wait - st.avg_wait_ms)
                };
                st.wait_known = 1;
                return Poll::Admitted(session);
            }
        }
        Poll::Waiting { position: self.live_before(r.number) + 1 }
    }

    /// The visitor gives up their place; false when the ticket was not live.
    pub fn leave_ticket(&mut self, r: TicketRef, now: u64, t: &Timing) -> bool {
        let Some(idx) = self.find_ticket(r) else { return false };
        self.drop_ticket(idx);
        self.hdr.stats.tickets_left += 1;
        self.promote(now, t);
        true
    }

    /// The position of a live ticket, without touching it.
    pub fn position(&self, r: TicketRef) -> Option<u64> {
        self.find_ticket(r).map(|_| self.live_before(r.number) + 1)
    }

    // ---- the sweep ----

    /// Whether a sweep is due: false when any worker swept less than `interval_ms` ago.
    pub fn sweep_due(&self, now: u64, interval_ms: u64) -> bool {
        now.saturating_sub(self.hdr.last_sweep) >= interval_ms || now < self.hdr.last_sweep
    }

    /// Ends expired sessions, drops timed-out and unclaimed tickets, calls the next tickets
    /// and samples the rates. Looks at no more than `budget` sessions and `budget` tickets.
    pub fn sweep(&mut self, now: u64, t: &Timing, budget: u32) -> Swept {
        self.hdr.last_sweep = now;
        let mut swept = Swept::default();
        let cap = self.hdr.session_cap;
        for _ in 0..budget.min(cap) {
            let i = self.hdr.session_sweep % cap;
            self.hdr.session_sweep = (i + 1) % cap;
            let s = self.sessions[i as usize].get();
            if s.id != 0 && s.expired(now, t) {
                self.close_session(i);
                self.hdr.stats.sessions_expired += 1;
                swept.sessions += 1;
            }
        }
        // Called tickets were called in number order, so the first is the oldest.
        while self.hdr.called > 0 && swept.tickets < budget {
            let Some(idx) = self.kth_live(1) else { break };
            let s = self.tickets[idx];
            if s.state != CALLED || now.saturating_sub(s.stamp) <= t.claim_window_ms {
                break;
            }
            self.drop_ticket(idx);
            self.hdr.stats.tickets_missed += 1;
            swept.tickets += 1;
        }
        // Waiting tickets: a cursor walks the queue a slice at a time.
        if self.hdr.ticket_sweep < self.hdr.head || self.hdr.ticket_sweep >= self.hdr.tail {
            self.hdr.ticket_sweep = self.hdr.head;
        }
        let mut looked = 0;
        while looked < budget && self.hdr.ticket_sweep < self.hdr.tail {
            let n = self.hdr.ticket_sweep;
            self.hdr.ticket_sweep += 1;
            looked += 1;
            let idx = self.ring(n);
            let s = self.tickets[idx];
            if s.state == WAITING
                && s.number == n
                && now.saturating_sub(s.stamp) > t.queue_timeout_ms
            {
                self.drop_ticket(idx);
                self.hdr.stats.tickets_abandoned += 1;
                swept.tickets += 1;
            }
        }
        self.advance_head();
        self.promote(now, t);
        self.sample_rates(now);
        swept
    }

    fn sample_rates(&mut self, now: u64) {
        let waiting = self.waiting() > 0;
        let st = &mut self.hdr.stats;
        if st.window_start == 0 || now < st.window_start {
            // The first window also counts what happened before the first sweep.
            st.window_start = now;
            st.window_had_waiting = u32::from(waiting);
            return;
        }
        let dt = now - st.window_start;
        if dt < WINDOW_MS {
            return;
        }
        let minutes = dt as f64 / 60_000.0;
        let alpha = 1.0 - (-(dt as f64) / SMOOTHING_MS).exp();
        // The queue's pace is only measurable while people are waiting for it.
        let measurable = st.window_had_waiting != 0 || st.window_calls > 0;
        if st.call_rate_known != 0 {
            if measurable {
                let sample = st.window_calls as f64 / minutes;
                st.call_rate += alpha * (sample - st.call_rate);
            }
        } else if measurable && (st.warm_ms > 0 || st.window_calls > 0) {
            st.warm_calls += st.window_calls;
            st.warm_ms += dt;
            if st.warm_ms >= WARM_MS && st.warm_calls >= WARM_CALLS {
                st.call_rate = st.warm_calls as f64 * 60_000.0 / st.warm_ms as f64;
                st.call_rate_known = 1;
            }
        }
        let sample = st.window_admits as f64 / minutes;
        st.admit_rate = if st.admit_rate_known == 0 {
            sample
        } else {
            st.admit_rate + alpha * (sample - st.admit_rate)
        };
        st.admit_rate_known = 1;
        st.window_start = now;
        st.window_calls = 0;
        st.window_admits = 0;
        st.window_had_waiting = u32::from(waiting);
    }

    /// Estimated seconds until a ticket at `position` is called; `None` while the queue's pace
    /// is unknown or it is not moving.
    pub fn eta_seconds(&self, position: u64) -> Option<u64> {
        let st = &self.hdr.stats;
        if st.call_rate_known == 0 || st.call_rate < 0.01 {
            return None;
        }
        let calls_needed = position.saturating_sub(u64::from(self.hdr.called));
        Some((calls_needed as f64 * 60.0 / st.call_rate).ceil() as u64)
    }

    /// People in line: waiting, or called and not yet come in.
    pub fn queue_length(&self) -> u64 {
        self.hdr.live
    }

    pub fn snapshot(&self) -> Snapshot {
        let h = &self.hdr;
        let st = &h.stats;
        let known = |k: u32, v: f64| (k != 0).then_some(v);
        Snapshot {
            active_sessions: h.active,
            max_sessions: h.max_active,
            session_capacity: h.session_cap,
            queue_length: h.live,
            called: h.called,
            queue_capacity: h.ticket_cap,
            admitted_total: st.admitted_total,
            admitted_from_queue: st.admitted_from_queue,
            joined_total: st.joined_total,
            sessions_left: st.sessions_left,
            sessions_expired: st.sessions_expired,
            tickets_abandoned: st.tickets_abandoned,
            tickets_missed: st.tickets_missed,
            tickets_left: st.tickets_left,
            rejected_full: st.rejected_full,
            admitted_per_minute: known(st.admit_rate_known, st.admit_rate),
            called_per_minute: known(st.call_rate_known, st.call_rate),
            avg_wait_seconds: known(st.wait_known, st.avg_wait_ms / 1000.0),
        }
    }

    /// Checks every invariant by brute force; for tests.
    #[cfg(test)]
    pub fn check_invariants(&self) {
        let h = &self.hdr;
        let live: Vec<&TicketSlot> = {
            let mut v: Vec<&TicketSlot> = self.tickets.iter().filter(|s| s.state != FREE).collect();
            v.sort_by_key(|s| s.number);
            v
        };
        assert_eq!(live.len() as u64, h.live);
        assert_eq!(fenwick::prefix(self.tree, self.tickets.len()), h.live);
        let called = live.iter().filter(|s| s.state == CALLED).count() as u32;
        assert_eq!(called, h.called);
        assert!(
            live.iter().take(called as usize).all(|s| s.state == CALLED),
            "called tickets lead the queue"
        );
        for s in &live {
            assert!(s.number >= h.head && s.number < h.tail);
        }
        let active = self.sessions.iter().filter(|s| s.get().id != 0).count() as u32;
        assert_eq!(active, h.active);
        assert_eq!(h.free_top + active, h.session_cap);
        assert!(h.active + h.called <= h.max_active, "capacity exceeded");
    }
}

impl Session {
    fn expired(&self, now: u64, t: &Timing) -> bool {
        now.saturating_sub(self.last_seen) > t.idle_ms
            || now.saturating_sub(self.created) >= t.session_ms
    }

    /// Writes down that the session was seen `now`, unless it was a moment ago.
    fn see(&self, slot: &SessionSlot, now: u64, t: &Timing) {
        if now.saturating_sub(self.last_seen) >= (t.idle_ms / 16).min(SEEN_GRANULARITY_MAX_MS) {
            slot.last_seen.store(now, Relaxed);
        }
    }
}

/// The common case without the zone's lock: whether `r` is a live, unexpired session of the
/// region laid out as `layout`; if so it is seen now. `false` says only "not sure": the
/// caller then asks again under the lock, where an expired session is ended.
///
/// A race with a locked operation is harmless: a session ended a moment ago may pass one more
/// request, and a `last_seen` written into a slot just reused holds "now", as the new session's
/// own does.
///
/// # Safety
/// `base` is the start of a region of `layout.region_len` bytes, 8-byte aligned, that was laid
/// out by [`Room::create`] with this layout (a stale layout after a reload reads the wrong
/// slot, which a session id, unique across layouts, does not match), and that stays mapped
/// while the call runs. The region's session slots are only ever accessed as atomics.
pub unsafe fn touch_session_unlocked(
    base: *mut u8,
    layout: &Layout,
    r: SessionRef,
    now: u64,
    t: &Timing,
) -> bool {
    if r.slot >= layout.session_cap || r.id == 0 {
        return false;
    }
    // SAFETY: by the caller's promise the slot lies inside the region, aligned; the slot's
    // fields are atomics, so reading and writing them while other processes do is defined.
    let slot =
        unsafe { &*(base.add(layout.sessions_at) as *const SessionSlot).add(r.slot as usize) };
    let s = slot.get();
    if s.id != r.id || s.expired(now, t) {
        return false;
    }
    s.see(slot, now, t);
    true
}

fn region_len_u64(len: usize) -> u64 {
    len as u64
}
