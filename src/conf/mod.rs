//! Configuration: the directives, their parsing into typed configuration, and the checks that
//! let `nginx -t` catch every mistake we can see. One file per family:
//!
//! * [`zone`]: `waiting_room_zone`, `waiting_room_secret` (http);
//! * [`location`]: `waiting_room`, `waiting_room_queue_status`, `waiting_room_page`,
//!   `waiting_room_api`, `waiting_room_status`;
//! * [`check`]: what can only be checked once the whole http block is read.
//!
//! Each family reports typed errors; they become `nginx -t` messages here, at the edge.

mod check;
mod location;
mod zone;

use core::ffi::{c_char, c_void};
use core::{ptr, slice};
use std::fmt::Display;
use std::io::Read;

use nginx_sys::{
    ngx_command_t, ngx_conf_full_name, ngx_conf_t, ngx_http_core_loc_conf_t, ngx_str_t,
    NGX_CONF_1MORE, NGX_CONF_TAKE1, NGX_CONF_TAKE12, NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET,
    NGX_HTTP_MAIN_CONF, NGX_HTTP_MAIN_CONF_OFFSET, NGX_HTTP_SRV_CONF, NGX_LOG_EMERG,
};
use ngx::core::{Pool, NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::http::{HttpModule, HttpModuleMainConf, Merge, MergeConfigError};
use ngx::{ngx_conf_log_error, ngx_log_error, ngx_string};

use crate::core::guard;
use crate::service::Room;
use crate::wiring::Module;

/// The API location's prefix that queue pages poll when `waiting_room` has no `api=`.
pub const DEFAULT_API: &str = "/_wr/";

/// A place in the configuration files, for messages about a directive given earlier.
#[derive(Clone, Debug)]
pub struct Place {
    file: String,
    line: usize,
}

impl Place {
    fn of(cf: *mut ngx_conf_t) -> Place {
        // SAFETY: `cf` is the configuration being parsed; its current file is set while a
        // directive is handled.
        unsafe {
            match (*cf).conf_file.as_ref() {
                Some(f) => Place { file: text(&f.file.name), line: f.line },
                None => Place { file: String::new(), line: 0 },
            }
        }
    }
}

/// One `waiting_room_api NAME` location.
struct ApiLocation {
    room: *mut Room,
    server: *const c_void,
    core: *mut ngx_http_core_loc_conf_t,
}

#[derive(Default)]
pub struct MainConf {
    /// Every room named in the configuration, allocated from the configuration pool, with
    /// where it was first named.
    rooms: Vec<(*mut Room, Place)>,
    secret: Option<Vec<u8>>,
    secret_file: Option<String>,
    apis: Vec<ApiLocation>,
}

impl MainConf {
    /// The rooms of the configuration.
    pub fn rooms(&self) -> impl Iterator<Item = &Room> {
        // SAFETY: every pointer came from `Pool::allocate` on the configuration pool, which
        // outlives the configuration.
        self.rooms.iter().filter_map(|(r, _)| unsafe { r.as_ref() })
    }
}

/// What a location's content handler serves, if it is one of ours.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Endpoint {
    Api,
    Status,
}

pub struct LocConf {
    /// The room guarding this location; null with `off` or when unset.
    room: *mut Room,
    room_set: bool,
    /// Where the `waiting_room` that set `room` is.
    room_place: Option<Place>,
    api: Option<String>,
    pub queue_status: usize,
    pub page: Option<String>,
    /// For `waiting_room_api` and `waiting_room_status` locations.
    pub endpoint: Option<Endpoint>,
    endpoint_room: *mut Room,
    /// This location's core configuration, where its content handler goes.
    core: *mut ngx_http_core_loc_conf_t,
}

impl Default for LocConf {
    fn default() -> Self {
        LocConf {
            room: ptr::null_mut(),
            room_set: false,
            room_place: None,
            api: None,
            queue_status: 0,
            page: None,
            endpoint: None,
            endpoint_room: ptr::null_mut(),
            core: ptr::null_mut(),
        }
    }
}

