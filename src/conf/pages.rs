//! The directives of the pages a visitor sees: their templates, the site's brand, and their
//! languages and texts.
//!
//! ```nginx
//! waiting_room_page [queue | full | closed | over | cookies ...] FILE;   # http, server, location
//! waiting_room_title TEXT;                                              # http, server, location
//! waiting_room_message TEXT;                                            # http, server, location
//! waiting_room_logo URL [ALT];                                          # http, server, location
//! waiting_room_colors accent=#RRGGBB [background=#RRGGBB];              # http, server, location
//! waiting_room_language auto | LANGUAGE ...;                            # http, server, location
//! waiting_room_text NAME TEXT [LANGUAGE];                               # http, server, location
//! ```
//!
//! A template is compiled, and tried with every kind of view in every language, when its
//! directive is read: `nginx -t` reports a mistake with the template's file and line.

use core::ffi::{c_char, c_void};
use core::fmt;

use nginx_sys::{ngx_command_t, ngx_conf_t};

use super::common::{args, handle, read_conf_file, text, FileProblem, LocConf};
use crate::pages::lang::Lang;
use crate::pages::render::CARD_LIGHT;
use crate::pages::render::{language_codes, text_key, Kind, PageError, Pages, Rgb, Source, AA};

/// Longest accepted template.
pub const PAGE_MAX: u64 = 64 * 1024;

/// What is wrong with one of these directives.
#[derive(Debug)]
pub enum PagesError {
    Duplicate(&'static str),
    DuplicateKind(&'static str),
    InvalidParameter(String),
    File(FileProblem),
    NotText(String),
    Template { path: String, error: PageError },
    InvalidColor(String),
    LowContrast { name: &'static str, color: Rgb, ratio: f64 },
    InvalidLanguage(String),
    UnknownText(String),
    MissingCount { name: String },
    Empty(&'static str),
}

impl fmt::Display for PagesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PagesError::Duplicate(d) => write!(f, "\"{d}\" directive is duplicate"),
            PagesError::DuplicateKind(k) => write!(f, "duplicate waiting_room_page for \"{k}\""),
            PagesError::InvalidParameter(p) => write!(f, "invalid parameter \"{p}\""),
            PagesError::File(p) => write!(f, "{p}"),
            PagesError::NotText(path) => {
                write!(f, "waiting_room_page \"{path}\" is not UTF-8 text")
            }
            PagesError::Template { path, error } => {
                write!(f, "waiting_room_page \"{path}\": {error}")
            }
            PagesError::InvalidColor(c) => {
                write!(f, "invalid colour \"{c}\", it must be accent=#RRGGBB or background=#RRGGBB")
            }
            PagesError::LowContrast { name, color, ratio } => write!(
                f,
                "{name} colour {color} has a contrast of {ratio:.1}:1 with the page's white, \
                 and text needs at least {AA}:1 (WCAG 2.2 AA); choose a darker colour"
            ),
            PagesError::InvalidLanguage(l) => write!(
                f,
                "unknown language \"{l}\", it must be \"auto\" or one of {}",
                language_codes()
            ),
            PagesError::UnknownText(k) => {
                write!(f, "unknown text \"{k}\" (the README lists the names of the texts)")
            }
            PagesError::MissingCount { name } => {
                write!(f, "text \"{name}\" must contain \"{{n}}\" where its number goes")
            }
            PagesError::Empty(d) => write!(f, "\"{d}\" must not be empty"),
        }
    }
}

fn loc_conf<'a>(conf: *mut c_void) -> &'a mut LocConf {
    // SAFETY: nginx passes our location configuration, created by `create_loc_conf`, to the
    // handlers of directives registered with NGX_HTTP_LOC_CONF_OFFSET.
    unsafe { &mut *(conf as *mut LocConf) }
}

/// Builds this level's pages as they stand, so that a template's mistake is reported at the
/// directive that brought it.
fn try_build(lcf: &LocConf, path: &str) -> Result<(), PagesError> {
    Pages::build(&lcf.page_settings, true)
        .map(drop)
        .map_err(|error| PagesError::Template { path: path.to_owned(), error })
}

/// `waiting_room_page [KIND ...] FILE`: the template of the kinds named (the queue page when
/// none is).
pub extern "C" fn set_page(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    let lcf = loc_conf(conf);
    handle(cf, || {
        let words = args(cf);
        let (file, kinds) = match words[1..].split_last() {
            Some((file, kinds)) => (file, kinds),
            None => return Err(PagesError::InvalidParameter(String::new())),
        };
        let mut chosen = Vec::new();
        for k in kinds {
            let name = text(k);
            match Kind::parse(&name) {
                Some(kind) if !chosen.contains(&kind) => chosen.push(kind),
                _ => return Err(PagesError::InvalidParameter(name)),
            }
        }
        if chosen.is_empty() {
            chosen.push(Kind::Queue);
        }
        let (path, bytes) =
            read_conf_file(cf, "waiting_room_page", file, PAGE_MAX).map_err(PagesError::File)?;
        let source = String::from_utf8(bytes).map_err(|_| PagesError::NotText(path.clone()))?;
        for kind in chosen {
            let slot = &mut lcf.page_settings.templates[kind as usize];
            if slot.is_some() {
                return Err(PagesError::DuplicateKind(kind.name()));
            }
            *slot = Some(Source { path: path.clone(), text: source.clone() });
        }
        try_build(lcf, &path)
    })
}

/// A directive with one text, kept in the field `field` picks.
fn set_text_once(
    cf: *mut ngx_conf_t,
    conf: *mut c_void,
    directive: &'static str,
    field: fn(&mut LocConf) -> &mut Option<String>,
) -> *mut c_char {
    let lcf = loc_conf(conf);
    handle(cf, || {
        let slot = field(lcf);
        if slot.is_some() {
            return Err(PagesError::Duplicate(directive));
        }
        let value = text(&args(cf)[1]);
        if value.trim().is_empty() {
            return Err(PagesError::Empty(directive));
        }
        *slot = Some(value);
        Ok(())
    })
}

pub extern "C" fn set_title(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    set_text_once(cf, conf, "waiting_room_title", |l| &mut l.page_settings.title)
}

pub extern "C" fn set_message(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    set_text_once(cf, conf, "waiting_room_message", |l| &mut l.page_settings.message)
}

/// `waiting_room_logo URL [ALT]`: without `ALT` the logo is decoration, and screen readers
/// skip it.
pub extern "C" fn set_logo(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    let lcf = loc_conf(conf);
    handle(cf, || {
        if lcf.page_settings.logo.is_some() {
            return Err(PagesError::Duplicate("waiting_room_logo"));
        }
        let words = args(cf);
        let url = text(&words[1]);
        if url.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(PagesError::InvalidParameter(url));
        }
        let alt = words.get(2).map(text).unwrap_or_default();
        lcf.page_settings.logo = Some((url, alt));
        Ok(())
    })
}

