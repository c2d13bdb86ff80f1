//! What every handler does at its edge: no panic unwinds into nginx, and a zone that cannot be
//! used answers 500 with a line in the log (not one per request).

use nginx_sys::{ngx_http_request_t, ngx_int_t, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_LOG_CRIT};
use ngx::ngx_log_error;

use ngx::http::HttpModuleLocationConf;

use crate::conf::{Endpoint, LocConf, Module};
use crate::core::guard;
use crate::http;
use crate::service::{Room, Unusable};

/// How often an unusable zone is logged again, per worker.
const UNUSABLE_LOG_MS: u64 = 60_000;

/// Runs a request handler, turning a panic into a 500 instead of letting it unwind into nginx.
pub fn guarded(
    r: *mut ngx_http_request_t,
    f: fn(&mut ngx_http_request_t) -> ngx_int_t,
) -> ngx_int_t {
    guard::catch(|| {
        // SAFETY: nginx calls request handlers with a live request.
        f(unsafe { &mut *r })
    })
    .unwrap_or(NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t)
}

/// Answers 500 for a room whose zone cannot be used, logging it once a minute per worker.
pub fn unusable(r: &ngx_http_request_t, room: &Room, e: Unusable) -> ngx_int_t {
    if room.unusable_log.ready(http::now().mono_ms, UNUSABLE_LOG_MS) {
        // SAFETY: a live request's connection and its log.
        let log = unsafe { (*r.connection).log };
        ngx_log_error!(NGX_LOG_CRIT, log, "waiting room \"{}\" is unusable: {e}", room.name);
    }
    NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t
}

/// The location's configuration and the room whose API or status it serves, for the content
/// handler of that endpoint.
pub fn endpoint(
    r: &ngx_http_request_t,
    want: Endpoint,
) -> Option<(&'static LocConf, &'static Room)> {
    let lcf = Module::location_conf(r)?;
    Some((lcf, lcf.endpoint_room(want)?))
}
