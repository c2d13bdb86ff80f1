//! The gate: an access-phase handler that lets a visitor with a live session through, admits a
//! new one while there is room, and otherwise holds them in the queue with the queue page.
//!
//! It runs after the access phase (first in the precontent phase), so that requests that
//! `allow`/`deny`, `auth_basic` or `auth_request` refuse never take a place; with
//! `waiting_room_gate before_access` it runs first in the access phase instead (registered last
//! and so run first among that phase's handlers), before any access check, and `satisfy any`
//! cannot skip it. Subrequests are never stopped; after an internal redirect the first decision
//! stands.
//!
//! `waiting_room_bypass` lets requests past the room before anything else, without counting
//! them. With `waiting_room_dry_run on`, every decision is made, counted, logged and shown in
//! `$waiting_room_status` (`QUEUED_DRY_RUN` …), but the request goes on as if let in.
//!
//! Only a page load may be given a place: other requests without one get a short refusal.
//! Known crawlers never hold one. A first contact is given an arrival, not a place: the place
//! is taken when the browser comes back with the cookie.
//!
//! A page load carrying an exempt link (`wr_exempt=`) is given a session at once, before the
//! room decides anything else, and sent to the same URL without the link (a `302`); a link
//! that gives no session is logged and ignored.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use nginx_sys::{
    ngx_array_push, ngx_conf_t, ngx_http_discard_request_body, ngx_http_finalize_request,
    ngx_http_handler_pt, ngx_http_phases_NGX_HTTP_ACCESS_PHASE,
    ngx_http_phases_NGX_HTTP_PRECONTENT_PHASE, ngx_http_request_t, ngx_http_test_predicates,
    ngx_int_t, sockaddr_in, sockaddr_in6, AF_INET, AF_INET6, NGX_DECLINED, NGX_DONE, NGX_ERROR,
    NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_MOVED_TEMPORARILY, NGX_HTTP_SERVICE_UNAVAILABLE,
    NGX_HTTP_TOO_MANY_REQUESTS, NGX_LOG_INFO, NGX_LOG_NOTICE, NGX_LOG_WARN, NGX_OK,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule};
use ngx::ngx_log_error;

use super::{edge, page};
use crate::conf::{Bypass, Crawlers, Gate, LocConf, LogLevel, Module};
use crate::core::layout::People;
use crate::core::link;
use crate::core::request::{is_known_crawler, is_navigation, prefers_json, Method};
use crate::core::token::Kind as TokenKind;
use crate::http::cookies;
use crate::http::verdict::{self, Verdict};
use crate::http::{self, str_bytes, Now};
use crate::pages::render::Kind;
use crate::service::{Decision, LinkUsed, Outcome, Place, Refused, Room, Unusable, Visit};

/// How soon a newcomer held while the room stands by asks again.
const HELD_REFRESH_SECONDS: u64 = 3;

/// How often a full line is logged again, per worker and room.
const FULL_LOG_MS: u64 = 10_000;

/// How often, at most, a link with a bad signature is logged at `warn`, per worker and room
/// (at `info` in between).
const FORGED_LOG_MS: u64 = 10_000;

/// How soon a first contact's page asks again without its script (with it, at once).
const ARRIVAL_REFRESH_SECONDS: u64 = 2;

/// `Retry-After` of a short refusal.
const REFUSE_RETRY_SECONDS: u64 = 10;
/// `Retry-After` of the "closed" and "event over" pages.
const CLOSED_RETRY_SECONDS: u64 = 300;

pub fn register(cf: *mut ngx_conf_t) -> ngx_int_t {
    // SAFETY: called from postconfiguration with the http block's `cf`.
    let Some(cmcf) = NgxHttpCoreModule::main_conf_mut(unsafe { &*cf }) else {
        return NGX_ERROR as ngx_int_t;
    };
    let phases: [(usize, unsafe extern "C" fn(*mut ngx_http_request_t) -> ngx_int_t); 2] = [
        (ngx_http_phases_NGX_HTTP_ACCESS_PHASE as usize, before_access),
        (ngx_http_phases_NGX_HTTP_PRECONTENT_PHASE as usize, after_access),
    ];
    for (phase, handler) in phases {
        let phase = &mut cmcf.phases[phase];
        // SAFETY: the phase's handler array was created by the core module for pointers of
        // this type.
        let h = unsafe { ngx_array_push(&mut phase.handlers) } as *mut ngx_http_handler_pt;
        if h.is_null() {
            return NGX_ERROR as ngx_int_t;
        }
        // SAFETY: `h` is the array's fresh element.
        unsafe { *h = Some(handler) };
    }
    NGX_OK as ngx_int_t
}

