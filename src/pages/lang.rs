//! The languages the built-in pages speak: their texts (one JSON file per language in
//! `texts/`), their plural rules, and the choice among them from `Accept-Language`.
//!
//! A text is a string, or for a text with a count, an object with one string per CLDR plural
//! category the language has (`one`, `few`, `many`, `other`); `{n}` in it stands for the number
//! (or time) it is shown with. The pages' script picks the same forms with `Intl.PluralRules`,
//! falling back on `other` as [`form`] does.

use serde_json::{Map, Value};

/// The languages, by their BCP 47 primary subtags, in the order `auto` offers them; the first
/// is the fallback.
pub const LANGUAGES: [&str; 10] = ["en", "de", "fr", "es", "it", "pt", "nl", "pl", "ja", "zh"];

const SOURCES: [&str; 10] = [
    include_str!("texts/en.json"),
    include_str!("texts/de.json"),
    include_str!("texts/fr.json"),
    include_str!("texts/es.json"),
    include_str!("texts/it.json"),
    include_str!("texts/pt.json"),
    include_str!("texts/nl.json"),
    include_str!("texts/pl.json"),
    include_str!("texts/ja.json"),
    include_str!("texts/zh.json"),
];

/// One of [`LANGUAGES`], by its index there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lang(u8);

impl Lang {
    pub const EN: Lang = Lang(0);

    /// Every language, in [`LANGUAGES`] order.
    pub fn all() -> impl Iterator<Item = Lang> {
        (0..LANGUAGES.len() as u8).map(Lang)
    }

    /// The language named by a tag (`de`, `de-CH`, `zh-Hans-CN`; any case), by its primary
    /// subtag.
    pub fn parse(tag: &str) -> Option<Lang> {
        let primary = tag.split(['-', '_']).next().unwrap_or_default();
        LANGUAGES.iter().position(|l| l.eq_ignore_ascii_case(primary)).map(|i| Lang(i as u8))
    }

    pub fn code(self) -> &'static str {
        LANGUAGES[usize::from(self.0)]
    }

    /// The texts shipped for this language, as a JSON object.
    pub fn texts(self) -> Map<String, Value> {
        static PARSED: std::sync::OnceLock<Vec<Map<String, Value>>> = std::sync::OnceLock::new();
        let all = PARSED.get_or_init(|| {
            SOURCES
                .iter()
                .map(|s| serde_json::from_str::<Map<String, Value>>(s).unwrap_or_default())
                .collect()
        });
        all.get(usize::from(self.0)).cloned().unwrap_or_default()
    }

    /// The CLDR plural category of the whole number `n` in this language.
    pub fn plural(self, n: u64) -> &'static str {
        match self.code() {
            "ja" | "zh" => "other",
            "fr" | "pt" if n <= 1 => "one",
            "pl" => match (n % 10, n % 100) {
                _ if n == 1 => "one",
                (2..=4, m) if !(12..=14).contains(&m) => "few",
                _ => "many",
            },
            _ if n == 1 => "one",
            _ => "other",
        }
    }
}

/// The form of `text` (a string, or an object of plural forms) for the count `n`, with `{n}`
/// replaced by `shown`.
pub fn form(text: Option<&Value>, lang: Lang, n: u64, shown: &str) -> String {
    let s = match text {
        Some(Value::String(s)) => s.as_str(),
        Some(Value::Object(forms)) => forms
            .get(lang.plural(n))
            .or_else(|| forms.get("other"))
            .and_then(Value::as_str)
            .unwrap_or_default(),
        _ => "",
    };
    s.replace("{n}", shown)
}

/// The text `key` of `texts` (a plain string; for plural texts, the `other` form).
pub fn plain<'a>(texts: &'a Map<String, Value>, key: &str) -> &'a str {
    match texts.get(key) {
        Some(Value::String(s)) => s,
        Some(Value::Object(forms)) => {
            forms.get("other").and_then(Value::as_str).unwrap_or_default()
        }
        _ => "",
    }
}

/// The language of `offered` that `Accept-Language` ranks highest (by `q`, then by the
/// header's order); the first offered when none is acceptable or there is no header.
pub fn negotiate(accept_language: Option<&[u8]>, offered: &[Lang]) -> Lang {
    let fallback = offered.first().copied().unwrap_or(Lang::EN);
    let Some(header) = accept_language.and_then(|h| core::str::from_utf8(h).ok()) else {
        return fallback;
    };
    let mut best: Option<(u16, Lang)> = None;
    for range in header.split(',').take(32) {
        let mut parts = range.split(';');
        let tag = parts.next().unwrap_or_default().trim();
        let q = parts
            .find_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
            .map_or(Some(1000), quality);
        let Some(q) = q.filter(|&q| q > 0) else { continue };
        let lang = if tag == "*" { Some(fallback) } else { Lang::parse(tag) };
        let Some(lang) = lang.filter(|l| offered.contains(l)) else { continue };
        if best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, lang));
        }
    }
    best.map_or(fallback, |(_, l)| l)
}

