//! The pages a visitor is sent, as minijinja templates: the built-in ones (in `templates/`,
//! sharing `base.html`), or a site's own, compiled when the configuration is read and tried
//! there with every kind of view in every language offered, so that `nginx -t` reports a
//! mistake with the template's file and line instead of a visitor meeting it.
//!
//! Values are escaped for where they go: the templates are HTML, so every value is escaped
//! for HTML text and attributes unless marked safe, and `tojson` writes a value for a script
//! (and for JSON), safe inside an inline `<script>`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use minijinja::value::{Enumerator, Object};
use minijinja::{context, Environment, UndefinedBehavior, Value as Jv};
use serde_json::{Map, Value};

use super::escape_into;
use super::lang::{self, Lang, LANGUAGES};
use super::memo::{self, Key, Memo};
use super::Place;

/// The kinds of page the room sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A place in line, a drawn turn, or the countdown to the start.
    Queue,
    /// The line is as long as the zone can hold.
    Full,
    /// Closed, or sold out: nobody new is let in.
    Closed,
    /// The event has ended.
    Over,
    /// The browser did not send the room's cookie back.
    Cookies,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Queue, Kind::Full, Kind::Closed, Kind::Over, Kind::Cookies];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Queue => "queue",
            Kind::Full => "full",
            Kind::Closed => "closed",
            Kind::Over => "over",
            Kind::Cookies => "cookies",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    fn index(self) -> usize {
        self as usize
    }

    fn builtin(self) -> &'static str {
        match self {
            Kind::Queue => "queue.html",
            Kind::Full => "full.html",
            Kind::Closed => "closed.html",
            Kind::Over => "over.html",
            Kind::Cookies => "cookies.html",
        }
    }
}

/// The built-in templates, by name; a site's template may extend `base.html`.
const BUILTIN: [(&str, &str); 7] = [
    ("base.html", include_str!("templates/base.html")),
    ("queue.html", include_str!("templates/queue.html")),
    ("queue.js", include_str!("templates/queue.js")),
    ("full.html", include_str!("templates/full.html")),
    ("closed.html", include_str!("templates/closed.html")),
    ("over.html", include_str!("templates/over.html")),
    ("cookies.html", include_str!("templates/cookies.html")),
];

/// A colour given in the configuration, `#rrggbb` (or `#rgb`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rgb(pub [u8; 3]);

impl Rgb {
    pub fn parse(s: &str) -> Option<Rgb> {
        let hex = s.strip_prefix('#')?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let digit = |i: usize| u8::from_str_radix(&hex[i..=i], 16).ok();
        match hex.len() {
            3 => Some(Rgb([digit(0)? * 17, digit(1)? * 17, digit(2)? * 17])),
            6 => {
                let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
                Some(Rgb([byte(0)?, byte(2)?, byte(4)?]))
            }
            _ => None,
        }
    }

