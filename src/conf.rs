//! Configuration: the directives, their parsing into typed configuration, and the checks that
//! let `nginx -t` catch every mistake we can see.
//!
//! ```nginx
//! waiting_room_zone zone=NAME:SIZE [max_active=N] [session=TIME] [idle=TIME]
//!                   [queue_timeout=TIME] [claim_window=TIME] [heartbeat=TIME];   # http
//! waiting_room_secret FILE;                                                      # http
//! waiting_room NAME [api=URI] | off;                                 # http, server, location
//! waiting_room_queue_status 200 | 202 | 429 | 503;                   # http, server, location
//! waiting_room_page FILE;                                            # http, server, location
//! waiting_room_api NAME;                                             # location
//! waiting_room_status NAME;                                          # location
//! ```

use core::cell::Cell;
use core::ffi::{c_char, c_void};
use core::{ptr, slice};
use std::fmt::Display;

use nginx_sys::{
    ngx_command_t, ngx_conf_full_name, ngx_conf_t, ngx_parse_size, ngx_parse_time,
    ngx_shared_memory_add, ngx_shm_zone_t, ngx_str_t, NGX_CONF_1MORE, NGX_CONF_TAKE1,
    NGX_CONF_TAKE12, NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET, NGX_HTTP_MAIN_CONF,
    NGX_HTTP_MAIN_CONF_OFFSET, NGX_HTTP_SRV_CONF, NGX_LOG_EMERG,
};
use ngx::core::{Pool, NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::http::HttpModuleLocationConf;
use ngx::http::{HttpModule, HttpModuleMainConf, Merge, MergeConfigError, NgxHttpCoreModule};
use ngx::{ngx_conf_log_error, ngx_string};

use crate::core::room::{Layout, Timing};
use crate::core::token::Signer;
use crate::wiring::Module;

/// Shortest accepted `waiting_room_secret`, in bytes.
pub const SECRET_MIN: usize = 32;
/// Longest accepted `waiting_room_page` template.
const PAGE_MAX: usize = 64 * 1024;
/// The API location's prefix that queue pages poll when `waiting_room` has no `api=`.
pub const DEFAULT_API: &str = "/_wr/";

/// One room: its configuration, and (after the zone is initialised) where its state lives.
pub struct Room {
    pub name: String,
    /// `wr_<name>`.
    pub cookie: String,
    /// The zone's size; 0 while the room is only referred to, not yet defined.
    pub size: usize,
    pub max_active: u32,
    pub timing: Timing,
    pub heartbeat_ms: u64,
    pub secret: Option<Vec<u8>>,
    pub shm_zone: *mut ngx_shm_zone_t,
    /// Set by the zone's init: the room's tables in shared memory, and the slab pool whose
    /// mutex guards them.
    pub region: *mut u8,
    pub region_len: usize,
    pub shpool: *mut nginx_sys::ngx_slab_pool_t,
    pub signer: Option<Signer>,
    /// This worker's last view of the zone's layout and epoch, for checking a live session
    /// without the lock (see `access`).
    pub seen_layout: Cell<Option<(Layout, u64)>>,
}

impl Room {
    fn new(name: &str) -> Room {
        Room {
            name: name.to_owned(),
            cookie: format!("wr_{name}"),
            size: 0,
            max_active: 200,
            timing: Timing {
                session_ms: 300_000,
                idle_ms: 90_000,
                queue_timeout_ms: 900_000,
                claim_window_ms: 30_000,
            },
            heartbeat_ms: 30_000,
            secret: None,
            shm_zone: ptr::null_mut(),
            region: ptr::null_mut(),
            region_len: 0,
            shpool: ptr::null_mut(),
            signer: None,
            seen_layout: Cell::new(None),
        }
    }
}

#[derive(Default)]
pub struct MainConf {
    /// Every room named in the configuration, allocated from the configuration pool.
    pub rooms: Vec<*mut Room>,
    pub secret: Option<Vec<u8>>,
    secret_file: Option<String>,
}

/// What a location's content handler serves, if it is one of ours.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Endpoint {
    Api,
    Status,
}

pub struct LocConf {
    /// The room guarding this location; null with `off` or when unset.
    pub room: *mut Room,
    room_set: bool,
    pub api: Option<String>,
    pub queue_status: usize,
    pub page: Option<String>,
    /// For `waiting_room_api` and `waiting_room_status` locations.
    pub endpoint: Option<(Endpoint, *mut Room)>,
}

