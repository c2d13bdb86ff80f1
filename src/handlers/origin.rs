//! Commands from the origin: a response header that the room acts on and removes before the
//! response leaves nginx.
//!
//! `X-Waiting-Room-Command: end` ends the session of the visitor the response is for (after a
//! checkout, a logout): its slot goes to the next in line at once, and the room's cookie is
//! cleared. The header is removed from every response, guarded or not, so that it never reaches
//! a browser; an unknown command is logged and ignored.
//!
//! A header filter: it runs for every response, so it does nothing but look for the header
//! until it finds one.

use core::ptr;

use nginx_sys::{
    ngx_http_output_header_filter_pt, ngx_http_request_t, ngx_http_top_header_filter, ngx_int_t,
    ngx_list_part_t, ngx_table_elt_t, NGX_ERROR, NGX_LOG_INFO, NGX_LOG_WARN, NGX_OK,
};
use ngx::http::HttpModuleLocationConf;
use ngx::ngx_log_error;

use crate::conf::Module;
use crate::core::guard;
use crate::http::{self, cookies, verdict};
use crate::service::{Leaving, Room};

/// The header's name, in lower case.
const HEADER: &[u8] = b"x-waiting-room-command";

/// The next header filter in nginx's chain.
static mut NEXT: ngx_http_output_header_filter_pt = None;

pub fn register() -> ngx_int_t {
    // SAFETY: postconfiguration runs in one thread, while nginx builds the filter chain the
    // same way for every module: take the top, put ours in its place.
    unsafe {
        NEXT = ngx_http_top_header_filter;
        ngx_http_top_header_filter = Some(header_filter);
    }
    NGX_OK as ngx_int_t
}

unsafe extern "C" fn header_filter(r: *mut ngx_http_request_t) -> ngx_int_t {
    // A failure here must not keep the response from going out.
    let _ = guard::catch(|| {
        // SAFETY: nginx calls header filters with a live request.
        let r = unsafe { &mut *r };
        if let Some(command) = take_command(r) {
            obey(r, &command);
        }
    });
    // SAFETY: the filter that was on top when ours was put there; set once, before any request.
    match unsafe { NEXT } {
        // SAFETY: as above, with the request nginx gave us.
        Some(next) => unsafe { next(r) },
        None => NGX_ERROR as ngx_int_t,
    }
}

/// Removes every command header from the response; the value of the last one.
fn take_command(r: &mut ngx_http_request_t) -> Option<Vec<u8>> {
    let mut found = None;
    let mut part: *mut ngx_list_part_t = &mut r.headers_out.headers.part;
    // SAFETY: the response header list of a live request: parts linked by `next`, each with
    // `nelts` elements; a header whose `hash` is 0 is one nginx skips (a removed one).
    unsafe {
        while let Some(p) = part.as_mut() {
            let elts = p.elts as *mut ngx_table_elt_t;
            for i in 0..p.nelts {
                let h = &mut *elts.add(i);
                if h.hash != 0 && http::str_bytes(&h.key).eq_ignore_ascii_case(HEADER) {
                    found = Some(http::str_bytes(&h.value).to_vec());
                    h.hash = 0;
                }
            }
            part = p.next;
        }
    }
    found
}

/// Acts on a command for the visitor of `r`.
fn obey(r: &mut ngx_http_request_t, command: &[u8]) {
    // SAFETY: a live request's connection and its log.
    let log = unsafe { (*r.connection).log };
    if !ptr::eq(r.main, r) {
        return;
    }
    let command = command.trim_ascii();
    if !command.eq_ignore_ascii_case(b"end") {
        let shown = String::from_utf8_lossy(command);
        ngx_log_error!(
            NGX_LOG_WARN,
            log,
            "waiting room: unknown command \"{shown}\" in the upstream's X-Waiting-Room-Command \
             header, ignored"
        );
        return;
    }
    let Some(room) = room_of(r) else { return };
    let now = http::now();
    let token = room.token(cookies::cookies(r, &room.cookie), now.wall_s);
    if token.is_none() {
        return;
    }
    match room.leave(token, now.mono_ms, Leaving::Now) {
        Ok(true) => {
            room.tally(|t| t.ended_by_origin += 1);
            cookies::clear_cookie(r, &room.cookie);
            ngx_log_error!(
                NGX_LOG_INFO,
                log,
                "waiting room \"{}\": the origin ended a session",
                room.name
            );
        }
        // Already over, or a place in line: nothing the origin can end.
        Ok(false) => {}
        Err(e) => {
            ngx_log_error!(
                NGX_LOG_WARN,
                log,
                "waiting room \"{}\": the origin's command was not carried out: {e}",
                room.name
            );
        }
    }
}

/// The room that let the request in, or else the one guarding its location.
fn room_of(r: &ngx_http_request_t) -> Option<&'static Room> {
    if let Some(v) = verdict::get(r).filter(|v| v.passed && v.room != 0) {
        // SAFETY: a verdict's room is the address of a room of the configuration the request
        // runs under, which lives as long as the request.
        return unsafe { (v.room as *const Room).as_ref() };
    }
    Module::location_conf(r)?.room()
}
