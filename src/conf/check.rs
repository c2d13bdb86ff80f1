//! Checks that need the whole http block: every queue page must be able to reach its room's
//! API. A page that polls a prefix no `waiting_room_api` location of its room serves strands
//! its visitors in line (their polls fail, or another room's API answers for them).

use core::ffi::c_void;

use nginx_sys::{ngx_conf_t, ngx_http_core_loc_conf_t, ngx_str_t};
use ngx::http::{HttpModuleLocationConf, HttpModuleServerConf, NgxHttpCoreModule};

use super::common::{main_conf, text, LocConf, MainConf, Place};
use crate::service::Room;

/// Checks a location's merged configuration: if a room guards it, a `waiting_room_api`
/// location of that room in the same server must serve the prefix its queue page polls. Only
/// locations are checked (not the server's own level, which serves only what no location
/// takes), each with what it inherited, so a `waiting_room` at http or server level is checked
/// where it applies. Errors name the `waiting_room` that set the room.
pub fn location(cf: *mut ngx_conf_t, lcf: &LocConf) -> Result<(), (Place, String)> {
    let (Some(room), None, Some(place)) = (lcf.room(), lcf.endpoint, lcf.room_place.as_ref())
    else {
        return Ok(());
    };
    // SAFETY: called while merging this location, when `cf`'s context holds its core
    // configurations and those of its server.
    let (clcf, cscf) =
        unsafe { (NgxHttpCoreModule::location_conf(&*cf), NgxHttpCoreModule::server_conf(&*cf)) };
    let (Some(clcf), Some(cscf), Some(mcf)) = (clcf, cscf, main_conf(cf)) else { return Ok(()) };
    if clcf.name.len == 0 {
        return Ok(());
    }
    let server = cscf as *const _ as *const c_void;
    check_use(mcf, room, lcf.api(), server).map_err(|e| (place.clone(), e))
}

fn check_use(mcf: &MainConf, room: &Room, api: &str, server: *const c_void) -> Result<(), String> {
    let probe = format!("{api}position");
    let mut other: Option<&Room> = None;
    for a in mcf.apis.iter().filter(|a| a.server == server) {
        // SAFETY: the location's core configuration and the room live as long as the
        // configuration.
        let (Some(clcf), Some(served)) = (unsafe { a.core.as_ref() }, unsafe { a.room.as_ref() })
        else {
            continue;
        };
        if !serves(clcf, &probe) {
            continue;
        }
        if core::ptr::eq(served, room) {
            return Ok(());
        }
        other.get_or_insert(served);
    }
    let this = &room.name;
    Err(match other {
        Some(r) => format!(
            "waiting room \"{this}\" polls \"{api}\", which is the API of waiting room \"{}\"",
            r.name
        ),
        None => format!(
            "waiting room \"{this}\" polls \"{api}\" but no location there has \
             \"waiting_room_api {this}\""
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
