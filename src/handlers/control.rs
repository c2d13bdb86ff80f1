//! Live control, served by a `waiting_room_control` location: `GET` reads the room's settings,
//! `POST` with a JSON object changes some of them at run time (`max_active`, `mode`, `model`,
//! `rate`, `start`, `end`, or `reset` to the configuration's), for every worker at once and
//! without a reload; `POST` with `{"link":{...}}` makes an exempt link. Who may ask is up to the location (`allow`/`deny`, `auth_basic`) and, with
//! `token=`, a bearer token.

use nginx_sys::{
    ngx_http_discard_request_body, ngx_http_finalize_request, ngx_http_read_client_request_body,
    ngx_http_request_t, ngx_int_t, NGX_DONE, NGX_HTTP_GET, NGX_HTTP_HEAD,
    NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_NOT_FOUND, NGX_HTTP_PATCH, NGX_HTTP_POST,
    NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, NGX_HTTP_SPECIAL_RESPONSE, NGX_HTTP_UNAUTHORIZED,
    NGX_LOG_NOTICE, NGX_OK,
};
use ngx::ngx_log_error;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::edge;
use crate::conf::{Endpoint, LocConf};
use crate::core::control::{parse_change, time_text, Settings, SettingsError};
use crate::core::guard;
use crate::core::link::parse_link_request;
use crate::core::room::Snapshot;
use crate::core::token::constant_time_eq;
use crate::http;
use crate::http::str_bytes;
use crate::service::{setting_text, Room};

/// The longest request body taken: a change is a few settings.
const BODY_MAX: usize = 4096;

pub extern "C" fn handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    edge::guarded(r, control)
}

fn control(r: &mut ngx_http_request_t) -> ngx_int_t {
    let Some((lcf, room)) = edge::endpoint(r, Endpoint::Control) else {
        return NGX_HTTP_NOT_FOUND as ngx_int_t;
    };
    // A subrequest (SSI, mirror, auth_request) skips the access phase, and with it the
    // location's allow/deny and auth_basic.
    if !core::ptr::eq(r, r.main) {
        return refuse(r, 403, "not from a subrequest");
    }
    if !authorised(r, lcf) {
        http::add_header(
            r,
            "WWW-Authenticate",
            "www-authenticate",
            "Bearer realm=\"waiting room\"",
        );
        return refuse(r, NGX_HTTP_UNAUTHORIZED as usize, "a valid bearer token is needed");
    }
    if r.method & (NGX_HTTP_GET | NGX_HTTP_HEAD) as usize != 0 {
        if let Err(rc) = http::discard_small_body(r, 0) {
            return rc;
        }
        return match room.snapshot() {
            Ok(snap) => http::send_json(r, 200, &settings_json(room, &snap)),
            Err(e) => edge::unusable(r, room, e),
        };
    }
    if r.method & (NGX_HTTP_POST | NGX_HTTP_PATCH) as usize == 0 {
        // SAFETY: a live main request; its body, if any, is read and dropped, so that it
        // cannot be taken for the next request on the connection.
        let rc = unsafe { ngx_http_discard_request_body(r) };
        if rc != NGX_OK as ngx_int_t {
            return rc;
        }
        return http::not_allowed(r, "GET, HEAD, POST, PATCH");
    }
    if r.headers_in.content_length_n > BODY_MAX as i64 {
        // Not read: the connection is closed after the answer.
        r.set_keepalive(0);
        r.set_lingering_close(1);
        return error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE as usize, "the body is longer than 4k");
    }
    // SAFETY: a live main request in its content handler; nginx calls `body_read` once the
    // body is in, holding the request until then (the NGX_DONE returned below).
    let rc = unsafe { ngx_http_read_client_request_body(r, Some(body_read)) };
    if rc >= NGX_HTTP_SPECIAL_RESPONSE as ngx_int_t {
        return rc;
    }
    NGX_DONE as ngx_int_t
}

/// The body is in: apply the change and answer.
unsafe extern "C" fn body_read(r: *mut ngx_http_request_t) {
    let rc = guard::catch(|| {
        // SAFETY: nginx calls the body handler with the live request.
        change(unsafe { &mut *r })
    })
    .unwrap_or(NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t);
    // SAFETY: reading the body took a reference on the request: this gives it back.
    unsafe { ngx_http_finalize_request(r, rc) };
}

fn change(r: &mut ngx_http_request_t) -> ngx_int_t {
    let Some((_, room)) = edge::endpoint(r, Endpoint::Control) else {
        return NGX_HTTP_NOT_FOUND as ngx_int_t;
    };
    let body = match body(r) {
        Ok(b) => b,
        Err(why) => return error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE as usize, why),
    };
    if let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(&body) {
        if let Some(asked) = obj.get("link") {
            if obj.len() > 1 {
                return error(r, 400, "a link is asked for alone, without settings");
            }
            return make_link(r, room, asked);
        }
    }
    let change = match parse_change(&body) {
        Ok(c) => c,
        Err(why) => return error(r, 400, &why),
    };
    // SAFETY: a live request's connection.
    let who =
        String::from_utf8_lossy(str_bytes(unsafe { &(*r.connection).addr_text })).into_owned();
    // SAFETY: as above.
    let log = unsafe { (*r.connection).log };
    match room.change(&change, http::now().mono_ms, &who, log) {
        Ok(Ok(_)) => {}
        Ok(Err(e @ SettingsError::StandingBy)) => return error(r, 503, &e.to_string()),
        Ok(Err(e)) => return error(r, 400, &e.to_string()),
        Err(e) => return edge::unusable(r, room, e),
    }
    match room.snapshot() {
        Ok(snap) => http::send_json(r, 200, &settings_json(room, &snap)),
        Err(e) => edge::unusable(r, room, e),
    }
}

