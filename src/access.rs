//! The gate: an access-phase handler that lets a visitor with a live session through, admits a
//! new one while there is room, and otherwise holds them in the queue with the queue page.
//!
//! It runs in the access phase, registered last and so run first among that phase's handlers:
//! before `allow`/`deny` and `auth_basic`, and `satisfy any` cannot skip it. Subrequests are
//! never stopped (nginx does not run the access phase for them); after an internal redirect the
//! first decision stands.

use nginx_sys::{
    ngx_array_push, ngx_conf_t, ngx_http_discard_request_body, ngx_http_finalize_request,
    ngx_http_handler_pt, ngx_http_phases_NGX_HTTP_ACCESS_PHASE, ngx_http_request_t, ngx_int_t,
    NGX_DECLINED, NGX_DONE, NGX_ERROR, NGX_HTTP_INTERNAL_SERVER_ERROR,
    NGX_HTTP_SERVICE_UNAVAILABLE, NGX_LOG_CRIT, NGX_OK,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule};
use ngx::ngx_log_error;

use crate::conf::Room as RoomConf;
use crate::core::room::{Entry, Poll, SessionRef, TicketRef};
use crate::core::token::{Kind, Token};
use crate::http::{self, Verdict};
use crate::page::{self, QueueView};
use crate::wiring::Module;
use crate::zone;

/// Longest a ticket cookie is accepted: a ticket is kept alive by its visitor's polls, not by
/// the cookie, but a copied cookie should not be good forever.
const TICKET_TOKEN_SECONDS: u64 = 86_400;
/// How many cookies of the room's name one request may have checked.
const COOKIES_TRIED: usize = 4;

pub fn register(cf: *mut ngx_conf_t) -> ngx_int_t {
    // SAFETY: called from postconfiguration with the http block's `cf`.
    let Some(cmcf) = NgxHttpCoreModule::main_conf_mut(unsafe { &*cf }) else {
        return NGX_ERROR as ngx_int_t;
    };
    let phase = &mut cmcf.phases[ngx_http_phases_NGX_HTTP_ACCESS_PHASE as usize];
    // SAFETY: the phase's handler array was created by the core module for pointers of this
    // type.
    let h = unsafe { ngx_array_push(&mut phase.handlers) } as *mut ngx_http_handler_pt;
    if h.is_null() {
        return NGX_ERROR as ngx_int_t;
    }
    // SAFETY: `h` is the array's fresh element.
    unsafe { *h = Some(access_handler) };
    NGX_OK as ngx_int_t
}

/// What the room decided for a visitor.
pub enum Outcome {
    /// A live session: carry on.
    Passed,
    /// Admitted now: set the session cookie, then carry on.
    Admitted { session: SessionRef, waited: Option<u64> },
    /// In line. `new_ticket` is set when the visitor just joined and needs the ticket cookie.
    Queued { position: u64, queue_length: u64, eta: Option<u64>, new_ticket: Option<TicketRef> },
    /// The queue is as long as the zone can hold.
    Full,
}

/// The first of the request's cookies for `room` that is a valid token.
pub fn token(r: &ngx_http_request_t, room: &RoomConf, now_s: u64) -> Option<Token> {
    let signer = room.signer.as_ref()?;
    // A browser sends one; a request stuffed with copies should not buy many HMACs.
    http::cookies(r, &room.cookie).take(COOKIES_TRIED).find_map(|v| signer.decode(v, now_s))
}

/// What `decide` found.
pub struct Decision {
    /// None when the visitor has no place and `join` was false.
    pub outcome: Option<Outcome>,
    /// The room's epoch, for new tokens.
    pub epoch: u64,
    pub queue_length: u64,
}

