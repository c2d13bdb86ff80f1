//! Request helpers the handlers share, with no waiting room logic in them: the clock,
//! response headers, sending a whole response from memory (here); the cookies in and out
//! ([`cookies`]); what the room decided for a request ([`verdict`]) and the variables that
//! show it ([`variables`]).

pub mod cookies;
pub mod variables;
pub mod verdict;

use core::ptr;

use crate::core::request::{Headers, Method};
use nginx_sys::{
    ngx_buf_t, ngx_chain_t, ngx_create_temp_buf, ngx_http_output_filter, ngx_http_request_t,
    ngx_http_send_header, ngx_int_t, ngx_list_push, ngx_pnalloc, ngx_str_t, ngx_table_elt_t,
    NGX_ERROR, NGX_OK,
};

/// The time, from nginx's cached clocks.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    /// Monotonic milliseconds (`ngx_current_msec`): for every duration.
    pub mono_ms: u64,
    /// Wall-clock seconds since the Unix epoch: for dates only (a token's expiry).
    pub wall_s: u64,
}

pub fn now() -> Now {
    // SAFETY: nginx's cached monotonic time, a plain integer it updates in this process.
    let mono_ms = unsafe { nginx_sys::ngx_current_msec } as u64;
    Now { mono_ms, wall_s: nginx_sys::ngx_timeofday().sec.max(0) as u64 }
}

/// The bytes of an nginx string (empty when it has none).
pub fn str_bytes(s: &ngx_str_t) -> &[u8] {
    if s.data.is_null() || s.len == 0 {
        return &[];
    }
    // SAFETY: an nginx string's `data` points at `len` bytes that live as long as the string.
    unsafe { core::slice::from_raw_parts(s.data, s.len) }
}

/// Copies `s` into the request pool.
pub(crate) fn pool_str(r: &ngx_http_request_t, s: &[u8]) -> Option<ngx_str_t> {
    // SAFETY: the pool is the request's, alive while the request is.
    let data = unsafe { ngx_pnalloc(r.pool, s.len().max(1)) } as *mut u8;
    if data.is_null() {
        return None;
    }
    // SAFETY: `data` was just allocated with room for `s`.
    unsafe { ptr::copy_nonoverlapping(s.as_ptr(), data, s.len()) };
    Some(ngx_str_t { len: s.len(), data })
}

/// Adds a response header. `key` and `lowcase` are static: nginx keeps the pointers.
pub fn add_header(
    r: &mut ngx_http_request_t,
    key: &'static str,
    lowcase: &'static str,
    value: &str,
) -> bool {
    add_header_bytes(r, key, lowcase, value.as_bytes())
}

/// [`add_header`] with a value of bytes (a URI as the client sent it).
pub fn add_header_bytes(
    r: &mut ngx_http_request_t,
    key: &'static str,
    lowcase: &'static str,
    value: &[u8],
) -> bool {
    let Some(value) = pool_str(r, value) else { return false };
    // SAFETY: the response header list is initialised for every request.
    let h = unsafe { ngx_list_push(&mut r.headers_out.headers) } as *mut ngx_table_elt_t;
    if h.is_null() {
        return false;
    }
    // SAFETY: `h` is a fresh element of the list; every field nginx reads is set here.
    unsafe {
        (*h).hash = 1;
        (*h).key = ngx_str_t { len: key.len(), data: key.as_ptr() as *mut u8 };
        (*h).value = value;
        (*h).lowcase_key = lowcase.as_ptr() as *mut u8;
        #[cfg(nginx_header_next)]
        {
            (*h).next = ptr::null_mut();
        }
    }
    true
}

pub(crate) fn is_https(r: &ngx_http_request_t) -> bool {
    #[cfg(ngx_feature = "http_ssl")]
    {
        // SAFETY: a request's connection is valid while the request is.
        unsafe { r.connection.as_ref().is_some_and(|c| !c.ssl.is_null()) }
    }
    #[cfg(not(ngx_feature = "http_ssl"))]
    {
        let _ = r;
        false
    }
}