extern "C" fn before_access(r: *mut ngx_http_request_t) -> ngx_int_t {
    edge::guarded(r, |r| gate(r, Gate::BeforeAccess))
}

extern "C" fn after_access(r: *mut ngx_http_request_t) -> ngx_int_t {
    edge::guarded(r, |r| gate(r, Gate::AfterAccess))
}

fn passed(r: &ngx_http_request_t, room: usize) -> ngx_int_t {
    verdict::set(r, Verdict { status: Some("PASSED"), passed: true, room, ..Verdict::default() });
    NGX_DECLINED as ngx_int_t
}

fn gate(r: &mut ngx_http_request_t, phase: Gate) -> ngx_int_t {
    let declined = NGX_DECLINED as ngx_int_t;
    let Some(lcf) = Module::location_conf(&*r) else { return declined };
    let Some(room) = lcf.room() else { return declined };
    // The room's own API and status locations answer whatever the room decides, even when a
    // `waiting_room` at an outer level would guard them.
    // An error page (`error_page`) answers a request already decided: refused by an access
    // check, or failed inside; it takes no place.
    if lcf.endpoint.is_some()
        || !core::ptr::eq(r.main, r)
        || lcf.gate != Some(phase)
        || r.error_page() != 0
    {
        return declined;
    }
    // After an internal redirect, a pass stands for the room that gave it.
    let room_id = room as *const Room as usize;
    if verdict::get(r).is_some_and(|v| v.passed && v.room == room_id) {
        return declined;
    }
    if lcf.bypass.as_ref().is_some_and(|b| bypassed(r, b)) {
        room.tally(|t| t.bypassed += 1);
        let v =
            Verdict { status: Some("BYPASSED"), passed: true, room: room_id, ..Verdict::default() };
        verdict::set(r, v);
        return declined;
    }
    let now = http::now();
    let token = room.token(cookies::cookies(r, &room.cookie), now.wall_s);
    // A ticket the line no longer holds: if this visit is sent to the back, the page says why.
    let had_ticket = token.as_ref().is_some_and(|t| t.kind == TokenKind::Ticket);
    if token.is_some_and(|t| room.touch_live(&t, now.mono_ms)) {
        return passed(r, room_id);
    }
    let (method, headers, ua) = http::request_kind(r);
    // An app asking for JSON may take a place as a page load may, and is answered in JSON.
    let app = method != Method::Other && prefers_json(headers.accept);
    let join = is_navigation(method, &headers) || app;
    let crawler = is_known_crawler(ua) || crawler_named(r, lcf);
    if crawler {
        return match lcf.crawlers {
            Some(Crawlers::Pass) => {
                room.tally(|t| t.bypassed += 1);
                let v = Verdict { status: Some("BYPASSED"), ..Verdict::default() };
                verdict::set(r, v);
                declined
            }
            _ => match room.refused(now.mono_ms, |p| p.refused_crawler += 1) {
                Ok(Refused::Off) => off(r),
                to_log => {
                    room.log_people(counted(to_log));
                    stop(r, lcf, room, Stop::Crawler).unwrap_or_else(|| {
                        if app {
                            verdict::set(r, status_only("REFUSED"));
                            let a = AppAnswer::new("refused", REFUSE_RETRY_SECONDS);
                            return a.send(r, lcf, lcf.refuse_status);
                        }
                        refuse(r, lcf.refuse_status, "REFUSED", None)
                    })
                }
            },
        };
    }
    // An exempt link, on a page load only: a prefetch or a link preview does not use it up.
    if join {
        if let Some(value) = link::arg(str_bytes(&r.args)).map(<[u8]>::to_vec) {
            if let Some(rc) = exempt(r, room, &value, now) {
                return rc;
            }
        }
    }
    // Not a page load and no cookie of the room: nothing to decide (one lock, to count it).
    let outcome = if !join && token.is_none() {
        None
    } else {
        let client = room.client_key(r).map(<[u8]>::to_vec);
        let visit = Visit { join, client: client.as_deref() };
        match room.decide(token, now.mono_ms, visit) {
            Ok(Decision { outcome, epoch, to_log, .. }) => {
                room.log_people(to_log);
                outcome.map(|o| (o, epoch))
            }
            Err(e) => return edge::unusable(r, room, e),
        }
    };
    let Some((outcome, epoch)) = outcome else {
        // Not a page load, and no place: nothing is taken.
        return match room.refused(now.mono_ms, |p| p.refused_not_navigation += 1) {
            // The room is off: what could take no place goes through.
            Ok(Refused::Off) => off(r),
            to_log => {
                room.log_people(counted(to_log));
                stop(r, lcf, room, Stop::NotPageLoad)
                    .unwrap_or_else(|| refuse(r, lcf.refuse_status, "REFUSED", None))
            }
        };
    };
    match outcome {
        Outcome::Passed => passed(r, room_id),
        Outcome::Admitted { session, waited } => {
            let Some(value) = room.session_cookie(session, epoch, now.wall_s) else {
                return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
            };
            cookies::set_cookie(r, &room.cookie, &value);
            let v = Verdict {
                status: Some("ADMITTED"),
                wait: waited,
                passed: true,
                room: room_id,
                ..Verdict::default()
            };
            verdict::set(r, v);
            declined
        }
        // Standing by for a moment (a binary upgrade): at the back of the line as it is, with
        // no ticket yet; the page asks again soon and gets one once this nginx takes over.
        Outcome::Held { queue_length } => {
            let position = queue_length + 1;
            if let Some(rc) = stop(r, lcf, room, Stop::Queued(position)) {
                return rc;
            }
            if !join {
                return refuse(r, lcf.refuse_status, "QUEUED", Some(position));
            }
            verdict::set(
                r,
                Verdict { status: Some("QUEUED"), position: Some(position), ..Verdict::default() },
            );
            let place = Place { position, queue_length, ..Place::default() };
            if app {
                let a = AppAnswer::new("queued", HELD_REFRESH_SECONDS).at(&place);
                return a.send(r, lcf, lcf.queue_status);
            }
            page::queue(r, lcf, &place, HELD_REFRESH_SECONDS, page::Visit::default())
        }
        // A first contact: the back of the line, no place until the browser comes back with
        // the cookie (the page asks at once).
        Outcome::Arrived { arrival, place } => {
            let Some(value) = room.arrival_cookie(arrival, epoch, now.wall_s) else {
                return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
            };
            cookies::set_cookie(r, &room.cookie, &value);
            if let Some(rc) = stop(r, lcf, room, Stop::Arrived(place.position)) {
                return rc;
            }
            let v = Verdict {
                status: Some("ARRIVED"),
                position: Some(place.position),
                wait: place.eta,
                ..Verdict::default()
            };
            verdict::set(r, v);
            if app {
                // Back at once with the cookie, to take the place.
                let a = AppAnswer::new("arrived", 0).at(&place);
                return a.send(r, lcf, lcf.queue_status);
            }
            let visit = page::Visit { arrival: true, lost: had_ticket };
            page::queue(r, lcf, &place, ARRIVAL_REFRESH_SECONDS, visit)
        }
        Outcome::Queued { place, new_ticket } => {
            let position = place.position;
            if let Some(t) = new_ticket {
                let Some(value) = room.ticket_cookie(t, epoch, now.wall_s) else {
                    return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
                };
                cookies::set_cookie(r, &room.cookie, &value);
            }
            if let Some(rc) = stop(r, lcf, room, Stop::Queued(position)) {
                return rc;
            }
            if !join {
                // A request of a page's (an image, a script) from someone in line: their
                // place is kept, and the request gets no page.
                return refuse(r, lcf.refuse_status, "QUEUED", Some(position));
            }
            let v = Verdict {
                status: Some("QUEUED"),
                position: Some(position),
                wait: place.eta,
                ..Verdict::default()
            };
            verdict::set(r, v);
            let refresh = place.refresh_seconds(room.timing().claim_window_ms);
            if app {
                let a = AppAnswer::new("queued", refresh).at(&place);
                return a.send(r, lcf, lcf.queue_status);
            }
            page::queue(r, lcf, &place, refresh, page::Visit::default())
        }
        Outcome::Limited => stop(r, lcf, room, Stop::Limited).unwrap_or_else(|| {
            let status = NGX_HTTP_TOO_MANY_REQUESTS as usize;
            if app {
                verdict::set(r, status_only("LIMITED"));
                return AppAnswer::new("limited", 30).send(r, lcf, status);
            }
            refuse(r, status, "LIMITED", None)
        }),
        // The room is off (mode `pass`): through, counted, without a place.
        Outcome::Off => off(r),
        Outcome::Closed { over } => {
            let (status, kind) = if over { ("OVER", Kind::Over) } else { ("CLOSED", Kind::Closed) };
            if let Some(rc) = stop(r, lcf, room, if over { Stop::Over } else { Stop::Closed }) {
                return rc;
            }
            if !join {
                return refuse(r, lcf.closed_status, status, None);
            }
            verdict::set(r, Verdict { status: Some(status), ..Verdict::default() });
            if app {
                let state = if over { "over" } else { "closed" };
                return AppAnswer::new(state, CLOSED_RETRY_SECONDS).send(r, lcf, lcf.closed_status);
            }
            page::other(r, lcf, kind, lcf.closed_status, CLOSED_RETRY_SECONDS)
        }
        Outcome::Full { queue_length } => {
            full(r, room, queue_length, now);
            if let Some(rc) = stop(r, lcf, room, Stop::Full) {
                return rc;
            }
            verdict::set(r, Verdict { status: Some("REJECTED"), ..Verdict::default() });
            if app {
                let mut a = AppAnswer::new("full", 60);
                a.queue_length = Some(queue_length);
                return a.send(r, lcf, NGX_HTTP_SERVICE_UNAVAILABLE as usize);
            }
            page::other(r, lcf, Kind::Full, NGX_HTTP_SERVICE_UNAVAILABLE as usize, 60)
        }
    }
}

