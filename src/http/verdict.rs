//! What the waiting room decided for a request, kept where an internal redirect does not
//! erase it.

use core::ffi::c_void;
use core::ptr;

use nginx_sys::{ngx_http_request_t, ngx_pool_cleanup_add, ngx_pool_cleanup_t};

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
pub fn get(r: &ngx_http_request_t) -> Option<&'static mut Verdict> {
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

pub fn set(r: &ngx_http_request_t, v: Verdict) {
    if let Some(old) = get(r) {
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
