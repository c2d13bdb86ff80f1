//! The pages nginx sends itself: the visitor's pages (minijinja templates in `templates/`,
//! texts in ten languages in `texts/`, or a site's own templates), the heartbeat script, and
//! the operators' live status page. Pure text work, no nginx.
//!
//! * [`render`]: the templates, compiled and tried when the configuration is read;
//! * [`lang`]: the languages, their texts and plural rules, and `Accept-Language`.

pub mod lang;
mod memo;
pub mod render;

/// The script admitted pages include.
pub const HEARTBEAT_JS: &str = include_str!("heartbeat.js");
/// The status location's live page for operators: static, it asks the location for the
/// figures (as JSON) itself.
pub const STATUS_PAGE: &str = include_str!("status.html");

/// The `Content-Security-Policy` of [`STATUS_PAGE`]: its own inline style and script (by
/// their SHA-256), requests to its own origin, and nothing else.
pub fn status_page_csp() -> &'static str {
    static CSP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CSP.get_or_init(|| {
        format!(
            "default-src 'none'; style-src '{}'; script-src '{}'; connect-src 'self'; \
             img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            inline_hash(STATUS_PAGE, "style"),
            inline_hash(STATUS_PAGE, "script"),
        )
    })
}

/// The CSP source for the first inline `<tag>` element of `page`: `sha256-` and the base64
/// of the SHA-256 of its text, as browsers hash it.
fn inline_hash(page: &str, tag: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let text = page
        .split_once(&open)
        .and_then(|(_, rest)| rest.split_once(&close))
        .map_or("", |(inside, _)| inside);
    let digest = sha2::Sha256::digest(text.as_bytes());
    format!("sha256-{}", base64::engine::general_purpose::STANDARD.encode(digest))
}

/// Where a visitor in line stands, for the page and the API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Place {
    /// The place in line; when the turn is drawn at random, the last place it may come at.
    pub position: u64,
    pub queue_length: u64,
    /// Expected seconds until the turn comes (`None` while the pace is unknown); when drawn at
    /// random, the expected wait, and `eta_max` the longest.
    pub eta: Option<u64>,
    pub eta_max: Option<u64>,
    /// How many waiting people the turn is drawn among at random; 0 for a place in line.
    pub draw: u64,
    /// Seconds until the event starts, while it has not.
    pub starts_in: Option<u64>,
}

impl Place {
    /// How often the visitor's page should check again.
    pub fn refresh_seconds(&self, claim_window_ms: u64) -> u64 {
        match self.starts_in {
            Some(s) => refresh_before_start(s),
            None => refresh_seconds(self.position, self.eta, claim_window_ms),
        }
    }
}

/// Replaces each `{{NAME}}` in `template` by `value(NAME)`; unknown names are left as they are.
fn fill(template: &str, value: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}").and_then(|end| value(&after[..end]).map(|v| (end, v))) {
            Some((end, v)) => {
                out.push_str(&v);
                rest = &after[end + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    // Writing to a String cannot fail.
    let _ = escape_into(&mut out, s);
    out
}

/// Writes `s` escaped as [`escape`] does, in runs between the bytes that need it (all ASCII,
/// so every run ends on a character boundary): this runs over every text of every page.
pub fn escape_into(out: &mut impl core::fmt::Write, s: &str) -> core::fmt::Result {
    let mut from = 0;
    for (at, b) in s.bytes().enumerate() {
        let with = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            b'\\' => "&#92;",
            _ => continue,
        };
        out.write_str(&s[from..at])?;
        out.write_str(with)?;
        from = at + 1;
    }
    out.write_str(&s[from..])
}

/// Escapes text for the inside of a JavaScript string literal, quoted with `'` or `"`, that may
/// stand in an inline `<script>`: quotes, backslashes, line breaks and every character that
/// could end the script or start markup (`<`, `>`, `&`) become `\uXXXX` escapes.
pub fn escape_js(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '\'' | '"' | '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if c.is_control() => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// `uri` (a request's path and query, as sent) with the room's own argument `arg`
/// (`wr_reload=off`) added, for a link on the page.
pub fn with_room_arg(uri: &str, arg: &str) -> String {
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{arg}")
}

