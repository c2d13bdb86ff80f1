//! The directives of a protected location and of the room's own locations.
//!
//! ```nginx
//! waiting_room NAME [api=URI] | off;                                 # http, server, location
//! waiting_room_queue_status 200 | 202 | 429 | 503;                   # http, server, location
//! waiting_room_gate after_access | before_access;                    # http, server, location
//! waiting_room_crawlers refuse | pass;                               # http, server, location
//! waiting_room_crawler STRING ...;                                   # http, server, location
//! waiting_room_refuse_status 403 | 429 | 503;                        # http, server, location
//! waiting_room_closed_status 200 | 403 | 404 | 410 | 503;            # http, server, location
//! waiting_room_api NAME;                                             # location
//! waiting_room_status NAME;                                          # location
//! waiting_room_control NAME [token=FILE];                            # location
//! waiting_room_bypass ADDRESS | CIDR | CONDITION ...;                # http, server, location
//! waiting_room_dry_run on | off;                                     # http, server, location
//! waiting_room_log_level info | notice | warn | error;               # http, server, location
//! waiting_room_insert_heartbeat on | off;                            # http, server, location
//! ```

use core::ffi::{c_char, c_void};
use core::fmt;

use std::net::IpAddr;

use ipnet::IpNet;
use nginx_sys::{
    ngx_array_create, ngx_array_push, ngx_command_t, ngx_conf_t, ngx_http_complex_value_t,
    ngx_str_t,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleServerConf, NgxHttpCoreModule};

use super::common::{
    args, compile_into, find_room, handle, main_conf, read_conf_file, text, valid_room_name,
    ApiLocation, Bypass, Crawlers, Endpoint, FileProblem, Gate, LocConf, LogLevel, Place,
};

/// What is wrong with one of these directives.
#[derive(Debug)]
pub enum LocationError {
    Duplicate(&'static str),
    InvalidName(String),
    InvalidParameter(String),
    InvalidApi(String),
    InvalidStatus {
        value: String,
        allowed: &'static str,
    },
    InvalidChoice {
        value: String,
        choices: &'static str,
    },
    PageFile(FileProblem),
    /// A `token=` file without a usable token.
    BadToken(String),
    /// A `waiting_room_bypass` parameter that is neither an address nor a condition.
    InvalidBypass(String),
    /// nginx refused a condition (it has said why).
    BadCondition,
    /// Out of memory, or outside an http block.
    Internal,
}

impl fmt::Display for LocationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LocationError::Duplicate(d) => write!(f, "\"{d}\" directive is duplicate"),
            LocationError::InvalidName(n) => write!(f, "invalid waiting room name \"{n}\""),
            LocationError::InvalidParameter(p) => write!(f, "invalid parameter \"{p}\""),
            LocationError::InvalidApi(uri) => {
                write!(f, "invalid api value \"{uri}\", it must start and end with \"/\"")
            }
            LocationError::InvalidStatus { value, allowed } => {
                write!(f, "invalid value \"{value}\", it must be {allowed}")
            }
            LocationError::InvalidChoice { value, choices } => {
                write!(f, "invalid value \"{value}\", it must be {choices}")
            }
            LocationError::PageFile(p) => write!(f, "{p}"),
            LocationError::BadToken(path) => write!(
                f,
                "token file \"{path}\" must start with a token of at least {TOKEN_MIN} visible \
                 characters"
            ),
            LocationError::InvalidBypass(p) => write!(
                f,
                "invalid parameter \"{p}\", it must be an address, a CIDR range, or a \
                 condition with variables"
            ),
            LocationError::BadCondition => f.write_str("invalid condition"),
            LocationError::Internal => f.write_str("internal error in the waiting room module"),
        }
    }
}

fn loc_conf<'a>(conf: *mut c_void) -> &'a mut LocConf {
    // SAFETY: nginx passes our location configuration, created by `create_loc_conf`, to the
    // handlers of directives registered with NGX_HTTP_LOC_CONF_OFFSET.
    unsafe { &mut *(conf as *mut LocConf) }
}

/// An API prefix a queue page can put in a URL and a script: a path, with no quote, angle
/// bracket, backslash, space or control character.
fn valid_api(uri: &str) -> bool {
    uri.starts_with('/')
        && uri.ends_with('/')
        && !uri.contains(['"', '\'', '<', '>', '\\', ' '])
        && !uri.chars().any(char::is_control)
}

