//! Configuration: the directives, their parsing into typed configuration, and the checks that
//! let `nginx -t` catch every mistake we can see. One file per family:
//!
//! * [`zone`]: `waiting_room_zone`, `waiting_room_secret` (http);
//! * [`location`]: `waiting_room`, `waiting_room_queue_status`,
//!   `waiting_room_gate`, `waiting_room_crawlers`, `waiting_room_crawler`,
//!   `waiting_room_refuse_status`, `waiting_room_closed_status`, `waiting_room_bypass`,
//!   `waiting_room_dry_run`, `waiting_room_log_level`, `waiting_room_insert_heartbeat`,
//!   `waiting_room_api`,
//!   `waiting_room_status`, `waiting_room_control`;
//! * [`pages`]: `waiting_room_page`, `waiting_room_title`, `waiting_room_message`,
//!   `waiting_room_logo`, `waiting_room_colors`, `waiting_room_language`, `waiting_room_text`;
//! * [`check`]: what can only be checked once a location is merged;
//! * [`common`]: what they share: the configuration's types and the helpers that read
//!   arguments and report errors.
//!
//! Each family reports typed errors; they become `nginx -t` messages at the edge
//! (`common::handle`). This file holds the directive table and the end-of-block checks.

mod check;
mod common;
mod location;
mod pages;
mod zone;

use core::ffi::{c_char, c_void};
use core::ptr;

use nginx_sys::{
    ngx_command_t, ngx_conf_set_flag_slot, ngx_conf_t, ngx_http_set_predicate_slot, ngx_str_t,
    NGX_CONF_1MORE, NGX_CONF_FLAG, NGX_CONF_TAKE1, NGX_CONF_TAKE12, NGX_CONF_TAKE23,
    NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET, NGX_HTTP_MAIN_CONF, NGX_HTTP_MAIN_CONF_OFFSET,
    NGX_HTTP_SRV_CONF,
};
use ngx::core::NGX_CONF_OK;
use ngx::http::HttpModule;
use ngx::ngx_string;

use crate::core::guard;
use common::{fail, fail_at};
pub use common::{Bypass, Crawlers, Endpoint, Gate, LocConf, LogLevel, MainConf, Module};

// ---- directive table ----

type SetFn = unsafe extern "C" fn(*mut ngx_conf_t, *mut ngx_command_t, *mut c_void) -> *mut c_char;

/// One row of the directive table.
const fn command(name: ngx_str_t, type_: u32, set: SetFn, conf: usize) -> ngx_command_t {
    command_at(name, type_, set, conf, 0)
}

/// A row whose setter writes at `offset` in the configuration (nginx's stock setters).
const fn command_at(
    name: ngx_str_t,
    type_: u32,
    set: SetFn,
    conf: usize,
    offset: usize,
) -> ngx_command_t {
    ngx_command_t {
        name,
        type_: type_ as _,
        set: Some(set),
        conf: conf as _,
        offset: offset as _,
        post: ptr::null_mut(),
    }
}

const ANY_LEVEL: u32 = NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF;

