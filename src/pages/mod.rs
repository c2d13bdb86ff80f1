//! The pages nginx sends itself: the queue page and the heartbeat script, compiled into the
//! module from this folder, or a site's own queue page template. Pure text work, no nginx.
//!
//! Values are escaped for the context they go into: `{{ROOM}}` and `{{API}}` for HTML text and
//! attribute values, `{{API_JS}}` for the inside of a JavaScript string literal (also inside an
//! inline `<script>`). Numbers need no escaping.

/// The default queue page template.
pub const QUEUE_PAGE: &str = include_str!("queue.html");
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

/// Sent with a 503 when the queue is as long as its zone can hold.
pub const FULL_PAGE: &str = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<meta http-equiv=\"refresh\" content=\"60\"><title>Please come back soon</title></head>\
<body style=\"font:16px/1.5 system-ui,sans-serif;max-width:30rem;margin:3rem auto;padding:0 1rem\">\
<h1>The waiting room is full</h1><p>So many people are waiting that the line cannot take more \
right now. This page tries again in a minute.</p></body></html>\n";

/// Sent to newcomers while the room is closed (mode `reject`).
pub const CLOSED_PAGE: &str = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<meta name=\"robots\" content=\"noindex,nofollow\"><title>Closed for now</title></head>\
<body style=\"font:16px/1.5 system-ui,sans-serif;max-width:30rem;margin:3rem auto;padding:0 1rem\">\
<main><h1>Closed for now</h1><p>The site is not letting anyone new in at the moment: it may be \
sold out, or closed for a while. Please come back later.</p></main></body></html>\n";

/// Sent to newcomers once the room's event has ended.
pub const OVER_PAGE: &str = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<meta name=\"robots\" content=\"noindex,nofollow\"><title>The event is over</title></head>\
<body style=\"font:16px/1.5 system-ui,sans-serif;max-width:30rem;margin:3rem auto;padding:0 1rem\">\
<main><h1>The event is over</h1><p>This event has ended and nobody new can join it. Thank you \
for your interest.</p></main></body></html>\n";

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

/// What the queue page shows one visitor.
pub struct QueueView<'a> {
    pub room: &'a str,
    pub place: Place,
    pub refresh_seconds: u64,
    pub api: &'a str,
    /// The visitor has just arrived and has no place yet: the page asks at once (taking the
    /// place, if the browser sent the cookie back), and tells a browser that sent none that
    /// cookies are needed.
    pub arrival: bool,
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
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\\' => out.push_str("&#92;"),
            c => out.push(c),
        }
    }
    out
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

/// A wait in words: honest about what is not known yet.
pub fn eta_text(eta: Option<u64>) -> String {
    match eta {
        None => "being measured".into(),
        Some(s) if s < 60 => "less than a minute".into(),
        Some(s) if s <= 5400 => {
            let m = (s + 30) / 60;
            format!("about {m} minute{}", if m == 1 { "" } else { "s" })
        }
        Some(s) => format!("about {} hours", (s + 1800) / 3600),
    }
}

fn hidden(on: bool) -> String {
    if on { "hidden" } else { "" }.to_owned()
}

/// Seconds as a countdown: `2 d 03:04:05`, `03:04:05`, `04:05`.
pub fn countdown(s: u64) -> String {
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h) {
        (0, 0) => format!("{m:02}:{s:02}"),
        (0, _) => format!("{h:02}:{m:02}:{s:02}"),
        _ => format!("{d} d {h:02}:{m:02}:{s:02}"),
    }
}

