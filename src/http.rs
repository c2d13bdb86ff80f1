//! Small request helpers the handlers share: the clock, cookies in and out, headers, and
//! sending a whole response from memory.

use core::ffi::c_void;
use core::ptr;

use nginx_sys::{
    ngx_buf_t, ngx_chain_t, ngx_create_temp_buf, ngx_http_output_filter, ngx_http_request_t,
    ngx_http_send_header, ngx_int_t, ngx_list_push, ngx_pnalloc, ngx_pool_cleanup_add,
    ngx_pool_cleanup_t, ngx_str_t, ngx_table_elt_t, NGX_ERROR, NGX_OK,
};

/// Milliseconds and seconds since the Unix epoch, from nginx's cached clock.
pub fn now() -> (u64, u64) {
    let t = nginx_sys::ngx_timeofday();
    let s = t.sec.max(0) as u64;
    (s * 1000 + t.msec as u64, s)
}

/// Every value of the cookie `name` in the request's `Cookie` headers.
pub fn cookies<'a>(
    r: &'a ngx_http_request_t,
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    // SAFETY: the request's header list is valid for the request's lifetime.
    let headers = unsafe { ngx::http::list_iterator(&r.headers_in.headers) };
    headers
        .filter(|(k, _)| k.as_bytes().eq_ignore_ascii_case(b"cookie"))
        .flat_map(|(_, v)| v.as_bytes().split(|&b| b == b';'))
        .filter_map(move |pair| {
            let pair = trim(pair);
            let eq = pair.iter().position(|&b| b == b'=')?;
            (trim(&pair[..eq]) == name.as_bytes()).then(|| trim(&pair[eq + 1..]))
        })
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Copies `s` into the request pool.
fn pool_str(r: &ngx_http_request_t, s: &[u8]) -> Option<ngx_str_t> {
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
    let Some(value) = pool_str(r, value.as_bytes()) else { return false };
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

fn is_https(r: &ngx_http_request_t) -> bool {
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

/// Sets the room's cookie: for the browser session only, sent back on every path, not to
/// scripts, not on cross-site subrequests; `Secure` when the request came over TLS.
pub fn set_cookie(r: &mut ngx_http_request_t, name: &str, value: &str) -> bool {
    let secure = if is_https(r) { "; Secure" } else { "" };
    let c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax{secure}");
    add_header(r, "Set-Cookie", "set-cookie", &c)
}

/// Tells the browser to forget the room's cookie.
pub fn clear_cookie(r: &mut ngx_http_request_t, name: &str) -> bool {
    let c = format!("{name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax");
    add_header(r, "Set-Cookie", "set-cookie", &c)
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

/// What the waiting room decided for a request, for the variables and for a second run of the
/// access handler after an internal redirect (which clears the request's module context, but
/// not its pool cleanups, where this lives).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct Verdict {
    pub status: Option<&'static str>,
    pub position: Option<u64>,
    pub wait: Option<u64>,
    pub passed: bool,
    /// The room that decided (its configuration's address).
    pub room: usize,
}

/// Marks our cleanup record; `VerdictSlot::magic` makes the match certain even if the linker
/// merged this empty function with another.
extern "C" fn verdict_marker(_: *mut c_void) {}

/// The marker's address, read from one place: a function's address may differ between
/// codegen units, a static's value does not.
static MARKER: unsafe extern "C" fn(*mut c_void) = verdict_marker;

const VERDICT_MAGIC: u64 = u64::from_le_bytes(*b"wrVerdct");

#[repr(C)]
struct VerdictSlot {
    magic: u64,
    verdict: Verdict,
}

/// The request's verdict, if the waiting room has given one.
pub fn verdict(r: &ngx_http_request_t) -> Option<&'static mut Verdict> {
    // SAFETY: the cleanup list belongs to the request's pool; the one entry with our marker
    // handler carries a `Verdict` that `set_verdict` wrote and the pool owns.
    unsafe {
        let mut c: *mut ngx_pool_cleanup_t = (*r.pool).cleanup;
        while let Some(cln) = c.as_ref() {
            let ours = cln.handler.is_some_and(|h| ptr::fn_addr_eq(h, MARKER));
            if ours {
                if let Some(slot) = (cln.data as *mut VerdictSlot).as_mut() {
                    if slot.magic == VERDICT_MAGIC {
                        return Some(&mut slot.verdict);
                    }
                }
            }
            c = cln.next;
        }
    }
    None
}

pub fn set_verdict(r: &ngx_http_request_t, v: Verdict) {
    if let Some(old) = verdict(r) {
        *old = v;
        return;
    }
    // SAFETY: the cleanup record and its data come from the request pool; the marker handler
    // does nothing, the data needs no drop.
    unsafe {
        let cln = ngx_pool_cleanup_add(r.pool, core::mem::size_of::<VerdictSlot>());
        if let Some(cln) = cln.as_mut() {
            ptr::write(
                cln.data as *mut VerdictSlot,
                VerdictSlot { magic: VERDICT_MAGIC, verdict: v },
            );
            cln.handler = Some(MARKER);
        }
    }
}