/// A decision that holds or refuses the request.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// In line (or held there), at this position.
    Queued(u64),
    /// A first contact sent to the line, at this position.
    Arrived(u64),
    /// Not a page load, and no place.
    NotPageLoad,
    Crawler,
    Limited,
    Closed,
    Over,
    Full,
}

impl Stop {
    /// `$waiting_room_status`, as in a dry run.
    fn dry_status(self) -> &'static str {
        match self {
            Stop::Queued(_) => "QUEUED_DRY_RUN",
            Stop::Arrived(_) => "ARRIVED_DRY_RUN",
            Stop::NotPageLoad | Stop::Crawler => "REFUSED_DRY_RUN",
            Stop::Limited => "LIMITED_DRY_RUN",
            Stop::Closed => "CLOSED_DRY_RUN",
            Stop::Over => "OVER_DRY_RUN",
            Stop::Full => "REJECTED_DRY_RUN",
        }
    }

    fn position(self) -> Option<u64> {
        match self {
            Stop::Queued(p) | Stop::Arrived(p) => Some(p),
            _ => None,
        }
    }
}

/// Logs a decision that holds or refuses the request, at `waiting_room_log_level` (a place in
/// line one level lower, as `limit_req` logs delays); in a dry run, lets the request go on
/// (`Some`), counted.
fn stop(r: &mut ngx_http_request_t, lcf: &LocConf, room: &Room, what: Stop) -> Option<ngx_int_t> {
    let dry = lcf.dry_run == 1;
    let (refused, queued) = lcf.log_level.unwrap_or(LogLevel::Info).levels();
    let level = if what.position().is_some() { queued } else { refused };
    let run = if dry { ", dry run" } else { "" };
    let name = &room.name;
    // SAFETY: a live request's connection and its log.
    let log = unsafe { (*r.connection).log };
    let said = match what {
        Stop::Queued(_) => "holds the request in line",
        Stop::Arrived(_) => "sends a newcomer to the line",
        Stop::NotPageLoad => "refuses a request without a place that is not a page load",
        Stop::Crawler => "refuses a crawler",
        Stop::Limited => "refuses a client over client_limit",
        Stop::Closed => "is closed, newcomer turned away",
        Stop::Over => "has its event over, newcomer turned away",
        Stop::Full => "is full, newcomer turned away",
    };
    let at = what.position().map(|p| format!(" at {p}")).unwrap_or_default();
    ngx_log_error!(level, log, "waiting room \"{name}\" {said}{at}{run}");
    if !dry {
        return None;
    }
    room.tally(|t| t.dry_run += 1);
    let v = Verdict {
        status: Some(what.dry_status()),
        position: what.position(),
        ..Verdict::default()
    };
    verdict::set(r, v);
    Some(NGX_DECLINED as ngx_int_t)
}