/// The queue page for `v`, from `template` (the default page or a site's own).
pub fn queue_page(template: &str, v: &QueueView) -> String {
    let p = &v.place;
    fill(template, |name| {
        Some(match name {
            "ROOM" => escape(v.room),
            "POSITION" => p.position.to_string(),
            "QUEUE_LENGTH" => p.queue_length.to_string(),
            "ETA_TEXT" => eta_text(p.eta),
            "ETA_SECONDS" => p.eta.map(|s| s.to_string()).unwrap_or_default(),
            "ETA_MAX_SECONDS" => p.eta_max.map(|s| s.to_string()).unwrap_or_default(),
            // A bound, so rounded up: never "at most 1 minute" for 89 seconds.
            "ETA_MAX_TEXT" => match p.eta_max {
                Some(s) if s < 60 => " (at most a minute)".into(),
                Some(s) if s <= 5400 => {
                    let m = s.div_ceil(60);
                    format!(" (at most {m} minute{})", if m == 1 { "" } else { "s" })
                }
                Some(s) => format!(" (at most {} hours)", s.div_ceil(3600)),
                None => String::new(),
            },
            // Before the start: in which order the line goes in then.
            "ORDER_TEXT" => if p.draw > 0 {
                "At the start, turns are drawn at random: arriving early does not change your \
                 chance."
            } else {
                "At the start, people go in in the order they arrived."
            }
            .into(),
            "DRAW" => p.draw.to_string(),
            "STARTS_IN" => p.starts_in.map(|s| s.to_string()).unwrap_or_default(),
            "STARTS_IN_TEXT" => p.starts_in.map(countdown).unwrap_or_default(),
            // Which of the page's three headlines shows: a place in line, a draw, a countdown.
            "PLACE_HIDDEN" => hidden(p.draw > 0 || p.starts_in.is_some()),
            "DRAW_HIDDEN" => hidden(p.draw == 0 || p.starts_in.is_some()),
            "SOON_HIDDEN" => hidden(p.starts_in.is_none()),
            "REFRESH" => v.refresh_seconds.to_string(),
            "API" => escape(v.api),
            "API_JS" => escape_js(v.api),
            "ARRIVAL" => u8::from(v.arrival).to_string(),
            _ => return None,
        })
    })
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
    fn the_default_page_is_filled_completely() {
        let v = QueueView {
            room: "shop<1>",
            place: Place { position: 12, queue_length: 340, ..Place::default() },
            refresh_seconds: 5,
            api: "/_wr/",
            arrival: true,
        };
        let page = queue_page(QUEUE_PAGE, &v);
        assert!(!page.contains("{{"), "an unfilled placeholder");
        assert!(page.contains(">12<") && page.contains("340") && page.contains("being measured"));
        assert!(page.contains("shop&lt;1&gt;") && !page.contains("shop<1>"));
        assert!(page.len() < 8192);
    }

    /// The queue page's three headline blocks, and which one a view shows.
    const BLOCKS: [&str; 3] = ["bp", "bd", "bs"];

    fn shown(page: &str) -> Vec<&'static str> {
        BLOCKS
            .into_iter()
            .filter(|b| {
                let open = format!("<div id=\"{b}\" >");
                let closed = format!("<div id=\"{b}\" hidden>");
                assert!(page.contains(&open) ^ page.contains(&closed), "block {b}: {page}");
                page.contains(&open)
            })
            .collect()
    }

    fn event_view(draw: u64, starts_in: Option<u64>) -> QueueView<'static> {
        QueueView {
            room: "spring-sale-2026-tickets-for-everyone",
            place: Place {
                position: 1200,
                queue_length: 4567,
                eta: Some(725),
                eta_max: if draw > 0 { Some(1441) } else { None },
                draw,
                starts_in,
            },
            refresh_seconds: 30,
            api: "/_wr/",
            arrival: false,
        }
    }

    #[test]
    fn the_default_page_is_filled_completely_for_a_place_a_draw_and_a_countdown() {
        // A place in line, the event started.
        let page = queue_page(QUEUE_PAGE, &event_view(0, None));
        assert!(!page.contains("{{"), "an unfilled placeholder");
        assert_eq!(shown(&page), ["bp"]);
        assert!(page.contains("You are number <strong id=\"pos\">1200</strong> in line"));
        assert!(page.contains(">about 12 minutes<"), "no longest wait for a place");
        assert!(page.len() < 8192, "{} bytes", page.len());

        // A drawn turn: the size of the draw, the honest line, the expected and longest wait.
        let page = queue_page(QUEUE_PAGE, &event_view(900, None));
        assert!(!page.contains("{{"), "an unfilled placeholder");
        assert_eq!(shown(&page), ["bd"]);
        assert!(page.contains("drawn at random among <strong id=\"dn\">900</strong>"));
        assert!(page.contains("everyone in the draw has the same chance"));
        assert!(page.contains(">about 12 minutes (at most 25 minutes)<"));
        assert!(page.len() < 8192, "{} bytes", page.len());

        // Before the start, in arrival order, and drawn.
        for (draw, order) in [(0, "in the order they arrived"), (900, "drawn at random")] {
            let page = queue_page(QUEUE_PAGE, &event_view(draw, Some(11_045)));
            assert!(!page.contains("{{"), "an unfilled placeholder");
            assert_eq!(shown(&page), ["bs"]);
            assert!(page.contains(
                "Opens in <strong id=\"sn\" role=\"timer\" aria-live=\"off\">03:04:05</strong>"
            ));
            assert!(page.contains("has not started") && page.contains("place is kept"));
            assert!(page.contains(order), "{order}");
            assert!(page.contains("starts_in:'11045'"));
            assert!(page.len() < 8192, "{} bytes", page.len());
        }
    }

    #[test]
    fn the_longest_wait_is_rounded_up() {
        let text = |s| {
            let mut v = event_view(5, None);
            v.place.eta_max = Some(s);
            queue_page("{{ETA_MAX_TEXT}}", &v)
        };
        assert_eq!(text(0), " (at most a minute)");
        assert_eq!(text(59), " (at most a minute)");
        assert_eq!(text(60), " (at most 1 minute)");
        assert_eq!(text(61), " (at most 2 minutes)");
        assert_eq!(text(5400), " (at most 90 minutes)");
        assert_eq!(text(5401), " (at most 2 hours)");
        assert_eq!(queue_page("{{ETA_MAX_TEXT}}", &event_view(0, None)), "");
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
    fn words_for_waits() {
        assert_eq!(eta_text(Some(0)), "less than a minute");
        assert_eq!(eta_text(Some(60)), "about 1 minute");
        assert_eq!(eta_text(Some(600)), "about 10 minutes");
        assert_eq!(eta_text(Some(7200)), "about 2 hours");
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
