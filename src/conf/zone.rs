//! `waiting_room_zone` and `waiting_room_secret`: what a room is, and what signs its cookies.
//!
//! ```nginx
//! waiting_room_zone zone=NAME:SIZE [max_active=N] [session=TIME] [idle=TIME]
//!                   [queue_timeout=TIME] [claim_window=TIME] [heartbeat=TIME]
//!                   [grace=TIME] [confirm=TIME] [client_limit=N]
//!                   [client_key=STRING] [state=FILE]
//!                   [model=fifo|random|lottery] [rate=RATE] [mode=MODE]
//!                   [start=TIME] [end=TIME];                                     # http
//! waiting_room_secret FILE;                                                      # http
//! ```

use core::ffi::{c_char, c_void};
use core::fmt;
use std::path::{Path, PathBuf};

use nginx_sys::{ngx_command_t, ngx_conf_t, ngx_parse_size, ngx_parse_time, ngx_str_t};
use ngx::core::NGX_CONF_ERROR;

use super::common::{
    args, compile_complex_value, find_room, handle, main_conf, read_conf_file, text,
    valid_room_name, warn, FileProblem,
};
use crate::core::control::{self, Mode, Model};
use crate::core::layout::{Layout, Timing};
use crate::persist;
use crate::service::Settings;

/// Shortest accepted `waiting_room_secret`, in bytes.
pub const SECRET_MIN: usize = 32;
/// Shortest accepted `confirm=`: a first contact's page reloads after 2 s without JavaScript.
const CONFIRM_MIN_MS: u64 = 3000;
/// Longest accepted `waiting_room_secret` file.
pub const SECRET_MAX: u64 = 4096;

/// What is wrong with a `waiting_room_zone` or `waiting_room_secret`.
#[derive(Debug)]
pub enum ZoneError {
    InvalidSize(String),
    InvalidName(String),
    TooSmall(String),
    TooSmallFor {
        name: String,
        max_active: u32,
        need_k: usize,
    },
    InvalidValue {
        key: String,
        value: String,
    },
    InvalidParameter(String),
    NoZone,
    /// A parameter given twice.
    DuplicateParameter(String),
    /// A time shorter than the least that works.
    TooShort {
        given: String,
        min: &'static str,
    },
    /// A word that is not one of those allowed.
    InvalidChoice {
        key: &'static str,
        value: String,
        choices: &'static str,
    },
    /// An event's time that is not RFC 3339 in UTC.
    InvalidTime {
        key: String,
        value: String,
    },
    /// `end=` not after `start=`.
    EndBeforeStart,
    /// `client_key=` without `client_limit=`.
    KeyWithoutLimit,
    /// `client_key=` is not a valid complex value (nginx has said why).
    BadKey,
    Duplicate(String),
    /// `"heartbeat=30s" must be shorter than "idle=10s"`, and the like.
    Order {
        this: String,
        relation: &'static str,
        that: String,
    },
    SecretFile(FileProblem),
    SecretShort {
        path: String,
        len: usize,
    },
    DuplicateSecret,
    /// `state=` names a file that cannot be one.
    StateFile {
        path: String,
        why: String,
    },
    /// Two rooms name the same state file.
    DuplicateState(String),
    /// nginx refused the zone, and said why.
    Refused,
}

impl fmt::Display for ZoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ZoneError::InvalidSize(v) => write!(f, "invalid zone size \"{v}\""),
            ZoneError::InvalidName(n) => write!(f, "invalid zone name \"{n}\""),
            ZoneError::TooSmall(n) => write!(f, "zone \"{n}\" is too small"),
            ZoneError::TooSmallFor { name, max_active, need_k } => write!(
                f,
                "zone \"{name}\" is too small for max_active={max_active}, it needs at least \
                 {need_k}k"
            ),
            ZoneError::InvalidValue { key, value } => write!(f, "invalid {key} value \"{value}\""),
            ZoneError::InvalidParameter(p) => write!(f, "invalid parameter \"{p}\""),
            ZoneError::NoZone => f.write_str("\"waiting_room_zone\" must have \"zone\" parameter"),
            ZoneError::Duplicate(n) => write!(f, "duplicate zone \"{n}\""),
            ZoneError::TooShort { given, min } => write!(f, "\"{given}\" must be at least {min}"),
            ZoneError::DuplicateParameter(k) => write!(f, "duplicate \"{k}\" parameter"),
            ZoneError::InvalidTime { key, value } => write!(
                f,
                "invalid {key} value \"{value}\", a time in UTC like 2026-11-27T09:00:00Z"
            ),
            ZoneError::InvalidChoice { key, value, choices } => {
                write!(f, "invalid {key} value \"{value}\", it must be {choices}")
            }
            ZoneError::EndBeforeStart => f.write_str("\"end\" must be after \"start\""),
            ZoneError::KeyWithoutLimit => {
                f.write_str("\"client_key\" parameter requires \"client_limit\" parameter")
            }
            ZoneError::BadKey => f.write_str("invalid \"client_key\" parameter"),
            ZoneError::Order { this, relation, that } => {
                write!(f, "\"{this}\" must {relation} \"{that}\"")
            }
            ZoneError::SecretFile(p) => write!(f, "{p}"),
            ZoneError::SecretShort { path, len } => write!(
                f,
                "waiting_room_secret \"{path}\" is too short: {len} bytes, at least \
                 {SECRET_MIN} needed"
            ),
            ZoneError::DuplicateSecret => {
                f.write_str("\"waiting_room_secret\" directive is duplicate")
            }
            ZoneError::StateFile { path, why } => write!(f, "state file \"{path}\" {why}"),
            ZoneError::DuplicateState(path) => {
                write!(f, "state file \"{path}\" is already used by another room")
            }
            ZoneError::Refused => f.write_str("cannot add the zone"),
        }
    }
}