/// Whether `waiting_room_bypass` lets the request past the room.
fn bypassed(r: &mut ngx_http_request_t, b: &Bypass) -> bool {
    if !b.nets.is_empty() {
        if let Some(addr) = client_address(r) {
            if b.nets.iter().any(|n| n.contains(&addr)) {
                return true;
            }
        }
    }
    // SAFETY: a live request and the conditions compiled for its configuration.
    !b.conditions.is_null()
        && unsafe { ngx_http_test_predicates(r, b.conditions) } == NGX_DECLINED as ngx_int_t
}

/// The client's address, as the realip module leaves it; an IPv4-mapped IPv6 address as the
/// IPv4 address it is.
fn client_address(r: &ngx_http_request_t) -> Option<IpAddr> {
    // SAFETY: a live request's connection, whose `sockaddr` nginx sets (and the realip module
    // replaces) to an address of the family its first field names.
    unsafe {
        let sa = (*r.connection).sockaddr;
        match u32::from((*sa).sa_family) {
            AF_INET => {
                let sin = &*(sa as *const sockaddr_in);
                Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))))
            }
            AF_INET6 => {
                let sin6 = &*(sa as *const sockaddr_in6);
                let v6 = Ipv6Addr::from(sin6.sin6_addr.__in6_u.__u6_addr8);
                Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4))
            }
            _ => None,
        }
    }
}

