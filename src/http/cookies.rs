//! The room's cookie: reading the request's `Cookie` headers, and setting or clearing it.

use nginx_sys::ngx_http_request_t;

use super::{add_header, is_https};

/// Every value of the cookie `name` in the request's `Cookie` headers, in order.
pub fn cookies<'a>(
    r: &'a ngx_http_request_t,
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    Values { headers: cookie_headers(r), rest: &[], name: name.as_bytes() }
}

/// The values of one cookie in a list of `Cookie` headers: a plain loop rather than a chain of
/// adapters, as it runs on every request a room guards. Fused: once it has said `None`, so
/// have the headers (a list that ends stays ended), and so does it.
struct Values<'a, H> {
    headers: H,
    /// What is left of the header being read.
    rest: &'a [u8],
    name: &'a [u8],
}

impl<'a, H: Iterator<Item = &'a [u8]>> Iterator for Values<'a, H> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            if let Some(v) = crate::core::cookie::next_value(&mut self.rest, self.name) {
                return Some(v);
            }
            self.rest = self.headers.next()?;
        }
    }
}

/// The values of the request's `Cookie` headers: on nginx 1.23 and later, from the list nginx
/// links them in as it reads them.
#[cfg(nginx_header_next)]
fn cookie_headers(r: &ngx_http_request_t) -> impl Iterator<Item = &[u8]> {
    let mut h = r.headers_in.cookie;
    core::iter::from_fn(move || {
        // SAFETY: nginx links the request's `Cookie` header elements through `next`; they
        // live in the request's pool as long as the request.
        let e = unsafe { h.as_ref() }?;
        h = e.next;
        Some(e.value.as_bytes())
    })
}

/// The values of the request's `Cookie` headers: before nginx 1.23, from all its headers.
#[cfg(not(nginx_header_next))]
fn cookie_headers(r: &ngx_http_request_t) -> impl Iterator<Item = &[u8]> {
    // SAFETY: the request's header list is valid for the request's lifetime.
    let headers = unsafe { ngx::http::list_iterator(&r.headers_in.headers) };
    headers.filter(|(k, _)| k.as_bytes().eq_ignore_ascii_case(b"cookie")).map(|(_, v)| v.as_bytes())
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
