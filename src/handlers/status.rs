//! The operators' status, served by a `waiting_room_status` location: the room's figures as
//! JSON, in the order the README lists them.

use nginx_sys::{ngx_http_request_t, ngx_int_t, NGX_HTTP_GET, NGX_HTTP_HEAD, NGX_HTTP_NOT_FOUND};
use serde_json::json;

use super::edge;
use crate::conf::Endpoint;
use crate::http;
use crate::service::setting_text;

pub extern "C" fn handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    edge::guarded(r, status)
}

fn status(r: &mut ngx_http_request_t) -> ngx_int_t {
    let Some((_, room)) = edge::endpoint(r, Endpoint::Status) else {
        return NGX_HTTP_NOT_FOUND as ngx_int_t;
    };
    if r.method & (NGX_HTTP_GET | NGX_HTTP_HEAD) as usize == 0 {
        return http::not_allowed(r, "GET, HEAD");
    }
    if let Err(rc) = http::discard_small_body(r, 0) {
        return rc;
    }
    let snap = match room.snapshot() {
        Ok(s) => s,
        Err(e) => return edge::unusable(r, room, e),
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
        "called_late": snap.lapsed,
        "queue_capacity": snap.queue_capacity,
        "standby": snap.standby,
        "session_capacity": snap.session_capacity,
        "admitted_total": snap.totals.admitted_total,
        "admitted_from_queue": snap.totals.admitted_from_queue,
        "joined_total": snap.totals.joined_total,
        "sessions_left": snap.totals.sessions_left,
        "sessions_expired": snap.totals.sessions_expired,
        "tickets_abandoned": snap.totals.tickets_abandoned,
        "tickets_missed": snap.totals.tickets_missed,
        "tickets_left": snap.totals.tickets_left,
        "rejected_full": snap.totals.rejected_full,
        "arrivals": snap.people.arrivals,
        "arrivals_confirmed": snap.people.arrivals_confirmed,
        "sessions_opened": snap.people.sessions_opened,
        "sessions_confirmed": snap.people.sessions_confirmed,
        "refused_not_navigation": snap.people.refused_not_navigation,
        "refused_crawler": snap.people.refused_crawler,
        "refused_client_limit": snap.people.refused_client_limit,
        "model": snap.settings.model().name(),
        "mode": snap.settings.mode().name(),
        "rate": (snap.settings.rate_per_minute != 0).then(|| setting_text(&snap.settings, "rate")),
        "phase": snap.phase.name(),
        "start": (snap.settings.start != 0).then(|| setting_text(&snap.settings, "start")),
        "end": (snap.settings.end != 0).then(|| setting_text(&snap.settings, "end")),
        "in_draw": snap.in_draw,
        "turned_away": snap.turned_away,
        "passed_off": snap.passed,
        "control_changes": snap.changes,
        "exempt_used": snap.exempt.used,
        "exempt_refused": snap.exempt.refused,
        "bypassed": snap.tallies.bypassed,
        "dry_run": snap.tallies.dry_run,
        "ended_by_origin": snap.tallies.ended_by_origin,
    });
    http::send_json(r, 200, &body)
}