/// A page load with exempt link `value`: a session at once and a `302` to the same URL without
/// the link, or `None` when the link gives none (logged): the visitor then goes through the
/// room as any other.
fn exempt(r: &mut ngx_http_request_t, room: &Room, value: &[u8], now: Now) -> Option<ngx_int_t> {
    let client = room.client_key(r).map(<[u8]>::to_vec);
    let used = match room.use_link(value, now.mono_ms, now.wall_s, client.as_deref()) {
        Ok(u) => u,
        Err(e) => return Some(edge::unusable(r, room, e)),
    };
    // SAFETY: a live request's connection and its log.
    let (who, log) = unsafe {
        let c = &*r.connection;
        (String::from_utf8_lossy(str_bytes(&c.addr_text)).into_owned(), c.log)
    };
    let name = &room.name;
    match used {
        LinkUsed::Refused { why, link } => {
            let id = link.map_or_else(String::new, |l| format!(" {:016x}", l.id));
            let warn = why.suspicious() && room.forged_log.ready(now.mono_ms, FORGED_LOG_MS);
            let level = if warn { NGX_LOG_WARN } else { NGX_LOG_INFO };
            ngx_log_error!(
                level,
                log,
                "waiting room \"{name}\": exempt link{id} from {who} refused, {why}; the visitor \
                 goes through the room"
            );
            None
        }
        LinkUsed::Admitted { used, link, epoch } => {
            ngx_log_error!(
                NGX_LOG_NOTICE,
                log,
                "waiting room \"{name}\": exempt link {:016x} used by {who} ({} of {})",
                link.id,
                used.n,
                link.uses
            );
            let Some(value) = room.session_cookie(used.session, epoch, now.wall_s) else {
                return Some(NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t);
            };
            cookies::set_cookie(r, &room.cookie, &value);
            verdict::set(r, Verdict { status: Some("EXEMPT"), ..Verdict::default() });
            let to = link::without_arg(str_bytes(&r.unparsed_uri));
            Some(redirect(r, &to))
        }
    }
}

fn status_only(status: &'static str) -> Verdict {
    Verdict { status: Some(status), ..Verdict::default() }
}

/// The JSON answer to an app (a request whose `Accept` prefers JSON): what the page would
/// show, with the status it would have, and where to ask again.
struct AppAnswer {
    state: &'static str,
    place: Option<Place>,
    queue_length: Option<u64>,
    refresh_seconds: u64,
}

impl AppAnswer {
    fn new(state: &'static str, refresh_seconds: u64) -> AppAnswer {
        AppAnswer { state, place: None, queue_length: None, refresh_seconds }
    }

    fn at(mut self, place: &Place) -> AppAnswer {
        self.place = Some(*place);
        self.queue_length = Some(place.queue_length);
        self
    }

    fn send(&self, r: &mut ngx_http_request_t, lcf: &LocConf, status: usize) -> ngx_int_t {
        let api = lcf.api();
        let p = self.place;
        let body = serde_json::json!({
            "state": self.state,
            "position": p.map(|p| p.position),
            "queue_length": self.queue_length,
            "eta_seconds": p.and_then(|p| p.eta),
            "eta_max_seconds": p.and_then(|p| p.eta_max),
            "draw": p.map_or(0, |p| p.draw),
            "starts_in": p.and_then(|p| p.starts_in),
            "refresh_seconds": self.refresh_seconds,
            "api": {
                "position": format!("{api}position"),
                "heartbeat": format!("{api}heartbeat"),
                "leave": format!("{api}leave"),
            },
        });
        // SAFETY: a live main request; the body is not wanted, whatever the method.
        let rc = unsafe { ngx_http_discard_request_body(r) };
        if rc != NGX_OK as ngx_int_t {
            return rc;
        }
        http::add_header(r, "Retry-After", "retry-after", &self.refresh_seconds.to_string());
        http::add_header(r, "Vary", "vary", "Accept");
        let rc = http::send_json(r, status, &body);
        // SAFETY: as in `respond`.
        unsafe { ngx_http_finalize_request(r, rc) };
        NGX_DONE as ngx_int_t
    }
}