    fn luminance(self) -> f64 {
        let c = |v: u8| {
            let v = f64::from(v) / 255.0;
            if v <= 0.040_45 {
                v / 12.92
            } else {
                ((v + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * c(self.0[0]) + 0.7152 * c(self.0[1]) + 0.0722 * c(self.0[2])
    }

    /// The WCAG contrast ratio of two colours (1 to 21).
    pub fn contrast(self, other: Rgb) -> f64 {
        let (a, b) = (self.luminance(), other.luminance());
        (a.max(b) + 0.05) / (a.min(b) + 0.05)
    }

    /// This colour mixed towards `to` by `f` (0 to 1).
    fn mix(self, to: Rgb, f: f64) -> Rgb {
        let m = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * f).round() as u8;
        Rgb([m(self.0[0], to.0[0]), m(self.0[1], to.0[1]), m(self.0[2], to.0[2])])
    }

    /// The nearest mix of this colour with `to` that reaches `ratio` against `against`.
    fn readable(self, against: Rgb, to: Rgb, ratio: f64) -> Rgb {
        (0..=20)
            .map(|i| self.mix(to, f64::from(i) / 20.0))
            .find(|c| c.contrast(against) >= ratio)
            .unwrap_or(to)
    }
}

impl fmt::Display for Rgb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{:02x}{:02x}{:02x}", self.0[0], self.0[1], self.0[2])
    }
}

/// The card the built-in pages draw on, light and dark: what accent colours must be read on.
pub const CARD_LIGHT: Rgb = Rgb([0xff, 0xff, 0xff]);
pub const CARD_DARK: Rgb = Rgb([0x18, 0x1e, 0x28]);
/// WCAG 2.2 AA for normal text.
pub const AA: f64 = 4.5;

/// A template given in the configuration: its file and text.
#[derive(Clone, Debug)]
pub struct Source {
    pub path: String,
    pub text: String,
}

/// Everything about the pages one location's configuration says (each `None` or empty while
/// not given at its level, then inherited).
#[derive(Clone, Debug, Default)]
pub struct PageSettings {
    pub templates: [Option<Source>; 5],
    pub title: Option<String>,
    pub message: Option<String>,
    /// The logo's URL and its text alternative.
    pub logo: Option<(String, String)>,
    pub accent: Option<Rgb>,
    pub background: Option<Rgb>,
    /// `waiting_room_language`: the languages offered, the first being the fallback.
    pub languages: Option<Vec<Lang>>,
    /// `waiting_room_text`: replaced texts, for one language or (`None`) all.
    pub texts: Vec<(Option<Lang>, String, String)>,
}

impl PageSettings {
    /// Whether this level says anything about pages.
    pub fn is_empty(&self) -> bool {
        self.templates.iter().all(Option::is_none)
            && self.title.is_none()
            && self.message.is_none()
            && self.logo.is_none()
            && self.accent.is_none()
            && self.background.is_none()
            && self.languages.is_none()
            && self.texts.is_empty()
    }