fn parse_time(value: &str) -> Option<u64> {
    let mut s = ngx_str_t { len: value.len(), data: value.as_ptr() as *mut u8 };
    // SAFETY: `s` points at `value`, which outlives the call; nginx only reads it.
    let ms = unsafe { ngx_parse_time(&mut s, 0) };
    (ms > 0).then_some(ms as u64)
}

fn parse_size(value: &str) -> Option<usize> {
    let mut s = ngx_str_t { len: value.len(), data: value.as_ptr() as *mut u8 };
    // SAFETY: as in `parse_time`.
    let n = unsafe { ngx_parse_size(&mut s) };
    (n > 0).then_some(n as usize)
}

/// The usable bytes the slab allocator leaves in a zone of `size` bytes, conservatively: its
/// pool header, a page descriptor per page, and one page for our small root record.
pub fn usable_bytes(size: usize) -> usize {
    const PAGE: usize = 4096;
    let pages = size.saturating_sub(2 * PAGE) / (PAGE + 32);
    pages.saturating_sub(2) * PAGE
}

/// A time parameter as written, or as its default would be written, for messages.
struct Given {
    text: String,
}

impl Given {
    fn default(key: &str, value: &str) -> Given {
        Given { text: format!("{key}={value}") }
    }
}

/// The parameters of one `waiting_room_zone`, and its `state=` file as written.
fn parse_zone(words: &[String]) -> Result<(String, Settings, Option<String>), ZoneError> {
    let mut zone: Option<(String, usize)> = None;
    let mut state: Option<String> = None;
    let mut max_active: u32 = 200;
    let mut steer = control::Settings::default();
    let mut client_limit: u32 = 0;
    let mut client_key_given = false;
    let mut timing = Timing {
        session_ms: 300_000,
        idle_ms: 90_000,
        queue_timeout_ms: 900_000,
        claim_window_ms: 30_000,
        grace_ms: 5_000,
        confirm_ms: 30_000,
    };
    let mut heartbeat_ms = 30_000;
    let mut heartbeat = Given::default("heartbeat", "30s");
    let mut idle = Given::default("idle", "90s");
    let mut session = Given::default("session", "300s");
    let mut queue_timeout = Given::default("queue_timeout", "900s");
    let mut claim_window = Given::default("claim_window", "30s");
    let mut grace = Given::default("grace", "5s");
    let mut grace_given = false;
    let mut confirm = Given::default("confirm", "30s");
    let mut confirm_given = false;
    let mut given: Vec<&str> = Vec::new();
    for a in words {
        let (key, value) = a.split_once('=').unwrap_or((a.as_str(), ""));
        if given.contains(&key) {
            return Err(ZoneError::DuplicateParameter(key.to_owned()));
        }
        given.push(key);
        let invalid = || ZoneError::InvalidValue { key: key.to_owned(), value: value.to_owned() };
        match key {
            "zone" => {
                let Some((name, size)) = value.rsplit_once(':') else {
                    return Err(ZoneError::InvalidSize(value.to_owned()));
                };
                if !valid_room_name(name) {
                    return Err(ZoneError::InvalidName(name.to_owned()));
                }
                let size = parse_size(size).ok_or(ZoneError::InvalidSize(value.to_owned()))?;
                if size < 8 * 4096 {
                    return Err(ZoneError::TooSmall(name.to_owned()));
                }
                zone = Some((name.to_owned(), size));
            }
            "max_active" => match value.parse::<u32>() {
                Ok(n) if (1..=10_000_000).contains(&n) => max_active = n,
                _ => return Err(invalid()),
            },
            "session" | "idle" | "queue_timeout" | "claim_window" | "heartbeat" | "grace"
            | "confirm" => {
                let ms = parse_time(value).ok_or_else(invalid)?;
                let given = Given { text: a.clone() };
                match key {
                    "session" => (timing.session_ms, session) = (ms, given),
                    "idle" => (timing.idle_ms, idle) = (ms, given),
                    "queue_timeout" => (timing.queue_timeout_ms, queue_timeout) = (ms, given),
                    "claim_window" => (timing.claim_window_ms, claim_window) = (ms, given),
                    "grace" => (timing.grace_ms, grace, grace_given) = (ms, given, true),
                    "confirm" => (timing.confirm_ms, confirm, confirm_given) = (ms, given, true),
                    _ => (heartbeat_ms, heartbeat) = (ms, given),
                }
            }
            "client_limit" => match value.parse::<u32>() {
                Ok(n) if (1..=10_000).contains(&n) => client_limit = n,
                _ => return Err(invalid()),
            },
            "model" => steer.set_model(Model::parse(value.as_bytes()).ok_or_else(|| {
                ZoneError::InvalidChoice {
                    key: "model",
                    value: value.to_owned(),
                    choices: "fifo, random or lottery",
                }
            })?),
            "mode" => steer.set_mode(Mode::parse(value.as_bytes()).ok_or_else(|| {
                ZoneError::InvalidChoice {
                    key: "mode",
                    value: value.to_owned(),
                    choices: "normal, queue, reject or pass",
                }
            })?),
            "rate" => {
                steer.rate_per_minute = control::parse_rate(value.as_bytes()).ok_or_else(invalid)?
            }
            "start" | "end" => {
                let t = control::parse_time(value.as_bytes()).ok_or_else(|| {
                    ZoneError::InvalidTime { key: key.to_owned(), value: value.to_owned() }
                })?;
                if key == "start" {
                    steer.start = t;
                } else {
                    steer.end = t;
                }
            }
            "client_key" if !value.is_empty() => client_key_given = true,
            "client_key" => {
                return Err(ZoneError::InvalidValue { key: key.to_owned(), value: String::new() })
            }
            "state" if !value.is_empty() && !value.contains('\0') => {
                state = Some(value.to_owned());
            }
            "state" => return Err(invalid()),
            _ => return Err(ZoneError::InvalidParameter(a.clone())),
        }
    }
    let (name, size) = zone.ok_or(ZoneError::NoZone)?;
    if client_key_given && client_limit == 0 {
        return Err(ZoneError::KeyWithoutLimit);
    }
    let order = |this: &Given, relation, that: &Given| {
        Err(ZoneError::Order { this: this.text.clone(), relation, that: that.text.clone() })
    };
    // A heartbeat no more often than `idle` lets a visitor who stays lose their slot.
    if heartbeat_ms >= timing.idle_ms {
        return order(&heartbeat, "be shorter than", &idle);
    }
    // A session shorter than `idle` makes `idle` meaningless and sessions end mid-visit.
    if timing.session_ms < timing.idle_ms {
        return order(&session, "not be shorter than", &idle);
    }
    // A called visitor who takes longer than `queue_timeout` to come in has lost the place
    // already: the claim window would promise what the room does not keep.
    if timing.claim_window_ms > timing.queue_timeout_ms {
        return order(&claim_window, "not be longer than", &queue_timeout);
    }
    // A first contact who may take longer to come back than a ticket lives would take a place
    // the room has already forgotten.
    if !confirm_given {
        timing.confirm_ms = timing.confirm_ms.min(timing.queue_timeout_ms);
    }
    // A page without JavaScript comes back after 2 s: a shorter `confirm` would never let it
    // take its place.
    if confirm_given && timing.confirm_ms < CONFIRM_MIN_MS {
        return Err(ZoneError::TooShort { given: confirm.text.clone(), min: "3s" });
    }
    if timing.confirm_ms > timing.queue_timeout_ms {
        return order(&confirm, "not be longer than", &queue_timeout);
    }
    // A grace as long as `idle` would keep a closed page's slot as long as an idle one's; by
    // default it is 5s, or half of a shorter `idle`.
    if !grace_given {
        timing.grace_ms = timing.grace_ms.min(timing.idle_ms / 2);
    }
    if timing.grace_ms >= timing.idle_ms {
        return order(&grace, "be shorter than", &idle);
    }
    if steer.start != 0 && steer.end != 0 && steer.end <= steer.start {
        return Err(ZoneError::EndBeforeStart);
    }
    if Layout::new(usable_bytes(size), max_active).is_none() {
        let need_k = (Layout::min_region_len(max_active) + 16 * 4096) / 1024 + 1;
        return Err(ZoneError::TooSmallFor { name, max_active, need_k });
    }
    steer.max_active = max_active;
    Ok((name, Settings { size, steer, timing, heartbeat_ms, client_limit }, state))
}

