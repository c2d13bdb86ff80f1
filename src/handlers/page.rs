//! The pages the gate sends a visitor: which one, in which language, with which headers; and
//! the room's own arguments on the queue page's links.
//!
//! * Without JavaScript the queue page reloads itself with a `Refresh` header (announced on the
//!   page, and stoppable there); the page's script cancels it and polls instead.
//! * `wr_reload=off` (or `on`) turns that reload off (or on again) for the browser session, with
//!   a cookie, and sends the visitor back to the page without the argument.
//! * `wr_check=1` is where a first contact's page goes next: with the room's cookie back, on to
//!   the page without the argument; without it, the "cookies are needed" page.

use nginx_sys::{
    ngx_http_discard_request_body, ngx_http_finalize_request, ngx_http_request_t, ngx_int_t,
    NGX_DONE, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_POST, NGX_HTTP_SEE_OTHER, NGX_LOG_ERR,
    NGX_OK,
};
use ngx::ngx_log_error;

use crate::conf::LocConf;
use crate::core::link;
use crate::http::{self, cookies, str_bytes};
use crate::pages::render::{Kind, View};
use crate::pages::{same_site_path, with_room_arg};
use crate::service::Place;

/// The cookie that keeps a visitor's choice to stop the page's reloading.
pub const RELOAD_COOKIE: &str = "wr_reload";

/// The room's own arguments in a query string.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct RoomArgs {
    check: bool,
    reload: Option<bool>,
}

fn room_args(args: &[u8]) -> RoomArgs {
    let mut a = RoomArgs::default();
    for pair in args.split(|&b| b == b'&') {
        match pair {
            b"wr_check=1" => a.check = true,
            b"wr_reload=off" => a.reload = Some(false),
            b"wr_reload=on" => a.reload = Some(true),
            _ => {}
        }
    }
    a
}

/// Who the queue page is for.
#[derive(Clone, Copy, Debug, Default)]
pub struct Visit {
    /// A first contact without a place yet.
    pub arrival: bool,
    /// Sent to the back because the ticket they came with is no longer in line.
    pub lost: bool,
}

/// The queue page (or what its arguments ask for) for a visitor at `place`, who checks again
/// every `refresh` seconds.
pub fn queue(
    r: &mut ngx_http_request_t,
    lcf: &LocConf,
    place: &Place,
    refresh: u64,
    visit: Visit,
) -> ngx_int_t {
    let a = room_args(str_bytes(&r.args));
    if let Some(on) = a.reload {
        if on {
            cookies::clear_cookie(r, RELOAD_COOKIE);
        } else {
            cookies::set_cookie(r, RELOAD_COOKIE, "off");
        }
        return back_to_page(r);
    }
    if a.check {
        if visit.arrival {
            let page = Page { kind: Kind::Cookies, refresh: 0, visit: Visit::default() };
            return send(r, lcf, page, &Place::default(), lcf.queue_status);
        }
        return back_to_page(r);
    }
    send(r, lcf, Page { kind: Kind::Queue, refresh, visit }, place, lcf.queue_status)
}

/// A page without a place: full, closed, over.
pub fn other(
    r: &mut ngx_http_request_t,
    lcf: &LocConf,
    kind: Kind,
    status: usize,
    retry_after: u64,
) -> ngx_int_t {
    let page = Page { kind, refresh: retry_after, visit: Visit::default() };
    send(r, lcf, page, &Place::default(), status)
}

/// The same URL without the room's arguments, by a `303`.
fn back_to_page(r: &mut ngx_http_request_t) -> ngx_int_t {
    let to = link::without_arg(str_bytes(&r.unparsed_uri));
    finish(r, |r| {
        http::add_header(r, "Cache-Control", "cache-control", "no-store");
        http::add_header_bytes(r, "Location", "location", &to);
        http::send(r, NGX_HTTP_SEE_OTHER as usize, "text/plain; charset=utf-8", b"See the page.\n")
    })
}

