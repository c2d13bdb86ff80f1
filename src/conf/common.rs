//! What the directive families share: the configuration's types (the main and location
//! configurations, where a directive was given), the module's access to them, and the helpers
//! that read a directive's arguments and report its errors the way nginx's own modules do.

use core::ffi::{c_char, c_void};
use core::{ptr, slice};
use std::fmt::{self, Display};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Arc, OnceLock};

use ipnet::IpNet;
use nginx_sys::{
    ngx_array_t, ngx_conf_full_name, ngx_conf_t, ngx_flag_t, ngx_http_compile_complex_value,
    ngx_http_compile_complex_value_t, ngx_http_complex_value_t, ngx_http_core_loc_conf_t,
    ngx_int_t, ngx_module_t, ngx_pcalloc, ngx_str_t, NGX_LOG_EMERG, NGX_LOG_ERR, NGX_LOG_INFO,
    NGX_LOG_NOTICE, NGX_LOG_WARN, NGX_OK,
};
use ngx::core::{Pool, NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf, Merge, MergeConfigError};
use ngx::{ngx_conf_log_error, ngx_log_error};

use crate::core::guard;
use crate::pages::render::{PageSettings, Pages};
use crate::service::Room;

/// The module, as the `ngx` crate's traits see it: how to reach its configurations.
pub struct Module;

impl HttpModule for Module {
    fn module() -> &'static ngx_module_t {
        // SAFETY: nginx writes the module's static (its indexes) only while it reads a
        // configuration, in one thread, and no reference to it is held across that.
        unsafe { &*ptr::addr_of!(crate::ngx_http_waiting_room_module) }
    }
}

// SAFETY: `MainConf` and `LocConf` are the types the module's create_*_conf functions
// allocate (through these very traits).
unsafe impl HttpModuleMainConf for Module {
    type MainConf = MainConf;
}
// SAFETY: as above.
unsafe impl HttpModuleLocationConf for Module {
    type LocationConf = LocConf;
}

/// The API location's prefix that queue pages poll when `waiting_room` has no `api=`.
pub const DEFAULT_API: &str = "/_wr/";

/// A place in the configuration files, for messages about a directive given earlier.
#[derive(Clone, Debug)]
pub struct Place {
    pub(super) file: String,
    pub(super) line: usize,
}

impl Place {
    pub fn of(cf: *mut ngx_conf_t) -> Place {
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
pub(super) struct ApiLocation {
    pub(super) room: *mut Room,
    pub(super) server: *const c_void,
    pub(super) core: *mut ngx_http_core_loc_conf_t,
}

#[derive(Default)]
pub struct MainConf {
    /// Every room named in the configuration, allocated from the configuration pool, with
    /// where it was first named.
    pub(super) rooms: Vec<(*mut Room, Place)>,
    pub(super) secret: Option<Vec<u8>>,
    pub(super) secret_file: Option<String>,
    pub(super) apis: Vec<ApiLocation>,
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
    Control,
}

/// nginx's `NGX_CONF_UNSET`: a flag (`ngx_conf_set_flag_slot`) not given (yet).
pub const UNSET_FLAG: ngx_flag_t = -1;

/// A flag as nginx merges it: this level's, or the level above's, or off.
fn merge_flag(this: ngx_flag_t, prev: ngx_flag_t) -> ngx_flag_t {
    match (this, prev) {
        (UNSET_FLAG, UNSET_FLAG) => 0,
        (UNSET_FLAG, prev) => prev,
        (this, _) => this,
    }
}

/// nginx's `NGX_CONF_UNSET_PTR`: a pointer setting not given (yet).
pub const UNSET_PTR: *mut ngx_array_t = usize::MAX as *mut ngx_array_t;

/// Where the gate runs (`waiting_room_gate`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Gate {
    /// After the access phase (in the precontent phase): requests that `allow`/`deny`,
    /// `auth_basic` or `auth_request` refuse never reach the room.
    AfterAccess,
    /// First in the access phase: the room holds visitors before any access check runs.
    BeforeAccess,
}

/// What crawlers get (`waiting_room_crawlers`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Crawlers {
    Refuse,
    Pass,
}