impl Default for LocConf {
    fn default() -> Self {
        LocConf {
            room: ptr::null_mut(),
            room_set: false,
            api: None,
            queue_status: 0,
            page: None,
            endpoint: None,
        }
    }
}

impl LocConf {
    pub fn api(&self) -> &str {
        self.api.as_deref().unwrap_or(DEFAULT_API)
    }
}

impl Merge for LocConf {
    fn merge(&mut self, prev: &LocConf) -> Result<(), MergeConfigError> {
        if !self.room_set {
            self.room = prev.room;
            self.room_set = prev.room_set;
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

pub static mut COMMANDS: [ngx_command_t; 8] = [
    command(
        ngx_string!("waiting_room_zone"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_1MORE,
        set_zone,
        NGX_HTTP_MAIN_CONF_OFFSET,
    ),
    command(
        ngx_string!("waiting_room_secret"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
        set_secret,
        NGX_HTTP_MAIN_CONF_OFFSET,
    ),
    command(
        ngx_string!("waiting_room"),
        NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE12,
        set_waiting_room,
        NGX_HTTP_LOC_CONF_OFFSET,
    ),
    command(
        ngx_string!("waiting_room_queue_status"),
        NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1,
        set_queue_status,
        NGX_HTTP_LOC_CONF_OFFSET,
    ),
    command(
        ngx_string!("waiting_room_page"),
        NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1,
        set_page,
        NGX_HTTP_LOC_CONF_OFFSET,
    ),
    command(
        ngx_string!("waiting_room_api"),
        NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1,
        set_api,
        NGX_HTTP_LOC_CONF_OFFSET,
    ),
    command(
        ngx_string!("waiting_room_status"),
        NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1,
        set_status,
        NGX_HTTP_LOC_CONF_OFFSET,
    ),
    ngx_command_t::empty(),
];

// ---- helpers ----

/// The directive's arguments, the directive's own name first.
///
/// SAFETY (of the caller): `cf` is the `ngx_conf_t` nginx passed to a directive handler.
unsafe fn args<'a>(cf: *mut ngx_conf_t) -> &'a [ngx_str_t] {
    let a = (*cf).args;
    if a.is_null() || (*a).nelts == 0 {
        return &[];
    }
    slice::from_raw_parts((*a).elts as *const ngx_str_t, (*a).nelts)
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

/// Runs a directive handler, turning a panic into a configuration error instead of letting it
/// unwind into nginx.
fn guarded(cf: *mut ngx_conf_t, f: impl FnOnce() -> *mut c_char) -> *mut c_char {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| fail(cf, "internal error in the waiting room module"))
}

fn parse_time(value: &[u8]) -> Option<u64> {
    let mut s = ngx_str_t { len: value.len(), data: value.as_ptr() as *mut u8 };
    // SAFETY: `s` points at `value`, which outlives the call; nginx only reads it.
    let ms = unsafe { ngx_parse_time(&mut s, 0) };
    (ms > 0).then_some(ms as u64)
}

fn parse_size(value: &[u8]) -> Option<usize> {
    let mut s = ngx_str_t { len: value.len(), data: value.as_ptr() as *mut u8 };
    // SAFETY: as in `parse_time`.
    let n = unsafe { ngx_parse_size(&mut s) };
    (n > 0).then_some(n as usize)
}

fn valid_room_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Reads a file named in the configuration, relative to nginx's prefix like nginx's own.
fn read_conf_file(cf: *mut ngx_conf_t, name: &ngx_str_t) -> Result<(String, Vec<u8>), String> {
    let mut full = *name;
    // SAFETY: `cf` is the live configuration; `ngx_conf_full_name` allocates the result
    // from the cycle pool.
    if unsafe { ngx_conf_full_name((*cf).cycle, &mut full, 1) } != 0 {
        return Err(format!("cannot resolve \"{}\"", text(name)));
    }
    let path = text(&full);
    std::fs::read(&path)
        .map(|b| (path.clone(), b))
        .map_err(|e| format!("cannot read \"{path}\": {e}"))
}

fn main_conf(cf: *mut ngx_conf_t) -> Option<&'static mut MainConf> {
    // SAFETY: `cf` is the live configuration of the http block.
    Module::main_conf_mut(unsafe { &*cf })
}

/// The room called `name`, created (not yet defined) when first named.
fn find_room(cf: *mut ngx_conf_t, name: &str) -> Option<*mut Room> {
    let mcf = main_conf(cf)?;
    // SAFETY: every pointer in `rooms` came from `Pool::allocate` on the configuration pool.
    if let Some(r) = mcf.rooms.iter().copied().find(|&r| unsafe { (*r).name == name }) {
        return Some(r);
    }
    // SAFETY: `cf.pool` is the configuration pool; what it allocates lives for the cycle and
    // is dropped by the pool's cleanup.
    let pool = unsafe { Pool::from_ngx_pool((*cf).pool) };
    let room = pool.allocate(Room::new(name));
    if room.is_null() {
        return None;
    }
    mcf.rooms.push(room);
    Some(room)
}

/// The usable bytes the slab allocator leaves in a zone of `size` bytes, conservatively: its
/// pool header, a page descriptor per page, and one page for our small root record.
pub fn usable_bytes(size: usize) -> usize {
    const PAGE: usize = 4096;
    let pages = size.saturating_sub(2 * PAGE) / (PAGE + 32);
    pages.saturating_sub(2) * PAGE
}

// ---- directive handlers ----

extern "C" fn set_zone(cf: *mut ngx_conf_t, _: *mut ngx_command_t, _: *mut c_void) -> *mut c_char {
    guarded(cf, || {
        // SAFETY: nginx passes the `cf` of the directive being parsed.
        let args = unsafe { args(cf) };
        let mut zone: Option<(String, usize)> = None;
        let mut max_active: u32 = 200;
        let mut timing = Room::new("").timing;
        let mut heartbeat_ms = 30_000;
        let given = |key: &str, value: &str| format!("{key}={value}");
        let (mut heartbeat_text, mut idle_text) = (given("heartbeat", "30s"), given("idle", "90s"));
        for arg in &args[1..] {
            let a = text(arg);
            let (key, value) = a.split_once('=').unwrap_or((a.as_str(), ""));
            match key {
                "zone" => {
                    let Some((name, size)) = value.rsplit_once(':') else {
                        return fail(cf, format!("invalid zone size \"{value}\""));
                    };
                    if !valid_room_name(name) {
                        return fail(cf, format!("invalid zone name \"{name}\""));
                    }
                    let Some(size) = parse_size(size.as_bytes()) else {
                        return fail(cf, format!("invalid zone size \"{value}\""));
                    };
                    if size < 8 * 4096 {
                        return fail(cf, format!("zone \"{name}\" is too small"));
                    }
                    zone = Some((name.to_owned(), size));
                }
                "max_active" => match value.parse::<u32>() {
                    Ok(n) if (1..=10_000_000).contains(&n) => max_active = n,
                    _ => return fail(cf, format!("invalid max_active value \"{value}\"")),
                },
                "session" | "idle" | "queue_timeout" | "claim_window" | "heartbeat" => {
                    let Some(ms) = parse_time(value.as_bytes()) else {
                        return fail(cf, format!("invalid {key} value \"{value}\""));
                    };
                    match key {
                        "session" => timing.session_ms = ms,
                        "idle" => {
                            timing.idle_ms = ms;
                            idle_text = given(key, value);
                        }
                        "queue_timeout" => timing.queue_timeout_ms = ms,
                        "claim_window" => timing.claim_window_ms = ms,
                        _ => {
                            heartbeat_ms = ms;
                            heartbeat_text = given(key, value);
                        }
                    }
                }
                _ => return fail(cf, format!("invalid parameter \"{a}\"")),
            }
        }
        let Some((name, size)) = zone else {
            return fail(cf, "\"waiting_room_zone\" must have \"zone\" parameter");
        };
        if heartbeat_ms >= timing.idle_ms {
            return fail(cf, format!("\"{heartbeat_text}\" must be shorter than \"{idle_text}\""));
        }
        if Layout::new(usable_bytes(size), max_active).is_none() {
            let need = (Layout::min_region_len(max_active) + 16 * 4096) / 1024 + 1;
            return fail(
                cf,
                format!(
                    "zone \"{name}\" is too small for max_active={max_active}, \
                     it needs at least {need}k"
                ),
            );
        }
        let Some(room) = find_room(cf, &name) else { return NGX_CONF_ERROR };
        // SAFETY: `room` came from the configuration pool and lives as long as it.
        let room = unsafe { &mut *room };
        if room.size != 0 {
            return fail(cf, format!("duplicate zone \"{name}\""));
        }
        let mut zname = ngx_str_t { len: name.len(), data: room.name.as_ptr() as *mut u8 };
        // SAFETY: `zname` points at `room.name`, which lives as long as the configuration;
        // the module pointer is our static module, used by nginx as the zone's tag.
        let shm_zone = unsafe {
            ngx_shared_memory_add(
                cf,
                &mut zname,
                size,
                ptr::addr_of_mut!(crate::wiring::ngx_http_waiting_room_module) as *mut c_void,
            )
        };
        if shm_zone.is_null() {
            return NGX_CONF_ERROR;
        }
        room.size = size;
        room.max_active = max_active;
        room.timing = timing;
        room.heartbeat_ms = heartbeat_ms;
        room.shm_zone = shm_zone;
        // SAFETY: nginx returned a live zone record; `room` outlives the cycle's zones.
        unsafe {
            (*shm_zone).init = Some(crate::zone::init);
            (*shm_zone).data = room as *mut Room as *mut c_void;
        }
        NGX_CONF_OK
    })
}

extern "C" fn set_secret(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    _: *mut c_void,
) -> *mut c_char {
    guarded(cf, || {
        let Some(mcf) = main_conf(cf) else { return NGX_CONF_ERROR };
        if mcf.secret_file.is_some() {
            return c"is duplicate".as_ptr() as *mut c_char;
        }
        // SAFETY: nginx passes the `cf` of the directive being parsed.
        let args = unsafe { args(cf) };
        let (path, mut key) = match read_conf_file(cf, &args[1]) {
            Ok(r) => r,
            Err(e) => return fail(cf, format!("waiting_room_secret: {e}")),
        };
        // A key written by `openssl rand -hex 32 > file` ends with a newline that is no part
        // of it.
        while key.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
            key.pop();
        }
        if key.len() < SECRET_MIN {
            return fail(
                cf,
                format!(
                    "waiting_room_secret \"{path}\" is too short: {} bytes, at least {SECRET_MIN} needed",
                    key.len()
                ),
            );
        }
        mcf.secret = Some(key);
        mcf.secret_file = Some(path);
        NGX_CONF_OK
    })
}

extern "C" fn set_waiting_room(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    guarded(cf, || {
        // SAFETY: `conf` is our location configuration, created by `create_loc_conf`.
        let lcf = unsafe { &mut *(conf as *mut LocConf) };
        if lcf.room_set {
            return c"is duplicate".as_ptr() as *mut c_char;
        }
        // SAFETY: nginx passes the `cf` of the directive being parsed.
        let args = unsafe { args(cf) };
        let name = text(&args[1]);
        lcf.room_set = true;
        if name == "off" {
            if args.len() > 2 {
                return fail(cf, format!("invalid parameter \"{}\"", text(&args[2])));
            }
            lcf.room = ptr::null_mut();
            return NGX_CONF_OK;
        }
        if !valid_room_name(&name) {
            return fail(cf, format!("invalid waiting room name \"{name}\""));
        }
        if let Some(param) = args.get(2) {
            let p = text(param);
            match p.strip_prefix("api=") {
                Some(uri)
                    if uri.starts_with('/')
                        && uri.ends_with('/')
                        && !uri.contains(['"', '\'', '<', '>', '\\']) =>
                {
                    lcf.api = Some(uri.to_owned())
                }
                Some(uri) => {
                    return fail(
                        cf,
                        format!("invalid api value \"{uri}\", it must start and end with \"/\""),
                    )
                }
                None => return fail(cf, format!("invalid parameter \"{p}\"")),
            }
        }
        match find_room(cf, &name) {
            Some(room) => lcf.room = room,
            None => return NGX_CONF_ERROR,
        }
        NGX_CONF_OK
    })
}

extern "C" fn set_queue_status(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    guarded(cf, || {
        // SAFETY: `conf` is our location configuration.
        let lcf = unsafe { &mut *(conf as *mut LocConf) };
        if lcf.queue_status != 0 {
            return c"is duplicate".as_ptr() as *mut c_char;
        }
        // SAFETY: nginx passes the `cf` of the directive being parsed.
        let value = text(&unsafe { args(cf) }[1]);
        match value.parse::<usize>() {
            Ok(code @ (200 | 202 | 429 | 503)) => lcf.queue_status = code,
            _ => {
                return fail(
                    cf,
                    format!("invalid value \"{value}\", it must be 200, 202, 429 or 503"),
                )
            }
        }
        NGX_CONF_OK
    })
}

extern "C" fn set_page(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    guarded(cf, || {
        // SAFETY: `conf` is our location configuration.
        let lcf = unsafe { &mut *(conf as *mut LocConf) };
        if lcf.page.is_some() {
            return c"is duplicate".as_ptr() as *mut c_char;
        }
        // SAFETY: nginx passes the `cf` of the directive being parsed.
        let (path, bytes) = match read_conf_file(cf, &unsafe { args(cf) }[1]) {
            Ok(r) => r,
            Err(e) => return fail(cf, format!("waiting_room_page: {e}")),
        };
        if bytes.len() > PAGE_MAX {
            return fail(
                cf,
                format!("waiting_room_page \"{path}\" is larger than {}k", PAGE_MAX / 1024),
            );
        }
        match String::from_utf8(bytes) {
            Ok(page) => lcf.page = Some(page),
            Err(_) => return fail(cf, format!("waiting_room_page \"{path}\" is not UTF-8 text")),
        }
        NGX_CONF_OK
    })
}

fn set_endpoint(cf: *mut ngx_conf_t, conf: *mut c_void, endpoint: Endpoint) -> *mut c_char {
    guarded(cf, || {
        // SAFETY: `conf` is our location configuration.
        let lcf = unsafe { &mut *(conf as *mut LocConf) };
        if lcf.endpoint.is_some() {
            return c"is duplicate".as_ptr() as *mut c_char;
        }
        // SAFETY: nginx passes the `cf` of the directive being parsed.
        let name = text(&unsafe { args(cf) }[1]);
        if !valid_room_name(&name) {
            return fail(cf, format!("invalid waiting room name \"{name}\""));
        }
        let Some(room) = find_room(cf, &name) else { return NGX_CONF_ERROR };
        lcf.endpoint = Some((endpoint, room));
        // SAFETY: `cf` is inside a location block, so the core module's location
        // configuration is there.
        let Some(clcf) = NgxHttpCoreModule::location_conf_mut(unsafe { &*cf }) else {
            return NGX_CONF_ERROR;
        };
        clcf.handler = Some(match endpoint {
            Endpoint::Api => crate::api::api_handler,
            Endpoint::Status => crate::api::status_handler,
        });
        NGX_CONF_OK
    })
}

extern "C" fn set_api(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    set_endpoint(cf, conf, Endpoint::Api)
}

extern "C" fn set_status(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    set_endpoint(cf, conf, Endpoint::Status)
}

/// After the http block: every room named must be defined, and gets the configured secret.
pub unsafe extern "C" fn init_main_conf(cf: *mut ngx_conf_t, conf: *mut c_void) -> *mut c_char {
    guarded(cf, || {
        // SAFETY: `conf` is our main configuration, created by `create_main_conf`.
        let mcf = unsafe { &mut *(conf as *mut MainConf) };
        for &room in &mcf.rooms {
            // SAFETY: allocated from the configuration pool by `find_room`.
            let room = unsafe { &mut *room };
            if room.size == 0 {
                return fail(cf, format!("unknown waiting room \"{}\"", room.name));
            }
            room.secret.clone_from(&mcf.secret);
        }
        NGX_CONF_OK
    })
}

/// The module's main configuration as seen from a request or the cycle.
pub fn rooms_of_cycle(cycle: *mut nginx_sys::ngx_cycle_t) -> &'static [*mut Room] {
    use ngx::http::HttpModuleConfExt;
    // SAFETY: `cycle` is the running cycle; its http main configuration holds ours when the
    // http block exists, and nothing otherwise.
    let conf = unsafe {
        cycle.as_ref().and_then(|c| c.http_main_conf_unchecked::<MainConf>(Module::module()))
    };
    // SAFETY: the main configuration lives as long as the cycle.
    conf.map(|c| unsafe { c.as_ref().rooms.as_slice() }).unwrap_or(&[])
}
