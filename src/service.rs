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
use std::path::PathBuf;

use nginx_sys::{
    ngx_conf_t, ngx_http_complex_value, ngx_http_complex_value_t, ngx_http_request_t, ngx_int_t,
    ngx_log_t, ngx_shm_zone_t, ngx_str_t, NGX_LOG_EMERG, NGX_LOG_ERR, NGX_LOG_NOTICE, NGX_LOG_WARN,
    NGX_OK,
};
use ngx::core::Status;
use ngx::ngx_log_error;

use crate::core::control::{self, Change, Mode, Phase, SettingsError};
use crate::core::guard::{self, Throttle};
use crate::core::image::{ImportError, Imported};
use crate::core::layout::People;
use crate::core::layout::{AttachError, Layout, Timing};
use crate::core::link::{self, Link, LinkRequest, LinkSigner, Refusal, Used};
use crate::core::room::{
    Arrival, Client, Confirm, Entry, Poll, Room as Tables, SessionRef, Snapshot, Swept, TicketRef,
};
use crate::core::stats::{History, Tallies};
use crate::core::token::{client_tag, room_tag, Kind, Signer, Token, TokenCache};
pub use crate::pages::Place;
use crate::persist::{self, StateFile, Tags};
use crate::shm::{self, Zone};

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
    /// What the room is steered by (`max_active`, the model, the rate, the mode, the event):
    /// the configuration's, put in force unless changed at run time (see
    /// [`Tables::adopt_settings`]).
    pub steer: control::Settings,
    pub timing: Timing,
    pub heartbeat_ms: u64,
    /// The most places (sessions and tickets) one client may hold; 0 for no limit.
    pub client_limit: u32,
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
    /// In line. `new_ticket` is set when the visitor just took their place and needs the
    /// ticket cookie.
    Queued { place: Place, new_ticket: Option<TicketRef> },
    /// A first contact sent to the back of the line, with no place until they come back with
    /// the arrival cookie.
    Arrived { arrival: Arrival, place: Place },
    /// Nobody new joins: the room is closed (mode `reject`), or its event is over.
    Closed { over: bool },
    /// The room is off (mode `pass`): through, without a place.
    Off,
    /// The line is as long as the zone can hold.
    Full { queue_length: u64 },
    /// The client holds as many places as `waiting_room_client_limit` allows.
    Limited,
    /// The room stands by while another nginx runs it (a binary upgrade): no place is given
    /// until it takes over, in a few seconds.
    Held { queue_length: u64 },
}

/// What an exempt link brought (see [`Room::use_link`]).
pub enum LinkUsed {
    /// A session at once: set its cookie (with `epoch`).
    Admitted { used: Used, link: Link, epoch: u64 },
    /// No session: the visitor goes through the room as any other. `link` when it verified.
    Refused { why: Refusal, link: Option<Link> },
}

/// What [`Room::refused`] found.
pub enum Refused {
    /// Counted; with the counters to log when a line is due.
    Counted(Option<(People, People, u64)>),
    /// The room is off: the request goes through.
    Off,
}

/// How a visitor leaves (see [`Room::leave`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leaving {
    /// At once: a "Leave" or "Log out" button.
    Now,
    /// A page was left: the place is kept for the grace, and for good if seen again.
    Away,
}

/// Who asks, for [`Room::decide`]: whether they may be given a place (a page load) and who
/// they are for the per-client limit.
#[derive(Clone, Copy, Debug)]
pub struct Visit<'k> {
    pub join: bool,
    /// The client's key (`client_key=`), when the room limits places per client.
    pub client: Option<&'k [u8]>,
}

/// What [`Room::decide`] found.
pub struct Decision {
    /// None when the visitor has no place and `join` was false.
    pub outcome: Option<Outcome>,
    /// The room's epoch, for new tokens.
    pub epoch: u64,
    pub queue_length: u64,
    /// The room's [`People`] counters when a line about what it turned away is due (see
    /// [`Room::refused`]).
    pub to_log: Option<(People, People, u64)>,
}