/// Who goes past the room without counting (`waiting_room_bypass`).
pub struct Bypass {
    /// Client addresses and ranges, matched against the address the realip module leaves.
    pub nets: Vec<IpNet>,
    /// Conditions, as `ngx_http_test_predicates` takes them (an array of complex values); null
    /// when there are none.
    pub conditions: *mut ngx_array_t,
}

/// How loudly each decision is logged (`waiting_room_log_level`), as `limit_req_log_level`:
/// refusals at this level, places taken in line one level lower.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LogLevel {
    Info,
    Notice,
    Warn,
    Error,
}

impl LogLevel {
    /// nginx's level for refusals, and for places taken (one lower).
    pub fn levels(self) -> (usize, usize) {
        let (refused, queued) = match self {
            LogLevel::Info => (NGX_LOG_INFO, nginx_sys::NGX_LOG_DEBUG),
            LogLevel::Notice => (NGX_LOG_NOTICE, NGX_LOG_INFO),
            LogLevel::Warn => (NGX_LOG_WARN, NGX_LOG_NOTICE),
            LogLevel::Error => (NGX_LOG_ERR, NGX_LOG_WARN),
        };
        (refused as usize, queued as usize)
    }
}

pub struct LocConf {
    /// The room guarding this location; null with `off` or when unset.
    pub(super) room: *mut Room,
    pub(super) room_set: bool,
    /// Where the `waiting_room` that set `room` is.
    pub(super) room_place: Option<Place>,
    pub(super) api: Option<String>,
    pub queue_status: usize,
    /// What this level says about the pages (`waiting_room_page`, `waiting_room_title`, ...),
    /// merged with the levels above.
    pub page_settings: PageSettings,
    /// The pages, built once the location is merged (for a location with a room).
    pub pages: Option<Arc<Pages>>,
    pub gate: Option<Gate>,
    pub crawlers: Option<Crawlers>,
    /// `waiting_room_crawler` conditions (an array of complex values, for
    /// `ngx_http_set_predicate_slot`), or [`UNSET_PTR`].
    pub crawler: *mut ngx_array_t,
    /// The status of a short refusal (not a page load, a crawler); 0 while unset.
    pub refuse_status: usize,
    /// The status of the "closed" and "event over" pages; 0 while unset.
    pub closed_status: usize,
    /// The bearer token a `waiting_room_control` location asks for, if any.
    pub control_token: Option<Vec<u8>>,
    /// `waiting_room_bypass`; `None` while unset.
    pub bypass: Option<Bypass>,
    /// `waiting_room_dry_run` (nginx's flag: [`UNSET_FLAG`] while unset).
    pub dry_run: ngx_flag_t,
    /// `waiting_room_log_level`.
    pub log_level: Option<LogLevel>,
    /// `waiting_room_insert_heartbeat` (as `dry_run`).
    pub insert_heartbeat: ngx_flag_t,
    /// For `waiting_room_api` and `waiting_room_status` locations.
    pub endpoint: Option<Endpoint>,
    pub(super) endpoint_room: *mut Room,
    /// This location's core configuration, where its content handler goes.
    pub(super) core: *mut ngx_http_core_loc_conf_t,
}

