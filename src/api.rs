//! Content handlers: the room's API (`position`, `heartbeat`, `leave`, `heartbeat.js`) and the
//! operators' status page.

use nginx_sys::{
    ngx_http_discard_request_body, ngx_http_request_t, ngx_int_t, NGX_HTTP_FORBIDDEN, NGX_HTTP_GET,
    NGX_HTTP_HEAD, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_NOT_ALLOWED, NGX_HTTP_NOT_FOUND,
    NGX_HTTP_NO_CONTENT, NGX_HTTP_POST, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, NGX_LOG_CRIT, NGX_OK,
};
use ngx::http::HttpModuleLocationConf;
use ngx::ngx_log_error;
use serde_json::json;

use crate::access::{self, Decision, Outcome};
use crate::conf::{Endpoint, Room as RoomConf};
use crate::core::room::{SessionRef, TicketRef};
use crate::core::token::Kind;
use crate::http;
use crate::page;
use crate::wiring::Module;
use crate::zone;

/// The largest request body the API takes (beacons send none or a few bytes).
const BODY_MAX: i64 = 4096;

fn endpoint(r: &ngx_http_request_t, want: Endpoint) -> Option<&'static RoomConf> {
    let lcf = Module::location_conf(r)?;
    match lcf.endpoint {
        // SAFETY: the room was allocated from the configuration pool, alive while the
        // request is.
        Some((e, room)) if e == want => unsafe { room.as_ref() },
        _ => None,
    }
}

fn guarded(r: *mut ngx_http_request_t, f: fn(&mut ngx_http_request_t) -> ngx_int_t) -> ngx_int_t {
    std::panic::catch_unwind(|| {
        // SAFETY: nginx calls content handlers with a live request.
        f(unsafe { &mut *r })
    })
    .unwrap_or(NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t)
}

pub extern "C" fn api_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    guarded(r, api)
}

pub extern "C" fn status_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    guarded(r, status)
}

fn not_allowed(r: &mut ngx_http_request_t, allow: &str) -> ngx_int_t {
    http::add_header(r, "Allow", "allow", allow);
    NGX_HTTP_NOT_ALLOWED as ngx_int_t
}

fn send_json(r: &mut ngx_http_request_t, status: usize, body: serde_json::Value) -> ngx_int_t {
    http::add_header(r, "Cache-Control", "cache-control", "no-store");
    let text = body.to_string();
    http::send(r, status, "application/json", text.as_bytes())
}

fn api(r: &mut ngx_http_request_t) -> ngx_int_t {
    let Some(room) = endpoint(r, Endpoint::Api) else { return NGX_HTTP_NOT_FOUND as ngx_int_t };
    let uri = r.uri.as_bytes().to_vec();
    let cut = uri.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    let (prefix, name) = uri.split_at(cut);
    let name: &[u8] = name;
    let read_only = r.method & (NGX_HTTP_GET | NGX_HTTP_HEAD) as usize != 0;
    let post = r.method & NGX_HTTP_POST as usize != 0;
    match name {
        b"position" | b"heartbeat.js" if !read_only => return not_allowed(r, "GET, HEAD"),
        b"heartbeat" | b"leave" if !post => return not_allowed(r, "POST"),
        b"position" | b"heartbeat.js" | b"heartbeat" | b"leave" => {}
        _ => return NGX_HTTP_NOT_FOUND as ngx_int_t,
    }
    if r.headers_in.content_length_n > BODY_MAX {
        return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE as ngx_int_t;
    }
    // SAFETY: a live request; whatever body it has is not wanted.
    let rc = unsafe { ngx_http_discard_request_body(r) };
    if rc != NGX_OK as ngx_int_t {
        return rc;
    }
    if name == b"heartbeat.js" {
        let prefix = String::from_utf8_lossy(prefix).into_owned();
        let js = page::heartbeat_js(&prefix, room.heartbeat_ms);
        http::add_header(r, "Cache-Control", "cache-control", "no-cache");
        return http::send(r, 200, "application/javascript; charset=utf-8", js.as_bytes());
    }
    let (now_ms, now_s) = http::now();
    let token = access::token(r, room, now_s);
    match name {
        b"position" => position(r, room, token, now_ms, now_s),
        b"heartbeat" => match access::decide(room, token, now_ms, false) {
            Ok(Decision { outcome: Some(Outcome::Admitted { session, .. }), epoch, .. }) => {
                if let Some(v) = access::session_cookie(room, session, epoch, now_s) {
                    http::set_cookie(r, &room.cookie, &v);
                }
                no_content(r)
            }
            Ok(Decision { outcome: Some(_), .. }) => no_content(r),
            Ok(Decision { outcome: None, .. }) => NGX_HTTP_FORBIDDEN as ngx_int_t,
            Err(e) => unusable(r, room, e),
        },
        _ => {
            let t = &room.timing;
            let left = zone::with_room(room, |rm| match access::current(token, rm.epoch()) {
                Some(tok) if tok.kind == Kind::Session => {
                    rm.leave_session(SessionRef { slot: tok.number as u32, id: tok.id }, now_ms, t)
                }
                Some(tok) => rm.leave_ticket(
                    TicketRef { number: tok.number, visitor: tok.visitor },
                    now_ms,
                    t,
                ),
                None => false,
            });
            match left {
                Ok(true) => {
                    http::clear_cookie(r, &room.cookie);
                    no_content(r)
                }
                Ok(false) => NGX_HTTP_FORBIDDEN as ngx_int_t,
                Err(e) => unusable(r, room, e),
            }
        }
    }
}

