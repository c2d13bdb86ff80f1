//! `waiting_room_insert_heartbeat on`: admitted HTML pages get the heartbeat script without
//! the site editing them.
//!
//! A header filter picks the responses: to a main request that a room let in with a session
//! (`PASSED`, `ADMITTED`, `EXEMPT`), `200`, `text/html`, not compressed by the origin, with a
//! body. Their `Content-Length` goes (the body grows), their `ETag` becomes weak and ranges are
//! no longer offered. A body filter then adds
//! `<script src="API/heartbeat.js" defer></script>` after the last byte of the page, as the
//! footer of the response: nothing is searched, copied or held back, whatever the size of the
//! page or how it arrives (from memory, a file, or an upstream in pieces). Browsers put what
//! follows `</html>` into the body, where the script runs as it would before `</body>`.

use core::ffi::c_void;
use core::ptr;

use nginx_sys::{
    ngx_alloc_chain_link, ngx_buf_t, ngx_chain_t, ngx_http_output_body_filter_pt,
    ngx_http_output_header_filter_pt, ngx_http_request_t, ngx_http_top_body_filter,
    ngx_http_top_header_filter, ngx_http_weak_etag, ngx_int_t, ngx_pcalloc, NGX_ERROR,
    NGX_HTTP_HEAD, NGX_HTTP_OK, NGX_OK,
};
use ngx::http::{HttpModule, HttpModuleLocationConf};

use crate::conf::Module;
use crate::core::guard;
use crate::http::{self, verdict};

static mut NEXT_HEADER: ngx_http_output_header_filter_pt = None;
static mut NEXT_BODY: ngx_http_output_body_filter_pt = None;

/// What a response the script goes into carries in the request's module context.
#[repr(C)]
struct Insert {
    /// The tag, `<script …></script>`, in the request pool.
    tag: *const u8,
    len: usize,
    /// Added already.
    done: bool,
}

pub fn register() -> ngx_int_t {
    // SAFETY: postconfiguration runs in one thread, while nginx builds the filter chains the
    // same way for every module: take the top, put ours in its place.
    unsafe {
        NEXT_HEADER = ngx_http_top_header_filter;
        ngx_http_top_header_filter = Some(header_filter);
        NEXT_BODY = ngx_http_top_body_filter;
        ngx_http_top_body_filter = Some(body_filter);
    }
    NGX_OK as ngx_int_t
}

unsafe extern "C" fn header_filter(r: *mut ngx_http_request_t) -> ngx_int_t {
    // Most responses come from a location that inserts nothing: that is seen first, cheaply.
    // (The filter is in nginx's chain whatever the configuration: the chain is global, and a
    // reload that fails would leave the one its configuration built.)
    // SAFETY: nginx calls header filters with a live request.
    let on = Module::location_conf(unsafe { &*r }).is_some_and(|l| l.insert_heartbeat == 1);
    if on {
        // A failure here leaves the page as it is.
        let _ = guard::catch(|| {
            // SAFETY: as above.
            let r = unsafe { &mut *r };
            if let Some(tag) = wanted(r) {
                prepare(r, &tag);
            }
        });
    }
    // SAFETY: the filter that was on top when ours was put there; set once, before any request.
    match unsafe { NEXT_HEADER } {
        // SAFETY: as above, with the request nginx gave us.
        Some(next) => unsafe { next(r) },
        None => NGX_ERROR as ngx_int_t,
    }
}

/// The script tag for this response, if it is an admitted HTML page.
fn wanted(r: &ngx_http_request_t) -> Option<String> {
    if !ptr::eq(r.main, r) || r.header_only() != 0 || r.method == NGX_HTTP_HEAD as usize {
        return None;
    }
    let lcf = Module::location_conf(r)?;
    if lcf.insert_heartbeat != 1 || r.headers_out.status != NGX_HTTP_OK as usize {
        return None;
    }
    let v = verdict::get(r)?;
    let admitted = matches!(v.status, Some("PASSED" | "ADMITTED" | "EXEMPT"));
    let html = http::str_bytes(&r.headers_out.content_type)
        .get(..9)
        .is_some_and(|t| t.eq_ignore_ascii_case(b"text/html"));
    // SAFETY: a response header element of a live request, or null.
    let encoded = unsafe { r.headers_out.content_encoding.as_ref() }.is_some_and(|h| h.hash != 0);
    if !admitted || !html || encoded || r.headers_out.content_length_n == 0 {
        return None;
    }
    Some(format!("\n<script src=\"{}heartbeat.js\" defer></script>\n", lcf.api()))
}

/// Readies the response for a longer body, and notes the tag in the request's context.
fn prepare(r: &mut ngx_http_request_t, tag: &str) {
    let Some(tag) = http::pool_str(r, tag.as_bytes()) else { return };
    // SAFETY: the request pool outlives the request's filters; the record is plain data.
    let ctx = unsafe { ngx_pcalloc(r.pool, core::mem::size_of::<Insert>()) } as *mut Insert;
    if ctx.is_null() {
        return;
    }
    // SAFETY: `ctx` was just allocated for an `Insert`; the context array has a slot for each
    // http module, ours at its `ctx_index`.
    unsafe {
        ctx.write(Insert { tag: tag.data, len: tag.len, done: false });
        *r.ctx.add(Module::module().ctx_index) = ctx as *mut c_void;
    }
    // The body grows: no length, a weak validator, no ranges of what the origin sent.
    r.headers_out.content_length_n = -1;
    // SAFETY: response header elements of a live request, or null; a header whose hash is 0
    // is one nginx skips.
    unsafe {
        if let Some(h) = r.headers_out.content_length.as_mut() {
            h.hash = 0;
        }
        r.headers_out.content_length = ptr::null_mut();
        if let Some(h) = r.headers_out.accept_ranges.as_mut() {
            h.hash = 0;
        }
        r.headers_out.accept_ranges = ptr::null_mut();
        ngx_http_weak_etag(r);
    }
    r.set_allow_ranges(0);
}