/// The state file's full path (a relative one is taken from nginx's prefix, as nginx takes
/// its paths), checked as far as it can be before nginx starts: its directory exists, and
/// what is at the path, if anything, is a regular file.
fn state_path(cf: *mut ngx_conf_t, given: &str) -> Result<PathBuf, ZoneError> {
    let early = |why: &str| ZoneError::StateFile { path: given.to_owned(), why: why.to_owned() };
    let path = if given.starts_with('/') {
        PathBuf::from(given)
    } else {
        // SAFETY: `cf` is the configuration being read; its cycle's prefix is set.
        let prefix = unsafe { (*(*cf).cycle).prefix.as_bytes() };
        Path::new(std::str::from_utf8(prefix).map_err(|_| early("has a prefix that is not UTF-8"))?)
            .join(given)
    };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("/"));
    let shown = path.display().to_string();
    let fail = |why: &str| ZoneError::StateFile { path: shown.clone(), why: why.to_owned() };
    // The directory as the system names it, so that one file spelled two ways is one file.
    let dir = match std::fs::canonicalize(dir) {
        Ok(d) if d.is_dir() => d,
        Ok(_) => return Err(fail("is in a directory that is not one")),
        Err(e) => {
            let why = format!("is in a directory that cannot be used ({})", persist::os_error(&e));
            return Err(fail(&why));
        }
    };
    let Some(name) = path.file_name() else { return Err(fail("names no file")) };
    let path = dir.join(name);
    match std::fs::metadata(&path) {
        Ok(m) if !m.is_file() => Err(fail("is not a regular file")),
        _ => Ok(path),
    }
}