/// How often, at most, the room logs what it turned away (for all its workers together).
pub const PEOPLE_LOG_MS: u64 = 10_000;

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
    /// Makes and verifies the room's exempt links (keyed like `signer`).
    links: Option<LinkSigner>,
    /// This process's last view of the zone's layout and epoch, for checking a live session
    /// without the lock.
    seen: Cell<Option<(Layout, u64)>>,
    tokens: RefCell<TokenCache>,
    /// For the log: a full line, an unusable zone, a state file too small.
    pub full_log: Throttle,
    pub unusable_log: Throttle,
    /// A link with a bad signature is logged at `warn` at most this often, per worker (then at
    /// `info`): someone trying forged links must not fill the log.
    pub forged_log: Throttle,
    state_log: Throttle,
    /// The state file's path (`state=`), and the file, opened by the zone's init.
    state_path: Option<PathBuf>,
    state: RefCell<Option<StateFile>>,
    /// The state file is not used (what is at its path is no state file).
    state_off: Cell<bool>,
    /// `client_key=`, compiled, when the room limits places per client.
    client_key: *mut ngx_http_complex_value_t,
    /// The settings in force and the event's phase when this process last held the lock, for
    /// the variables (at most a sweep's interval old).
    steer_seen: Cell<Option<(control::Settings, Phase)>>,
    /// What this process counted without the lock, not yet added to the zone's counts.
    pending: Cell<Tallies>,
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
            links: None,
            seen: Cell::new(None),
            tokens: RefCell::new(TokenCache::default()),
            full_log: Throttle::new(),
            unusable_log: Throttle::new(),
            forged_log: Throttle::new(),
            state_log: Throttle::new(),
            state_path: None,
            state: RefCell::new(None),
            state_off: Cell::new(false),
            client_key: core::ptr::null_mut(),
            steer_seen: Cell::new(None),
            pending: Cell::new(Tallies::default()),
        }
    }

    pub fn set_client_key(&mut self, cv: *mut ngx_http_complex_value_t) {
        self.client_key = cv;
    }

    /// The request's client key (`client_key=`), when the room limits places per client.
    pub fn client_key<'r>(&self, r: &'r mut ngx_http_request_t) -> Option<&'r [u8]> {
        if self.client_key.is_null() {
            return None;
        }
        let mut out = ngx_str_t { len: 0, data: core::ptr::null_mut() };
        // SAFETY: `client_key` was compiled for this configuration, which outlives the
        // request; the value is made in the request's pool.
        let rc = unsafe { ngx_http_complex_value(r, self.client_key, &mut out) };
        if rc != NGX_OK as ngx_int_t {
            return None;
        }
        // SAFETY: nginx made `out` in the request pool, alive as long as the request.
        Some(unsafe { core::slice::from_raw_parts(out.data, out.len) }).filter(|_| out.len > 0)
    }

    /// Defines the room with `settings` and asks nginx for its zone. The room must stay at
    /// this address for the life of the configuration (nginx keeps a pointer to it). `false`
    /// when nginx refused the zone (it has logged why).
    pub fn define(
        &mut self,
        cf: *mut ngx_conf_t,
        settings: Settings,
        state: Option<PathBuf>,
    ) -> bool {
        self.settings = Some(settings);
        self.state_path = state;
        self.stamp = settings_stamp();
        let data = self as *mut Room as *mut c_void;
        self.zone = Zone::add(cf, &self.name, settings.size, Some(init_zone), data);
        self.zone.is_some()
    }

    /// The state file, when the room has one.
    pub fn state_file(&self) -> Option<&std::path::Path> {
        self.state_path.as_deref()
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
        self.tables(true, f)
    }

    /// Runs `f` on the room's tables under the zone's lock; with this configuration's settings
    /// put in force when `adopt` (never in the master: a reload may still fail).
    fn tables<R>(&self, adopt: bool, f: impl FnOnce(&mut Tables) -> R) -> Result<R, Unusable> {
        let zone = self.zone.as_ref().ok_or(Unusable::Uninitialised)?;
        let mut locked = zone.lock().ok_or(Unusable::Uninitialised)?;
        let mut tables = locked.room().map_err(Unusable::Corrupt)?;
        tables.set_wall_clock(wall_s());
        let pending = self.pending.take();
        if pending != Tallies::default() {
            tables.add_tallies(&pending);
        }
        let adopted = self
            .settings
            .filter(|_| adopt)
            .and_then(|s| Some((tables.adopt_settings(s.steer, self.stamp)?, s.steer)));
        self.seen.set(Some((tables.layout(), tables.epoch())));
        let out = f(&mut tables);
        // After `f`, which may have changed them (the control location).
        self.steer_seen.set(Some((tables.settings(), tables.phase())));
        drop(locked);
        // Logged once the lock is given back: a log line is a write to a file.
        if let Some((live, conf)) = adopted {
            self.log_kept(&live, &conf);
        }
        Ok(out)
    }

    /// Counts what `f` adds without the lock (see [`Tallies`]).
    pub fn tally(&self, f: impl FnOnce(&mut Tallies)) {
        let mut t = self.pending.get();
        f(&mut t);
        self.pending.set(t);
    }

    /// The settings in force and the event's phase, as this process last saw them.
    pub fn steer_seen(&self) -> Option<(control::Settings, Phase)> {
        self.steer_seen.get()
    }

    /// The first of `values` (the request's cookies of the room's name) that is a valid token.
    pub fn token<'v>(&self, values: impl Iterator<Item = &'v [u8]>, now_s: u64) -> Option<Token> {
        let signer = self.signer.as_ref()?;
        let mut cache = self.tokens.try_borrow_mut().ok();
        // A browser sends one; a request stuffed with copies should not buy many HMACs.
        for v in values.take(COOKIES_TRIED) {
            if let Some(t) = cache.as_deref().and_then(|c| c.get(v, now_s)) {
                return Some(t);
            }
            if let Some(t) = signer.decode(v, now_s) {
                if let Some(c) = cache.as_deref_mut() {
                    c.put(v, t);
                }
                return Some(t);
            }
        }
        None
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

    /// Decides for a visitor holding `token` (already verified) or none. `visit.join` says
    /// whether a visitor without a place may be given one; a first contact coming back with
    /// its arrival takes its place whatever the request.
    pub fn decide(
        &self,
        token: Option<Token>,
        now_ms: u64,
        visit: Visit,
    ) -> Result<Decision, Unusable> {
        let t = self.timing();
        let limit = self.settings.map_or(0, |s| s.client_limit);
        self.with_tables(|rm| {
            let epoch = rm.epoch();
            let client = match visit.client {
                Some(key) if limit > 0 => Client { tag: client_tag(epoch, key), limit },
                _ => Client::NONE,
            };
            let outcome = decide_locked(rm, current(token, epoch), now_ms, visit.join, client, &t);
            let to_log = match outcome {
                None | Some(Outcome::Arrived { .. } | Outcome::Limited) => {
                    rm.people_to_log(now_ms, PEOPLE_LOG_MS)
                }
                _ => None,
            };
            Decision { outcome, epoch, queue_length: rm.queue_length(), to_log }
        })
    }

    /// Counts a request that could take no place, and returns the counters to log when a
    /// line about them is due (at most every `interval_ms` for the whole room): the counts
    /// then and now, and the milliseconds between.
    /// `Refused::Off` instead when the room is off (mode `pass`): then the request goes through.
    pub fn refused(
        &self,
        now_ms: u64,
        count: impl FnOnce(&mut People),
    ) -> Result<Refused, Unusable> {
        self.with_tables(|rm| {
            if rm.mode() == Mode::Pass {
                return Refused::Off;
            }
            count(rm.people());
            Refused::Counted(rm.people_to_log(now_ms, PEOPLE_LOG_MS))
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
            Some(tok) if tok.kind == Kind::Ticket => {
                let ticket = TicketRef { number: tok.number, visitor: tok.visitor };
                match how {
                    Leaving::Now => rm.leave_ticket(ticket, now_ms, &t),
                    Leaving::Away => rm.away_ticket(ticket, now_ms, &t),
                }
            }
            // An arrival holds no place to leave.
            Some(_) | None => false,
        })
    }

    /// Changes the room's settings at run time, as the control location was asked, and logs
    /// the change with the old and new values. `who` says who asked (the client's address).
    pub fn change(
        &self,
        change: &Change,
        now_ms: u64,
        who: &str,
        log: *mut ngx_log_t,
    ) -> Result<Result<control::Settings, SettingsError>, Unusable> {
        let t = self.timing();
        let done = self.with_tables(|rm| rm.change_settings(change, now_ms, &t))?;
        Ok(done.map(|(before, after)| {
            let what: Vec<String> = before
                .differences(&after)
                .map(|name| {
                    format!(
                        "{name} {} -> {}",
                        setting_text(&before, name),
                        setting_text(&after, name)
                    )
                })
                .collect();
            let what = if what.is_empty() { "nothing changed".to_owned() } else { what.join(", ") };
            ngx_log_error!(
                NGX_LOG_NOTICE,
                log,
                "waiting room \"{}\" changed at run time by {who}: {what}",
                self.name
            );
            after
        }))
    }

    /// Logs, once a reload's settings are adopted, what set at run time stays in force over
    /// the configuration (the configuration did not change it).
    fn log_kept(&self, live: &control::Settings, conf: &control::Settings) {
        let kept: Vec<String> = live
            .differences(conf)
            .map(|name| {
                format!(
                    "{name} {} (configured: {})",
                    setting_text(live, name),
                    setting_text(conf, name)
                )
            })
            .collect();
        if kept.is_empty() {
            return;
        }
        // SAFETY: the running cycle, set for as long as the process serves requests.
        let log = unsafe { (*nginx_sys::ngx_cycle).log };
        ngx_log_error!(
            NGX_LOG_NOTICE,
            log,
            "waiting room \"{}\" keeps what was set at run time: {}",
            self.name,
            kept.join(", ")
        );
    }

    pub fn snapshot(&self) -> Result<Snapshot, Unusable> {
        self.with_tables(|rm| rm.snapshot())
    }

    /// What the status location shows, at one moment: the snapshot, the estimated wait of
    /// someone joining the back of the line now, and the last minutes (a copy of the ring,
    /// a few kilobytes).
    pub fn status(&self) -> Result<(Snapshot, Option<u64>, History), Unusable> {
        let t = self.timing();
        self.with_tables(|rm| (rm.snapshot(), rm.back_of_line_eta(&t), rm.history()))
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

    /// One `warn` line for the whole room, at most every [`PEOPLE_LOG_MS`], about what it
    /// turned away and how many first contacts never came back: a flood shows as its counts,
    /// not a line a request. In the cycle's log: no one request stands for the flood.
    pub fn log_people(&self, to_log: Option<(People, People, u64)>) {
        let Some((before, now, ms)) = to_log else { return };
        let d = |f: fn(&People) -> u64| f(&now).saturating_sub(f(&before));
        let limit_of = match self.settings.map_or(0, |s| s.client_limit) {
            0 => "off".to_owned(),
            n => n.to_string(),
        };
        let when = if before == People::default() {
            "since it started".to_owned()
        } else {
            format!("in the last {} s", ms.div_ceil(1000))
        };
        // SAFETY: the running cycle, set for as long as the process serves requests.
        let log = unsafe { (*nginx_sys::ngx_cycle).log };
        ngx_log_error!(
            NGX_LOG_WARN,
            log,
            "waiting room \"{}\" {when}: refused {} not page loads, {} crawlers, {} over \
             client_limit={limit_of}; of the first contacts, {} of {} sent to the line and {} \
             of {} admitted at once came back with the cookie",
            self.name,
            d(|p| p.refused_not_navigation),
            d(|p| p.refused_crawler),
            d(|p| p.refused_client_limit),
            d(|p| p.arrivals_confirmed),
            d(|p| p.arrivals),
            d(|p| p.sessions_confirmed),
            d(|p| p.sessions_opened),
        );
    }

    /// The counters to log, if a line is due (see [`Room::log_people`]); asked by the sweep,
    /// so that the end of a flood is logged without a request to carry it.
    pub fn people_due(&self, now_ms: u64) -> Option<(People, People, u64)> {
        self.with_tables(|rm| rm.people_to_log(now_ms, PEOPLE_LOG_MS)).ok().flatten()
    }

    /// A visitor brings exempt link `value` (the `wr_exempt` argument): verified, then used
    /// under the lock (see [`Tables::use_link`]). `now_ms` is monotonic, `wall_s` Unix
    /// seconds; `client` the visitor's client key, counted (not limited) when the room limits
    /// places per client. Every refusal is counted.
    pub fn use_link(
        &self,
        value: &[u8],
        now_ms: u64,
        wall_s: u64,
        client: Option<&[u8]>,
    ) -> Result<LinkUsed, Unusable> {
        let verified = match self.links.as_ref() {
            Some(signer) => signer.verify(value, wall_s),
            None => Err(Refusal::Malformed),
        };
        let link = match verified {
            Ok(l) => l,
            Err(why) => {
                self.with_tables(|rm| rm.link_refused())?;
                return Ok(LinkUsed::Refused { why, link: None });
            }
        };
        let limit = self.settings.map_or(0, |s| s.client_limit);
        self.with_tables(|rm| {
            let epoch = rm.epoch();
            let tag = match client {
                Some(key) if limit > 0 => client_tag(epoch, key),
                _ => 0,
            };
            match rm.use_link(&link, now_ms, wall_s, tag) {
                Ok(used) => LinkUsed::Admitted { used, link, epoch },
                Err(why) => LinkUsed::Refused { why, link: Some(link) },
            }
        })
    }

    /// A new exempt link, as the control location is asked for one: its URL (the path with
    /// the `wr_exempt` argument) and content. `None` when no random id could be read.
    pub fn make_link(&self, req: &LinkRequest, wall_s: u64) -> Option<(String, Link)> {
        let signer = self.links.as_ref()?;
        let mut id = [0u8; 8];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut id))
            .ok()?;
        let link = Link {
            id: u64::from_le_bytes(id).max(1),
            expires: wall_s.saturating_add(req.expires_in),
            uses: req.uses,
        };
        Some((link::with_arg(&req.path, &signer.encode(&link)), link))
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

    /// The cookie value for a first contact sent to the line.
    pub fn arrival_cookie(&self, a: Arrival, epoch: u64, now_s: u64) -> Option<String> {
        let confirm_s = self.timing().confirm_ms.div_ceil(1000);
        Some(self.signer.as_ref()?.encode(&Token {
            kind: Kind::Arrival,
            number: a.arrived,
            id: 0,
            visitor: a.visitor,
            issued: now_s,
            expires: now_s + confirm_s + CLOCK_SLACK_SECONDS,
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

/// One setting's value as the configuration and the control location write it.
pub fn setting_text(s: &control::Settings, name: &str) -> String {
    match name {
        "max_active" => s.max_active.to_string(),
        "mode" => s.mode().name().to_owned(),
        "model" => s.model().name().to_owned(),
        "rate" if s.rate_per_minute == 0 => "none".to_owned(),
        "rate" => control::rate_text(s.rate_per_minute),
        "start" => control::time_text(s.start),
        "end" => control::time_text(s.end),
        _ => String::new(),
    }
}

const DEFAULT_TIMING: Timing = Timing {
    session_ms: 300_000,
    idle_ms: 90_000,
    queue_timeout_ms: 900_000,
    claim_window_ms: 30_000,
    grace_ms: 5_000,
    confirm_ms: 30_000,
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
    client: Client,
    t: &Timing,
) -> Option<Outcome> {
    if rm.standby() {
        return decide_standing_by(rm, token, now_ms, join, t);
    }
    let outcome = decide_open(rm, token, now_ms, join, client, t)?;
    // The room is off: whoever would wait goes through (keeping any place they hold).
    Some(match outcome {
        Outcome::Queued { .. } | Outcome::Arrived { .. } | Outcome::Full { .. }
            if rm.mode() == Mode::Pass =>
        {
            Outcome::Off
        }
        o => o,
    })
}

fn decide_open(
    rm: &mut Tables,
    token: Option<Token>,
    now_ms: u64,
    join: bool,
    client: Client,
    t: &Timing,
) -> Option<Outcome> {
    match token {
        Some(Token { kind: Kind::Session, number, id, .. })
            if number <= u64::from(u32::MAX)
                && (rm.touch_session(SessionRef { slot: number as u32, id }, now_ms, t)
                    || rm.adopt_session(SessionRef { slot: number as u32, id }, now_ms)) =>
        {
            return Some(Outcome::Passed);
        }
        Some(Token { kind: Kind::Ticket, number, visitor, .. }) => {
            let ticket = TicketRef { number, visitor };
            match rm.poll(ticket, now_ms, t) {
                Poll::Admitted(session, waited_ms) => {
                    return Some(Outcome::Admitted { session, waited: Some(waited_ms / 1000) });
                }
                Poll::Waiting { position } => {
                    let place = place(rm, Some(ticket), position, t);
                    return Some(Outcome::Queued { place, new_ticket: None });
                }
                Poll::Lost => {}
            }
        }
        Some(Token { kind: Kind::Arrival, number, visitor, .. }) => {
            let arrival = Arrival { visitor, arrived: number };
            match rm.confirm(arrival, now_ms, t, client) {
                Confirm::Ticket(_, Poll::Admitted(session, waited_ms)) => {
                    return Some(Outcome::Admitted { session, waited: Some(waited_ms / 1000) });
                }
                Confirm::Ticket(ticket, Poll::Waiting { position }) => {
                    let place = place(rm, Some(ticket), position, t);
                    return Some(Outcome::Queued { place, new_ticket: Some(ticket) });
                }
                Confirm::Full => return Some(Outcome::Full { queue_length: rm.queue_length() }),
                Confirm::Limited => return Some(Outcome::Limited),
                Confirm::Held => return Some(Outcome::Held { queue_length: rm.queue_length() }),
                Confirm::Closed => return Some(Outcome::Closed { over: false }),
                Confirm::Passed => return Some(Outcome::Off),
                Confirm::Over => return Some(Outcome::Closed { over: true }),
                Confirm::Ticket(_, Poll::Lost) | Confirm::Stale => {}
            }
        }
        _ => {}
    }
    if !join {
        return None;
    }
    Some(match rm.enter(now_ms, t, client) {
        Entry::Admitted(session) => Outcome::Admitted { session, waited: None },
        Entry::Arrived { arrival, position } => {
            Outcome::Arrived { arrival, place: place(rm, None, position, t) }
        }
        Entry::Full => Outcome::Full { queue_length: rm.queue_length() },
        Entry::Limited => Outcome::Limited,
        Entry::Held => Outcome::Held { queue_length: rm.queue_length() },
        Entry::Closed => Outcome::Closed { over: false },
        Entry::Over => Outcome::Closed { over: true },
        Entry::Passed => Outcome::Off,
    })
}

/// Where the holder of `ticket` (or a newcomer, at the back) stands at `position`.
fn place(rm: &Tables, ticket: Option<TicketRef>, position: u64, t: &Timing) -> Place {
    let draw = match ticket {
        Some(t) => rm.draw_among(t),
        None if rm.newcomers_drawn() => position.saturating_sub(rm.front_length()),
        None => 0,
    };
    let starts_in = match rm.phase() {
        Phase::Before => Some(rm.settings().start.saturating_sub(rm.wall_clock())),
        _ => None,
    };
    // While the line is held (mode `queue`) nobody moves: no estimate can be honest.
    let held = rm.mode() == Mode::Queue;
    let later = |eta: Option<u64>| eta.filter(|_| !held).map(|e| e + starts_in.unwrap_or(0));
    // Drawn at random: on average half the draw goes first, at most all of it.
    let expected = if draw > 0 { position - draw + draw.div_ceil(2) } else { position };
    Place {
        position,
        queue_length: rm.queue_length(),
        eta: later(rm.eta_seconds(expected, t)),
        eta_max: if draw > 0 { later(rm.eta_seconds(position, t)) } else { None },
        draw,
        starts_in,
    }
}

/// What a room standing by (for the nginx that still runs it, during a binary upgrade) says:
/// the running room decides, and its newer cookies are trusted for the few seconds until this
/// one takes over with its last state. A ticket hears the place it had when
/// last saved, or, if it is newer than that, the back of the line; nobody gets a new place.
/// A session passes if this copy knows it or it is newer than the image.
fn decide_standing_by(
    rm: &mut Tables,
    token: Option<Token>,
    now_ms: u64,
    join: bool,
    t: &Timing,
) -> Option<Outcome> {
    let queue_length = rm.queue_length();
    match token {
        // A session this copy knows, or one handed out after the image it has: never an old
        // cookie whose session had ended.
        Some(Token { kind: Kind::Session, number, id, .. })
            if number <= u64::from(u32::MAX)
                && (rm.touch_session(SessionRef { slot: number as u32, id }, now_ms, t)
                    || rm.issued_after_image(id)) =>
        {
            Some(Outcome::Passed)
        }
        Some(Token { kind: Kind::Session, .. }) => join.then_some(Outcome::Held { queue_length }),
        Some(Token { kind: Kind::Ticket, number, visitor, .. }) => {
            let ticket = TicketRef { number, visitor };
            match rm.position(ticket) {
                Some(position) => Some(Outcome::Queued {
                    place: place(rm, Some(ticket), position, t),
                    new_ticket: None,
                }),
                None => Some(Outcome::Held { queue_length }),
            }
        }
        Some(Token { kind: Kind::Arrival, .. }) => Some(Outcome::Held { queue_length }),
        None => join.then_some(Outcome::Held { queue_length }),
    }
}

/// Replaces what the room holds with the image `saved`, its times moved to this process's
/// clock (the time nginx was down does not count). What was handed out after that save (after
/// a crash, or by another nginx) names nobody's place here, and the sessions admitted then are
/// taken in when they come back ([`Tables::carried_over`]).
fn take_image(tables: &mut Tables, saved: &persist::Saved) -> Result<Imported, ImportError> {
    let shift = mono_ms() as i64 - saved.saved_mono as i64;
    // Checked before anything is emptied: an image that does not fit leaves the room as it is.
    tables.check_image(&saved.image)?;
    tables.reset();
    let imported = tables.import(&saved.image, shift)?;
    tables.carried_over();
    Ok(imported)
}

/// Wall-clock seconds, for the event's times.
fn wall_s() -> u64 {
    wall_ms() / 1000
}

/// Wall-clock milliseconds, for the state file's dates.
fn wall_ms() -> u64 {
    let tp = nginx_sys::ngx_timeofday();
    tp.sec.max(0) as u64 * 1000 + tp.msec as u64
}

/// The master process of this nginx (or the process itself without one): the owner written in
/// the state file. Asked each time: a master that goes into the background changes its pid
/// after reading the configuration.
fn master_pid() -> u64 {
    // SAFETY: plain integers nginx sets when the process starts.
    let (process, pid) = unsafe { (nginx_sys::ngx_process as u32, nginx_sys::ngx_pid) };
    if process == nginx_sys::NGX_PROCESS_WORKER {
        u64::from(std::os::unix::process::parent_id())
    } else {
        u64::from(pid as u32)
    }
}

fn mono_ms() -> u64 {
    // SAFETY: nginx's cached monotonic time, a plain integer it updates in this process.
    unsafe { nginx_sys::ngx_current_msec as u64 }
}

/// Why [`Room::save`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Save {
    /// The once-a-second save, in a worker.
    Tick,
    /// A worker exits.
    Exit,
    /// The master stops: the last save, after every worker has gone; the room is released.
    Stop,
    /// The master starts: the restored room is saved to the (perhaps new) file at once.
    Start,
}

impl Room {
    fn tags(&self) -> Tags {
        let secret = self.secret.as_deref().map_or(0, persist::secret_tag);
        Tags { room: room_tag(&self.name), secret }
    }

    fn state_name(&self) -> String {
        self.state_path.as_ref().map_or_else(String::new, |p| p.display().to_string())
    }

    /// Fills the room's new zone from `old`, the running configuration's room, whose zone has
    /// another size. Runs in the master.
    fn carry_from(&self, old: &Room) -> Result<Imported, String> {
        let old_zone = old.zone.as_ref().ok_or("the old zone was not initialised")?;
        let image = {
            let mut locked = old_zone.lock().ok_or("the old zone was not initialised")?;
            let tables = locked.room().map_err(|e| e.to_string())?;
            let mut image = vec![0u8; tables.image_len_max()];
            let len = tables.export(&mut image).ok_or("the old room's image does not fit")?;
            image.truncate(len);
            image
        };
        let zone = self.zone.as_ref().ok_or("the zone was not initialised")?;
        let mut locked = zone.lock().ok_or("the zone was not initialised")?;
        let mut tables = locked.room().map_err(|e| e.to_string())?;
        let imported = tables.import(&image, 0).map_err(|e| e.to_string())?;
        tables.carried_over();
        Ok(imported)
    }

    /// Restores the room's new zone from its state file, at a start. Returns whether another
    /// nginx still runs the room (then this one stands by). Runs in the master; every outcome
    /// is logged.
    fn restore(&self, log: *mut ngx_log_t) -> Result<bool, ()> {
        let Some(path) = self.state_path.as_ref() else { return Ok(false) };
        let name = &self.name;
        let file = self.state_name();
        let saved = match persist::read(path, self.tags()) {
            Ok(Some(saved)) => saved,
            Ok(None) => {
                ngx_log_error!(
                    NGX_LOG_NOTICE,
                    log,
                    "waiting room \"{name}\": no saved state in \"{file}\", the room starts empty"
                );
                return Ok(false);
            }
            Err(persist::Refused::NotAStateFile) => {
                // Perhaps another file named by mistake (a key, a page): left as it is, and
                // the room is not saved over it.
                ngx_log_error!(
                    NGX_LOG_ERR,
                    log,
                    "waiting room \"{name}\": \"{file}\" is not a waiting room state file and is \
                     left as it is; the room starts empty and is not saved"
                );
                self.state_off.set(true);
                return Ok(false);
            }
            Err(e) => {
                let mine = master_pid();
                if let Some(o) = persist::owner_at(path).filter(|o| o.running(mine, wall_ms())) {
                    // Another nginx (the old master of an upgrade) runs the room from this
                    // file: it is left as it is, and this nginx does not start beside it.
                    ngx_log_error!(
                        NGX_LOG_EMERG,
                        log,
                        "waiting room \"{name}\": state file \"{file}\" is used by nginx process \
                         {}, which runs the room, and cannot be taken by this one: {e}",
                        o.pid
                    );
                    return Err(());
                }
                self.refuse_file(log, &e.to_string(), !matches!(e, persist::Refused::Io(_)));
                return Ok(false);
            }
        };
        let standby = saved.owner.running(master_pid(), wall_ms());
        let imported = self.tables(false, |t| {
            let r = take_image(t, &saved);
            if r.is_ok() {
                t.set_standby(standby);
            }
            r
        });
        match imported {
            Ok(Ok(Imported { sessions, tickets })) => {
                let age = wall_ms().saturating_sub(saved.saved_wall_ms) / 1000;
                ngx_log_error!(
                    NGX_LOG_NOTICE,
                    log,
                    "waiting room \"{name}\": restored {sessions} sessions and {tickets} places \
                     in line from \"{file}\", saved {age}s ago"
                );
                if standby {
                    ngx_log_error!(
                        NGX_LOG_NOTICE,
                        log,
                        "waiting room \"{name}\": nginx process {} still runs the room, this one \
                         stands by until it stops (a binary upgrade)",
                        saved.owner.pid
                    );
                }
                Ok(standby)
            }
            Ok(Err(e)) => {
                self.refuse_file(log, &e.to_string(), true);
                Ok(false)
            }
            Err(e) => {
                ngx_log_error!(NGX_LOG_ERR, log, "waiting room \"{name}\": {e}");
                Ok(false)
            }
        }
    }

    /// Logs that the state file was refused, and moves it aside when `aside`.
    fn refuse_file(&self, log: *mut ngx_log_t, why: &str, aside: bool) {
        let (name, file) = (&self.name, self.state_name());
        let kept = match self.state_path.as_ref().filter(|_| aside).map(|p| persist::set_aside(p)) {
            Some(Ok(to)) => format!(", it is kept as \"{}\"", to.display()),
            Some(Err(e)) => format!(", and cannot be moved aside ({})", persist::os_error(&e)),
            None => String::new(),
        };
        ngx_log_error!(
            NGX_LOG_ERR,
            log,
            "waiting room \"{name}\": state file \"{file}\" is not used, {why}; the room starts \
             empty{kept}"
        );
    }

    /// Opens the state file for this configuration (in the master, after the zone's init).
    /// `start` says the room did not come from a running zone: the file may then be made anew,
    /// larger, and this master owns it unless `standby`.
    fn open_state(&self, log: *mut ngx_log_t, start: bool, standby: bool) -> bool {
        let Some(path) = self.state_path.as_ref().filter(|_| !self.state_off.get()) else {
            return true;
        };
        let slot_len = match self.tables(false, |t| t.image_len_max()) {
            Ok(n) => n as u64,
            Err(_) => return false,
        };
        match StateFile::open(path, self.tags(), slot_len, start && !standby) {
            Ok(sf) => {
                if start && !standby {
                    // Owned by nobody until this nginx's first worker saves: the master may
                    // still go into the background, as another process.
                    sf.reset_saver();
                    sf.take(0, wall_ms());
                }
                *self.state.borrow_mut() = Some(sf);
                true
            }
            Err(e) => {
                ngx_log_error!(
                    NGX_LOG_EMERG,
                    log,
                    "waiting room \"{}\": cannot open state file \"{}\" ({})",
                    self.name,
                    self.state_name(),
                    persist::os_error(&e)
                );
                false
            }
        }
    }

    /// Saves the room's image to its state file, if it has one and runs the room. In a worker
    /// (`Tick`, `Exit`) or in the master (`Stop`, and right after a start). With `Tick`, also
    /// hands the room over: a room standing by takes over once the other nginx has stopped,
    /// and a room whose file another nginx has taken stands by.
    pub fn save(&self, log: *mut ngx_log_t, why: Save) {
        let Ok(mut state) = self.state.try_borrow_mut() else { return };
        let Some(sf) = state.as_mut() else { return };
        let Some(zone) = self.zone.as_ref() else { return };
        let (pid, now_wall) = (master_pid(), wall_ms());
        let owner = sf.owner();
        let others = owner.running(pid, now_wall);
        // SAFETY: a plain integer nginx sets when the process starts.
        let me = u64::from(unsafe { nginx_sys::ngx_pid } as u32);
        let name = &self.name;
        let Some(mut locked) = zone.lock() else { return };
        let Ok(mut tables) = locked.room() else { return };
        if tables.standby() {
            if others && why == Save::Tick {
                // Follow the running room's saves, so that what it did since this one started
                // is known here too.
                if let Ok(Some(saved)) = sf.read(self.tags()) {
                    if take_image(&mut tables, &saved).is_err() {
                        tables.reset();
                    }
                    tables.set_standby(true);
                }
            }
            if others || why != Save::Tick {
                return;
            }
            // The other nginx has stopped: its last image is the room.
            let taken = match sf.read(self.tags()) {
                Ok(Some(saved)) => {
                    let mut image_ok = false;
                    let took = take_image(&mut tables, &saved);
                    if let Err(e) = took {
                        ngx_log_error!(
                            NGX_LOG_ERR,
                            log,
                            "waiting room \"{name}\": the last state of nginx process {} is not \
                             taken, {e}",
                            owner.pid
                        );
                    }
                    if let Ok(i) = took {
                        image_ok = true;
                        ngx_log_error!(
                            NGX_LOG_NOTICE,
                            log,
                            "waiting room \"{name}\": takes over from nginx process {} with {} \
                             sessions and {} places in line",
                            owner.pid,
                            i.sessions,
                            i.tickets
                        );
                    }
                    image_ok
                }
                _ => false,
            };
            if !taken {
                ngx_log_error!(
                    NGX_LOG_ERR,
                    log,
                    "waiting room \"{name}\": takes over from nginx process {} without its last \
                     state; the room goes on as this nginx last had it",
                    owner.pid
                );
            }
            tables.set_standby(false);
            sf.take(pid, now_wall);
        } else if others && owner.pid != pid {
            if why == Save::Tick {
                ngx_log_error!(
                    NGX_LOG_NOTICE,
                    log,
                    "waiting room \"{name}\": nginx process {} runs the room now, this one stands \
                     by",
                    owner.pid
                );
                tables.set_standby(true);
            }
            return;
        } else if owner.pid != pid && why != Save::Start {
            // Saved last by another nginx that has stopped (this one was rolled back to after
            // a binary upgrade): its image is newer than this room, which goes on from it.
            if owner.pid != 0 {
                if let Ok(Some(saved)) = sf.read(self.tags()) {
                    if take_image(&mut tables, &saved).is_ok() {
                        ngx_log_error!(
                            NGX_LOG_NOTICE,
                            log,
                            "waiting room \"{name}\": goes on from the state nginx process {} \
                             saved last",
                            owner.pid
                        );
                    }
                }
            }
            sf.take(pid, now_wall);
        }
        let Some(slot) = sf.begin(me, self.stamp, now_wall, why != Save::Tick) else { return };
        // The image is taken under the lock, then written and digested without it: the slot
        // is this save's alone.
        let mut image = vec![0u8; tables.image_len_max()];
        let len = tables.export(&mut image);
        drop(locked);
        let sealed = match len.map(|l| sf.write(slot, &image[..l]).map(|d| (l, d))) {
            Some(Ok(sealed)) => Some(sealed),
            Some(Err(e)) => {
                if self.state_log.ready(mono_ms(), 60_000) {
                    ngx_log_error!(
                        NGX_LOG_WARN,
                        log,
                        "waiting room \"{name}\": the room is not saved to state file \"{}\" \
                         ({}); the file is made larger at the next start if it is too small",
                        self.state_name(),
                        persist::os_error(&e)
                    );
                }
                None
            }
            None => None,
        };
        let Some(_relock) = zone.lock() else { return };
        sf.commit(me, slot, sealed, (mono_ms(), now_wall));
        if why == Save::Stop {
            sf.release(pid);
            let _ = sf.flush();
        }
    }
}

/// The zone's init callback: runs in the master at start and at every reload (`old` is the
/// previous configuration's room when nginx reuses the zone), and for `nginx -t`.
extern "C" fn init_zone(shm_zone: *mut ngx_shm_zone_t, old: *mut c_void) -> ngx_int_t {
    guard::catch(|| {
        // SAFETY: nginx calls this with the zone `Room::define` registered, whose `data` is that
        // room (alive as long as the configuration), mapped and starting with the slab pool.
        let (shm_zone, room) = unsafe { (&mut *shm_zone, &mut *((*shm_zone).data as *mut Room)) };
        let reused = !old.is_null() || shm_zone.shm.exists != 0;
        let max_active = room.settings.map_or(1, |s| s.steer.max_active);
        let log = shm_zone.shm.log;
        // SAFETY: a plain integer nginx sets before reading the configuration.
        let testing = unsafe { nginx_sys::ngx_test_config } != 0;
        let Some(zone) = room.zone.as_mut() else { return Status::NGX_ERROR.into() };
        // SAFETY: as above: nginx's own record of this zone, mapped.
        let Ok(ready) = (unsafe { zone.init(shm_zone, reused, &room.name, max_active) }) else {
            return Status::NGX_ERROR.into();
        };
        let (mut standby, mut carried) = (false, false);
        if ready.fresh {
            // SAFETY: in the master, while a configuration is read: the running one's zones
            // are mapped, and their rooms alive.
            let other = unsafe { shm::running_zone_of_other_size(shm_zone) };
            if let Some(data) = other {
                // SAFETY: a zone of ours: its data is the running configuration's room.
                let old_room = unsafe { &*(data as *const Room) };
                match room.carry_from(old_room) {
                    Ok(Imported { sessions, tickets }) => {
                        carried = true;
                        ngx_log_error!(
                            NGX_LOG_NOTICE,
                            log,
                            "waiting room zone \"{}\" resized: {sessions} sessions and {tickets} \
                             places in line carried over",
                            room.name
                        );
                    }
                    Err(why) => {
                        ngx_log_error!(
                            NGX_LOG_EMERG,
                            log,
                            "waiting room zone \"{}\" cannot take the running room at its new \
                             size: {why}; the running room is kept as it is",
                            room.name
                        );
                        return Status::NGX_ERROR.into();
                    }
                }
            } else if !testing {
                let Ok(stand) = room.restore(log) else { return Status::NGX_ERROR.into() };
                standby = stand;
            }
        }
        let key = match room.tables(false, |t| t.key().to_vec()) {
            Ok(k) => k,
            Err(_) => return Status::NGX_ERROR.into(),
        };
        if ready.fresh && room.secret.is_none() {
            ngx_log_error!(
                NGX_LOG_NOTICE,
                log,
                "waiting room \"{}\": no waiting_room_secret, cookies are signed with a random \
                 key kept in the zone{}",
                room.name,
                if room.state_path.is_some() { " and its state file" } else { "" }
            );
        }
        room.signer = Signer::new(room.secret.as_deref().unwrap_or(&key), &room.name);
        room.links = LinkSigner::new(room.secret.as_deref().unwrap_or(&key), &room.name);
        if room.signer.is_none() || room.links.is_none() {
            return Status::NGX_ERROR.into();
        }
        if !testing {
            let start = ready.fresh && !carried;
            if !room.open_state(log, start, standby) {
                return Status::NGX_ERROR.into();
            }
            if start && !standby {
                // The restored room is in the (perhaps new) file before anyone is let in.
                room.save(log, Save::Start);
            }
        }
        Status::NGX_OK.into()
    })
    .unwrap_or(Status::NGX_ERROR.into())
}