/// A `302` to `to`, from the access phase.
fn redirect(r: &mut ngx_http_request_t, to: &[u8]) -> ngx_int_t {
    // SAFETY: a live main request; the body is not wanted, whatever the method.
    let rc = unsafe { ngx_http_discard_request_body(r) };
    if rc != NGX_OK as ngx_int_t {
        return rc;
    }
    http::add_header(r, "Cache-Control", "cache-control", "no-store");
    http::add_header_bytes(r, "Location", "location", to);
    let status = NGX_HTTP_MOVED_TEMPORARILY as usize;
    let rc = http::send(r, status, "text/plain; charset=utf-8", b"Come in.\n");
    // SAFETY: as in `respond`.
    unsafe { ngx_http_finalize_request(r, rc) };
    NGX_DONE as ngx_int_t
}

/// Through, without a place: the room is off (mode `pass`).
fn off(r: &mut ngx_http_request_t) -> ngx_int_t {
    verdict::set(r, Verdict { status: Some("OFF"), ..Verdict::default() });
    NGX_DECLINED as ngx_int_t
}

/// The counters to log, from a refusal counted.
fn counted(r: Result<Refused, Unusable>) -> Option<(People, People, u64)> {
    match r {
        Ok(Refused::Counted(to_log)) => to_log,
        _ => None,
    }
}

/// The queue page's view of a visitor at `place`.
/// Whether a `waiting_room_crawler` condition names the request a crawler's.
fn crawler_named(r: &mut ngx_http_request_t, lcf: &LocConf) -> bool {
    if lcf.crawler.is_null() {
        return false;
    }
    // SAFETY: a live request and the conditions compiled for its configuration.
    unsafe { ngx_http_test_predicates(r, lcf.crawler) == NGX_DECLINED as ngx_int_t }
}

/// A short answer for a request that takes no place (not a page load, a crawler's, over the
/// per-client limit): the status, `Retry-After`, a line of text.
fn refuse(
    r: &mut ngx_http_request_t,
    status: usize,
    what: &'static str,
    position: Option<u64>,
) -> ngx_int_t {
    verdict::set(r, Verdict { status: Some(what), position, ..Verdict::default() });
    let body: &[u8] = match what {
        "LIMITED" => b"Too many places in the waiting room from this client already.\n",
        "QUEUED" => b"You are in line: the site answers this when it is your turn.\n",
        "CLOSED" => b"The site is not letting anyone new in at the moment.\n",
        "OVER" => b"The event is over.\n",
        _ => b"The site is busy. Open the page in a browser to wait in line.\n",
    };
    // SAFETY: a live main request; the body is not wanted, whatever the method.
    let rc = unsafe { ngx_http_discard_request_body(r) };
    if rc != NGX_OK as ngx_int_t {
        return rc;
    }
    http::add_header(r, "Cache-Control", "cache-control", "no-store");
    http::add_header(r, "Retry-After", "retry-after", &REFUSE_RETRY_SECONDS.to_string());
    http::add_header(r, "Vary", "vary", "Accept");
    let rc = http::send(r, status, "text/plain; charset=utf-8", body);
    // SAFETY: as in `respond`.
    unsafe { ngx_http_finalize_request(r, rc) };
    NGX_DONE as ngx_int_t
}

/// Logs that the line is full, at most every `FULL_LOG_MS` per worker.
fn full(r: &ngx_http_request_t, room: &Room, queue_length: u64, now: Now) {
    if room.full_log.ready(now.mono_ms, FULL_LOG_MS) {
        // SAFETY: a live request's connection and its log.
        let log = unsafe { (*r.connection).log };
        ngx_log_error!(
            NGX_LOG_WARN,
            log,
            "waiting room \"{}\" is full: {queue_length} people in line, newcomers are turned \
             away; a larger zone holds more",
            room.name
        );
    }
}
