//! One room's state machine over the tables of [`super::layout`]: admitting, queueing,
//! calling, claiming, expiring.
//!
//! * Sessions are admitted visitors. The session table has a fixed capacity; `max_active`
//!   (at most that) is how many may be live at once and may change on reload.
//! * Tickets are places in line, numbered in arrival order. Ticket `n` lives in ring slot
//!   `n % T`. Live tickets are waiting, or at the front: called (holding a slot), lapsed
//!   (called, late, keeping the place once more, holding no slot), returned (lapsed and back)
//!   or recalled (called the second time). Two Fenwick trees over the ring count the live
//!   tickets and the front ones, so the k-th waiting ticket (the first under FIFO, any under
//!   a draw) is found in O(log T), and a ticket's position is a prefix sum, also O(log T).
//!   Under FIFO alone the front ones are the first live tickets in number order; a draw, or a
//!   change of model, calls others.
//! * Each called ticket holds one of the `max_active` slots until it claims it (becoming a
//!   session) or its claim window passes (then the next ticket is called).
//!
//! Every operation does O(log T) work plus a bounded amount of clean-up; none scans the queue.
//! Time comes in as an argument: monotonic milliseconds, the same clock in every process.

use core::mem::align_of;
use core::ptr::NonNull;
use core::sync::atomic::Ordering::Relaxed;

use super::control::{Change, Control, Mode, Model, Phase, Settings, SettingsError};
use super::fenwick;
use super::layout::{
    read_layout, ArrivalSlot, AttachError, Exempt, Header, Layout, LinkUse, People, Session,
    SessionSlot, TicketSlot, Timing, ADOPT_SPAN, CALLED, FREE, KEY_MAX, LAPSED, LAYOUT_VERSION,
    LINK_TABLE, MAGIC, RECALLED, RETURNED, UNCONFIRMED, VISITOR_GAP, WAITING,
};
use super::stats::{Counters, History, Pace, Sample, Tallies, Totals, WaitHistogram, WAIT_UNKNOWN};

/// How many expired tickets one call may clear before it leaves the rest to the sweep.
const LAZY_BUDGET: u32 = 64;

/// What happened to a new visitor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Admitted at once: the session holds its slot for `confirm` unless the visitor comes
    /// back with the cookie meanwhile.
    Admitted(SessionRef),
    /// Sent to the back of the line without a place yet: the place is taken, in order, when
    /// the visitor comes back with the arrival (see [`Room::confirm`]).
    Arrived {
        arrival: Arrival,
        /// Where they would stand now: after everyone in line.
        position: u64,
    },
    /// The queue is as long as the region can hold.
    Full,
    /// The client holds as many places as its limit allows.
    Limited,
    /// The room stands by (another nginx runs it): nobody is given a place until it takes
    /// over.
    Held,
    /// Nobody new joins: the room's mode is `reject`.
    Closed,
    /// The event is over.
    Over,
    /// The room is off (mode `pass`) and has no free slot: the visitor passes without a place.
    Passed,
}

/// What a waiting visitor's ticket says now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poll {
    /// The ticket was called and has now claimed its slot, after waiting this many
    /// milliseconds since it joined.
    Admitted(SessionRef, u64),
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

/// A first contact sent to the line: what its cookie carries until it comes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    pub visitor: u64,
    /// Monotonic milliseconds.
    pub arrived: u64,
}

/// Who is asking for a place, for the per-client limit: a tag made from the client's key
/// (0: not counted) and the most places that tag may hold (0: no limit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Client {
    pub tag: u32,
    pub limit: u32,
}

impl Client {
    /// Nobody in particular: not counted, not limited.
    pub const NONE: Client = Client { tag: 0, limit: 0 };

    fn counted(self) -> u32 {
        if self.limit == 0 {
            0
        } else {
            self.tag
        }
    }
}

/// What a first contact coming back with its arrival found (see [`Room::confirm`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirm {
    /// Its place in line, taken now or by an earlier return, and what the ticket says now.
    Ticket(TicketRef, Poll),
    /// Taken too late, or never issued by this room: the visitor is a new one.
    Stale,
    /// The queue is as long as the region can hold.
    Full,
    /// The client holds as many places as its limit allows.
    Limited,
    /// The room stands by: nobody takes a place until it takes over.
    Held,
    /// Nobody new joins: the room's mode is `reject`.
    Closed,
    /// The event ended before the visitor took a place.
    Over,
    /// The room is off (mode `pass`): the visitor passes without taking a place.
    Passed,
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
    /// Called once, not come in time, keeping their place at the front once more.
    pub lapsed: u32,
    pub queue_capacity: u64,
    /// The room stands by while another nginx runs it (see [`Room::standby`]).
    pub standby: bool,
    /// Counts since the zone was made.
    pub totals: Totals,
    pub people: People,
    pub admitted_per_minute: Option<f64>,
    pub called_per_minute: Option<f64>,
    pub avg_wait_seconds: Option<f64>,
    /// The settings in force, and what the configuration says.
    pub settings: Settings,
    pub configured: Settings,
    pub phase: Phase,
    /// Tickets waiting to be called at random: all those waiting under `random`, those in the
    /// draw under `lottery`; 0 under `fifo`.
    pub in_draw: u64,
    /// Changes made at run time since the zone was made.
    pub changes: u64,
    /// Newcomers turned away because the room was closed or the event over, and requests let
    /// through without a place while the room was off.
    pub turned_away: u64,
    pub passed: u64,
    pub tallies: Tallies,
    /// Exempt links used and refused.
    pub exempt: Exempt,
    /// How long those let in from the line waited, since the zone was made (or restored).
    pub waits: WaitHistogram,
}

/// Which tickets a tree query counts.
#[derive(Clone, Copy)]
enum Set {
    Live,
    /// Called, lapsed, returned, recalled.
    Front,
    Waiting,
}

/// What one sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub sessions: u32,
    pub tickets: u32,
}

/// A room laid over a region, for the holder of the region's lock: the header, the free stack,
/// the tickets and the tree are borrowed exclusively; the session slots, which the lock-free
/// check also reads and writes, are shared atomics (see [`super::layout`]).
pub struct Room<'a> {
    pub(super) layout: Layout,
    pub(super) hdr: &'a mut Header,
    /// The uses of exempt links (see `Room::use_link`).
    pub(super) links: &'a mut [LinkUse],
    pub(super) sessions: &'a [SessionSlot],
    pub(super) free: &'a mut [u32],
    pub(super) tickets: &'a mut [TicketSlot],
    pub(super) tree: &'a mut [u32],
    pub(super) front: &'a mut [u32],
    pub(super) arrivals: &'a mut [ArrivalSlot],
    pub(super) clients: &'a mut [u16],
}