/// A `q` value in thousandths (`0.8` is 800); `None` when it is not one.
fn quality(q: &str) -> Option<u16> {
    let q = q.trim();
    let (whole, frac) = q.split_once('.').unwrap_or((q, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_value = format!("{frac:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(frac_value),
        "1" if frac_value == 0 => Some(1000),
        _ => None,
    }
}

/// The wait `eta` (seconds) in words: honest about what is not known yet.
pub fn eta_text(t: &Map<String, Value>, lang: Lang, eta: Option<u64>) -> String {
    match eta {
        None => plain(t, "eta_unknown").to_owned(),
        Some(s) if s < 60 => plain(t, "eta_under_minute").to_owned(),
        Some(s) if s <= 5400 => {
            let m = (s + 30) / 60;
            form(t.get("eta_minutes"), lang, m, &m.to_string())
        }
        Some(s) => {
            let h = (s + 1800) / 3600;
            form(t.get("eta_hours"), lang, h, &h.to_string())
        }
    }
}

/// The longest wait of a drawn turn in words, as a bound: rounded up, never "at most 1 minute"
/// for 89 seconds.
pub fn eta_max_text(t: &Map<String, Value>, lang: Lang, eta_max: Option<u64>) -> String {
    match eta_max {
        None => String::new(),
        Some(s) if s < 60 => plain(t, "eta_max_minute").to_owned(),
        Some(s) if s <= 5400 => {
            let m = s.div_ceil(60);
            form(t.get("eta_max_minutes"), lang, m, &m.to_string())
        }
        Some(s) => {
            let h = s.div_ceil(3600);
            form(t.get("eta_max_hours"), lang, h, &h.to_string())
        }
    }
}

/// Seconds as a countdown: `2 days 03:04:05`, `03:04:05`, `04:05`.
pub fn countdown(t: &Map<String, Value>, lang: Lang, s: u64) -> String {
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h) {
        (0, 0) => format!("{m:02}:{s:02}"),
        (0, _) => format!("{h:02}:{m:02}:{s:02}"),
        _ => format!("{} {h:02}:{m:02}:{s:02}", form(t.get("days"), lang, d, &d.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lang(code: &str) -> Lang {
        Lang::parse(code).unwrap()
    }

    #[test]
    fn every_language_has_every_text_of_english_with_its_placeholders() {
        let en = Lang::EN.texts();
        assert!(en.len() > 40);
        for l in Lang::all() {
            let t = l.texts();
            let keys: Vec<_> = t.keys().collect();
            assert_eq!(keys, en.keys().collect::<Vec<_>>(), "{}", l.code());
            for (k, v) in &en {
                let wants_n = v.to_string().contains("{n}");
                let forms: Vec<&str> = match &t[k] {
                    Value::String(s) => vec![s],
                    Value::Object(o) => {
                        assert!(v.is_object(), "{} {k}", l.code());
                        assert!(o.contains_key("other"), "{} {k}", l.code());
                        o.values().filter_map(Value::as_str).collect()
                    }
                    other => panic!("{} {k}: {other}", l.code()),
                };
                for f in forms {
                    assert!(!f.is_empty(), "{} {k}", l.code());
                    assert_eq!(f.contains("{n}"), wants_n, "{} {k}: {f}", l.code());
                }
            }
        }
    }

    #[test]
    fn plural_categories_follow_cldr() {
        assert_eq!(lang("en").plural(1), "one");
        assert_eq!(lang("en").plural(0), "other");
        assert_eq!(lang("fr").plural(0), "one");
        assert_eq!(lang("fr").plural(2), "other");
        assert_eq!(lang("pt").plural(1), "one");
        let pl = lang("pl");
        let cats: Vec<_> =
            [1, 2, 4, 5, 11, 12, 14, 21, 22, 25, 112, 122].map(|n| pl.plural(n)).into();
        assert_eq!(
            cats,
            [
                "one", "few", "few", "many", "many", "many", "many", "many", "few", "many", "many",
                "few"
            ]
        );
        assert_eq!(lang("ja").plural(1), "other");
    }

    #[test]
    fn accept_language_picks_the_best_offered() {
        let all: Vec<Lang> = Lang::all().collect();
        let pick = |h: &str| negotiate(Some(h.as_bytes()), &all).code();
        assert_eq!(pick("de-CH,de;q=0.9,en;q=0.8"), "de");
        assert_eq!(pick("sv, fr;q=0.5, en;q=0.4"), "fr");
        assert_eq!(pick("en;q=0.5, ja"), "ja");
        assert_eq!(pick("zh-Hans-CN"), "zh");
        assert_eq!(pick("PL"), "pl");
        assert_eq!(pick("de;q=0, it;q=0.1"), "it");
        assert_eq!(pick("sv, da"), "en");
        assert_eq!(pick("*"), "en");
        assert_eq!(pick("de;q=2, nl;q=x, es;q=0.123"), "es");
        assert_eq!(negotiate(None, &all).code(), "en");
        let offered = [lang("fr"), lang("de")];
        assert_eq!(negotiate(Some(b"en, de;q=0.5"), &offered).code(), "de");
        assert_eq!(negotiate(Some(b"en"), &offered).code(), "fr");
    }

    #[test]
    fn waits_in_words_in_two_languages() {
        let (en, de, pl) = (lang("en"), lang("de"), lang("pl"));
        let (te, td, tp) = (en.texts(), de.texts(), pl.texts());
        assert_eq!(eta_text(&te, en, None), "being measured");
        assert_eq!(eta_text(&te, en, Some(0)), "less than a minute");
        assert_eq!(eta_text(&te, en, Some(60)), "about 1 minute");
        assert_eq!(eta_text(&te, en, Some(600)), "about 10 minutes");
        assert_eq!(eta_text(&te, en, Some(7200)), "about 2 hours");
        assert_eq!(eta_max_text(&te, en, Some(89)), "at most 2 minutes");
        assert_eq!(eta_max_text(&te, en, None), "");
        assert_ne!(eta_text(&td, de, Some(600)), eta_text(&te, en, Some(600)));
        assert!(eta_text(&td, de, Some(600)).contains("10"));
        assert_ne!(eta_text(&tp, pl, Some(120)), eta_text(&tp, pl, Some(300)));
        assert_eq!(countdown(&te, en, 11_045), "03:04:05");
        assert_eq!(countdown(&te, en, 65), "01:05");
        assert_eq!(countdown(&te, en, 2 * 86_400 + 11_045), "2 days 03:04:05");
    }
}
