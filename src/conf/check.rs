//! Checks that need the whole http block: every queue page must be able to reach its room's
//! API. A page that polls a prefix no `waiting_room_api` location of its room serves strands
//! its visitors in line (their polls fail, or another room's API answers for them).

use core::ffi::c_void;

use nginx_sys::{ngx_http_core_loc_conf_t, ngx_http_core_srv_conf_t, ngx_str_t};

use super::{text, MainConf, Place, Use};
use crate::service::Room;

/// The first `waiting_room` whose queue page cannot reach its room's API, with what is wrong.
/// `servers` are the http block's server blocks, for a `waiting_room` at http level.
pub fn apis(mcf: &MainConf, servers: &[*const c_void]) -> Result<(), (Place, String)> {
    for u in &mcf.uses {
        let in_servers: Vec<*const c_void> = match u.server {
            Some(s) => vec![s],
            None => servers.to_vec(),
        };
        for server in in_servers {
            check_use(mcf, u, server).map_err(|e| (u.place.clone(), e))?;
        }
    }
    Ok(())
}

fn check_use(mcf: &MainConf, u: &Use, server: *const c_void) -> Result<(), String> {
    let probe = format!("{}position", u.api);
    let mut other: Option<*mut Room> = None;
    for a in mcf.apis.iter().filter(|a| a.server == server) {
        // SAFETY: the location's core configuration, alive as long as the configuration.
        let Some(clcf) = (unsafe { a.core.as_ref() }) else { continue };
        if !serves(clcf, &probe) {
            continue;
        }
        if a.room == u.room {
            return Ok(());
        }
        other.get_or_insert(a.room);
    }
    // SAFETY: rooms are allocated from the configuration pool and live as long as it.
    let name = |r: *mut Room| unsafe { r.as_ref() }.map_or(String::new(), |r| r.name.clone());
    let this = name(u.room);
    Err(match other {
        Some(r) => format!(
            "waiting room \"{this}\" polls \"{}\", which is the API of waiting room \"{}\"",
            u.api,
            name(r)
        ),
        None => format!(
            "waiting room \"{this}\" polls \"{}\" but no location there has \
             \"waiting_room_api {this}\"",
            u.api
        ),
    })
}

/// Whether the location would take a request for `uri`, by its own pattern (whatever other
/// locations of the server might take it first).
fn serves(clcf: &ngx_http_core_loc_conf_t, uri: &str) -> bool {
    if clcf.named() != 0 {
        return false;
    }
    #[cfg(ngx_feature = "pcre")]
    if !clcf.regex.is_null() {
        let mut s = ngx_str_t { len: uri.len(), data: uri.as_ptr() as *mut u8 };
        // SAFETY: the location's compiled regex; `s` points at `uri`, which outlives the call
        // and which the regex engine only reads.
        return unsafe {
            nginx_sys::ngx_regex_exec((*clcf.regex).regex, &mut s, core::ptr::null_mut(), 0)
        } >= 0;
    }
    let name = text(&clcf.name);
    if clcf.exact_match() != 0 {
        name == uri
    } else {
        uri.starts_with(&name)
    }
}

/// The http block's server blocks, as identities.
pub fn servers(cf: *mut nginx_sys::ngx_conf_t) -> Vec<*const c_void> {
    use ngx::http::{HttpModuleMainConf, NgxHttpCoreModule};
    // SAFETY: called at the end of the http block, whose core main configuration is there.
    let Some(cmcf) = NgxHttpCoreModule::main_conf(unsafe { &*cf }) else { return Vec::new() };
    let a = &cmcf.servers;
    if a.elts.is_null() {
        return Vec::new();
    }
    // SAFETY: the core module's array of server configurations, `nelts` long.
    let list = unsafe {
        core::slice::from_raw_parts(a.elts as *const *mut ngx_http_core_srv_conf_t, a.nelts)
    };
    list.iter().map(|&s| s as *const c_void).collect()
}