/// Sends a complete response from memory. Returns what a content handler returns.
pub fn send(
    r: &mut ngx_http_request_t,
    status: usize,
    content_type: &'static str,
    body: &[u8],
) -> ngx_int_t {
    r.headers_out.status = status;
    r.headers_out.content_type =
        ngx_str_t { len: content_type.len(), data: content_type.as_ptr() as *mut u8 };
    r.headers_out.content_type_len = content_type.len();
    r.headers_out.content_type_lowcase = ptr::null_mut();
    r.headers_out.content_length_n = body.len() as _;
    // SAFETY: `r` is a live request whose headers are set up above.
    let rc = unsafe { ngx_http_send_header(r) };
    if rc == NGX_ERROR as ngx_int_t
        || rc > NGX_OK as ngx_int_t
        || r.header_only() != 0
        || body.is_empty()
    {
        return rc;
    }
    // SAFETY: the buffer comes from the request pool and is filled before it is sent.
    unsafe {
        let b: *mut ngx_buf_t = ngx_create_temp_buf(r.pool, body.len());
        if b.is_null() {
            return NGX_ERROR as ngx_int_t;
        }
        ptr::copy_nonoverlapping(body.as_ptr(), (*b).last, body.len());
        (*b).last = (*b).last.add(body.len());
        (*b).set_last_buf(u32::from(ptr::eq(r as *const _, r.main)));
        (*b).set_last_in_chain(1);
        let mut out = ngx_chain_t { buf: b, next: ptr::null_mut() };
        ngx_http_output_filter(r, &mut out)
    }
}

/// A `405` with the methods that are allowed.
pub fn not_allowed(r: &mut ngx_http_request_t, allow: &str) -> ngx_int_t {
    add_header(r, "Allow", "allow", allow);
    nginx_sys::NGX_HTTP_NOT_ALLOWED as ngx_int_t
}

/// A `204` with no body.
pub fn no_content(r: &mut ngx_http_request_t) -> ngx_int_t {
    r.headers_out.status = nginx_sys::NGX_HTTP_NO_CONTENT as usize;
    r.headers_out.content_length_n = 0;
    r.set_header_only(1);
    // SAFETY: a live request, its header set up above.
    unsafe { ngx_http_send_header(r) }
}

/// A JSON answer that nobody may cache.
pub fn send_json(r: &mut ngx_http_request_t, status: usize, body: &serde_json::Value) -> ngx_int_t {
    add_header(r, "Cache-Control", "cache-control", "no-store");
    send(r, status, "application/json", body.to_string().as_bytes())
}

/// Throws away a request body of at most `max` bytes. A larger one, or one whose size is not
/// declared (chunked, which could go on without end), is refused with the status to answer,
/// `413`, and the connection is not kept alive for more.
pub fn discard_small_body(r: &mut ngx_http_request_t, max: i64) -> Result<(), ngx_int_t> {
    if r.headers_in.content_length_n > max || r.headers_in.chunked() != 0 {
        r.set_keepalive(0);
        r.set_lingering_close(1);
        return Err(nginx_sys::NGX_HTTP_REQUEST_ENTITY_TOO_LARGE as ngx_int_t);
    }
    // SAFETY: a live request; whatever body it has is not wanted.
    let rc = unsafe { nginx_sys::ngx_http_discard_request_body(r) };
    if rc != NGX_OK as ngx_int_t {
        return Err(rc);
    }
    Ok(())
}

/// The value of the request's first header named `lowcase` (any case in the request).
pub fn header_in<'a>(r: &'a ngx_http_request_t, lowcase: &str) -> Option<&'a [u8]> {
    // SAFETY: the request's header list is valid for the request's lifetime.
    unsafe { ngx::http::list_iterator(&r.headers_in.headers) }
        .find(|(k, _)| k.as_bytes().eq_ignore_ascii_case(lowcase.as_bytes()))
        .map(|(_, v)| v.as_bytes())
}

/// What the request's method and headers say of it, for telling a page load from the rest
/// (see [`crate::core::request`]), and its `User-Agent`.
pub fn request_kind(r: &ngx_http_request_t) -> (Method, Headers<'_>, &[u8]) {
    let method = match r.method as u32 {
        nginx_sys::NGX_HTTP_GET => Method::Get,
        nginx_sys::NGX_HTTP_POST => Method::Post,
        _ => Method::Other,
    };
    let mut headers = Headers::default();
    // SAFETY: the request's header list is valid for the request's lifetime.
    for (k, v) in unsafe { ngx::http::list_iterator(&r.headers_in.headers) } {
        headers.note(k.as_bytes(), v.as_bytes());
    }
    // SAFETY: nginx sets `user_agent` to one of the request's header elements, or null.
    let ua = unsafe { r.headers_in.user_agent.as_ref() }.map_or(&b""[..], |h| h.value.as_bytes());
    (method, headers, ua)
}
