//! One room at run time: its settings, its zone, its cookie signer, and what the handlers and
//! the sweep ask of it: decide for a visitor, leave, take a snapshot, sweep, make cookies.
//!
//! A `Room` is made by the configuration when the room is first named, defined by its
//! `waiting_room_zone`, and completed by the zone's init (the signer needs the zone's key when
//! no secret is configured). Workers inherit it from the master. Everything it keeps per
//! process (the layout seen last, the cache of verified cookies, the log throttles) is in
//! `Cell`s: a worker handles one request at a time.

use core::cell::{Cell, RefCell};
use core::ffi::c_void;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use nginx_sys::{ngx_conf_t, ngx_int_t, ngx_shm_zone_t, NGX_LOG_NOTICE};
use ngx::core::Status;
use ngx::ngx_log_error;

use crate::core::guard::{self, Throttle};
use crate::core::layout::{AttachError, Layout, Timing};
use crate::core::room::{Entry, Poll, Room as Tables, SessionRef, Snapshot, Swept, TicketRef};
use crate::core::token::{Kind, Signer, Token, TokenCache};
use crate::shm::Zone;

/// Longest a ticket cookie is accepted: a ticket is kept alive by its visitor's polls, not by
/// the cookie, but a copied cookie should not be good forever.
const TICKET_TOKEN_SECONDS: u64 = 86_400;
/// Added to every token's validity. A token's dates are wall-clock time, which NTP or a VM
/// resume can step by hours; the room itself ends sessions and tickets by monotonic time, so
/// the token's own date only has to bound how long a copied cookie could be replayed.
const CLOCK_SLACK_SECONDS: u64 = 86_400;
/// How many cookies of the room's name one request may have checked.
const COOKIES_TRIED: usize = 4;

/// A room's settings, from its `waiting_room_zone`.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// The zone's size in bytes.
    pub size: usize,
    pub max_active: u32,
    pub timing: Timing,
    pub heartbeat_ms: u64,
}

/// The room's state could not be reached.
#[derive(Clone, Copy, Debug)]
pub enum Unusable {
    /// The zone was never initialised (cannot happen in a started nginx).
    Uninitialised,
    /// The zone does not hold a room of ours.
    Corrupt(AttachError),
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unusable::Uninitialised => f.write_str("its zone was not initialised"),
            Unusable::Corrupt(e) => write!(f, "{e}"),
        }
    }
}

/// What the room decided for a visitor.
#[derive(Clone, Copy, Debug)]
pub enum Outcome {
    /// A live session: carry on.
    Passed,
    /// Admitted now: set the session cookie, then carry on. `waited` is the time spent in
    /// line, in seconds, for a visitor who came from it.
    Admitted { session: SessionRef, waited: Option<u64> },
    /// In line. `new_ticket` is set when the visitor just joined and needs the ticket cookie.
    Queued { position: u64, queue_length: u64, eta: Option<u64>, new_ticket: Option<TicketRef> },
    /// The line is as long as the zone can hold.
    Full { queue_length: u64 },
}

/// How a visitor leaves (see [`Room::leave`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leaving {
    /// At once: a "Leave" or "Log out" button.
    Now,
    /// A page was left: the place is kept for the grace, and for good if seen again.
    Away,
}

/// What [`Room::decide`] found.
pub struct Decision {
    /// None when the visitor has no place and `join` was false.
    pub outcome: Option<Outcome>,
    /// The room's epoch, for new tokens.
    pub epoch: u64,
    pub queue_length: u64,
}

/// Settings stamps: each configuration read gets a larger one than the last (see
/// [`Tables::adopt_settings`]).
static LAST_STAMP: AtomicU64 = AtomicU64::new(0);