/// `s` without its first `skip` bytes.
///
/// # Safety
/// `s` holds at least `skip` bytes.
unsafe fn tail(s: &ngx_str_t, skip: usize) -> ngx_str_t {
    // SAFETY: the caller's promise.
    ngx_str_t { len: s.len - skip, data: unsafe { s.data.add(skip) } }
}

pub extern "C" fn set_zone(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    _: *mut c_void,
) -> *mut c_char {
    handle(cf, || {
        let words: Vec<String> = args(cf).iter().skip(1).map(text).collect();
        let (name, settings, state) = parse_zone(&words)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if settings.steer.end != 0 && settings.steer.end <= now {
            warn(cf, format!("the \"end\" of room \"{name}\" has passed: newcomers get the \"event over\" page"));
        }
        let state = state.map(|given| state_path(cf, &given)).transpose()?;
        if let Some(path) = state.as_ref() {
            let mcf = main_conf(cf).ok_or(ZoneError::Refused)?;
            // SAFETY: every room in the list came from the configuration pool.
            if mcf.rooms().any(|r| r.state_file() == Some(path.as_path())) {
                return Err(ZoneError::DuplicateState(path.display().to_string()));
            }
        }
        let room = find_room(cf, &name).ok_or(ZoneError::Refused)?;
        // SAFETY: `room` came from the configuration pool and lives as long as it.
        let room = unsafe { &mut *room };
        if room.settings.is_some() {
            return Err(ZoneError::Duplicate(name));
        }
        if settings.client_limit > 0 {
            let given = args(cf).iter().skip(1).find(|a| a.as_bytes().starts_with(b"client_key="));
            let key = match given {
                // SAFETY: the words of a directive live in the configuration pool as long as
                // the configuration; the key is the part after "client_key=".
                Some(a) => unsafe { tail(a, "client_key=".len()) },
                None => ngx::ngx_string!("$binary_remote_addr"),
            };
            let cv = compile_complex_value(cf, key).ok_or(ZoneError::BadKey)?;
            room.set_client_key(cv);
        }
        if !room.define(cf, settings, state) {
            return Err(ZoneError::Refused);
        }
        Ok(())
    })
}

pub extern "C" fn set_secret(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    _: *mut c_void,
) -> *mut c_char {
    let Some(mcf) = main_conf(cf) else { return NGX_CONF_ERROR };
    handle(cf, || {
        if mcf.secret_file.is_some() {
            return Err(ZoneError::DuplicateSecret);
        }
        let (path, mut key) = read_conf_file(cf, "waiting_room_secret", &args(cf)[1], SECRET_MAX)
            .map_err(ZoneError::SecretFile)?;
        // A key written by `openssl rand -hex 32 > file` ends with a newline that is no part
        // of it.
        while key.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
            key.pop();
        }
        if key.len() < SECRET_MIN {
            return Err(ZoneError::SecretShort { path, len: key.len() });
        }
        mcf.secret = Some(key);
        mcf.secret_file = Some(path);
        Ok(())
    })
}