    /// This level's settings, with what it does not say taken from `prev`.
    pub fn merged(&self, prev: &PageSettings) -> PageSettings {
        let mut templates = self.templates.clone();
        for (t, p) in templates.iter_mut().zip(&prev.templates) {
            if t.is_none() {
                t.clone_from(p);
            }
        }
        PageSettings {
            templates,
            title: self.title.clone().or_else(|| prev.title.clone()),
            message: self.message.clone().or_else(|| prev.message.clone()),
            logo: self.logo.clone().or_else(|| prev.logo.clone()),
            accent: self.accent.or(prev.accent),
            background: self.background.or(prev.background),
            languages: self.languages.clone().or_else(|| prev.languages.clone()),
            texts: if self.texts.is_empty() { prev.texts.clone() } else { self.texts.clone() },
        }
    }
}

/// A text that may be replaced, and whether it must hold `{n}`.
pub fn text_key(key: &str) -> Option<bool> {
    Lang::EN.texts().get(key).map(|v| v.to_string().contains("{n}"))
}

/// What went wrong building the pages.
#[derive(Debug)]
pub struct PageError(pub String);

impl fmt::Display for PageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A template's error as nginx reports it: what, and the template's file and line (for an
/// error inside an included or extended template, where it was, innermost first).
fn template_error(e: &minijinja::Error) -> PageError {
    let mut chain = vec![e];
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source.and_then(|s| s.downcast_ref::<minijinja::Error>()) {
        chain.push(inner);
        source = std::error::Error::source(inner);
    }
    let what = chain.last().map_or(e, |x| x);
    let mut msg = match what.detail() {
        Some(d) => format!("{}: {d}", what.kind()),
        None => what.kind().to_string(),
    };
    for err in chain.iter().rev() {
        if let (Some(name), Some(line)) = (err.name(), err.line()) {
            msg.push_str(&format!(" in {name}:{line}"));
        }
    }
    PageError(msg)
}

/// One location's pages, ready to render.
pub struct Pages {
    env: Environment<'static>,
    /// The template of each kind.
    names: [String; 5],
    offered: Vec<Lang>,
    /// The texts of each language, with the configuration's replacements: as they are, as
    /// the templates' `t`, and as JSON for a script.
    texts: BTreeMap<Lang, Texts>,
    brand: Jv,
    /// The codes of the languages offered, for the templates.
    languages: Jv,
    /// Pages made lately (see [`super::memo`]).
    memo: Memo,
    /// The size of the last page made of each kind.
    sizes: [AtomicUsize; 5],
}

/// One language's texts, made once for every page.
struct Texts {
    map: Map<String, Value>,
    value: Jv,
    json: Jv,
}

impl Texts {
    fn new(map: Map<String, Value>) -> Texts {
        let by_name = map.iter().map(|(k, v)| (k.clone(), Jv::from_serialize(v))).collect();
        let value = Jv::from_object(TextMap(by_name));
        // As `tojson` writes it: safe inside an inline <script> and an HTML attribute.
        let json = serde_json::to_string(&map)
            .unwrap_or_default()
            .replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026")
            .replace('\'', "\\u0027");
        Texts { map, value, json: Jv::from_safe_string(json) }
    }
}

/// A language's texts as the templates' `t`: found by hashing the name (a page looks up some
/// sixty), where the sorted map serde would make compares it with several names each time.
#[derive(Debug)]
struct TextMap(HashMap<String, Jv>);

impl Object for TextMap {
    fn get_value(self: &Arc<Self>, key: &Jv) -> Option<Jv> {
        self.0.get(key.as_str()?).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let mut names: Vec<&str> = self.0.keys().map(String::as_str).collect();
        names.sort_unstable();
        Enumerator::Values(names.into_iter().map(Jv::from).collect())
    }
}

/// What one page shows one visitor.
#[derive(Clone, Debug, Default)]
pub struct View<'a> {
    /// The room's name (for a site's own template; the built-in pages never show it).
    pub room: &'a str,
    pub place: Place,
    /// How often the page checks again, in seconds.
    pub refresh: u64,
    /// The API location's prefix.
    pub api: &'a str,
    /// A first contact without a place yet: the page asks at once.
    pub arrival: bool,
    /// Sent to the back: the ticket the visitor came with is no longer in line.
    pub lost: bool,
    /// The visitor turned automatic reloading off (without JavaScript).
    pub reload_off: bool,
    /// The request's path and query, without the room's own arguments.
    pub uri: &'a str,
    /// The request sent a form (a `POST`): its body has not reached the site.
    pub form: bool,
    /// Where the visitor goes back to after a form: the page that sent it, when known.
    pub back: Option<&'a str>,
}

impl Pages {
    /// The pages of `settings`, compiled, and with `try_views` tried with every kind of view.
    pub fn build(settings: &PageSettings, try_views: bool) -> Result<Pages, PageError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        // Every template is HTML, whatever its file is called.
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".js") {
                minijinja::AutoEscape::None
            } else {
                minijinja::AutoEscape::Html
            }
        });
        env.add_filter("fill", fill);
        // HTML escaping as nginx's own pages and the built-in templates expect it: `&`, `<`,
        // `>`, quotes and backslashes (minijinja's default also escapes `/`, which makes
        // every URL in an attribute hard to read).
        env.set_formatter(|out, state, value| {
            if state.auto_escape() == minijinja::AutoEscape::Html
                && !value.is_safe()
                && !value.is_none()
                && !value.is_undefined()
            {
                match value.as_str() {
                    Some(s) => escape_into(out, s)?,
                    None => escape_into(out, &value.to_string())?,
                }
                Ok(())
            } else {
                minijinja::escape_formatter(out, state, value)
            }
        });
        for (name, text) in BUILTIN {
            env.add_template(name, text).map_err(|e| template_error(&e))?;
        }
        let mut names: [String; 5] = Kind::ALL.map(|k| k.builtin().to_owned());
        for (kind, source) in Kind::ALL.iter().zip(&settings.templates) {
            if let Some(s) = source {
                env.add_template_owned(s.path.clone(), s.text.clone())
                    .map_err(|e| template_error(&e))?;
                names[kind.index()] = s.path.clone();
            }
        }
        let offered = settings.languages.clone().unwrap_or_else(|| Lang::all().collect());
        let mut texts = BTreeMap::new();
        for &l in &offered {
            let mut t = l.texts();
            for (only, key, value) in &settings.texts {
                if only.is_none_or(|o| o == l) {
                    t.insert(key.clone(), Value::String(value.clone()));
                }
            }
            texts.insert(l, Texts::new(t));
        }
        let accent_dark = settings.accent.map(|a| a.readable(CARD_DARK, CARD_LIGHT, AA));
        let brand = context! {
            title => settings.title,
            message => settings.message,
            logo => settings.logo.as_ref().map(|(url, _)| url),
            logo_alt => settings.logo.as_ref().map(|(_, alt)| alt),
            accent => settings.accent.map(|c| c.to_string()),
            accent_dark => accent_dark.map(|c| c.to_string()),
            accent_soft => settings.accent.map(|c| c.mix(CARD_LIGHT, 0.91).to_string()),
            accent_soft_dark => accent_dark.map(|c| c.mix(CARD_DARK, 0.86).to_string()),
            background => settings.background.map(|c| c.to_string()),
        };
        let languages = Jv::from_serialize(offered.iter().map(|l| l.code()).collect::<Vec<_>>());
        let pages = Pages {
            env,
            names,
            offered,
            texts,
            brand,
            languages,
            memo: Memo::default(),
            sizes: Default::default(),
        };
        if try_views {
            pages.try_every_view()?;
        }
        Ok(pages)
    }

    /// Renders every kind of page in every language, in each state a page can be in, so that
    /// a mistake (an unknown variable, a wrong filter) shows now and not to a visitor.
    fn try_every_view(&self) -> Result<(), PageError> {
        let place = |draw, starts_in| Place {
            position: 12,
            queue_length: 340,
            eta: Some(725),
            eta_max: if draw > 0 { Some(1441) } else { None },
            draw,
            starts_in,
        };
        let views = [
            View { place: place(0, None), refresh: 5, api: "/_wr/", uri: "/", ..View::default() },
            View { place: Place::default(), arrival: true, uri: "/a?b", ..View::default() },
            View { place: place(40, None), reload_off: true, lost: true, ..View::default() },
            View { place: place(0, Some(90_000)), form: true, back: Some("/f"), ..View::default() },
        ];
        for &lang in &self.offered {
            for kind in Kind::ALL {
                for v in &views {
                    self.make(kind, lang, v)?;
                }
            }
        }
        Ok(())
    }

    /// The language `Accept-Language` asks for, among those offered.
    pub fn language(&self, accept_language: Option<&[u8]>) -> Lang {
        lang::negotiate(accept_language, &self.offered)
    }

    /// Whether more than one language is offered (so the page varies on `Accept-Language`).
    pub fn multilingual(&self) -> bool {
        self.offered.len() > 1
    }

    /// The page of `kind` for `v`, in `lang`: one kept from the same inputs, or made now.
    pub fn render(&self, kind: Kind, lang: Lang, v: &View) -> Result<Arc<str>, PageError> {
        // Everything a page is made from (taken apart whole: a new field must be added here).
        let View { room, place, refresh, api, arrival, lost, reload_off, uri, form, back } = *v;
        let Place { position, queue_length, eta, eta_max, draw, starts_in } = place;
        let mut key = Key::with_capacity(128 + room.len() + api.len() + uri.len());
        key.num(kind.index() as u64).str(lang.code()).str(room);
        key.num(position).num(queue_length).opt(eta).opt(eta_max).num(draw).opt(starts_in);
        key.num(refresh).str(api).flag(arrival).flag(lost).flag(reload_off).str(uri).flag(form);
        match back {
            Some(back) => key.flag(true).str(back),
            None => key.flag(false),
        };
        // A long URI (up to nginx's large header buffers) is seldom seen twice: not kept.
        let keep = key.0.len() <= memo::LONGEST_KEY;
        if keep {
            if let Some(page) = self.memo.get(&key.0) {
                return Ok(page);
            }
        }
        let page: Arc<str> = Arc::from(self.make(kind, lang, v)?);
        if keep {
            self.memo.put(key.0, Arc::clone(&page));
        }
        Ok(page)
    }

    /// The page of `kind` for `v`, in `lang`, made now.
    fn make(&self, kind: Kind, lang: Lang, v: &View) -> Result<String, PageError> {
        let empty = Map::new();
        let texts = self.texts.get(&lang);
        let t = texts.map_or(&empty, |x| &x.map);
        let p = &v.place;
        let state = if p.starts_in.is_some() {
            "not_started"
        } else if p.draw > 0 {
            "draw"
        } else {
            "queued"
        };
        let ctx = context! {
            page => kind.name(),
            room => v.room,
            lang => lang.code(),
            languages => self.languages.clone(),
            t => texts.map_or(Jv::UNDEFINED, |x| x.value.clone()),
            t_json => texts.map_or(Jv::UNDEFINED, |x| x.json.clone()),
            brand => self.brand.clone(),
            state => state,
            position => p.position,
            queue_length => p.queue_length,
            draw => p.draw,
            eta_seconds => p.eta,
            eta_max_seconds => p.eta_max,
            starts_in => p.starts_in,
            eta_text => lang::eta_text(t, lang, p.eta),
            eta_max_text => lang::eta_max_text(t, lang, p.eta_max),
            starts_in_text => p.starts_in.map(|s| lang::countdown(t, lang, s)),
            drawn_among => lang::form(t.get("drawn_among"), lang, p.draw, "{n}"),
            refresh => v.refresh,
            api => v.api,
            arrival => v.arrival,
            lost => v.lost,
            reload_off => v.reload_off,
            uri => v.uri,
            reload_off_url => super::with_room_arg(v.uri, "wr_reload=off"),
            reload_on_url => super::with_room_arg(v.uri, "wr_reload=on"),
            cookies_url => super::with_room_arg(v.uri, "wr_check=1"),
            form => v.form,
            back => v.back,
        };
        let name = &self.names[kind.index()];
        let template = self.env.get_template(name).map_err(|e| template_error(&e))?;
        // Into a buffer as big as the last page of this kind, rather than one that grows.
        let hint = &self.sizes[kind.index()];
        let mut out = Vec::with_capacity(hint.load(Ordering::Relaxed) + 512);
        template.render_captured_to(ctx, &mut out).map_err(|e| template_error(&e))?;
        hint.store(out.len(), Ordering::Relaxed);
        // minijinja writes only `str`s, so this never fails.
        String::from_utf8(out).map_err(|e| PageError(e.to_string()))
    }
}