/// A stamp for settings read now, from the master's monotonic clock.
pub fn settings_stamp() -> u64 {
    // SAFETY: nginx's cached monotonic time, a plain integer it updates in this process.
    let now = unsafe { nginx_sys::ngx_current_msec } as u64;
    let mut last = LAST_STAMP.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST_STAMP.compare_exchange(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

pub struct Room {
    pub name: String,
    /// `wr_<name>`.
    pub cookie: String,
    /// `None` while the room is only referred to, not yet defined by `waiting_room_zone`.
    pub settings: Option<Settings>,
    /// When the configuration that defined the room was read.
    stamp: u64,
    secret: Option<Vec<u8>>,
    zone: Option<Zone>,
    signer: Option<Signer>,
    /// This process's last view of the zone's layout and epoch, for checking a live session
    /// without the lock.
    seen: Cell<Option<(Layout, u64)>>,
    tokens: RefCell<TokenCache>,
    /// For the log: a full line, an unusable zone.
    pub full_log: Throttle,
    pub unusable_log: Throttle,
}

impl Room {
    pub fn new(name: &str) -> Room {
        Room {
            name: name.to_owned(),
            cookie: format!("wr_{name}"),
            settings: None,
            stamp: 0,
            secret: None,
            zone: None,
            signer: None,
            seen: Cell::new(None),
            tokens: RefCell::new(TokenCache::default()),
            full_log: Throttle::new(),
            unusable_log: Throttle::new(),
        }
    }

    /// Defines the room with `settings` and asks nginx for its zone. The room must stay at
    /// this address for the life of the configuration (nginx keeps a pointer to it). `false`
    /// when nginx refused the zone (it has logged why).
    pub fn define(&mut self, cf: *mut ngx_conf_t, settings: Settings) -> bool {
        self.settings = Some(settings);
        self.stamp = settings_stamp();
        let data = self as *mut Room as *mut c_void;
        self.zone = Zone::add(cf, &self.name, settings.size, Some(init_zone), data);
        self.zone.is_some()
    }

    pub fn set_secret(&mut self, secret: Option<Vec<u8>>) {
        self.secret = secret;
    }

    pub fn timing(&self) -> Timing {
        self.settings.map_or(DEFAULT_TIMING, |s| s.timing)
    }

    pub fn heartbeat_ms(&self) -> u64 {
        self.settings.map_or(30_000, |s| s.heartbeat_ms)
    }

    /// Runs `f` on the room's tables under the zone's lock, with this configuration's
    /// settings in force.
    pub fn with_tables<R>(&self, f: impl FnOnce(&mut Tables) -> R) -> Result<R, Unusable> {
        let zone = self.zone.as_ref().ok_or(Unusable::Uninitialised)?;
        let mut locked = zone.lock().ok_or(Unusable::Uninitialised)?;
        let mut tables = locked.room().map_err(Unusable::Corrupt)?;
        if let Some(s) = self.settings {
            tables.adopt_settings(s.max_active, self.stamp);
        }
        self.seen.set(Some((tables.layout(), tables.epoch())));
        Ok(f(&mut tables))
    }

    /// The first of `values` (the request's cookies of the room's name) that is a valid token.
    pub fn token<'v>(&self, values: impl Iterator<Item = &'v [u8]>, now_s: u64) -> Option<Token> {
        let signer = self.signer.as_ref()?;
        let mut cache = self.tokens.try_borrow_mut().ok();
        // A browser sends one; a request stuffed with copies should not buy many HMACs.
        values.take(COOKIES_TRIED).find_map(|v| match cache.as_deref_mut() {
            Some(cache) => cache.get(v, now_s).or_else(|| {
                let t = signer.decode(v, now_s)?;
                cache.put(v, t);
                Some(t)
            }),
            None => signer.decode(v, now_s),
        })
    }

    /// The common case, a visitor inside coming back, checked without the zone's lock;
    /// `false` sends the request through the locked path, which decides every case.
    pub fn touch_live(&self, t: &Token, now_ms: u64) -> bool {
        let (Some(zone), Some((layout, epoch))) = (self.zone.as_ref(), self.seen.get()) else {
            return false;
        };
        if t.kind != Kind::Session || t.epoch != epoch || t.number > u64::from(u32::MAX) {
            return false;
        }
        let s = SessionRef { slot: t.number as u32, id: t.id };
        zone.touch_session(&layout, s, now_ms, &self.timing())
    }

    /// Decides for a visitor holding `token` (already verified) or none. `join` says whether a
    /// visitor without a place may be given one.
    pub fn decide(
        &self,
        token: Option<Token>,
        now_ms: u64,
        join: bool,
    ) -> Result<Decision, Unusable> {
        let t = self.timing();
        self.with_tables(|rm| {
            let epoch = rm.epoch();
            let outcome = decide_locked(rm, current(token, epoch), now_ms, join, &t);
            Decision { outcome, epoch, queue_length: rm.queue_length() }
        })
    }

    /// The visitor holding `token` leaves: their session ends, or their ticket leaves the
    /// line, at once (`Leaving::Now`), or after the grace unless they are seen again meanwhile
    /// (`Leaving::Away`: a page was left, by a reload, a click or a closed tab). `false` when
    /// they held no live place.
    pub fn leave(&self, token: Option<Token>, now_ms: u64, how: Leaving) -> Result<bool, Unusable> {
        let t = self.timing();
        self.with_tables(|rm| match current(token, rm.epoch()) {
            Some(tok) if tok.kind == Kind::Session => {
                let s = SessionRef { slot: tok.number.min(u64::from(u32::MAX)) as u32, id: tok.id };
                match how {
                    Leaving::Now => rm.leave_session(s, now_ms, &t),
                    Leaving::Away => rm.away_session(s, now_ms, &t),
                }
            }
            Some(tok) => {
                let ticket = TicketRef { number: tok.number, visitor: tok.visitor };
                match how {
                    Leaving::Now => rm.leave_ticket(ticket, now_ms, &t),
                    Leaving::Away => rm.away_ticket(ticket, now_ms, &t),
                }
            }
            None => false,
        })
    }

    pub fn snapshot(&self) -> Result<Snapshot, Unusable> {
        self.with_tables(|rm| rm.snapshot())
    }

    /// One sweep, unless another worker swept less than `interval_ms / 2` ago.
    pub fn sweep(&self, now_ms: u64, interval_ms: u64, budget: u32) -> Result<Swept, Unusable> {
        let t = self.timing();
        self.with_tables(|rm| {
            if rm.sweep_due(now_ms, interval_ms / 2) {
                rm.sweep(now_ms, &t, budget)
            } else {
                Swept::default()
            }
        })
    }

    /// The cookie value for a new session.
    pub fn session_cookie(&self, s: SessionRef, epoch: u64, now_s: u64) -> Option<String> {
        let session_s = self.timing().session_ms.div_ceil(1000);
        Some(self.signer.as_ref()?.encode(&Token {
            kind: Kind::Session,
            number: u64::from(s.slot),
            id: s.id,
            visitor: s.id,
            issued: now_s,
            expires: now_s + session_s + CLOCK_SLACK_SECONDS,
            epoch,
        }))
    }

    /// The cookie value for a new ticket.
    pub fn ticket_cookie(&self, t: TicketRef, epoch: u64, now_s: u64) -> Option<String> {
        Some(self.signer.as_ref()?.encode(&Token {
            kind: Kind::Ticket,
            number: t.number,
            id: 0,
            visitor: t.visitor,
            issued: now_s,
            expires: now_s + TICKET_TOKEN_SECONDS + CLOCK_SLACK_SECONDS,
            epoch,
        }))
    }
}

const DEFAULT_TIMING: Timing = Timing {
    session_ms: 300_000,
    idle_ms: 90_000,
    queue_timeout_ms: 900_000,
    claim_window_ms: 30_000,
    grace_ms: 5_000,
};

/// `token` if it was issued for the room's current layout.
fn current(token: Option<Token>, epoch: u64) -> Option<Token> {
    token.filter(|t| t.epoch == epoch)
}

fn decide_locked(
    rm: &mut Tables,
    token: Option<Token>,
    now_ms: u64,
    join: bool,
    t: &Timing,
) -> Option<Outcome> {
    match token {
        Some(Token { kind: Kind::Session, number, id, .. })
            if number <= u64::from(u32::MAX)
                && rm.touch_session(SessionRef { slot: number as u32, id }, now_ms, t) =>
        {
            return Some(Outcome::Passed);
        }
        Some(Token { kind: Kind::Ticket, number, visitor, .. }) => {
            match rm.poll(TicketRef { number, visitor }, now_ms, t) {
                Poll::Admitted(session, waited_ms) => {
                    return Some(Outcome::Admitted { session, waited: Some(waited_ms / 1000) });
                }
                Poll::Waiting { position } => {
                    return Some(Outcome::Queued {
                        position,
                        queue_length: rm.queue_length(),
                        eta: rm.eta_seconds(position),
                        new_ticket: None,
                    });
                }
                Poll::Lost => {}
            }
        }
        _ => {}
    }
    if !join {
        return None;
    }
    Some(match rm.enter(now_ms, t) {
        Entry::Admitted(session) => Outcome::Admitted { session, waited: None },
        Entry::Queued { ticket, position } => Outcome::Queued {
            position,
            queue_length: rm.queue_length(),
            eta: rm.eta_seconds(position),
            new_ticket: Some(ticket),
        },
        Entry::Full => Outcome::Full { queue_length: rm.queue_length() },
    })
}

/// The zone's init callback: runs in the master at start and at every reload (`old` is the
/// previous configuration's room when nginx reuses the zone), and for `nginx -t`.
extern "C" fn init_zone(shm_zone: *mut ngx_shm_zone_t, old: *mut c_void) -> ngx_int_t {
    guard::catch(|| {
        // SAFETY: nginx calls this with the zone `Room::define` registered, whose `data` is that
        // room (alive as long as the configuration), mapped and starting with the slab pool.
        let (shm_zone, room) = unsafe { (&mut *shm_zone, &mut *((*shm_zone).data as *mut Room)) };
        let reused = !old.is_null() || shm_zone.shm.exists != 0;
        let max_active = room.settings.map_or(1, |s| s.max_active);
        let Some(zone) = room.zone.as_mut() else { return Status::NGX_ERROR.into() };
        // SAFETY: as above: nginx's own record of this zone, mapped.
        let Ok(ready) = (unsafe { zone.init(shm_zone, reused, &room.name, max_active) }) else {
            return Status::NGX_ERROR.into();
        };
        if ready.fresh && room.secret.is_none() {
            ngx_log_error!(
                NGX_LOG_NOTICE,
                shm_zone.shm.log,
                "waiting room \"{}\": no waiting_room_secret, cookies are signed with a random \
                 key kept in the zone",
                room.name
            );
        }
        room.signer = Signer::new(room.secret.as_deref().unwrap_or(&ready.key), &room.name);
        if room.signer.is_none() {
            return Status::NGX_ERROR.into();
        }
        Status::NGX_OK.into()
    })
    .unwrap_or(Status::NGX_ERROR.into())
}