pub extern "C" fn set_waiting_room(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    let lcf = loc_conf(conf);
    handle(cf, || {
        if lcf.room_set {
            return Err(LocationError::Duplicate("waiting_room"));
        }
        let args = args(cf);
        let name = text(&args[1]);
        lcf.room_set = true;
        if name == "off" {
            if let Some(extra) = args.get(2) {
                return Err(LocationError::InvalidParameter(text(extra)));
            }
            lcf.room = core::ptr::null_mut();
            return Ok(());
        }
        if !valid_room_name(&name) {
            return Err(LocationError::InvalidName(name));
        }
        if let Some(param) = args.get(2) {
            let p = text(param);
            match p.strip_prefix("api=") {
                Some(uri) if valid_api(uri) => lcf.api = Some(uri.to_owned()),
                Some(uri) => return Err(LocationError::InvalidApi(uri.to_owned())),
                None => return Err(LocationError::InvalidParameter(p)),
            }
        }
        lcf.room = find_room(cf, &name).ok_or(LocationError::Internal)?;
        lcf.room_place = Some(Place::of(cf));
        Ok(())
    })
}

/// A directive whose one argument is a status code from `allowed`, written into the field
/// `field` picks (0 while unset).
fn set_status_code(
    cf: *mut ngx_conf_t,
    conf: *mut c_void,
    directive: &'static str,
    field: fn(&mut LocConf) -> &mut usize,
    allowed: &'static [usize],
    words: &'static str,
) -> *mut c_char {
    let lcf = loc_conf(conf);
    handle(cf, || {
        let slot = field(lcf);
        if *slot != 0 {
            return Err(LocationError::Duplicate(directive));
        }
        let value = text(&args(cf)[1]);
        match value.parse::<usize>() {
            Ok(code) if allowed.contains(&code) => *slot = code,
            _ => return Err(LocationError::InvalidStatus { value, allowed: words }),
        }
        Ok(())
    })
}

pub extern "C" fn set_queue_status(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    let (allowed, words) = (&[200, 202, 429, 503], "200, 202, 429 or 503");
    set_status_code(cf, conf, "waiting_room_queue_status", |l| &mut l.queue_status, allowed, words)
}

fn set_endpoint(cf: *mut ngx_conf_t, conf: *mut c_void, endpoint: Endpoint) -> *mut c_char {
    let lcf = loc_conf(conf);
    handle(cf, || {
        if lcf.endpoint.is_some() {
            return Err(LocationError::Duplicate(match endpoint {
                Endpoint::Api => "waiting_room_api",
                Endpoint::Status => "waiting_room_status",
                Endpoint::Control => "waiting_room_control",
            }));
        }
        let words = args(cf);
        let name = text(&words[1]);
        if !valid_room_name(&name) {
            return Err(LocationError::InvalidName(name));
        }
        if let Some(param) = words.get(2) {
            let p = text(param);
            match p.strip_prefix("token=") {
                // The file's name as nginx has it: the raw bytes after `token=` (the text above
                // may have replaced some).
                Some(_) if endpoint == Endpoint::Control && param.len > 6 => {
                    let file = ngx_str_t { len: param.len - 6, data: param.data.wrapping_add(6) };
                    lcf.control_token = Some(read_token(cf, &file)?);
                }
                _ => return Err(LocationError::InvalidParameter(p)),
            }
        }
        let room = find_room(cf, &name).ok_or(LocationError::Internal)?;
        // SAFETY: `cf` is inside a location block, so the core module's location configuration
        // is there; the content handler is set on it once the location is merged.
        let clcf =
            NgxHttpCoreModule::location_conf_mut(unsafe { &*cf }).ok_or(LocationError::Internal)?;
        lcf.endpoint = Some(endpoint);
        lcf.endpoint_room = room;
        lcf.core = clcf;
        if endpoint == Endpoint::Api {
            // SAFETY: inside a server block, the core module's server configuration is there.
            let server =
                NgxHttpCoreModule::server_conf(unsafe { &*cf }).ok_or(LocationError::Internal)?;
            let server = server as *const _ as *const c_void;
            let mcf = main_conf(cf).ok_or(LocationError::Internal)?;
            mcf.apis.push(ApiLocation { room, server, core: clcf });
        }
        Ok(())
    })
}

pub extern "C" fn set_api(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    set_endpoint(cf, conf, Endpoint::Api)
}

pub extern "C" fn set_status(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    set_endpoint(cf, conf, Endpoint::Status)
}

pub extern "C" fn set_control(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    set_endpoint(cf, conf, Endpoint::Control)
}

/// The shortest bearer token accepted, in bytes: one that cannot be guessed.
const TOKEN_MIN: usize = 16;

/// The bearer token in file `name`: its first line, without surrounding white space.
fn read_token(cf: *mut ngx_conf_t, name: &ngx_str_t) -> Result<Vec<u8>, LocationError> {
    let (path, bytes) =
        read_conf_file(cf, "waiting_room_control", name, 4096).map_err(LocationError::PageFile)?;
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let token = line.trim_ascii();
    let visible = token.iter().all(|b| b.is_ascii_graphic());
    if token.len() < TOKEN_MIN || !visible {
        return Err(LocationError::BadToken(path));
    }
    Ok(token.to_vec())
}