fn no_content(r: &mut ngx_http_request_t) -> ngx_int_t {
    r.headers_out.status = NGX_HTTP_NO_CONTENT as usize;
    r.headers_out.content_length_n = 0;
    r.set_header_only(1);
    // SAFETY: a live request, header set up above.
    unsafe { nginx_sys::ngx_http_send_header(r) }
}

fn unusable(r: &ngx_http_request_t, room: &RoomConf, e: zone::ZoneError) -> ngx_int_t {
    // SAFETY: a live request's connection and log.
    ngx_log_error!(
        NGX_LOG_CRIT,
        unsafe { (*r.connection).log },
        "waiting room \"{}\" is unusable: {e:?}",
        room.name
    );
    NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t
}

fn position(
    r: &mut ngx_http_request_t,
    room: &RoomConf,
    token: Option<crate::core::token::Token>,
    now_ms: u64,
    now_s: u64,
) -> ngx_int_t {
    let claim = room.timing.claim_window_ms;
    let Decision { outcome, epoch, queue_length } = match access::decide(room, token, now_ms, false)
    {
        Ok(d) => d,
        Err(e) => return unusable(r, room, e),
    };
    match outcome {
        Some(Outcome::Queued { position, queue_length, eta, .. }) => send_json(
            r,
            200,
            json!({
                "state": "queued",
                "position": position,
                "queue_length": queue_length,
                "eta_seconds": eta,
                "refresh_seconds": page::refresh_seconds(position, eta, claim),
            }),
        ),
        Some(Outcome::Admitted { session, .. }) => {
            if let Some(v) = access::session_cookie(room, session, epoch, now_s) {
                http::set_cookie(r, &room.cookie, &v);
            }
            admitted(r, queue_length, claim)
        }
        Some(Outcome::Passed) => admitted(r, queue_length, claim),
        Some(Outcome::Full) | None => send_json(
            r,
            403,
            json!({
                "state": "none",
                "position": null,
                "queue_length": queue_length,
                "eta_seconds": null,
                "refresh_seconds": page::refresh_seconds(1, None, claim),
            }),
        ),
    }
}

fn admitted(r: &mut ngx_http_request_t, queue_length: u64, claim: u64) -> ngx_int_t {
    send_json(
        r,
        200,
        json!({
            "state": "admitted",
            "position": null,
            "queue_length": queue_length,
            "eta_seconds": 0,
            "refresh_seconds": page::refresh_seconds(1, None, claim),
        }),
    )
}

fn status(r: &mut ngx_http_request_t) -> ngx_int_t {
    let Some(room) = endpoint(r, Endpoint::Status) else { return NGX_HTTP_NOT_FOUND as ngx_int_t };
    if r.method & (NGX_HTTP_GET | NGX_HTTP_HEAD) as usize == 0 {
        return not_allowed(r, "GET, HEAD");
    }
    // SAFETY: a live request; the body is not wanted.
    let rc = unsafe { ngx_http_discard_request_body(r) };
    if rc != NGX_OK as ngx_int_t {
        return rc;
    }
    let snap = match zone::with_room(room, |rm| rm.snapshot()) {
        Ok(s) => s,
        Err(e) => return unusable(r, room, e),
    };
    let round = |v: Option<f64>| v.map(|x| (x * 10.0).round() / 10.0);
    let body = json!({
        "room": room.name,
        "active_sessions": snap.active_sessions,
        "max_sessions": snap.max_sessions,
        "queue_length": snap.queue_length,
        "avg_wait_seconds": round(snap.avg_wait_seconds),
        "admitted_per_minute": round(snap.admitted_per_minute),
        "called_per_minute": round(snap.called_per_minute),
        "called_unclaimed": snap.called,
        "queue_capacity": snap.queue_capacity,
        "admitted_total": snap.admitted_total,
        "admitted_from_queue": snap.admitted_from_queue,
        "joined_total": snap.joined_total,
        "sessions_left": snap.sessions_left,
        "sessions_expired": snap.sessions_expired,
        "tickets_abandoned": snap.tickets_abandoned,
        "tickets_missed": snap.tickets_missed,
        "tickets_left": snap.tickets_left,
        "rejected_full": snap.rejected_full,
    });
    send_json(r, 200, body)
}