impl Default for LocConf {
    fn default() -> Self {
        LocConf {
            room: ptr::null_mut(),
            room_set: false,
            room_place: None,
            api: None,
            queue_status: 0,
            page_settings: PageSettings::default(),
            pages: None,
            gate: None,
            crawlers: None,
            crawler: UNSET_PTR,
            refuse_status: 0,
            closed_status: 0,
            control_token: None,
            bypass: None,
            dry_run: UNSET_FLAG,
            log_level: None,
            insert_heartbeat: UNSET_FLAG,
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

    /// The location's own prefix, for the API script: the name of a prefix location that ends
    /// with `/` (the script appends the endpoint's name to it).
    pub fn own_prefix(&self) -> Option<String> {
        // SAFETY: as in `core_conf`; only read here.
        let clcf = unsafe { self.core.as_ref() }?;
        let regex_or_named = clcf.named() != 0 || !clcf.regex.is_null();
        let name = text(&clcf.name);
        (!regex_or_named && clcf.exact_match() == 0 && name.ends_with('/')).then_some(name)
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
        let own_pages = !self.page_settings.is_empty();
        self.page_settings = self.page_settings.merged(&prev.page_settings);
        if !self.room.is_null() {
            self.pages = match &prev.pages {
                Some(p) if !own_pages => Some(p.clone()),
                _ => Some(pages_for(&self.page_settings)?),
            };
        }
        self.gate = self.gate.or(prev.gate).or(Some(Gate::AfterAccess));
        self.crawlers = self.crawlers.or(prev.crawlers).or(Some(Crawlers::Refuse));
        if self.crawler == UNSET_PTR {
            self.crawler = if prev.crawler == UNSET_PTR { ptr::null_mut() } else { prev.crawler };
        }
        if self.refuse_status == 0 {
            self.refuse_status = if prev.refuse_status == 0 { 503 } else { prev.refuse_status };
        }
        if self.closed_status == 0 {
            self.closed_status = if prev.closed_status == 0 { 503 } else { prev.closed_status };
        }
        if self.bypass.is_none() {
            self.bypass = prev
                .bypass
                .as_ref()
                .map(|b| Bypass { nets: b.nets.clone(), conditions: b.conditions });
        }
        self.dry_run = merge_flag(self.dry_run, prev.dry_run);
        self.log_level = self.log_level.or(prev.log_level).or(Some(LogLevel::Info));
        self.insert_heartbeat = merge_flag(self.insert_heartbeat, prev.insert_heartbeat);
        Ok(())
    }
}

/// The pages of `settings`: the built-in ones are built once and shared. Every template was
/// tried when its directive was read, so this fails only if memory does.
fn pages_for(settings: &PageSettings) -> Result<Arc<Pages>, MergeConfigError> {
    static BUILTIN: OnceLock<Option<Arc<Pages>>> = OnceLock::new();
    if settings.is_empty() {
        let built = BUILTIN.get_or_init(|| Pages::build(settings, false).ok().map(Arc::new));
        return built.clone().ok_or(MergeConfigError::NoValue);
    }
    Pages::build(settings, false).map(Arc::new).map_err(|_| MergeConfigError::NoValue)
}

/// The directive's arguments, the directive's own name first.
pub fn args<'a>(cf: *mut ngx_conf_t) -> &'a [ngx_str_t] {
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

pub fn text(s: &ngx_str_t) -> String {
    String::from_utf8_lossy(s.as_bytes()).into_owned()
}

/// Logs `message` against the directive being parsed and fails it, the way nginx's own
/// modules report configuration errors.
pub fn fail(cf: *mut ngx_conf_t, message: impl Display) -> *mut c_char {
    ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{}", message);
    NGX_CONF_ERROR
}

/// Logs `message` at `warn` against the directive being parsed, which stands.
pub fn warn(cf: *mut ngx_conf_t, message: impl Display) {
    ngx_conf_log_error!(nginx_sys::NGX_LOG_WARN, cf, "{}", message);
}

/// Logs `message` about the directive at `place`, read earlier, as nginx words it.
pub fn fail_at(cf: *mut ngx_conf_t, place: &Place, message: impl Display) -> *mut c_char {
    // SAFETY: the configuration's log.
    let log = unsafe { (*cf).log };
    ngx_log_error!(NGX_LOG_EMERG, log, "{} in {}:{}", message, place.file, place.line);
    NGX_CONF_ERROR
}

/// Runs a directive handler: its error becomes an `nginx -t` message naming the directive's
/// place, and a panic a configuration error instead of unwinding into nginx.
pub fn handle<E: Display>(cf: *mut ngx_conf_t, f: impl FnOnce() -> Result<(), E>) -> *mut c_char {
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
    TooLong { len: u64, max: u64 },
}

/// A file a directive could not use, with the words to say so.
#[derive(Debug)]
pub struct FileProblem {
    pub directive: &'static str,
    pub path: String,
    pub error: FileError,
}

impl Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (d, path) = (self.directive, &self.path);
        match &self.error {
            FileError::Resolve => write!(f, "{d}: cannot resolve \"{path}\""),
            FileError::Read(e) => write!(f, "{d}: cannot read \"{path}\": {e}"),
            FileError::NotRegular => write!(f, "{d} \"{path}\" is not a regular file"),
            FileError::TooLong { len, max } => {
                write!(f, "{d} \"{path}\" is too long: {len} bytes, at most {max}")
            }
        }
    }
}

/// Reads the file a directive names, relative to nginx's prefix like nginx's own: a regular
/// file of at most `max` bytes. A FIFO or a device is refused without being read (it is
/// opened without blocking, and checked again once open), so `nginx -t` never hangs on one
/// or reads without end.
pub fn read_conf_file(
    cf: *mut ngx_conf_t,
    directive: &'static str,
    name: &ngx_str_t,
    max: u64,
) -> Result<(String, Vec<u8>), FileProblem> {
    let problem = |path: String, error| FileProblem { directive, path, error };
    let mut full = *name;
    // SAFETY: `cf` is the live configuration; `ngx_conf_full_name` allocates the result from
    // the cycle pool.
    if unsafe { ngx_conf_full_name((*cf).cycle, &mut full, 1) } != 0 {
        return Err(problem(text(name), FileError::Resolve));
    }
    let path = text(&full);
    let fail = |error| Err(problem(path.clone(), error));
    match std::fs::metadata(&path) {
        Ok(m) if !m.is_file() => return fail(FileError::NotRegular),
        Ok(m) if m.len() > max => return fail(FileError::TooLong { len: m.len(), max }),
        Ok(_) => {}
        Err(e) => return fail(FileError::Read(e)),
    }
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nginx_sys::O_NONBLOCK as i32)
        .open(&path);
    let file = match opened {
        Ok(f) => f,
        Err(e) => return fail(FileError::Read(e)),
    };
    match file.metadata() {
        Ok(m) if !m.is_file() => return fail(FileError::NotRegular),
        Err(e) => return fail(FileError::Read(e)),
        Ok(_) => {}
    }
    let mut bytes = Vec::new();
    match file.take(max + 1).read_to_end(&mut bytes) {
        Ok(n) if n as u64 > max => fail(FileError::TooLong { len: n as u64, max }),
        Ok(_) => Ok((path, bytes)),
        Err(e) => fail(FileError::Read(e)),
    }
}

