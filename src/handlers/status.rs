//! The operators' status, served by a `waiting_room_status` location: the room's figures as
//! JSON, in the order the README lists them (and its last minutes with `history=1`); the same
//! as Prometheus metrics (text 0.0.4 or OpenMetrics); or, for a browser, the live page that
//! charts them. Chosen by `format=` or by `Accept` (see [`crate::core::metrics::choose`]).

use nginx_sys::{ngx_http_request_t, ngx_int_t, NGX_HTTP_GET, NGX_HTTP_HEAD, NGX_HTTP_NOT_FOUND};
use serde_json::{json, Value};

use super::edge;
use crate::conf::Endpoint;
use crate::core::metrics::{self, Format};
use crate::core::room::Snapshot;
use crate::core::stats::{History, WAIT_UNKNOWN};
use crate::http;
use crate::pages;
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
    let args = http::str_bytes(&r.args).to_vec();
    let accept = http::header_in(r, "accept").map(<[u8]>::to_vec);
    // The answer depends on `Accept`: caches must keep one per value, and none at all here.
    http::add_header(r, "Vary", "vary", "Accept");
    let format = match metrics::choose(&args, accept.as_deref()) {
        Ok(f) => f,
        Err(metrics::UnknownFormat) => {
            let why = "format must be json, html, prometheus or openmetrics";
            return http::send_json(r, 400, &json!({ "error": why }));
        }
    };
    if format == Format::Html {
        // Static: it asks for the figures itself, so the room's zone is not touched.
        http::add_header(r, "Cache-Control", "cache-control", "no-store");
        http::add_header(
            r,
            "Content-Security-Policy",
            "content-security-policy",
            pages::status_page_csp(),
        );
        return http::send(r, 200, format.content_type(), pages::STATUS_PAGE.as_bytes());
    }
    let (snap, eta, history) = match room.status() {
        Ok(s) => s,
        Err(e) => return edge::unusable(r, room, e),
    };
    if format == Format::Json {
        let mut body = figures(&room.name, &snap, eta);
        if metrics::query_flag(&args, b"history") {
            if let Value::Object(m) = &mut body {
                m.insert("history".into(), history_json(&history, http::now().mono_ms));
            }
        }
        return http::send_json(r, 200, &body);
    }
    let text = metrics::prometheus(&room.name, &snap, eta, format == Format::OpenMetrics);
    http::add_header(r, "Cache-Control", "cache-control", "no-store");
    http::send(r, 200, format.content_type(), text.as_bytes())
}

/// The figures, in the README's order (serde_json keeps the order keys are written in).
fn figures(name: &str, snap: &Snapshot, eta: Option<u64>) -> Value {
    let round = |v: Option<f64>| v.map(|x| (x * 10.0).round() / 10.0);
    json!({
        "room": name,
        "active_sessions": snap.active_sessions,
        "max_sessions": snap.max_sessions,
        "queue_length": snap.queue_length,
        "avg_wait_seconds": round(snap.avg_wait_seconds),
        "admitted_per_minute": round(snap.admitted_per_minute),
        "called_per_minute": round(snap.called_per_minute),
        "called_unclaimed": snap.called,
        "called_late": snap.lapsed,
        "queue_capacity": snap.queue_capacity,
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
        "standby": snap.standby,
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
        "estimated_wait_seconds": eta,
    })
}

/// The history, oldest first, each sample dated by how long before `now` it was taken.
fn history_json(h: &History, now: u64) -> Value {
    let samples: Vec<Value> = h
        .iter()
        .map(|s| {
            json!({
                "seconds_ago": now.saturating_sub(s.at) / 1000,
                "active_sessions": s.active,
                "queue_length": s.waiting,
                "admitted_total": s.admitted_total,
                "estimated_wait_seconds": (s.wait_s != WAIT_UNKNOWN).then_some(s.wait_s),
            })
        })
        .collect();
    Value::Array(samples)
}
