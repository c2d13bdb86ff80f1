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

/// The endpoints a queue page and `heartbeat.js` call under the API prefix.
const ENDPOINTS: [&str; 5] = ["position", "heartbeat", "away", "leave", "heartbeat.js"];

fn check_use(mcf: &MainConf, room: &Room, api: &str, server: *const c_void) -> Result<(), String> {
    let this = &room.name;
    let apis: Vec<(&ngx_http_core_loc_conf_t, &Room)> = mcf
        .apis
        .iter()
        .filter(|a| a.server == server)
        // SAFETY: the locations' core configurations and the rooms live as long as the
        // configuration.
        .filter_map(|a| unsafe { Some((a.core.as_ref()?, a.room.as_ref()?)) })
        .collect();
    let mut served = 0;
    for endpoint in ENDPOINTS {
        let uri = format!("{api}{endpoint}");
        match pick(&apis, &uri) {
            Some(r) if core::ptr::eq(r, room) => served += 1,
            Some(r) => {
                return Err(format!(
                    "waiting room \"{this}\" polls \"{api}\", which is the API of waiting room \
                     \"{}\"",
                    r.name
                ))
            }
            None if served == 0 => {
                return Err(format!(
                    "waiting room \"{this}\" polls \"{api}\" but no location there has \
                     \"waiting_room_api {this}\""
                ))
            }
            None => {
                return Err(format!(
                    "waiting room \"{this}\" polls \"{api}\", but no \"waiting_room_api {this}\" \
                     location serves \"{uri}\""
                ))
            }
        }
    }
    Ok(())
}

/// The room of the API location nginx would choose for `uri` among `apis` (in the order of the
/// configuration), the way nginx chooses: an exact match; else the longest matching prefix if
/// it is `^~`; else the first matching regex; else that longest prefix. Other locations of
/// the server are not looked at.
fn pick<'a>(apis: &[(&ngx_http_core_loc_conf_t, &'a Room)], uri: &str) -> Option<&'a Room> {
    let is_regex = |c: &ngx_http_core_loc_conf_t| regex_of(c).is_some();
    if let Some((_, r)) =
        apis.iter().find(|(c, _)| c.exact_match() != 0 && !is_regex(c) && text(&c.name) == uri)
    {
        return Some(r);
    }
    let prefix = apis
        .iter()
        .filter(|(c, _)| c.exact_match() == 0 && c.named() == 0 && !is_regex(c))
        .filter(|(c, _)| uri.starts_with(&text(&c.name)))
        .max_by_key(|(c, _)| c.name.len);
    if let Some((c, r)) = prefix {
        if c.noregex() != 0 {
            return Some(r);
        }
    }
    if let Some((_, r)) = apis.iter().find(|(c, _)| serves_regex(c, uri)) {
        return Some(r);
    }
    prefix.map(|(_, r)| *r)
}

/// The location's compiled regex, if it is a regex location.
#[cfg(ngx_feature = "pcre")]
fn regex_of(c: &ngx_http_core_loc_conf_t) -> Option<*mut nginx_sys::ngx_regex_t> {
    // SAFETY: a regex location's compiled regex, alive as long as the configuration.
    unsafe { c.regex.as_ref() }.map(|r| r.regex)
}

#[cfg(not(ngx_feature = "pcre"))]
fn regex_of(_: &ngx_http_core_loc_conf_t) -> Option<*mut c_void> {
    None
}

/// Whether a regex location matches `uri`.
fn serves_regex(c: &ngx_http_core_loc_conf_t, uri: &str) -> bool {
    #[cfg(ngx_feature = "pcre")]
    if let Some(re) = regex_of(c) {
        let mut s = ngx_str_t { len: uri.len(), data: uri.as_ptr() as *mut u8 };
        // SAFETY: the location's compiled regex; `s` points at `uri`, which outlives the call
        // and which the regex engine only reads.
        return unsafe { nginx_sys::ngx_regex_exec(re, &mut s, core::ptr::null_mut(), 0) } >= 0;
    }
    let _ = (c, uri);
    false
}
