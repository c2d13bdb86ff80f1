//! The room's API, served by a `waiting_room_api` location: `position`, `heartbeat`, `away`,
//! `leave` and `heartbeat.js`, by the last segment of the URI.

use nginx_sys::{
    ngx_http_request_t, ngx_int_t, NGX_HTTP_FORBIDDEN, NGX_HTTP_GET, NGX_HTTP_HEAD,
    NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_NOT_FOUND, NGX_HTTP_POST,
    NGX_HTTP_SERVICE_UNAVAILABLE, NGX_HTTP_TOO_MANY_REQUESTS,
};
use serde_json::json;

use super::edge;
use crate::conf::Endpoint;
use crate::core::token::{Kind, Token};
use crate::http::{self, cookies, Now};
use crate::pages;
use crate::service::{Decision, Leaving, Outcome, Place, Room, Visit};

/// The largest request body the API takes (beacons send none or a few bytes).
const BODY_MAX: i64 = 4096;

pub extern "C" fn handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    edge::guarded(r, api)
}

fn api(r: &mut ngx_http_request_t) -> ngx_int_t {
    let Some((lcf, room)) = edge::endpoint(r, Endpoint::Api) else {
        return NGX_HTTP_NOT_FOUND as ngx_int_t;
    };
    let uri = r.uri.as_bytes();
    let cut = uri.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    let (uri_prefix, name) = uri.split_at(cut);
    let uri_prefix = String::from_utf8_lossy(uri_prefix).into_owned();
    let name = name.to_vec();
    let read_only = r.method & (NGX_HTTP_GET | NGX_HTTP_HEAD) as usize != 0;
    let post = r.method & NGX_HTTP_POST as usize != 0;
    match &name[..] {
        b"position" | b"heartbeat.js" if !read_only => return http::not_allowed(r, "GET, HEAD"),
        b"heartbeat" | b"leave" | b"away" if !post => return http::not_allowed(r, "POST"),
        b"position" | b"heartbeat.js" | b"heartbeat" | b"leave" | b"away" => {}
        _ => return NGX_HTTP_NOT_FOUND as ngx_int_t,
    }
    if let Err(rc) = http::discard_small_body(r, BODY_MAX) {
        return rc;
    }
    if name == b"heartbeat.js" {
        // The location's own prefix, as configured; for a regex location, the request's.
        let prefix = lcf.own_prefix().unwrap_or(uri_prefix);
        let js = pages::heartbeat_js(&prefix, room.heartbeat_ms());
        http::add_header(r, "Cache-Control", "cache-control", "no-cache");
        return http::send(r, 200, "application/javascript; charset=utf-8", js.as_bytes());
    }
    let now = http::now();
    let token = room.token(cookies::cookies(r, &room.cookie), now.wall_s);
    match &name[..] {
        b"position" => position(r, room, token, now),
        b"heartbeat" => heartbeat(r, room, token, now),
        // leave: at once, and the cookie is cleared; away (a page was left, what heartbeat.js
        // sends): after the grace, and the cookie stays with the kept place.
        _ => {
            let how = if name == b"away" { Leaving::Away } else { Leaving::Now };
            match room.leave(token, now.mono_ms, how) {
                Ok(true) => {
                    if how == Leaving::Now {
                        cookies::clear_cookie(r, &room.cookie);
                    }
                    http::no_content(r)
                }
                Ok(false) => NGX_HTTP_FORBIDDEN as ngx_int_t,
                Err(e) => edge::unusable(r, room, e),
            }
        }
    }
}

fn heartbeat(r: &mut ngx_http_request_t, room: &Room, token: Option<Token>, now: Now) -> ngx_int_t {
    if token.is_some_and(|t| room.touch_live(&t, now.mono_ms)) {
        return http::no_content(r);
    }
    let client = room.client_key(r).map(<[u8]>::to_vec);
    let visit = Visit { join: false, client: client.as_deref() };
    match room.decide(token, now.mono_ms, visit) {
        Ok(Decision { outcome: Some(Outcome::Admitted { session, .. }), epoch, .. }) => {
            if let Some(v) = room.session_cookie(session, epoch, now.wall_s) {
                cookies::set_cookie(r, &room.cookie, &v);
            }
            http::no_content(r)
        }
        Ok(Decision {
            outcome: Some(Outcome::Queued { new_ticket: Some(t), .. }), epoch, ..
        }) => {
            if let Some(v) = room.ticket_cookie(t, epoch, now.wall_s) {
                cookies::set_cookie(r, &room.cookie, &v);
            }
            http::no_content(r)
        }
        Ok(Decision { outcome: Some(_), .. }) => http::no_content(r),
        Ok(Decision { outcome: None, .. }) => NGX_HTTP_FORBIDDEN as ngx_int_t,
        Err(e) => edge::unusable(r, room, e),
    }
}