/// `waiting_room_colors accent=#RRGGBB [background=#RRGGBB]`: the accent is text on the
/// page's white card, so it must be readable there.
pub extern "C" fn set_colors(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    let lcf = loc_conf(conf);
    handle(cf, || {
        let s = &mut lcf.page_settings;
        if s.accent.is_some() || s.background.is_some() {
            return Err(PagesError::Duplicate("waiting_room_colors"));
        }
        for word in &args(cf)[1..] {
            let p = text(word);
            let (name, value) = p.split_once('=').unwrap_or((&p, ""));
            let color = Rgb::parse(value).ok_or_else(|| PagesError::InvalidColor(p.clone()))?;
            match name {
                "accent" if s.accent.is_none() => {
                    let ratio = color.contrast(CARD_LIGHT);
                    if ratio < AA {
                        return Err(PagesError::LowContrast { name: "accent", color, ratio });
                    }
                    s.accent = Some(color);
                }
                "background" if s.background.is_none() => s.background = Some(color),
                _ => return Err(PagesError::InvalidColor(p.clone())),
            }
        }
        Ok(())
    })
}

/// `waiting_room_language auto | LANGUAGE ...`: the languages offered, chosen among by
/// `Accept-Language`; the first is for browsers that accept none of them.
pub extern "C" fn set_language(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    let lcf = loc_conf(conf);
    handle(cf, || {
        if lcf.page_settings.languages.is_some() {
            return Err(PagesError::Duplicate("waiting_room_language"));
        }
        let words: Vec<String> = args(cf)[1..].iter().map(text).collect();
        let langs = if words.len() == 1 && words[0] == "auto" {
            Lang::all().collect()
        } else {
            let mut langs = Vec::new();
            for w in &words {
                match Lang::parse(w).filter(|l| l.code() == w.to_ascii_lowercase()) {
                    Some(l) if !langs.contains(&l) => langs.push(l),
                    _ => return Err(PagesError::InvalidLanguage(w.clone())),
                }
            }
            langs
        };
        lcf.page_settings.languages = Some(langs);
        Ok(())
    })
}

/// `waiting_room_text NAME TEXT [LANGUAGE]`: replaces one of the pages' texts, in one language
/// or all.
pub extern "C" fn set_text(
    cf: *mut ngx_conf_t,
    _: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    let lcf = loc_conf(conf);
    handle(cf, || {
        let words = args(cf);
        let (name, value) = (text(&words[1]), text(&words[2]));
        let counted = text_key(&name).ok_or_else(|| PagesError::UnknownText(name.clone()))?;
        if counted && !value.contains("{n}") {
            return Err(PagesError::MissingCount { name });
        }
        let lang = match words.get(3).map(text) {
            Some(l) => Some(
                Lang::parse(&l)
                    .filter(|x| x.code() == l.to_ascii_lowercase())
                    .ok_or(PagesError::InvalidLanguage(l))?,
            ),
            None => None,
        };
        lcf.page_settings.texts.push((lang, name, value));
        Ok(())
    })
}