/// Makes the exempt link `asked` describes, logs it, and answers with it.
fn make_link(r: &mut ngx_http_request_t, room: &Room, asked: &Value) -> ngx_int_t {
    let req = match parse_link_request(asked) {
        Ok(req) => req,
        Err(why) => return error(r, 400, &why),
    };
    let Some((url, link)) = room.make_link(&req, http::now().wall_s) else {
        return error(r, 500, "no link could be made (no random id)");
    };
    // SAFETY: a live request's connection.
    let (who, log) = unsafe {
        let c = &*r.connection;
        (String::from_utf8_lossy(str_bytes(&c.addr_text)).into_owned(), c.log)
    };
    let expires = time_text(link.expires);
    ngx_log_error!(
        NGX_LOG_NOTICE,
        log,
        "waiting room \"{}\": exempt link {:016x} made by {who} for {}, {} uses until {expires}",
        room.name,
        link.id,
        req.path,
        link.uses
    );
    let body = json!({
        "link": url,
        "id": format!("{:016x}", link.id),
        "expires": expires,
        "uses": link.uses,
    });
    http::send_json(r, 200, &body)
}

/// Whether the request carries the location's bearer token (or the location asks for none).
fn authorised(r: &ngx_http_request_t, lcf: &LocConf) -> bool {
    let Some(token) = lcf.control_token.as_deref() else { return true };
    // SAFETY: `authorization` is null or a header of the live request.
    let Some(h) = (unsafe { r.headers_in.authorization.as_ref() }) else { return false };
    let value = str_bytes(&h.value);
    // The scheme's name is case-insensitive (RFC 9110).
    let (scheme, given) = value.split_at(value.len().min(7));
    if !scheme.eq_ignore_ascii_case(b"Bearer ") {
        return false;
    }
    // Digests of the same length, compared in constant time: neither the token's bytes nor
    // its length show in the time taken.
    constant_time_eq(&Sha256::digest(given.trim_ascii()), &Sha256::digest(token))
}

/// The request body, read into memory by nginx; why not, when it is longer than
/// [`BODY_MAX`] or nginx kept it in a file.
fn body(r: &ngx_http_request_t) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::new();
    // SAFETY: the body was read: `request_body` is null or nginx's record of it, its chain
    // links and buffers live in the request pool.
    let mut cl = unsafe { r.request_body.as_ref() }.map_or(core::ptr::null_mut(), |b| b.bufs);
    // SAFETY: each link of the chain is valid until its `next` is null.
    while let Some(link) = unsafe { cl.as_ref() } {
        // SAFETY: a buffer of the chain.
        let Some(b) = (unsafe { link.buf.as_ref() }) else { break };
        if b.in_file() != 0 {
            return Err("the body was kept in a file (client_body_in_file_only): send it where \
                        nginx keeps it in memory, at most 4k");
        }
        if !b.pos.is_null() && b.last > b.pos {
            let len = b.last as usize - b.pos as usize;
            if out.len() + len > BODY_MAX {
                return Err("the body is longer than 4k");
            }
            // SAFETY: `pos..last` is the buffer's filled part.
            out.extend_from_slice(unsafe { core::slice::from_raw_parts(b.pos, len) });
        }
        cl = link.next;
    }
    Ok(out)
}

/// The settings as the control location shows them.
fn settings_object(s: &Settings) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("max_active".into(), json!(s.max_active));
    m.insert("mode".into(), json!(s.mode().name()));
    m.insert("model".into(), json!(s.model().name()));
    let or_null =
        |on: bool, name: &str| if on { json!(setting_text(s, name)) } else { Value::Null };
    m.insert("rate".into(), or_null(s.rate_per_minute != 0, "rate"));
    m.insert("start".into(), or_null(s.start != 0, "start"));
    m.insert("end".into(), or_null(s.end != 0, "end"));
    m
}

fn settings_json(room: &Room, snap: &Snapshot) -> Value {
    let mut m = Map::new();
    m.insert("room".into(), json!(room.name));
    m.extend(settings_object(&snap.settings));
    m.insert("phase".into(), json!(snap.phase.name()));
    m.insert("in_draw".into(), json!(snap.in_draw));
    m.insert("session_capacity".into(), json!(snap.session_capacity));
    m.insert("changes".into(), json!(snap.changes));
    m.insert("configured".into(), Value::Object(settings_object(&snap.configured)));
    Value::Object(m)
}

fn error(r: &mut ngx_http_request_t, status: usize, why: &str) -> ngx_int_t {
    http::send_json(r, status, &json!({ "error": why }))
}

/// An error for a request whose body was not read: the body is read and dropped first, so
/// that it cannot be taken for the next request on the connection.
fn refuse(r: &mut ngx_http_request_t, status: usize, why: &str) -> ngx_int_t {
    // SAFETY: a live main request, in its content handler.
    let rc = unsafe { ngx_http_discard_request_body(r) };
    if rc != NGX_OK as ngx_int_t {
        return rc;
    }
    error(r, status, why)
}