unsafe extern "C" fn body_filter(r: *mut ngx_http_request_t, input: *mut ngx_chain_t) -> ngx_int_t {
    // Only a response the header filter readied has our context: the others pass at once.
    // SAFETY: nginx calls body filters with a live request, whose context array has a slot
    // for each http module.
    let readied = unsafe { !(*(*r).ctx.add(Module::module().ctx_index)).is_null() };
    let out = if readied {
        guard::catch(|| {
            // SAFETY: as above, and the chain nginx passed.
            let r = unsafe { &mut *r };
            append(r, input)
        })
        .ok()
        .flatten()
        .unwrap_or(input)
    } else {
        input
    };
    // SAFETY: as in `header_filter`.
    match unsafe { NEXT_BODY } {
        // SAFETY: as above, with the request nginx gave us and a chain of the same buffers.
        Some(next) => unsafe { next(r, out) },
        None => NGX_ERROR as ngx_int_t,
    }
}

/// Whether a buffer carries no data (a flag only).
fn empty(b: &ngx_buf_t) -> bool {
    if b.in_file() != 0 && b.temporary() == 0 && b.memory() == 0 && b.mmap() == 0 {
        return b.file_last <= b.file_pos;
    }
    b.last <= b.pos
}

/// The chain with the tag after the page's last buffer, once that buffer comes; `None` to
/// pass the chain on as it is.
fn append(r: &mut ngx_http_request_t, input: *mut ngx_chain_t) -> Option<*mut ngx_chain_t> {
    if !ptr::eq(r.main, r) || input.is_null() {
        return None;
    }
    // SAFETY: the context slot of our module, set by `prepare` to an `Insert` in the request
    // pool, or null.
    let ctx = unsafe { (*r.ctx.add(Module::module().ctx_index) as *mut Insert).as_mut() }?;
    if ctx.done {
        return None;
    }
    // Only the call that carries the page's last buffer.
    let mut cl = input;
    loop {
        // SAFETY: the chain nginx passed: links whose `next` ends in null, each with a buffer.
        let link = unsafe { &*cl };
        // SAFETY: as above.
        if unsafe { (*link.buf).last_buf() } != 0 {
            break;
        }
        if link.next.is_null() {
            return None;
        }
        cl = link.next;
    }
    ctx.done = true;
    // A chain of our own links to the same buffers, then the tag: the links passed to us are
    // the caller's, which it walks again once they are sent.
    let pool = r.pool;
    // Links are made before anything changes, so that running out of memory changes
    // nothing.
    let mut count = 2;
    let mut cl = input;
    while !cl.is_null() {
        count += 1;
        // SAFETY: as above.
        cl = unsafe { (*cl).next };
    }
    let mut spare: *mut ngx_chain_t = ptr::null_mut();
    for _ in 0..count {
        // SAFETY: a chain link from the request pool, which lives as long as the request.
        let l = unsafe { ngx_alloc_chain_link(pool) };
        // SAFETY: `l` is a fresh link, or null.
        let l = unsafe { l.as_mut() }?;
        l.next = spare;
        spare = l;
    }
    let mut link_to = |buf: *mut ngx_buf_t| {
        let l = spare;
        // SAFETY: one of the `count` links made above: there is one for every buffer and the
        // tag.
        unsafe {
            spare = (*l).next;
            (*l).buf = buf;
            (*l).next = ptr::null_mut();
        }
        l
    };
    // SAFETY: a buffer from the request pool, zeroed, filled as nginx's own filters fill
    // theirs: memory that is only read, the last of the response.
    let tag = unsafe {
        let b = ngx_pcalloc(pool, core::mem::size_of::<ngx_buf_t>()) as *mut ngx_buf_t;
        let b = b.as_mut()?;
        b.pos = ctx.tag as *mut u8;
        b.last = (ctx.tag as *mut u8).add(ctx.len);
        b.set_memory(1);
        b.set_last_buf(1);
        b.set_last_in_chain(1);
        b
    };
    let mut head: *mut ngx_chain_t = ptr::null_mut();
    let mut tail: *mut *mut ngx_chain_t = &mut head;
    let mut push = |buf: *mut ngx_buf_t| {
        let l = link_to(buf);
        // SAFETY: `tail` points at the `next` of the last link made (or at `head`); `l` is a
        // fresh link.
        unsafe {
            *tail = l;
            tail = &mut (*l).next;
        }
    };
    let mut cl = input;
    while !cl.is_null() {
        // SAFETY: as above.
        let (buf, next) = unsafe { ((*cl).buf, (*cl).next) };
        // SAFETY: the chain's buffers are live.
        let b = unsafe { &mut *buf };
        if b.last_buf() == 0 {
            push(buf);
        } else if empty(b) {
            // An empty last buffer (a flag only): the tag goes before it, which stays last.
            tag.set_last_buf(0);
            tag.set_last_in_chain(0);
            push(tag);
            push(buf);
        } else {
            b.set_last_buf(0);
            b.set_last_in_chain(0);
            push(buf);
            push(tag);
        }
        cl = next;
    }
    if head.is_null() {
        return None;
    }
    Some(head)
}