/// Decides for a visitor holding `token` (already verified) or none. `join` says whether a
/// visitor without a place may be given one.
pub fn decide(
    room: &RoomConf,
    token: Option<Token>,
    now_ms: u64,
    join: bool,
) -> Result<Decision, zone::ZoneError> {
    let t = &room.timing;
    zone::with_room(room, |rm| {
        let epoch = rm.epoch();
        let outcome = decide_locked(rm, current(token, epoch), now_ms, join, t);
        Decision { outcome, epoch, queue_length: rm.queue_length() }
    })
}

/// `token` if it was issued for the room's current layout.
pub fn current(token: Option<Token>, epoch: u64) -> Option<Token> {
    token.filter(|t| t.epoch == epoch)
}

fn decide_locked(
    rm: &mut crate::core::room::Room,
    token: Option<Token>,
    now_ms: u64,
    join: bool,
    t: &crate::core::room::Timing,
) -> Option<Outcome> {
    {
        match token {
            Some(Token { kind: Kind::Session, number, id, .. }) => {
                let s = SessionRef { slot: number as u32, id };
                if number <= u64::from(u32::MAX) && rm.touch_session(s, now_ms, t) {
                    return Some(Outcome::Passed);
                }
            }
            Some(Token { kind: Kind::Ticket, number, visitor, issued, .. }) => {
                let ticket = TicketRef { number, visitor };
                match rm.poll(ticket, now_ms, t) {
                    Poll::Admitted(session) => {
                        let waited = (now_ms / 1000).saturating_sub(issued);
                        return Some(Outcome::Admitted { session, waited: Some(waited) });
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
            None => {}
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
            Entry::Full => Outcome::Full,
        })
    }
}

/// The common case, a visitor inside coming back, checked without the zone's lock; `false`
/// sends the request through the locked path, which decides every case.
fn live_without_lock(room: &RoomConf, t: &Token, now_ms: u64) -> bool {
    let Some((layout, epoch)) = room.seen_layout.get() else { return false };
    if t.kind != Kind::Session || t.epoch != epoch || t.number > u64::from(u32::MAX) {
        return false;
    }
    let s = SessionRef { slot: t.number as u32, id: t.id };
    // SAFETY: `room.region` is the zone's region, mapped for the life of the cycle; `layout`
    // and `epoch` were read from its header under the lock. After a reload laid the zone out
    // anew the layout may be stale, which `touch_session_unlocked` allows for.
    unsafe {
        crate::core::room::touch_session_unlocked(room.region, &layout, s, now_ms, &room.timing)
    }
}

/// The cookie value for a new session.
pub fn session_cookie(room: &RoomConf, s: SessionRef, epoch: u64, now_s: u64) -> Option<String> {
    let signer = room.signer.as_ref()?;
    Some(signer.encode(&Token {
        kind: Kind::Session,
        number: u64::from(s.slot),
        id: s.id,
        visitor: s.id,
        issued: now_s,
        expires: now_s + room.timing.session_ms.div_ceil(1000) + 1,
        epoch,
    }))
}

pub fn ticket_cookie(room: &RoomConf, t: TicketRef, epoch: u64, now_s: u64) -> Option<String> {
    let signer = room.signer.as_ref()?;
    Some(signer.encode(&Token {
        kind: Kind::Ticket,
        number: t.number,
        id: 0,
        visitor: t.visitor,
        issued: now_s,
        expires: now_s + TICKET_TOKEN_SECONDS,
        epoch,
    }))
}

extern "C" fn access_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    std::panic::catch_unwind(|| {
        // SAFETY: nginx calls phase handlers with a live request.
        let r = unsafe { &mut *r };
        access(r)
    })
    .unwrap_or(NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t)
}

fn access(r: &mut ngx_http_request_t) -> ngx_int_t {
    let declined = NGX_DECLINED as ngx_int_t;
    let Some(lcf) = Module::location_conf(&*r) else { return declined };
    // SAFETY: a non-null room pointer in a location configuration points at a room allocated
    // from the cycle's configuration pool, alive while the request is.
    let Some(room) = (unsafe { lcf.room.as_ref() }) else { return declined };
    // The room's own API and status locations answer whatever the room decides, even when a
    // `waiting_room` at an outer level would guard them.
    if lcf.endpoint.is_some() || !core::ptr::eq(r.main, r) {
        return declined;
    }
    // After an internal redirect, a pass stands for the room that gave it.
    let room_id = room as *const RoomConf as usize;
    if http::verdict(r).is_some_and(|v| v.passed && v.room == room_id) {
        return declined;
    }
    let (now_ms, now_s) = http::now();
    let token = token(r, room, now_s);
    if token.is_some_and(|t| live_without_lock(room, &t, now_ms)) {
        let v =
            Verdict { status: Some("PASSED"), passed: true, room: room_id, ..Verdict::default() };
        http::set_verdict(r, v);
        return declined;
    }
    let (outcome, epoch) = match decide(room, token, now_ms, true) {
        Ok(Decision { outcome: Some(o), epoch, .. }) => (o, epoch),
        Ok(Decision { outcome: None, .. }) => return declined,
        Err(e) => {
            // SAFETY: a live request's connection and its log.
            let log = unsafe { (*r.connection).log };
            ngx_log_error!(NGX_LOG_CRIT, log, "waiting room \"{}\" is unusable: {e:?}", room.name);
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        }
    };
    match outcome {
        Outcome::Passed => {
            http::set_verdict(
                r,
                Verdict {
                    status: Some("PASSED"),
                    passed: true,
                    room: room_id,
                    ..Verdict::default()
                },
            );
            declined
        }
        Outcome::Admitted { session, waited } => {
            let Some(value) = session_cookie(room, session, epoch, now_s) else {
                return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
            };
            http::set_cookie(r, &room.cookie, &value);
            http::set_verdict(
                r,
                Verdict {
                    status: Some("ADMITTED"),
                    wait: waited,
                    passed: true,
                    room: room_id,
                    ..Verdict::default()
                },
            );
            declined
        }
        Outcome::Queued { position, queue_length, eta, new_ticket } => {
            if let Some(t) = new_ticket {
                let Some(value) = ticket_cookie(room, t, epoch, now_s) else {
                    return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
                };
                http::set_cookie(r, &room.cookie, &value);
            }
            http::set_verdict(
                r,
                Verdict {
                    status: Some("QUEUED"),
                    position: Some(position),
                    wait: eta,
                    ..Verdict::default()
                },
            );
            let refresh = page::refresh_seconds(position, eta, room.timing.claim_window_ms);
            let view = QueueView {
                room: &room.name,
                position,
                queue_length,
                eta_seconds: eta,
                refresh_seconds: refresh,
                api: lcf.api(),
            };
            let body = page::queue_page(lcf.page.as_deref().unwrap_or(page::QUEUE_PAGE), &view);
            respond(r, lcf.queue_status, refresh, body.as_bytes())
        }
        Outcome::Full => {
            http::set_verdict(r, Verdict { status: Some("REJECTED"), ..Verdict::default() });
            respond(r, NGX_HTTP_SERVICE_UNAVAILABLE as usize, 60, page::FULL_PAGE.as_bytes())
        }
    }
}

/// Sends a page of our own from the access phase and finishes the request.
fn respond(r: &mut ngx_http_request_t, status: usize, retry_after: u64, body: &[u8]) -> ngx_int_t {
    // SAFETY: a live main request; the body is not wanted, whatever the method.
    let rc = unsafe { ngx_http_discard_request_body(r) };
    if rc != NGX_OK as ngx_int_t {
        return rc;
    }
    http::add_header(r, "Cache-Control", "cache-control", "no-store");
    http::add_header(r, "Retry-After", "retry-after", &retry_after.to_string());
    let rc = http::send(r, status, "text/html; charset=utf-8", body);
    // SAFETY: the response is complete; finishing the request is ours to do, as in a content
    // handler, and the phase engine is told with NGX_DONE that it is done.
    unsafe { ngx_http_finalize_request(r, rc) };
    NGX_DONE as ngx_int_t
}