impl<'a> Room<'a> {
    /// The tables of a region laid out as `l`.
    ///
    /// # Safety
    /// `base` is 8-byte aligned and valid for reads and writes of `l.region_len` bytes for
    /// `'a`; for `'a` nobody else reads or writes any byte of it but the session slots (the
    /// caller holds the lock), and the session slots are only ever accessed atomically.
    unsafe fn from_raw(base: *mut u8, l: &Layout) -> Room<'a> {
        let s = l.session_cap as usize;
        let t = l.ticket_cap as usize;
        debug_assert!(l.clients_at + 4 * l.client_width as usize <= l.region_len);
        // SAFETY: `Layout::new` placed the header and the tables one after another, each
        // at an offset aligned for its type, all inside the region, without overlap; every
        // type here is plain `repr(C)` data valid for any bit pattern. The `&mut` ones are
        // touched by nobody else while the caller holds the lock; the session slots are shared
        // atomics, as everyone else reaches them.
        unsafe {
            Room {
                layout: *l,
                hdr: &mut *(base as *mut Header),
                links: core::slice::from_raw_parts_mut(
                    base.add(l.links_at) as *mut LinkUse,
                    LINK_TABLE,
                ),
                sessions: l.sessions(base),
                free: core::slice::from_raw_parts_mut(base.add(l.free_at) as *mut u32, s),
                tickets: core::slice::from_raw_parts_mut(
                    base.add(l.tickets_at) as *mut TicketSlot,
                    t,
                ),
                tree: core::slice::from_raw_parts_mut(base.add(l.tree_at) as *mut u32, t + 1),
                front: core::slice::from_raw_parts_mut(base.add(l.front_at) as *mut u32, t + 1),
                arrivals: core::slice::from_raw_parts_mut(
                    base.add(l.arrivals_at) as *mut ArrivalSlot,
                    l.arrival_cap as usize,
                ),
                clients: core::slice::from_raw_parts_mut(
                    base.add(l.clients_at) as *mut u16,
                    2 * l.client_width as usize,
                ),
            }
        }
    }

    /// Lays a fresh, empty room over `region` with a table of `session_cap` sessions. `key`
    /// (at most [`KEY_MAX`] bytes) is kept in the region for rooms that have no configured
    /// secret.
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
        // SAFETY: the region is borrowed exclusively for 'a and laid out as `l`, checked above.
        Ok(unsafe { Room::lay_out(region.as_mut_ptr(), &l, max_active, key, epoch) })
    }

    /// The room already laid over `region`, checked against the header.
    pub fn attach(region: &'a mut [u8]) -> Result<Room<'a>, AttachError> {
        // SAFETY: the region is borrowed exclusively for 'a.
        let l = unsafe { read_layout(region.as_ptr(), region.len()) }?;
        // SAFETY: as above; `read_layout` checked alignment and that `l` fits the region.
        Ok(unsafe { Room::from_raw(region.as_mut_ptr(), &l) })
    }

    /// [`Room::attach`] for a region shared with other processes.
    ///
    /// # Safety
    /// `base` is valid for reads and writes of `len` bytes for `'a`; the caller holds the
    /// region's lock for `'a`, and everyone accesses its session slots only atomically.
    pub unsafe fn attach_shared(base: NonNull<u8>, len: usize) -> Result<Room<'a>, AttachError> {
        // SAFETY: the caller's promise; nobody writes the header without the lock.
        let l = unsafe { read_layout(base.as_ptr(), len) }?;
        // SAFETY: the caller's promise; `read_layout` checked alignment and the layout's fit.
        Ok(unsafe { Room::from_raw(base.as_ptr(), &l) })
    }

    /// [`Room::create`] for a region shared with other processes, laid out as `l` (whose
    /// `region_len` is the region's length). The session slots are emptied with atomic stores:
    /// a process may still be checking a session in them without the lock.
    ///
    /// # Safety
    /// As for [`Room::attach_shared`], with `l.region_len` bytes; and no process may still
    /// check sessions without the lock against an earlier layout of the region (a region is
    /// laid out once, when its zone is new).
    pub unsafe fn create_shared(
        base: NonNull<u8>,
        l: &Layout,
        max_active: u32,
        key: &[u8],
        epoch: u64,
    ) -> Result<Room<'a>, AttachError> {
        if (base.as_ptr() as usize) % align_of::<Header>() != 0 {
            return Err(AttachError::BadRegion);
        }
        // SAFETY: the caller's promise.
        Ok(unsafe { Room::lay_out(base.as_ptr(), l, max_active, key, epoch) })
    }

    /// # Safety
    /// As for [`Room::from_raw`].
    unsafe fn lay_out(
        base: *mut u8,
        l: &Layout,
        max_active: u32,
        key: &[u8],
        epoch: u64,
    ) -> Room<'a> {
        // SAFETY: the header, free stack, tickets and tree are ours alone (the caller holds the
        // lock) and plain data: zeroing them is a valid value. The session slots are emptied
        // through atomics below, never with plain writes.
        unsafe {
            core::ptr::write_bytes(base, 0, l.sessions_at);
            core::ptr::write_bytes(base.add(l.free_at), 0, l.region_len - l.free_at);
        }
        // SAFETY: the caller's promise, as for `from_raw`.
        let room = unsafe { Room::from_raw(base, l) };
        for s in room.sessions {
            s.clear();
        }
        let mut k = [0u8; KEY_MAX];
        let key_len = key.len().min(KEY_MAX);
        k[..key_len].copy_from_slice(&key[..key_len]);
        let session_cap = l.session_cap;
        *room.hdr = Header {
            magic: MAGIC,
            version: LAYOUT_VERSION,
            session_cap,
            region_len: l.region_len as u64,
            ticket_cap: l.ticket_cap,
            max_active: max_active.min(session_cap),
            active: 0,
            called: 0,
            free_top: session_cap,
            lapsed: 0,
            returned: 0,
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
            settings_stamp: 0,
            standby: 0,
            _pad: 0,
            adopt_from: 0,
            stats: Counters::default(),
            people: People::default(),
            people_logged: People::default(),
            people_logged_at: 0,
            control: Control {
                live: Settings::new(max_active.min(session_cap)),
                conf: Settings::new(max_active.min(session_cap)),
                // Any seed but 0 will do; the epoch differs from layout to layout.
                rng: epoch | 1,
                ..Control::default()
            },
            pace: Pace::new(),
            tallies: Tallies::default(),
            exempt: Exempt::default(),
            waits: WaitHistogram::default(),
            history: History::default(),
        };
        for (i, f) in room.free.iter_mut().enumerate() {
            // Pop order is from the top: hand out slot 0 first.
            *f = session_cap - 1 - i as u32;
        }
        room
    }

    /// Where the tables are, for [`touch_session_unlocked`].
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The session table's capacity: the most `max_active` can be without a new layout.
    pub fn session_capacity(&self) -> u32 {
        self.hdr.session_cap
    }

    pub fn max_active(&self) -> u32 {
        self.hdr.max_active
    }

    /// Sets how many sessions may be live at once (at most the session capacity). Lowering
    /// it ends no session: the room admits nobody until enough have left.
    pub fn set_max_active(&mut self, max_active: u32) {
        let mut s = self.hdr.control.live;
        s.max_active = max_active;
        self.put_in_force(s);
    }

    /// The settings in force.
    pub fn settings(&self) -> Settings {
        self.hdr.control.live
    }

    /// The settings of the configuration last adopted.
    pub fn configured(&self) -> Settings {
        self.hdr.control.conf
    }

    /// Puts the settings of a configuration read at `stamp` in force, unless a newer
    /// configuration's are: each setting the configuration changed since the last one adopted
    /// (a setting changed at run time and not in the configuration stays). During a reload,
    /// old and new workers share the room: the new ones' settings win, and the old ones do not
    /// put theirs back; a reload that failed started no worker, so its settings never apply.
    /// Returns the settings put in force, or `None` when a newer configuration's are.
    pub fn adopt_settings(&mut self, conf: Settings, stamp: u64) -> Option<Settings> {
        if stamp <= self.hdr.settings_stamp {
            return None;
        }
        self.hdr.settings_stamp = stamp;
        let c = self.hdr.control;
        let mut merged = c.live.merged(&c.conf, &conf);
        if merged.check(self.hdr.session_cap).is_err() {
            // The event's times set at run time no longer fit with the configuration's: its
            // times win, and the other run-time changes stay.
            (merged.start, merged.end) = (conf.start, conf.end);
        }
        if merged.check(self.hdr.session_cap).is_err() {
            merged = conf;
        }
        self.hdr.control.conf = conf;
        self.put_in_force(merged);
        Some(self.hdr.control.live)
    }

    /// Changes the settings at run time, as an operator asked: checked as a whole first, so
    /// that a change is put in force entirely or not at all. Returns the settings before and
    /// after.
    pub fn change_settings(
        &mut self,
        change: &Change,
        now: u64,
        t: &Timing,
    ) -> Result<(Settings, Settings), SettingsError> {
        if self.hdr.standby != 0 {
            return Err(SettingsError::StandingBy);
        }
        let before = self.hdr.control.live;
        let after = change.apply(&before, &self.hdr.control.conf);
        after.check(self.hdr.session_cap)?;
        if after != before {
            self.put_in_force(after);
            self.hdr.control.changes += 1;
        }
        // A higher capacity or rate, or a start brought forward, lets people in now.
        self.promote(now, t);
        Ok((before, self.hdr.control.live))
    }

    /// Puts `s` in force as it is, capped to the session table (an image's settings).
    pub(super) fn put_settings(&mut self, s: Settings) {
        let c = &mut self.hdr.control;
        c.live = s;
        c.live.max_active = s.max_active.clamp(1, self.hdr.session_cap);
        self.hdr.max_active = c.live.max_active;
    }

    fn put_in_force(&mut self, mut s: Settings) {
        s.max_active = s.max_active.min(self.hdr.session_cap);
        let c = &mut self.hdr.control;
        let was = c.live;
        if s.model() == Model::Lottery && (was.model() != Model::Lottery || was.start != s.start) {
            // A lottery put in force, or moved to another start: a new draw.
            c.drawn = 0;
        }
        if s.rate_per_minute != was.rate_per_minute {
            c.reset_allowance();
        }
        c.live = s;
        self.hdr.max_active = s.max_active;
        self.make_draw();
    }

    /// Tells the room the wall-clock time (seconds), for the event's phase: the lottery's
    /// draw is made once its start has come.
    pub fn set_wall_clock(&mut self, wall: u64) {
        self.hdr.control.wall = wall;
        self.make_draw();
    }

    fn make_draw(&mut self) {
        let c = &mut self.hdr.control;
        if c.live.model() == Model::Lottery && c.drawn == 0 && c.live.phase(c.wall) != Phase::Before
        {
            c.draw_mark = self.hdr.tail;
            c.drawn = 1;
        }
    }

    /// Whether a newcomer's turn will be drawn at random (the model is `random`, or a lottery
    /// not drawn yet).
    pub fn newcomers_drawn(&self) -> bool {
        let c = &self.hdr.control;
        match c.live.model() {
            Model::Fifo => false,
            Model::Random => true,
            Model::Lottery => c.drawn == 0,
        }
    }

    /// Tickets at the front of the line: called and not yet come in, or lapsed.
    pub fn front_length(&self) -> u64 {
        self.front()
    }

    /// The wall clock as last told (seconds).
    pub fn wall_clock(&self) -> u64 {
        self.hdr.control.wall
    }

    /// Where the room's event stands.
    pub fn phase(&self) -> Phase {
        let c = &self.hdr.control;
        c.live.phase(c.wall)
    }

    pub fn mode(&self) -> Mode {
        self.hdr.control.live.mode()
    }

    /// Tickets numbered below this are called at random (see [`Model`]); `None` under FIFO.
    fn draw_limit(&self) -> Option<u64> {
        let c = &self.hdr.control;
        match c.live.model() {
            Model::Fifo => None,
            Model::Random => Some(self.hdr.tail),
            Model::Lottery if c.drawn != 0 => Some(c.draw_mark),
            // Not drawn yet (the start has not come): whoever is in line will be.
            Model::Lottery => Some(self.hdr.tail),
        }
    }

    /// Waiting tickets that will be called at random (see [`Snapshot::in_draw`]).
    pub fn in_draw(&self) -> u64 {
        self.draw_limit().map_or(0, |limit| self.waiting_before(limit))
    }

    /// How many waiting tickets ticket `r` is drawn among when its turn is drawn at random; 0
    /// when it has a place in line, or is not waiting.
    pub fn draw_among(&self, r: TicketRef) -> u64 {
        let Some(idx) = self.find_ticket(r) else { return 0 };
        match self.draw_limit() {
            Some(limit) if r.number < limit && self.tickets[idx].state == WAITING => {
                self.waiting_before(limit)
            }
            _ => 0,
        }
    }

    /// Whether a visitor may be called or let in now: the mode, the event and the release
    /// rate allow it (the rate is not counted here; see [`Control::admitted`]).
    fn admitting(&mut self, now: u64) -> bool {
        let c = &mut self.hdr.control;
        c.live.mode() != Mode::Queue && c.live.phase(c.wall) != Phase::Before && c.may_admit(now)
    }

    /// Whether the room stands by: restored from a state file that another nginx (the old
    /// master of a binary upgrade) still runs the room from. A room standing by calls nobody,
    /// admits nobody and hands out no ticket; sessions it knows go on, and tickets it knows are
    /// told the place they had. It takes over with the other's last state
    /// ([`Room::import`]) once that one has stopped.
    pub fn standby(&self) -> bool {
        self.hdr.standby != 0
    }

    pub fn set_standby(&mut self, on: bool) {
        self.hdr.standby = u32::from(on);
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
        self.hdr.live - self.front()
    }

    /// Live tickets ahead of everyone waiting: called (holding a slot), lapsed and returned.
    /// They are always the first live tickets in number order.
    fn front(&self) -> u64 {
        u64::from(self.hdr.called) + u64::from(self.hdr.lapsed)
    }

    // ---- sessions ----

    /// Opens a session for a visitor counted under client tag `client`. A first contact's
    /// (`confirmed` false) holds its slot only for `confirm` until the visitor comes back,
    /// and counts as admitted only then.
    pub(super) fn open_session(
        &mut self,
        now: u64,
        client: u32,
        confirmed: bool,
    ) -> Option<SessionRef> {
        if self.hdr.free_top == 0 {
            return None;
        }
        let slot = *self.free.get(self.hdr.free_top as usize - 1)?;
        self.hdr.free_top -= 1;
        let id = self.hdr.next_session_id;
        self.hdr.next_session_id = id.wrapping_add(1).max(1);
        let s = self.sessions.get(slot as usize)?;
        s.created.store(if confirmed { now } else { now | UNCONFIRMED }, Relaxed);
        s.last_seen.store(now, Relaxed);
        s.client.store(u64::from(client), Relaxed);
        s.id.store(id, Relaxed);
        self.hdr.active += 1;
        self.count_client(client, true);
        if confirmed {
            self.hdr.stats.admitted();
        } else {
            self.hdr.people.sessions_opened += 1;
        }
        Some(SessionRef { slot, id })
    }

    fn close_session(&mut self, slot: u32) {
        let Some(s) = self.sessions.get(slot as usize) else { return };
        if s.id.load(Relaxed) == 0 {
            return;
        }
        let Some(top) = self.free.get_mut(self.hdr.free_top as usize) else { return };
        *top = slot;
        let client = s.client.load(Relaxed) as u32;
        self.hdr.pace.session_ended(s.get().created);
        s.clear();
        self.hdr.free_top += 1;
        self.hdr.active -= 1;
        self.count_client(client, false);
    }

    // ---- places per client ----

    /// The two counters of client tag `tag`, one in each row.
    fn client_cells(&self, tag: u32) -> [usize; 2] {
        let w = self.layout.client_width;
        let a = u64::from(tag) % w;
        let b = u64::from(tag.rotate_left(16) ^ 0x9e37_79b9) % w;
        [a as usize, (w + b) as usize]
    }

    /// How many places (sessions and tickets) client tag `tag` holds, or a few more: the
    /// smaller of its two counters, each shared with the tags that hash alike. Exact for a
    /// client whose counters no other client shares, never less than the truth.
    pub fn client_places(&self, tag: u32) -> u32 {
        if tag == 0 {
            return 0;
        }
        self.client_cells(tag)
            .iter()
            .map(|&i| self.clients.get(i).copied().unwrap_or(0))
            .min()
            .map_or(0, u32::from)
    }

    fn count_client(&mut self, tag: u32, up: bool) {
        if tag == 0 {
            return;
        }
        for i in self.client_cells(tag) {
            if let Some(c) = self.clients.get_mut(i) {
                *c = if up { c.saturating_add(1) } else { c.saturating_sub(1) };
            }
        }
    }

    /// Counts one more place for client tag `tag` (an image's, being taken in).
    pub(super) fn count_client_up(&mut self, tag: u32) {
        self.count_client(tag, true);
    }

    /// Whether `client` may take one more place.
    fn within_limit(&self, client: Client) -> bool {
        client.limit == 0 || client.tag == 0 || self.client_places(client.tag) < client.limit
    }

    /// Counts requests that could take no place; see [`People`].
    pub fn people(&mut self) -> &mut People {
        &mut self.hdr.people
    }

    /// The `People` counters as they were when a line about them was last logged, and now,
    /// with the milliseconds between, when a line is due: at most every `interval_ms` for the
    /// whole room (every process), and only when something was refused or many first
    /// contacts never came back (see [`People::worth_logging`]).
    pub fn people_to_log(&mut self, now: u64, interval_ms: u64) -> Option<(People, People, u64)> {
        let h = &mut *self.hdr;
        let since = now.saturating_sub(h.people_logged_at);
        if h.people_logged_at != 0 && since < interval_ms {
            return None;
        }
        let before = h.people_logged;
        if !h.people.worth_logging(&before) {
            return None;
        }
        h.people_logged = h.people;
        h.people_logged_at = now.max(1);
        Some((before, h.people, since))
    }

    fn live_session(&self, r: SessionRef) -> Option<Session> {
        self.sessions
            .get(r.slot as usize)
            .map(SessionSlot::get)
            .filter(|s| s.id != 0 && s.id == r.id)
    }

    /// Whether `r` is a live session; if so it is seen now, and a first contact's is
    /// confirmed (its visitor came back with the cookie). An expired one is ended here.
    pub fn touch_session(&mut self, r: SessionRef, now: u64, t: &Timing) -> bool {
        let Some(s) = self.live_session(r) else { return false };
        if s.expired(now, t) {
            self.close_session(r.slot);
            self.hdr.stats.totals.sessions_expired += 1;
            self.promote(now, t);
            return false;
        }
        let slot = &self.sessions[r.slot as usize];
        if !s.confirmed {
            slot.created.store(s.created, Relaxed);
            self.hdr.stats.admitted();
            self.hdr.people.sessions_confirmed += 1;
        }
        s.see(slot, now, t);
        true
    }

    /// Ends session `r` at its visitor's request; false when it was not live.
    pub fn leave_session(&mut self, r: SessionRef, now: u64, t: &Timing) -> bool {
        if self.live_session(r).is_none() {
            return false;
        }
        self.close_session(r.slot);
        self.hdr.stats.totals.sessions_left += 1;
        self.promote(now, t);
        true
    }

    /// Marks this room as carried over from another zone that its workers may still use for
    /// a moment: the ids and visitor numbers that zone goes on handing out are set apart from
    /// this room's own, and the sessions it admits meanwhile are taken in when they come back
    /// ([`Room::adopt_session`]).
    pub fn carried_over(&mut self) {
        let h = &mut *self.hdr;
        h.adopt_from = h.next_session_id;
        h.next_session_id = h.next_session_id.wrapping_add(ADOPT_SPAN).max(1);
        h.next_visitor = h.next_visitor.wrapping_add(VISITOR_GAP);
        // The old zone hands out its lowest free slots first: this room starts from the
        // highest, so that the sessions the old one admits meanwhile find their slots free.
        let top = (h.free_top as usize).min(self.free.len());
        self.free[..top].reverse();
    }

    /// Whether session id `id` was handed out after the image this room was filled from (by
    /// the zone or the nginx it came from).
    pub fn issued_after_image(&self, id: u64) -> bool {
        let from = self.hdr.adopt_from;
        from != 0 && id >= from && id - from < ADOPT_SPAN
    }

    /// Takes in session `r`, admitted by the zone this room was carried over from after the
    /// carry-over, into its own slot when that is free. `false` when it is not such a session
    /// or its slot is taken.
    pub fn adopt_session(&mut self, r: SessionRef, now: u64) -> bool {
        if !self.issued_after_image(r.id) {
            return false;
        }
        let Some(s) = self.sessions.get(r.slot as usize) else { return false };
        if s.id.load(Relaxed) != 0 {
            return false;
        }
        let Some(at) = self.free[..self.hdr.free_top as usize].iter().position(|&f| f == r.slot)
        else {
            return false;
        };
        let top = self.hdr.free_top as usize - 1;
        self.free.swap(at, top);
        self.hdr.free_top -= 1;
        s.created.store(now, Relaxed);
        s.last_seen.store(now, Relaxed);
        s.client.store(0, Relaxed);
        s.id.store(r.id, Relaxed);
        self.hdr.active += 1;
        true
    }

    /// Session `r`'s page was left: it ends after `grace` unless seen again meanwhile (a
    /// reload, a click to another page, another tab). `false` when it was not live.
    pub fn away_session(&mut self, r: SessionRef, now: u64, t: &Timing) -> bool {
        let Some(s) = self.live_session(r) else { return false };
        // Last seen as if `idle` ends `grace` from now; never later than it was.
        let seen = (now + t.grace_ms).saturating_sub(t.idle_ms).min(s.last_seen);
        if let Some(slot) = self.sessions.get(r.slot as usize) {
            slot.last_seen.store(seen, Relaxed);
        }
        true
    }

    // ---- tickets ----

    fn ring(&self, number: u64) -> usize {
        (number % self.hdr.ticket_cap) as usize
    }

    /// How many tickets of `set` are in ring slots `0..end`.
    fn prefix(&self, set: Set, end: usize) -> u64 {
        match set {
            Set::Live => fenwick::prefix(self.tree, end),
            Set::Front => fenwick::prefix(self.front, end),
            Set::Waiting => fenwick::prefix(self.tree, end) - fenwick::prefix(self.front, end),
        }
    }

    fn count(&self, set: Set) -> u64 {
        match set {
            Set::Live => self.hdr.live,
            Set::Front => self.front(),
            Set::Waiting => self.waiting(),
        }
    }

    /// The ring slot of the `k`-th ticket of `set` in number order (from `head`: the live
    /// tickets span at most the ring once, so those before `head`'s slot come after it).
    fn kth(&self, set: Set, k: u64) -> Option<usize> {
        if k == 0 || k > self.count(set) {
            return None;
        }
        let head = self.ring(self.hdr.head);
        let before_head = self.prefix(set, head);
        let from_head = self.count(set) - before_head;
        let k = if k <= from_head { before_head + k } else { k - from_head };
        match set {
            Set::Live => fenwick::find_kth(self.tree, k),
            Set::Front => fenwick::find_kth(self.front, k),
            Set::Waiting => fenwick::find_kth_diff(self.tree, self.front, k),
        }
    }

    /// The ring slot of the `k`-th live ticket counted from `head`.
    fn kth_live(&self, k: u64) -> Option<usize> {
        self.kth(Set::Live, k)
    }

    /// Tickets of `set` with a number below `number`.
    fn before(&self, set: Set, number: u64) -> u64 {
        if number <= self.hdr.head {
            return 0;
        }
        if number >= self.hdr.tail {
            return self.count(set);
        }
        let head = self.ring(self.hdr.head);
        let at = self.ring(number);
        let (p_head, p_at) = (self.prefix(set, head), self.prefix(set, at));
        if head < at {
            p_at - p_head
        } else {
            self.count(set) - p_head + p_at
        }
    }

    /// Live tickets with a number below `number`.
    fn live_before(&self, number: u64) -> u64 {
        self.before(Set::Live, number)
    }

    /// Waiting tickets with a number below `number`.
    fn waiting_before(&self, number: u64) -> u64 {
        self.before(Set::Waiting, number)
    }

    /// Where the live ticket `number` stands: its place in line, or, when its turn is drawn at
    /// random, the most who may go before it (everyone in the draw and at the front).
    fn place(&self, idx: usize, number: u64) -> u64 {
        match self.draw_limit() {
            Some(limit) if number < limit && self.tickets[idx].state == WAITING => {
                self.front() + self.waiting_before(limit)
            }
            _ => self.live_before(number) + 1,
        }
    }

    /// Ticket `idx` leaves the front of the line (`by` −1) or comes to it (+1).
    fn move_front(&mut self, idx: usize, by: i32) {
        fenwick::add(self.front, idx, by);
    }

    fn drop_ticket(&mut self, idx: usize) {
        let Some(slot) = self.tickets.get_mut(idx) else { return };
        let was = slot.state;
        if was == FREE {
            return;
        }
        slot.state = FREE;
        let client = slot.client;
        fenwick::add(self.tree, idx, -1);
        if was != WAITING {
            self.move_front(idx, -1);
        }
        self.hdr.live -= 1;
        self.count_client(client, false);
        match was {
            CALLED | RECALLED => self.hdr.called -= 1,
            LAPSED => self.hdr.lapsed -= 1,
            RETURNED => {
                self.hdr.lapsed -= 1;
                self.hdr.returned -= 1;
            }
            _ => {}
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

    /// Calls tickets while slots are free and the mode, the event and the release rate allow:
    /// a returned latecomer first, then one of those waiting as the model says (the first in
    /// line, or one drawn at random). A waiting ticket found to have timed out is dropped
    /// instead; past a small budget that is left to the sweep.
    fn promote(&mut self, now: u64, t: &Timing) {
        if self.hdr.standby != 0 {
            return;
        }
        let mut budget = LAZY_BUDGET;
        while self.free_slots() > 0 && budget > 0 && self.admitting(now) {
            budget -= 1;
            if self.hdr.returned > 0 {
                if let Some(idx) = self.first_returned() {
                    let slot = &mut self.tickets[idx];
                    slot.state = RECALLED;
                    slot.stamp = now;
                    self.hdr.returned -= 1;
                    self.hdr.lapsed -= 1;
                    self.hdr.called += 1;
                    self.hdr.stats.called();
                    self.hdr.control.admitted(now);
                    continue;
                }
            }
            if self.waiting() == 0 {
                break;
            }
            // FIFO: the first waiting. Drawn: any of the first `n` waiting (those in the draw),
            // each as likely; but while the line spans more than half the ring, the oldest, so
            // that a ticket that keeps being passed over cannot hold the ring's tail back until
            // newcomers find the line "full" (a ticket's ring slot is its number).
            let crowded = self.hdr.tail - self.hdr.head > self.hdr.ticket_cap / 2;
            let k = match self.draw_limit().map(|limit| self.waiting_before(limit)) {
                Some(n) if n > 0 && !crowded => 1 + self.hdr.control.below(n),
                _ => 1,
            };
            let Some(idx) = self.kth(Set::Waiting, k) else { break };
            let slot = &mut self.tickets[idx];
            if now.saturating_sub(slot.stamp) > t.queue_timeout_ms {
                self.drop_ticket(idx);
                self.hdr.stats.totals.tickets_abandoned += 1;
                continue;
            }
            slot.state = CALLED;
            slot.stamp = now;
            self.move_front(idx, 1);
            self.hdr.called += 1;
            self.hdr.stats.called();
            self.hdr.control.admitted(now);
        }
    }

    /// The ring slot of the first `RETURNED` ticket: among the front of the line (the called
    /// and the lapsed), by rank, so that dropped tickets' empty slots cost nothing.
    fn first_returned(&self) -> Option<usize> {
        (1..=self.front())
            .filter_map(|k| self.kth(Set::Front, k))
            .find(|&idx| self.tickets.get(idx).is_some_and(|s| s.state == RETURNED))
    }

    /// A visitor with no valid session, ticket or arrival comes: admitted at once while a slot
    /// is free and nobody waits (the session holds its slot only for `confirm` unless they
    /// come back with the cookie), otherwise sent to the back of the line with an arrival and
    /// no place yet. Nothing the room keeps changes for an arrival but a counter: a flood of
    /// clients that never come back leaves the line as it was.
    pub fn enter(&mut self, now: u64, t: &Timing, client: Client) -> Entry {
        if self.hdr.standby != 0 {
            return Entry::Held;
        }
        let mode = self.mode();
        if self.phase() == Phase::Over || mode == Mode::Reject {
            self.hdr.control.turned_away += 1;
            return if mode == Mode::Reject { Entry::Closed } else { Entry::Over };
        }
        self.promote(now, t);
        if self.waiting() == 0 && self.free_slots() > 0 && self.admitting(now) {
            if !self.within_limit(client) {
                self.hdr.people.refused_client_limit += 1;
                return Entry::Limited;
            }
            if let Some(s) = self.open_session(now, client.counted(), false) {
                self.hdr.control.admitted(now);
                return Entry::Admitted(s);
            }
        }
        if mode == Mode::Pass {
            self.hdr.control.passed += 1;
            return Entry::Passed;
        }
        if !self.has_room_in_line() {
            self.hdr.stats.totals.rejected_full += 1;
            return Entry::Full;
        }
        let visitor = self.hdr.next_visitor;
        self.hdr.next_visitor += 1;
        self.hdr.people.arrivals += 1;
        Entry::Arrived { arrival: Arrival { visitor, arrived: now }, position: self.hdr.live + 1 }
    }

    /// A first contact sent to the line comes back with its `arrival`: it takes its place
    /// now, at the back of the line, with its wait counted from its arrival; a second return
    /// with the same arrival finds the same place (as long as fewer than
    /// [`Layout::arrival_cap`] other arrivals came back meanwhile). An arrival older than
    /// `confirm` is stale: its visitor starts again.
    pub fn confirm(&mut self, a: Arrival, now: u64, t: &Timing, client: Client) -> Confirm {
        if self.hdr.standby != 0 {
            return Confirm::Held;
        }
        let next = self.hdr.next_visitor;
        // Workers' cached clocks differ by a little: an arrival a moment "ahead" is fine.
        // Fresh by time alone: first contacts that never come back write nothing, so no flood
        // of them can make a real one's arrival stale.
        let fresh = a.arrived <= now.saturating_add(1000)
            && now.saturating_sub(a.arrived) <= t.confirm_ms
            && a.visitor < next;
        if !fresh {
            return Confirm::Stale;
        }
        let cell = (a.visitor % self.layout.arrival_cap) as usize;
        let seen = self.arrivals.get(cell).copied().unwrap_or_default();
        if seen.visitor == a.visitor as u32 && (seen.visitor, seen.number) != (0, 0) {
            // Back again: the place it took, if it is still live.
            let tail = self.hdr.tail;
            let number = tail.wrapping_sub(u64::from((tail as u32).wrapping_sub(seen.number)));
            let ticket = TicketRef { number, visitor: a.visitor };
            return match self.poll(ticket, now, t) {
                Poll::Lost => Confirm::Stale,
                p => Confirm::Ticket(ticket, p),
            };
        }
        if self.phase() == Phase::Over {
            // The event ended before this first contact took a place: a newcomer now.
            self.hdr.control.turned_away += 1;
            return Confirm::Over;
        }
        match self.mode() {
            Mode::Reject => {
                self.hdr.control.turned_away += 1;
                return Confirm::Closed;
            }
            Mode::Pass => {
                self.hdr.control.passed += 1;
                return Confirm::Passed;
            }
            _ => {}
        }
        if !self.within_limit(client) {
            self.hdr.people.refused_client_limit += 1;
            return Confirm::Limited;
        }
        if !self.has_room_in_line() {
            self.hdr.stats.totals.rejected_full += 1;
            return Confirm::Full;
        }
        let ticket = self.join(a.visitor, a.arrived.min(now), now, client.counted());
        if let Some(c) = self.arrivals.get_mut(cell) {
            *c = ArrivalSlot { visitor: a.visitor as u32, number: ticket.number as u32 };
        }
        self.hdr.people.arrivals_confirmed += 1;
        // Called at once if a slot is free and nobody waits ahead.
        self.promote(now, t);
        Confirm::Ticket(ticket, self.poll(ticket, now, t))
    }

    /// Whether the ring has room for one more ticket.
    fn has_room_in_line(&mut self) -> bool {
        if self.hdr.tail - self.hdr.head >= self.hdr.ticket_cap {
            self.advance_head();
        }
        self.hdr.tail - self.hdr.head < self.hdr.ticket_cap
    }

    /// Puts visitor `visitor`, who arrived at `joined`, at the back of the line; the caller
    /// has checked [`Room::has_room_in_line`].
    fn join(&mut self, visitor: u64, joined: u64, now: u64, client: u32) -> TicketRef {
        let number = self.hdr.tail;
        self.hdr.tail += 1;
        if self.hdr.live == 0 {
            self.hdr.head = number;
        }
        let idx = self.ring(number);
        self.tickets[idx] = TicketSlot {
            number,
            joined,
            stamp: now,
            visitor: visitor as u32,
            state: WAITING,
            client,
            _pad: 0,
        };
        fenwick::add(self.tree, idx, 1);
        self.hdr.live += 1;
        self.count_client(client, true);
        self.hdr.stats.totals.joined_total += 1;
        TicketRef { number, visitor }
    }

    /// A waiting visitor comes back (page load or poll): the ticket is seen now, and claims
    /// its slot if it has been called. A visitor called for the first time who comes in late
    /// keeps their place at the front, once: while the slot is still reserved they claim it,
    /// and after (the ticket has lapsed) they come in at once if a slot is free, or are called
    /// again before anyone waiting.
    pub fn poll(&mut self, r: TicketRef, now: u64, t: &Timing) -> Poll {
        let Some(idx) = self.find_ticket(r) else { return Poll::Lost };
        if self.hdr.standby != 0 {
            // The running room decides; this copy only tells the place it last knew.
            return Poll::Waiting { position: self.place(idx, r.number) };
        }
        let s = self.tickets[idx];
        let late = now.saturating_sub(s.stamp) > t.claim_window_ms;
        match s.state {
            WAITING if now.saturating_sub(s.stamp) > t.queue_timeout_ms => {
                self.drop_ticket(idx);
                self.hdr.stats.totals.tickets_abandoned += 1;
                self.promote(now, t);
                return Poll::Lost;
            }
            // Late on the second call, or back after the lapsed place was given up.
            RECALLED | LAPSED if late => {
                self.drop_ticket(idx);
                self.hdr.stats.totals.tickets_missed += 1;
                self.promote(now, t);
                return Poll::Lost;
            }
            WAITING | RETURNED => {
                self.tickets[idx].stamp = now;
                self.promote(now, t);
            }
            // A free slot, nobody returned ahead to give it to first, and the mode and the rate
            // let someone in.
            LAPSED if self.free_slots() > 0 && self.hdr.returned == 0 && self.admitting(now) => {
                self.hdr.control.admitted(now);
                return self.admit_from_line(idx, s.joined, now);
            }
            LAPSED => {
                let slot = &mut self.tickets[idx];
                slot.state = RETURNED;
                slot.stamp = now;
                self.hdr.returned += 1;
                self.promote(now, t);
            }
            _ => {}
        }
        // A called ticket's reserved slot becomes the session. (With no free slot at all,
        // possible only after a reload lowered the capacity, it stays called, first in line.)
        let state = self.tickets[idx].state;
        if (state == CALLED || state == RECALLED) && self.hdr.free_top > 0 {
            return self.admit_from_line(idx, s.joined, now);
        }
        Poll::Waiting { position: self.place(idx, r.number) }
    }

    /// The ticket at `idx` becomes a session (its slot was reserved, or is free).
    fn admit_from_line(&mut self, idx: usize, joined: u64, now: u64) -> Poll {
        let client = self.tickets.get(idx).map_or(0, |s| s.client);
        self.drop_ticket(idx);
        match self.open_session(now, client, true) {
            Some(session) => {
                let waited = now.saturating_sub(joined);
                self.hdr.stats.admitted_after(waited);
                self.hdr.waits.observe(waited);
                Poll::Admitted(session, waited)
            }
            None => Poll::Lost,
        }
    }

    /// The visitor gives up their place; false when the ticket was not live.
    pub fn leave_ticket(&mut self, r: TicketRef, now: u64, t: &Timing) -> bool {
        let Some(idx) = self.find_ticket(r) else { return false };
        self.drop_ticket(idx);
        self.hdr.stats.totals.tickets_left += 1;
        self.promote(now, t);
        true
    }

    /// The page of ticket `r` was left: a waiting (or returned) ticket is lost after `grace`
    /// unless its visitor comes back meanwhile; a called one keeps its claim window. `false`
    /// when the ticket was not live.
    pub fn away_ticket(&mut self, r: TicketRef, now: u64, t: &Timing) -> bool {
        let Some(idx) = self.find_ticket(r) else { return false };
        let slot = &mut self.tickets[idx];
        if slot.state == WAITING || slot.state == RETURNED {
            slot.stamp = (now + t.grace_ms).saturating_sub(t.queue_timeout_ms).min(slot.stamp);
        }
        true
    }

    /// The position of a live ticket, without touching it (see [`Poll::Waiting`]).
    pub fn position(&self, r: TicketRef) -> Option<u64> {
        self.find_ticket(r).map(|idx| self.place(idx, r.number))
    }

    // ---- the sweep ----

    /// Whether a sweep is due: false when any worker swept less than `interval_ms` ago.
    pub fn sweep_due(&self, now: u64, interval_ms: u64) -> bool {
        now.saturating_sub(self.hdr.last_sweep) >= interval_ms
    }

    /// Ends expired sessions, drops timed-out and unclaimed tickets, calls the next tickets
    /// and samples the rates. Looks at no more than `budget` sessions and `budget` tickets.
    pub fn sweep(&mut self, now: u64, t: &Timing, budget: u32) -> Swept {
        // Each worker's cached clock lags a little: never move the mark back.
        self.hdr.last_sweep = self.hdr.last_sweep.max(now);
        let mut swept = Swept::default();
        if self.hdr.standby != 0 {
            return swept;
        }
        let cap = self.hdr.session_cap;
        for _ in 0..budget.min(cap) {
            let i = self.hdr.session_sweep % cap;
            self.hdr.session_sweep = (i + 1) % cap;
            let s = self.sessions[i as usize].get();
            if s.id != 0 && s.expired(now, t) {
                self.close_session(i);
                self.hdr.stats.totals.sessions_expired += 1;
                swept.sessions += 1;
            }
        }
        // The front of the line: a called ticket not claimed in time lapses (its slot goes to
        // the next), once; a lapsed or recalled one late again, or a returned one not seen
        // for `queue_timeout`, is dropped.
        // By rank among the front tickets, so that dropped tickets' empty slots cost nothing.
        let (mut k, mut looked) = (1, 0);
        while looked < budget && k <= self.front() {
            looked += 1;
            let Some(idx) = self.kth(Set::Front, k) else { break };
            let s = self.tickets[idx];
            let age = now.saturating_sub(s.stamp);
            match s.state {
                CALLED if age > t.claim_window_ms => {
                    let slot = &mut self.tickets[idx];
                    slot.state = LAPSED;
                    slot.stamp = now;
                    self.hdr.called -= 1;
                    self.hdr.lapsed += 1;
                    swept.tickets += 1;
                    k += 1;
                }
                RECALLED | LAPSED if age > t.claim_window_ms => {
                    self.drop_ticket(idx);
                    self.hdr.stats.totals.tickets_missed += 1;
                    swept.tickets += 1;
                }
                RETURNED if age > t.queue_timeout_ms => {
                    self.drop_ticket(idx);
                    self.hdr.stats.totals.tickets_abandoned += 1;
                    swept.tickets += 1;
                }
                _ => k += 1,
            }
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
                self.hdr.stats.totals.tickets_abandoned += 1;
                swept.tickets += 1;
            }
        }
        self.advance_head();
        self.promote(now, t);
        self.sample_rates(now, t);
        swept
    }

    fn sample_rates(&mut self, now: u64, t: &Timing) {
        let waiting = self.waiting() > 0;
        self.hdr.stats.sample(now, waiting);
        let h = &mut *self.hdr;
        h.pace.fold(now, h.active, h.called, h.max_active, t);
        if self.hdr.history.due(now) {
            let wait_s = self.back_of_line_eta(t).map_or(WAIT_UNKNOWN, |s| {
                u32::try_from(s).unwrap_or(WAIT_UNKNOWN - 1).min(WAIT_UNKNOWN - 1)
            });
            let h = &mut *self.hdr;
            h.history.record(Sample {
                at: now,
                admitted_total: h.stats.totals.admitted_total,
                active: h.active,
                waiting: u32::try_from(h.live).unwrap_or(u32::MAX),
                wait_s,
                _pad: 0,
            });
        }
    }

    /// The estimated wait of someone joining the back of the line now (0 with nobody
    /// waiting); `None` when the line cannot move.
    pub fn back_of_line_eta(&self, t: &Timing) -> Option<u64> {
        self.eta_seconds(self.hdr.live, t)
    }

    /// The last minutes of the room, a sample every 5 s (see [`History`]).
    pub fn history(&self) -> History {
        self.hdr.history
    }

    /// Estimated seconds until a ticket at `position` is called, at the pace the slots turn
    /// over and under the release rate in force; `None` when the line cannot move (no slot).
    pub fn eta_seconds(&self, position: u64, t: &Timing) -> Option<u64> {
        let calls_needed = position.saturating_sub(u64::from(self.hdr.called));
        let rate = self.hdr.control.live.rate_per_minute;
        let release = (rate > 0).then_some(f64::from(rate));
        self.hdr.pace.eta_seconds(calls_needed, self.hdr.max_active, t, release)
    }

    /// People in line: waiting, or called and not yet come in.
    pub fn queue_length(&self) -> u64 {
        self.hdr.live
    }

    pub fn snapshot(&self) -> Snapshot {
        let h = &self.hdr;
        let st = &h.stats;
        Snapshot {
            active_sessions: h.active,
            max_sessions: h.max_active,
            session_capacity: h.session_cap,
            queue_length: h.live,
            called: h.called,
            lapsed: h.lapsed,
            queue_capacity: h.ticket_cap,
            standby: h.standby != 0,
            totals: st.totals,
            people: h.people,
            admitted_per_minute: st.admitted_per_minute(),
            called_per_minute: st.called_per_minute(),
            avg_wait_seconds: st.avg_wait_seconds(),
            settings: h.control.live,
            configured: h.control.conf,
            phase: self.phase(),
            in_draw: self.in_draw(),
            changes: h.control.changes,
            turned_away: h.control.turned_away,
            passed: h.control.passed,
            tallies: h.tallies,
            exempt: h.exempt,
            waits: h.waits,
        }
    }

    /// Adds what a worker counted without the lock (see [`Tallies`]).
    pub fn add_tallies(&mut self, t: &Tallies) {
        self.hdr.tallies.add(t);
    }

    /// Checks every invariant by brute force; for tests.
    #[cfg(test)]
    pub fn check_invariants(&self) {
        use super::layout::EXEMPT_SESSION;
        self.check_tables();
        let h = &self.hdr;
        // Exempt links let their bearers in over `max_active`; nobody else goes over it.
        let exempt = self
            .sessions
            .iter()
            .filter(|s| s.get().id != 0 && s.client.load(Relaxed) & EXEMPT_SESSION != 0)
            .count() as u32;
        assert!(h.active + h.called <= h.max_active + exempt, "capacity exceeded");
    }

    /// Checks that the tables agree with the counts, by brute force; for tests.
    #[cfg(test)]
    pub fn check_tables(&self) {
        let h = &self.hdr;
        let live: Vec<&TicketSlot> = {
            let mut v: Vec<&TicketSlot> = self.tickets.iter().filter(|s| s.state != FREE).collect();
            v.sort_by_key(|s| s.number);
            v
        };
        assert_eq!(live.len() as u64, h.live);
        assert_eq!(fenwick::prefix(self.tree, self.tickets.len()), h.live);
        let called = live.iter().filter(|s| s.state == CALLED || s.state == RECALLED).count();
        assert_eq!(called as u32, h.called);
        let lapsed = live.iter().filter(|s| s.state == LAPSED || s.state == RETURNED).count();
        assert_eq!(lapsed as u32, h.lapsed);
        let returned = live.iter().filter(|s| s.state == RETURNED).count();
        assert_eq!(returned as u32, h.returned);
        for (i, s) in self.tickets.iter().enumerate() {
            let front = s.state != FREE && s.state != WAITING;
            let bit = fenwick::prefix(self.front, i + 1) - fenwick::prefix(self.front, i);
            assert_eq!(bit, u64::from(front), "the front tree marks the front tickets");
        }
        if h.control.live.model() == Model::Fifo && h.control.changes == 0 {
            assert!(
                live.iter().take(called + lapsed).all(|s| s.state != WAITING),
                "the called and the lapsed lead the queue"
            );
        }
        for s in &live {
            assert!(s.number >= h.head && s.number < h.tail);
        }
        let active = self.sessions.iter().filter(|s| s.get().id != 0).count() as u32;
        assert_eq!(active, h.active);
        assert_eq!(h.free_top + active, h.session_cap);
        // The client counters hold exactly the places counted under each tag.
        let mut want = vec![0u16; self.clients.len()];
        let tags = live.iter().map(|s| s.client).chain(
            self.sessions.iter().filter(|s| s.get().id != 0).map(|s| s.client.load(Relaxed) as u32),
        );
        for tag in tags.filter(|&t| t != 0) {
            for i in self.client_cells(tag) {
                want[i] += 1;
            }
        }
        assert_eq!(&want[..], &self.clients[..], "client counters out of balance");
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
/// `base` is the start of a region of `layout.region_len` bytes, 8-byte aligned, mapped while
/// the call runs, that was laid out with `layout` and not laid out again since. Its session
/// slots are only ever accessed as atomics.
pub unsafe fn touch_session_unlocked(
    base: *mut u8,
    layout: &Layout,
    r: SessionRef,
    now: u64,
    t: &Timing,
) -> bool {
    if r.id == 0 {
        return false;
    }
    // SAFETY: the caller's promise.
    let sessions = unsafe { layout.sessions(base) };
    let Some(slot) = sessions.get(r.slot as usize) else { return false };
    let s = slot.get();
    // A first contact's return is confirmed under the lock.
    if s.id != r.id || !s.confirmed || s.expired(now, t) {
        return false;
    }
    s.see(slot, now, t);
    true
}