pub extern "C" fn set_closed_status(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    let (allowed, words) = (&[200, 403, 404, 410, 503], "200, 403, 404, 410 or 503");
    set_status_code(
        cf,
        conf,
        "waiting_room_closed_status",
        |l| &mut l.closed_status,
        allowed,
        words,
    )
}

/// A directive whose one argument is one of `choices`, written into the field `field` picks.
fn set_choice<T: Copy>(
    cf: *mut ngx_conf_t,
    conf: *mut c_void,
    directive: &'static str,
    field: fn(&mut LocConf) -> &mut Option<T>,
    choices: &'static [(&'static str, T)],
    words: &'static str,
) -> *mut c_char {
    let lcf = loc_conf(conf);
    handle(cf, || {
        let slot = field(lcf);
        if slot.is_some() {
            return Err(LocationError::Duplicate(directive));
        }
        let value = text(&args(cf)[1]);
        match choices.iter().find(|(name, _)| *name == value) {
            Some(&(_, v)) => *slot = Some(v),
            None => return Err(LocationError::InvalidChoice { value, choices: words }),
        }
        Ok(())
    })
}

pub extern "C" fn set_gate(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    const CHOICES: &[(&str, Gate)] =
        &[("after_access", Gate::AfterAccess), ("before_access", Gate::BeforeAccess)];
    let words = "\"after_access\" or \"before_access\"";
    set_choice(cf, conf, "waiting_room_gate", |l| &mut l.gate, CHOICES, words)
}

pub extern "C" fn set_crawlers(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    const CHOICES: &[(&str, Crawlers)] = &[("refuse", Crawlers::Refuse), ("pass", Crawlers::Pass)];
    let words = "\"refuse\" or \"pass\"";
    set_choice(cf, conf, "waiting_room_crawlers", |l| &mut l.crawlers, CHOICES, words)
}

pub extern "C" fn set_refuse_status(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    let (allowed, words) = (&[403, 429, 503], "403, 429 or 503");
    set_status_code(
        cf,
        conf,
        "waiting_room_refuse_status",
        |l| &mut l.refuse_status,
        allowed,
        words,
    )
}

/// What one `waiting_room_bypass` parameter is: a client address or range, or a condition.
enum BypassRule {
    Net(IpNet),
    Condition,
}

fn bypass_rule(p: &str) -> Option<BypassRule> {
    if p.contains('$') {
        return Some(BypassRule::Condition);
    }
    if let Ok(net) = p.parse::<IpNet>() {
        // `10.0.0.1/8` is a mistake for `10.0.0.0/8`, as nginx's `allow` says too; the range
        // it names is meant, and taken.
        return Some(BypassRule::Net(net.trunc()));
    }
    p.parse::<IpAddr>().ok().map(|a| BypassRule::Net(IpNet::from(a)))
}

/// `waiting_room_bypass`: addresses and ranges are matched against the client's address;
/// any other parameter is a condition, as in `proxy_cache_bypass`: a value that is neither
/// empty nor "0" lets the request past the room. Several at one level add up.
pub extern "C" fn set_bypass(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    let lcf = loc_conf(conf);
    handle(cf, || {
        let bypass = lcf
            .bypass
            .get_or_insert_with(|| Bypass { nets: Vec::new(), conditions: core::ptr::null_mut() });
        for word in &args(cf)[1..] {
            let p = text(word);
            match bypass_rule(&p) {
                Some(BypassRule::Net(net)) => bypass.nets.push(net),
                Some(BypassRule::Condition) => {
                    if bypass.conditions.is_null() {
                        let size = core::mem::size_of::<ngx_http_complex_value_t>();
                        // SAFETY: the configuration pool outlives the configuration.
                        bypass.conditions = unsafe { ngx_array_create((*cf).pool, 2, size) };
                        if bypass.conditions.is_null() {
                            return Err(LocationError::Internal);
                        }
                    }
                    // SAFETY: an array of complex values, made above.
                    let cv = unsafe { ngx_array_push(bypass.conditions) }
                        as *mut ngx_http_complex_value_t;
                    if cv.is_null() {
                        return Err(LocationError::Internal);
                    }
                    if !compile_into(cf, *word, cv) {
                        return Err(LocationError::BadCondition);
                    }
                }
                None => return Err(LocationError::InvalidBypass(p)),
            }
        }
        Ok(())
    })
}

pub extern "C" fn set_log_level(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    const CHOICES: &[(&str, LogLevel)] = &[
        ("info", LogLevel::Info),
        ("notice", LogLevel::Notice),
        ("warn", LogLevel::Warn),
        ("error", LogLevel::Error),
    ];
    let words = "\"info\", \"notice\", \"warn\" or \"error\"";
    set_choice(cf, conf, "waiting_room_log_level", |l| &mut l.log_level, CHOICES, words)
}