/// The `fill` filter: a text with `{n}` replaced by markup (`{{ t.number_in_line|fill(m) }}`),
/// the text escaped for HTML and the markup kept as it is.
fn fill(text: Jv, markup: Jv) -> Jv {
    let owned;
    let text = match text.as_str() {
        Some(t) => t,
        None => {
            owned = text.to_string();
            &owned
        }
    };
    let mut out = String::with_capacity(text.len() + 64);
    // Writing to a String cannot fail.
    match text.split_once("{n}") {
        Some((before, after)) => {
            let _ = escape_into(&mut out, before);
            let _ = match markup.as_str() {
                Some(m) if markup.is_safe() => out.write_str(m),
                Some(m) => escape_into(&mut out, m),
                None => escape_into(&mut out, &markup.to_string()),
            };
            let _ = escape_into(&mut out, after);
        }
        None => {
            let _ = escape_into(&mut out, text);
        }
    }
    Jv::from_safe_string(out)
}

/// The languages by their codes, for messages.
pub fn language_codes() -> String {
    LANGUAGES.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> PageSettings {
        PageSettings::default()
    }

    fn view(draw: u64, starts_in: Option<u64>) -> View<'static> {
        View {
            place: Place {
                position: 1200,
                queue_length: 4567,
                eta: Some(725),
                eta_max: if draw > 0 { Some(1441) } else { None },
                draw,
                starts_in,
            },
            refresh: 30,
            api: "/_wr/",
            uri: "/shop?a=1",
            ..View::default()
        }
    }

    #[test]
    fn a_page_from_the_same_inputs_is_made_once() {
        let pages = Pages::build(&PageSettings::default(), false).unwrap();
        let render = |kind, lang, v: &View| pages.render(kind, lang, v).unwrap();
        let a = render(Kind::Queue, Lang::EN, &view(0, None));
        assert!(Arc::ptr_eq(&a, &render(Kind::Queue, Lang::EN, &view(0, None))));
        assert_eq!(*a, *pages.make(Kind::Queue, Lang::EN, &view(0, None)).unwrap());
        // Any input changed makes another page.
        let mut moved = view(0, None);
        moved.place.position += 1;
        let b = render(Kind::Queue, Lang::EN, &moved);
        assert_ne!(a, b);
        let de = Lang::all().find(|l| l.code() == "de").unwrap();
        assert_ne!(a, render(Kind::Queue, de, &view(0, None)));
        assert_ne!(a, render(Kind::Full, Lang::EN, &view(0, None)));
        let uri = View { uri: "/other", ..view(0, None) };
        assert_ne!(a, render(Kind::Queue, Lang::EN, &uri));
        let back = View { back: Some("/f"), form: true, ..view(0, None) };
        assert_ne!(a, render(Kind::Queue, Lang::EN, &back));
        // A page for a very long URI is made each time, the same.
        let long = format!("/{}", "x".repeat(memo::LONGEST_KEY));
        let long = View { uri: &long, ..view(0, None) };
        let l1 = render(Kind::Queue, Lang::EN, &long);
        let l2 = render(Kind::Queue, Lang::EN, &long);
        assert!(!Arc::ptr_eq(&l1, &l2) && l1 == l2);
    }

    #[test]
    fn fill_takes_any_value_as_its_text() {
        assert_eq!(fill(Jv::from("a < {n}!"), Jv::from("<b>")).to_string(), "a &lt; &lt;b&gt;!");
        let safe = Jv::from_safe_string("<b>".into());
        assert_eq!(fill(Jv::from("{n} left"), safe).to_string(), "<b> left");
        assert_eq!(fill(Jv::from(5), Jv::from("x")).to_string(), "5", "no {{n}}: the text alone");
        assert_eq!(fill(Jv::from("{n}"), Jv::from(7)).to_string(), "7");
    }

    /// The queue page's three headline blocks, and which one a view shows.
    fn shown(page: &str) -> Vec<&'static str> {
        ["bp", "bd", "bs"]
            .into_iter()
            .filter(|b| {
                let open = format!("<div id=\"{b}\">");
                let closed = format!("<div id=\"{b}\" hidden>");
                assert!(page.contains(&open) ^ page.contains(&closed), "block {b}: {page}");
                page.contains(&open)
            })
            .collect()
    }

    #[test]
    fn the_built_in_pages_render_in_every_language_and_state() {
        let pages = Pages::build(&settings(), true).unwrap();
        let en = Lang::EN;
        let page = pages.render(Kind::Queue, en, &view(0, None)).unwrap();
        assert_eq!(shown(&page), ["bp"]);
        assert!(page.contains("You are number <strong id=\"pos\">1200</strong> in line"));
        assert!(page.contains(">about 12 minutes<"), "no longest wait for a place");
        assert!(page.contains("<html lang=\"en\">"));
        assert!(!page.contains("class=\"brand\""), "no name shown unless configured");
        assert!(page.len() < 16384, "{} bytes", page.len());

        let page = pages.render(Kind::Queue, en, &view(900, None)).unwrap();
        assert_eq!(shown(&page), ["bd"]);
        assert!(page.contains("drawn at random among <strong id=\"dn\">900</strong> people"));
        assert!(page.contains(">about 12 minutes (at most 25 minutes)<"));

        for (draw, order) in [(0, "in the order they arrived"), (900, "drawn at random")] {
            let page = pages.render(Kind::Queue, en, &view(draw, Some(11_045))).unwrap();
            assert_eq!(shown(&page), ["bs"]);
            assert!(page.contains(
                "Opens in <strong id=\"sn\" role=\"timer\" aria-live=\"off\">03:04:05</strong>"
            ));
            assert!(page.contains(order), "{order}");
            assert!(page.contains("\"starts_in\":11045"));
        }
        for kind in Kind::ALL {
            for lang in Lang::all() {
                let page = pages.render(kind, lang, &view(0, None)).unwrap();
                assert!(page.contains(&format!("<html lang=\"{}\">", lang.code())));
                let html = page.split("<script>").next().unwrap_or_default();
                assert!(!page.contains("{{") && !html.contains("{n}"), "{kind:?} {lang:?}");
                assert_eq!(page.matches("<main>").count(), 1);
                assert_eq!(page.matches("<h1>").count(), if kind == Kind::Queue { 3 } else { 1 });
            }
        }
    }

    #[test]
    fn the_brand_is_shown_and_escaped() {
        let s = PageSettings {
            title: Some("Spring <Sale> & \"more\"".into()),
            message: Some("Doors open at 9".into()),
            logo: Some(("/logo.svg?a=1&b=\"2\"".into(), "Acme".into())),
            accent: Rgb::parse("#c2185b"),
            ..settings()
        };
        let pages = Pages::build(&s, true).unwrap();
        let page = pages.render(Kind::Queue, Lang::EN, &view(0, None)).unwrap();
        assert!(page.contains("<p class=\"brand\">Spring &lt;Sale&gt; &amp; &quot;more&quot;</p>"));
        assert!(page.contains("<title>You are in line – Spring &lt;Sale&gt;"));
        assert!(page.contains("<p class=\"msg\">Doors open at 9</p>"));
        assert!(page.contains("logo.svg?a=1&amp;b=&quot;2&quot;\" alt=\"Acme\""), "{page}");
        assert!(page.contains("--acc:#c2185b"));
        for kind in [Kind::Full, Kind::Closed, Kind::Over] {
            let page = pages.render(kind, Lang::EN, &view(0, None)).unwrap();
            assert!(page.contains("Doors open at 9") && page.contains("--acc:#c2185b"));
        }
    }

    #[test]
    fn values_in_the_script_are_json_safe_for_an_inline_script() {
        let pages = Pages::build(&settings(), false).unwrap();
        let mut v = view(0, None);
        v.api = "/a'</script><b>/";
        let page = pages.render(Kind::Queue, Lang::EN, &v).unwrap();
        let script = page.split("<script>").nth(1).unwrap();
        assert!(!script.contains("</script><b>"));
        assert!(
            script.contains(r#""api":"/a\u0027\u003c/script\u003e\u003cb\u003e/""#),
            "{script}"
        );
    }

    #[test]
    fn texts_can_be_replaced_and_languages_chosen() {
        let s = PageSettings {
            languages: Some(vec![Lang::parse("de").unwrap(), Lang::EN]),
            texts: vec![
                (None, "busy".into(), "Big sale!".into()),
                (Some(Lang::EN), "lead".into(), "English only <b>".into()),
            ],
            ..settings()
        };
        let pages = Pages::build(&s, true).unwrap();
        assert!(pages.multilingual());
        let de = pages.language(Some(b"fr, de;q=0.5"));
        assert_eq!(de.code(), "de");
        assert_eq!(pages.language(Some(b"fr")).code(), "de");
        let page = pages.render(Kind::Queue, de, &view(0, None)).unwrap();
        assert!(page.contains("Big sale!") && !page.contains("English only"));
        let page = pages.render(Kind::Queue, Lang::EN, &view(0, None)).unwrap();
        assert!(page.contains("English only &lt;b&gt;"));
    }

    fn with_template(kind: Kind, text: &str) -> Result<Pages, PageError> {
        let mut s = settings();
        s.templates[kind as usize] =
            Some(Source { path: "/etc/nginx/wr/page.html".into(), text: text.into() });
        Pages::build(&s, true)
    }

    #[test]
    fn a_site_template_may_extend_the_built_in_look() {
        let t = "{% extends \"base.html\" %}{% block title %}Hi{% endblock %}\
                 {% block main %}<h1>{{ t.busy }} #{{ position }}</h1>{% endblock %}";
        let pages = with_template(Kind::Queue, t).unwrap();
        let page = pages.render(Kind::Queue, Lang::EN, &view(0, None)).unwrap();
        assert!(page.contains("<h1>The site is busy. #1200</h1>") && page.contains("--acc:"));
        let page = pages.render(Kind::Full, Lang::EN, &view(0, None)).unwrap();
        assert!(page.contains("The waiting room is full"));
    }

    #[test]
    fn template_mistakes_name_the_file_and_line() {
        let e = with_template(Kind::Closed, "<p>\n{% if x %}\n").err().unwrap();
        assert!(e.0.contains("syntax error") && e.0.contains("/etc/nginx/wr/page.html:"), "{e}");
        let e = with_template(Kind::Over, "<p>\n\n{{ positon }}</p>").err().unwrap();
        assert!(e.0.contains("undefined") && e.0.contains("/etc/nginx/wr/page.html:3"), "{e}");
        let e = with_template(Kind::Queue, "{{ t.no_such_text }}").err().unwrap();
        assert!(e.0.contains("undefined"), "{e}");
        assert!(with_template(Kind::Queue, "{{ position|nofilter }}").is_err());
    }

    #[test]
    fn colours_are_checked_for_contrast() {
        let white = CARD_LIGHT;
        assert!(Rgb::parse("#1f5fd6").unwrap().contrast(white) >= AA);
        assert!(Rgb::parse("#ffcc00").unwrap().contrast(white) < AA);
        assert_eq!(Rgb::parse("#abc"), Some(Rgb([0xaa, 0xbb, 0xcc])));
        assert_eq!(Rgb::parse("red"), None);
        assert_eq!(Rgb::parse("#12345g"), None);
        let dark = Rgb::parse("#1f5fd6").unwrap().readable(CARD_DARK, CARD_LIGHT, AA);
        assert!(dark.contrast(CARD_DARK) >= AA);
        assert!((Rgb([0, 0, 0]).contrast(white) - 21.0).abs() < 1e-9);
    }
}

#[cfg(test)]
mod speed {
    use super::*;

    /// `cargo test --release --lib render_speed -- --ignored --nocapture`: microseconds per
    /// queue page.
    #[test]
    #[ignore]
    fn render_speed() {
        let pages = Pages::build(&PageSettings::default(), false).unwrap();
        let v = View {
            place: Place { position: 12, queue_length: 340, ..Place::default() },
            refresh: 10,
            api: "/_wr/",
            uri: "/",
            ..View::default()
        };
        let n = 5000;
        let t = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(pages.make(Kind::Queue, Lang::EN, &v).unwrap());
        }
        println!("{:.1} us per page", t.elapsed().as_secs_f64() * 1e6 / f64::from(n));
    }
}