fn position(r: &mut ngx_http_request_t, room: &Room, token: Option<Token>, now: Now) -> ngx_int_t {
    let claim = room.timing().claim_window_ms;
    // A first contact's page asks at once: this takes their place in line.
    let client = room.client_key(r).map(<[u8]>::to_vec);
    let visit = Visit { join: false, client: client.as_deref() };
    let Decision { outcome, epoch, queue_length, .. } = match room.decide(token, now.mono_ms, visit)
    {
        Ok(d) => d,
        Err(e) => return edge::unusable(r, room, e),
    };
    let admitted = json!({
        "state": "admitted",
        "position": null,
        "queue_length": queue_length,
        "eta_seconds": 0,
        "refresh_seconds": pages::refresh_seconds(1, None, claim),
    });
    match outcome {
        Some(Outcome::Queued { place, new_ticket }) => {
            if let Some(t) = new_ticket {
                let Some(v) = room.ticket_cookie(t, epoch, now.wall_s) else {
                    return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
                };
                cookies::set_cookie(r, &room.cookie, &v);
            }
            http::send_json(r, 200, &queued(&place, claim))
        }
        Some(Outcome::Admitted { session, .. }) => {
            let Some(v) = room.session_cookie(session, epoch, now.wall_s) else {
                return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
            };
            cookies::set_cookie(r, &room.cookie, &v);
            http::send_json(r, 200, &admitted)
        }
        Some(Outcome::Passed) => http::send_json(r, 200, &admitted),
        // The room is off: the page loads the site.
        Some(Outcome::Off) => http::send_json(
            r,
            200,
            &json!({
                "state": "open",
                "position": null,
                "queue_length": queue_length,
                "eta_seconds": 0,
                "refresh_seconds": 1,
            }),
        ),
        Some(Outcome::Closed { over }) => http::send_json(
            r,
            NGX_HTTP_SERVICE_UNAVAILABLE as usize,
            &json!({
                "state": if over { "over" } else { "closed" },
                "position": null,
                "queue_length": queue_length,
                "eta_seconds": null,
                "refresh_seconds": 60,
            }),
        ),
        // Standing by during a binary upgrade, for a ticket newer than the room's last save:
        // at the back of the line for the few seconds until this nginx takes over.
        Some(Outcome::Held { queue_length }) => http::send_json(
            r,
            200,
            &json!({
                "state": "queued",
                "position": queue_length + 1,
                "queue_length": queue_length,
                "eta_seconds": null,
                "refresh_seconds": 3,
            }),
        ),
        Some(Outcome::Limited) => http::send_json(
            r,
            NGX_HTTP_TOO_MANY_REQUESTS as usize,
            &json!({
                "state": "limited",
                "position": null,
                "queue_length": queue_length,
                "eta_seconds": null,
                "refresh_seconds": 30,
            }),
        ),
        Some(Outcome::Full { .. }) => http::send_json(
            r,
            NGX_HTTP_SERVICE_UNAVAILABLE as usize,
            &json!({
                "state": "full",
                "position": null,
                "queue_length": queue_length,
                "eta_seconds": null,
                "refresh_seconds": 60,
            }),
        ),
        // An arrival too old to take its place (the page had been asleep): the page loads
        // again, as a new visitor.
        None if token.is_some_and(|t| t.kind == Kind::Arrival) => http::send_json(
            r,
            403,
            &json!({
                "state": "expired",
                "position": null,
                "queue_length": queue_length,
                "eta_seconds": null,
                "refresh_seconds": 1,
            }),
        ),
        Some(Outcome::Arrived { .. }) | None => http::send_json(
            r,
            403,
            &json!({
                "state": "none",
                "position": null,
                "queue_length": queue_length,
                "eta_seconds": null,
                "refresh_seconds": pages::refresh_seconds(1, None, claim),
            }),
        ),
    }
}

/// What the position endpoint says of a visitor in line: the place, the expected wait and,
/// when the turn is drawn at random, the size of the draw and the longest wait; before the
/// event's start, the seconds until it.
fn queued(p: &Place, claim_window_ms: u64) -> serde_json::Value {
    json!({
        "state": "queued",
        "position": p.position,
        "queue_length": p.queue_length,
        "eta_seconds": p.eta,
        "eta_max_seconds": p.eta_max,
        "draw": p.draw,
        "starts_in": p.starts_in,
        "refresh_seconds": p.refresh_seconds(claim_window_ms),
    })
}
