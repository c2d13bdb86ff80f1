//! The room's cookie: reading the request's `Cookie` headers, and setting or clearing it.

use nginx_sys::ngx_http_request_t;

use super::{add_header, is_https};

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