/// Answers the request with what `respond` sends, its body unread, and ends it.
fn finish(
    r: &mut ngx_http_request_t,
    respond: impl FnOnce(&mut ngx_http_request_t) -> ngx_int_t,
) -> ngx_int_t {
    // SAFETY: a live main request; the body is not wanted, whatever the method.
    let rc = unsafe { ngx_http_discard_request_body(r) };
    if rc != NGX_OK as ngx_int_t {
        return rc;
    }
    let rc = respond(r);
    // SAFETY: the response is complete; finishing the request is ours to do, as in a content
    // handler, and the phase engine is told with NGX_DONE that it is done.
    unsafe { ngx_http_finalize_request(r, rc) };
    NGX_DONE as ngx_int_t
}

/// Which page, checking again when, for whom.
struct Page {
    kind: Kind,
    refresh: u64,
    visit: Visit,
}

fn send(
    r: &mut ngx_http_request_t,
    lcf: &LocConf,
    page: Page,
    place: &Place,
    status: usize,
) -> ngx_int_t {
    let Page { kind, refresh, visit } = page;
    let arrival = visit.arrival;
    let Some(pages) = lcf.pages.as_deref() else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    let lang = pages.language(http::header_in(r, "accept-language"));
    let uri = String::from_utf8_lossy(&link::without_arg(str_bytes(&r.unparsed_uri))).into_owned();
    let form = r.method as u32 == NGX_HTTP_POST;
    let back = match (form, http::header_in(r, "referer"), http::header_in(r, "host")) {
        // Not the room's own API (a page's check): that is no form to go back to.
        (true, Some(referer), Some(host)) => {
            same_site_path(referer, host).filter(|p| !p.starts_with(lcf.api()))
        }
        _ => None,
    };
    let reload_off = cookies::cookies(r, RELOAD_COOKIE).any(|v| v == b"off");
    let view = View {
        room: lcf.room().map_or("", |r| r.name.as_str()),
        place: *place,
        refresh,
        api: lcf.api(),
        arrival,
        lost: visit.lost,
        reload_off,
        uri: &uri,
        form,
        back: back.as_deref(),
    };
    let body = match pages.render(kind, lang, &view) {
        Ok(body) => body,
        Err(e) => {
            // SAFETY: a live request's connection and log.
            let log = unsafe { (*r.connection).log };
            ngx_log_error!(NGX_LOG_ERR, log, "waiting room: the {} page: {e}", kind.name());
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        }
    };
    let reload = match kind {
        Kind::Queue if !reload_off => Some(if arrival {
            format!("{refresh}; url={}", with_room_arg(&uri, "wr_check=1"))
        } else if let Some(back) = &back {
            format!("{refresh}; url={back}")
        } else {
            refresh.to_string()
        }),
        _ => None,
    };
    let vary = if pages.multilingual() { "Accept, Accept-Language" } else { "Accept" };
    finish(r, |r| {
        http::add_header(r, "Cache-Control", "cache-control", "no-store");
        if kind != Kind::Cookies {
            http::add_header(r, "Retry-After", "retry-after", &refresh.to_string());
        }
        http::add_header(r, "Vary", "vary", vary);
        http::add_header(r, "Content-Language", "content-language", lang.code());
        if let Some(reload) = &reload {
            http::add_header(r, "Refresh", "refresh", reload);
        }
        http::send(r, status, "text/html; charset=utf-8", body.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_room_arguments_are_read_exactly() {
        assert_eq!(room_args(b""), RoomArgs::default());
        assert_eq!(room_args(b"a=1&wr_check=1"), RoomArgs { check: true, reload: None });
        assert_eq!(room_args(b"wr_reload=off"), RoomArgs { check: false, reload: Some(false) });
        assert_eq!(room_args(b"wr_reload=on&x"), RoomArgs { check: false, reload: Some(true) });
        assert_eq!(room_args(b"wr_check=2&wr_reload=maybe"), RoomArgs::default());
    }
}