impl LocConf {
    /// The room that guards this location.
    pub fn room(&self) -> Option<&Room> {
        // SAFETY: a non-null room pointer points at a room allocated from the configuration
        // pool, alive as long as this configuration.
        unsafe { self.room.as_ref() }
    }

    /// The room whose API or status this location serves.
    pub fn endpoint_room(&self, want: Endpoint) -> Option<&Room> {
        // SAFETY: as in `room`.
        if self.endpoint != Some(want) {
            return None;
        }
        // SAFETY: as in `room`.
        unsafe { self.endpoint_room.as_ref() }
    }

    /// The API prefix the queue page polls.
    pub fn api(&self) -> &str {
        self.api.as_deref().unwrap_or(DEFAULT_API)
    }

    /// The location's core configuration, for a `waiting_room_api` or `waiting_room_status`
    /// location.
    pub fn core_conf(&mut self) -> Option<&mut ngx_http_core_loc_conf_t> {
        // SAFETY: set by the directive to the location's own core configuration, which lives
        // as long as this one; only the configuration code running now touches it.
        unsafe { self.core.as_mut() }
    }

    /// The location's own prefix, for the API script: the name of a prefix location.
    pub fn own_prefix(&self) -> Option<String> {
        // SAFETY: as in `core_conf`; only read here.
        let clcf = unsafe { self.core.as_ref() }?;
        let regex_or_named = clcf.named() != 0 || !clcf.regex.is_null();
        (!regex_or_named && clcf.exact_match() == 0).then(|| text(&clcf.name))
    }
}

impl Merge for LocConf {
    fn merge(&mut self, prev: &LocConf) -> Result<(), MergeConfigError> {
        if !self.room_set {
            self.room = prev.room;
            self.room_set = prev.room_set;
            self.room_place.clone_from(&prev.room_place);
            if self.api.is_none() {
                self.api.clone_from(&prev.api);
            }
        }
        if self.queue_status == 0 {
            self.queue_status = if prev.queue_status == 0 { 200 } else { prev.queue_status };
        }
        if self.page.is_none() {
            self.page.clone_from(&prev.page);
        }
        Ok(())
    }
}

// ---- directive table ----

type SetFn = unsafe extern "C" fn(*mut ngx_conf_t, *mut ngx_command_t, *mut c_void) -> *mut c_char;

/// One row of the directive table.
const fn command(name: ngx_str_t, type_: u32, set: SetFn, conf: usize) -> ngx_command_t {
    ngx_command_t {
        name,
        type_: type_ as _,
        set: Some(set),
        conf: conf as _,
        offset: 0,
        post: ptr::null_mut(),
    }
}

const ANY_LEVEL: u32 = NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF;