/// `value` compiled as a complex value (a string with variables) into `cv`; `false` when
/// nginx refused it (it has logged why).
pub fn compile_into(
    cf: *mut ngx_conf_t,
    mut value: ngx_str_t,
    cv: *mut ngx_http_complex_value_t,
) -> bool {
    // SAFETY: `cf` is the configuration being read and `cv` a complex value record in its
    // pool; a zeroed compile record with `cf`, `value` and `complex_value` set is how nginx's
    // own modules call the compiler.
    unsafe {
        let mut ccv: ngx_http_compile_complex_value_t = core::mem::zeroed();
        ccv.cf = cf;
        ccv.value = &mut value;
        ccv.complex_value = cv;
        ngx_http_compile_complex_value(&mut ccv) == NGX_OK as ngx_int_t
    }
}

/// `value` compiled as a complex value in the configuration pool; `None` when nginx refused
/// it (it has logged why).
pub fn compile_complex_value(
    cf: *mut ngx_conf_t,
    value: ngx_str_t,
) -> Option<*mut ngx_http_complex_value_t> {
    // SAFETY: `cf` is the configuration being read; its pool outlives the configuration.
    let cv = unsafe { ngx_pcalloc((*cf).pool, core::mem::size_of::<ngx_http_complex_value_t>()) }
        as *mut ngx_http_complex_value_t;
    (!cv.is_null() && compile_into(cf, value, cv)).then_some(cv)
}

pub fn main_conf(cf: *mut ngx_conf_t) -> Option<&'static mut MainConf> {
    // SAFETY: `cf` is the live configuration of the http block.
    Module::main_conf_mut(unsafe { &*cf })
}

pub fn valid_room_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The room called `name`, created (not yet defined) when first named.
pub fn find_room(cf: *mut ngx_conf_t, name: &str) -> Option<*mut Room> {
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