pub static mut COMMANDS: [ngx_command_t; 24] = [
    command(
        ngx_string!("waiting_room_zone"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_1MORE,
        zone::set_zone,
        NGX_HTTP_MAIN_CONF_OFFSET,
    ),
    command(
        ngx_string!("waiting_room_secret"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
        zone::set_secret,
        NGX_HTTP_MAIN_CONF_OFFSET,
    ),
    command(
        ngx_string!("waiting_room"),
        ANY_LEVEL | NGX_CONF_TAKE12,
        location::set_waiting_room,
        NGX_HTTP_LOC_CONF_OFFSET,
    ),
    command(
        ngx_string!("waiting_room_queue_status"),
        ANY_LEVEL | NGX_CONF_TAKE1,
        location::set_queue_status,
        NGX_HTTP_LOC_CONF_OFFSET,
    ),
    command(
        ngx_string!("waiting_room_page"),
        ANY_LEVEL | NGX_CONF_1MORE,
        pages::set_page,
        NGX_HTTP_LOC_CONF_OFFSET,
    ),
    command(
        ngx_string!("waiting_room_title"),
        ANY_LEVEL | NGX_CONF_TAKE1,
        pages::set_title,
        NGX_HTTP_LOC_CONF_OFFSET,
    ),
    command(
        ngx_string!("waiting_room_message"),
        ANY_LEVEL | NGX_CONF_TAKE1,
        pages::set_message,
        NGX_HTTP_LOC_CONF_OFFSET,
    ),
    command(
        ngx_string!("waiting_room_logo"),
        ANY_LEVEL | NGX_CONF_TAKE12,
        pages::set_logo,
        NGX_HTTP_LOC_CONF_OFFSET,
    ),
    command(
        ngx_string!("waiting_room_colors"),
        ANY_LEVEL | NGX_CONF_TAKE12,
        pages::set_colors,
        NGX_HTTP_LOC_CONF_OFFSET,
    ),
    command(
        ngx_string!("waiting_room_language"),
        ANY_LEVEL | NGX_CONF_1MORE,
        pages::set_language,
        NGX_HTTP_LOC_CONF_OFFSET,
    ),
    command(
        ngx_string!("waiting_room_text"),
        ANY_LEVEL | NGX_CONF_TAKE23,
        pages::set_text,
        NGX_HTTP_LOC_CONF_OFFSET,
    ),
    command(
        ngx_string!("waiting_room_gate"),
        ANY_LEVEL | NGX_CONF_TAKE1,
        location::set_gate,
        NGX_HTTP_LOC_CONF_OFFSET,
    ),
    command(
        ngx_string!("waiting_room_crawlers"),
        ANY_LEVEL | NGX_CONF_TAKE1,
        location::set_crawlers,
        NGX_HTTP_LOC_CONF_OFFSET,
    ),
    command_at(
        ngx_string!("waiting_room_crawler"),
        ANY_LEVEL | NGX_CONF_1MORE,
        ngx_http_set_predicate_slot,
        NGX_HTTP_LOC_CONF_OFFSET,
        core::mem::offset_of!(LocConf, crawler),
    ),
    command(
        ngx_string!("waiting_room_refuse_status"),
        ANY_LEVEL | NGX_CONF_TAKE1,
        location::set_refuse_status,
        NGX_HTTP_LOC_CONF_OFFSET,
    ),
    command(
        ngx_string!("waiting_room_closed_status"),
        ANY_LEVEL | NGX_CONF_TAKE1,
        location::set_closed_status,
        NGX_HTTP_LOC_CONF_OFFSET,
    ),
    command(
        ngx_string!("waiting_room_bypass"),
        ANY_LEVEL | NGX_CONF_1MORE,
        location::set_bypass,
        NGX_HTTP_LOC_CONF_OFFSET,
    ),
    command_at(
        ngx_string!("waiting_room_dry_run"),
        ANY_LEVEL | NGX_CONF_FLAG,
        ngx_conf_set_flag_slot,
        NGX_HTTP_LOC_CONF_OFFSET,
        core::mem::offset_of!(LocConf, dry_run),
    ),
    command(
        ngx_string!("waiting_room_log_level"),
        ANY_LEVEL | NGX_CONF_TAKE1,
        location::set_log_level,
        NGX_HTTP_LOC_CONF_OFFSET,
    ),
    command_at(
        ngx_string!("waiting_room_insert_heartbeat"),
        ANY_LEVEL | NGX_CONF_FLAG,
        ngx_conf_set_flag_slot,
        NGX_HTTP_LOC_CONF_OFFSET,
        core::mem::offset_of!(LocConf, insert_heartbeat),
    ),
    command(
        ngx_string!("waiting_room_control"),
        NGX_HTTP_LOC_CONF | NGX_CONF_TAKE12,
        location::set_control,
        NGX_HTTP_LOC_CONF_OFFSET,
    ),
    command(
        ngx_string!("waiting_room_api"),
        NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1,
        location::set_api,
        NGX_HTTP_LOC_CONF_OFFSET,
    ),
    command(
        ngx_string!("waiting_room_status"),
        NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1,
        location::set_status,
        NGX_HTTP_LOC_CONF_OFFSET,
    ),
    ngx_command_t::empty(),
];

/// After the http block: every room named must be defined, and gets the configured secret;
/// then the checks that need the whole block.
pub unsafe extern "C" fn init_main_conf(cf: *mut ngx_conf_t, conf: *mut c_void) -> *mut c_char {
    match guard::catch(|| {
        // SAFETY: `conf` is our main configuration, created by `create_main_conf`.
        let mcf = unsafe { &mut *(conf as *mut MainConf) };
        for (room, place) in &mcf.rooms {
            // SAFETY: allocated from the configuration pool by `find_room`.
            let room = unsafe { &mut **room };
            if room.settings.is_none() {
                return fail_at(cf, place, format!("unknown waiting room \"{}\"", room.name));
            }
            room.set_secret(mcf.secret.clone());
        }
        NGX_CONF_OK
    }) {
        Ok(rv) => rv,
        Err(_) => fail(cf, "internal error in the waiting room module"),
    }
}

/// Checks a location's merged configuration (see [`check::location`]).
pub fn check_location(cf: *mut ngx_conf_t, lcf: &LocConf) -> *mut c_char {
    match guard::catch(|| check::location(cf, lcf)) {
        Ok(Ok(())) => NGX_CONF_OK,
        Ok(Err((place, e))) => fail_at(cf, &place, e),
        Err(_) => fail(cf, "internal error in the waiting room module"),
    }
}

/// The module's main configuration of a running cycle, if it has an http block.
pub fn of_cycle(cycle: *mut nginx_sys::ngx_cycle_t) -> Option<&'static MainConf> {
    use ngx::http::HttpModuleConfExt;
    // SAFETY: `cycle` is the running cycle; its http main configuration holds ours when the
    // http block exists, and nothing otherwise.
    let conf = unsafe {
        cycle.as_ref().and_then(|c| c.http_main_conf_unchecked::<MainConf>(Module::module()))
    };
    // SAFETY: the main configuration lives as long as the cycle.
    conf.map(|c| unsafe { &*c.as_ptr() })
}