pub static mut COMMANDS: [ngx_command_t; 8] = [
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
        ANY_LEVEL | NGX_CONF_TAKE1,
        location::set_page,
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

// ---- helpers shared by the families ----

/// The directive's arguments, the directive's own name first.
fn args<'a>(cf: *mut ngx_conf_t) -> &'a [ngx_str_t] {
    // SAFETY: `cf` is the configuration nginx passed to a directive handler, whose `args`
    // array holds the directive's words for as long as the handler runs.
    unsafe {
        let a = (*cf).args;
        if a.is_null() || (*a).nelts == 0 {
            return &[];
        }
        slice::from_raw_parts((*a).elts as *const ngx_str_t, (*a).nelts)
    }
}

fn text(s: &ngx_str_t) -> String {
    String::from_utf8_lossy(s.as_bytes()).into_owned()
}

/// Logs `message` against the directive being parsed and fails it, the way nginx's own
/// modules report configuration errors.
fn fail(cf: *mut ngx_conf_t, message: impl Display) -> *mut c_char {
    ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{}", message);
    NGX_CONF_ERROR
}

/// Logs `message` about the directive at `place`, read earlier, as nginx words it.
fn fail_at(cf: *mut ngx_conf_t, place: &Place, message: impl Display) -> *mut c_char {
    // SAFETY: the configuration's log.
    let log = unsafe { (*cf).log };
    ngx_log_error!(NGX_LOG_EMERG, log, "{} in {}:{}", message, place.file, place.line);
    NGX_CONF_ERROR
}

/// Runs a directive handler: its error becomes an `nginx -t` message naming the directive's
/// place, and a panic a configuration error instead of unwinding into nginx.
fn handle<E: Display>(cf: *mut ngx_conf_t, f: impl FnOnce() -> Result<(), E>) -> *mut c_char {
    match guard::catch(f) {
        Ok(Ok(())) => NGX_CONF_OK,
        Ok(Err(e)) => fail(cf, e),
        Err(_) => fail(cf, "internal error in the waiting room module"),
    }
}

/// Why a file named in the configuration could not be used.
#[derive(Debug)]
pub enum FileError {
    Resolve,
    Read(std::io::Error),
    NotRegular,
    TooLong(u64),
}

/// Reads a file named in the configuration, relative to nginx's prefix like nginx's own: a
/// regular file of at most `max` bytes. A FIFO or a device is refused before it is opened, so
/// `nginx -t` never hangs on one or reads without end.
fn read_conf_file(
    cf: *mut ngx_conf_t,
    name: &ngx_str_t,
    max: u64,
) -> Result<(String, Vec<u8>), (String, FileError)> {
    let mut full = *name;
    // SAFETY: `cf` is the live configuration; `ngx_conf_full_name` allocates the result from
    // the cycle pool.
    if unsafe { ngx_conf_full_name((*cf).cycle, &mut full, 1) } != 0 {
        return Err((text(name), FileError::Resolve));
    }
    let path = text(&full);
    let fail = |e| Err((path.clone(), e));
    match std::fs::metadata(&path) {
        Ok(m) if !m.is_file() => return fail(FileError::NotRegular),
        Ok(m) if m.len() > max => return fail(FileError::TooLong(m.len())),
        Ok(_) => {}
        Err(e) => return fail(FileError::Read(e)),
    }
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) => return fail(FileError::Read(e)),
    };
    // Checked again on what was opened, and read no further than `max` in any case.
    match file.metadata() {
        Ok(m) if !m.is_file() => return fail(FileError::NotRegular),
        Err(e) => return fail(FileError::Read(e)),
        Ok(_) => {}
    }
    let mut bytes = Vec::new();
    match file.take(max + 1).read_to_end(&mut bytes) {
        Ok(n) if n as u64 > max => fail(FileError::TooLong(n as u64)),
        Ok(_) => Ok((path, bytes)),
        Err(e) => fail(FileError::Read(e)),
    }
}

fn main_conf(cf: *mut ngx_conf_t) -> Option<&'static mut MainConf> {
    // SAFETY: `cf` is the live configuration of the http block.
    Module::main_conf_mut(unsafe { &*cf })
}

fn valid_room_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The room called `name`, created (not yet defined) when first named.
fn find_room(cf: *mut ngx_conf_t, name: &str) -> Option<*mut Room> {
    let mcf = main_conf(cf)?;
    // SAFETY: every pointer in `rooms` came from `Pool::allocate` on the configuration pool.
    if let Some(&(r, _)) = mcf.rooms.iter().find(|(r, _)| unsafe { (**r).name == name }) {
        return Some(r);
    }
    // SAFETY: `cf.pool` is the configuration pool; what it allocates lives for the cycle and
    // is dropped by the pool's cleanup.
    let pool = unsafe { Pool::from_ngx_pool((*cf).pool) };
    let room = pool.allocate(Room::new(name));
    if room.is_null() {
        return None;
    }
    mcf.rooms.push((room, Place::of(cf)));
    Some(room)
}

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