/// The path and query of `referer` when it names a page of `host` (the page a form was sent
/// from); `None` for another site's page or anything unusual.
pub fn same_site_path(referer: &[u8], host: &[u8]) -> Option<String> {
    let referer = core::str::from_utf8(referer).ok()?;
    let rest = referer.strip_prefix("https://").or_else(|| referer.strip_prefix("http://"))?;
    let slash = rest.find('/')?;
    let (authority, path) = rest.split_at(slash);
    let host = core::str::from_utf8(host).ok()?;
    let fine = authority.eq_ignore_ascii_case(host)
        && !path.starts_with("//")
        && !path.contains(['\\', '"', '<', '>', ' '])
        && !path.chars().any(char::is_control);
    fine.then(|| path.split('#').next().unwrap_or(path).to_owned())
}

/// The heartbeat script for an API location at `api`.
pub fn heartbeat_js(api: &str, heartbeat_ms: u64) -> String {
    fill(HEARTBEAT_JS, |name| match name {
        "API_JS" => Some(escape_js(api)),
        "HEARTBEAT_MS" => Some(heartbeat_ms.to_string()),
        _ => None,
    })
}

/// How often a visitor at `position` should check again: about a quarter of the estimated
/// wait, so that a called visitor comes in soon after their slot frees, and seldom far back in
/// the line, where polls would only load the server; never longer than a third of the claim
/// window, so a call is answered in time. Until the pace is known, by position alone.
pub fn refresh_seconds(position: u64, eta: Option<u64>, claim_window_ms: u64) -> u64 {
    let wanted = match eta {
        Some(eta) => eta / 4,
        None => 5 + position / 100,
    };
    wanted.clamp(1, 30).min((claim_window_ms / 3000).max(1))
}

/// How often a visitor waiting for the event's start, `starts_in` seconds away, should check
/// again: nobody is called before it, so seldom while it is far (the page's script also asks
/// at the start itself), at least every minute so the countdown stays true.
pub fn refresh_before_start(starts_in: u64) -> u64 {
    (starts_in / 4).clamp(5, 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_referer_of_the_same_site_is_where_a_form_goes_back_to() {
        let back = |r: &str| same_site_path(r.as_bytes(), b"shop.example");
        assert_eq!(back("https://shop.example/cart?x=1#top").as_deref(), Some("/cart?x=1"));
        assert_eq!(back("http://SHOP.example/").as_deref(), Some("/"));
        assert_eq!(back("https://evil.example/cart"), None);
        assert_eq!(back("https://shop.example.evil/cart"), None);
        assert_eq!(back("https://shop.example//evil.example/"), None);
        assert_eq!(back("https://shop.example/a\"b"), None);
        assert_eq!(back("javascript:alert(1)"), None);
        assert_eq!(back("https://shop.example"), None);
        assert_eq!(with_room_arg("/a", "wr_check=1"), "/a?wr_check=1");
        assert_eq!(with_room_arg("/a?b=1", "wr_check=1"), "/a?b=1&wr_check=1");
    }

    #[test]
    fn the_script_is_filled() {
        let js = heartbeat_js("/_wr/", 30000);
        assert!(!js.contains("{{") && js.contains("'/_wr/'") && js.contains("30000"));
    }

    #[test]
    fn the_script_takes_any_prefix_as_a_javascript_string() {
        let js = heartbeat_js("/a'b\n\\c</script>\u{2028}/", 1000);
        assert!(js.contains(r"'/a\u0027b\u000a\u005cc\u003c/script\u003e\u2028/'"), "{js}");
        assert_eq!(escape_js("/_wr/"), "/_wr/");
    }

    #[test]
    fn unknown_and_unclosed_placeholders_stay() {
        assert_eq!(fill("a {{X}} b {{", |_| None), "a {{X}} b {{");
        assert_eq!(fill("{{A}}{{A}}", |_| Some("1".into())), "11");
    }

    #[test]
    fn refresh_follows_the_wait_and_stays_within_the_claim_window() {
        assert_eq!(refresh_seconds(1, None, 30_000), 5);
        assert_eq!(refresh_seconds(100_000, None, 30_000), 10);
        assert_eq!(refresh_seconds(100_000, None, 300_000), 30);
        assert_eq!(refresh_seconds(1, None, 2_000), 1);
        assert_eq!(refresh_seconds(1, Some(2), 30_000), 1);
        assert_eq!(refresh_seconds(40, Some(20), 30_000), 5);
        assert_eq!(refresh_seconds(9_000, Some(5_000), 300_000), 30);
    }
}
