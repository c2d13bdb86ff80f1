//! What kind of request it is, from its method and headers alone: a top-level page load (the
//! only kind that may take a place in line), and whether its user agent is a known crawler or
//! monitor (which never holds one). Pure byte work, no nginx.

/// The request's method, as far as joining cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Other,
}

/// The headers that tell a page load from the rest, as the request sent them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Headers<'a> {
    pub accept: Option<&'a [u8]>,
    pub sec_fetch_mode: Option<&'a [u8]>,
    pub sec_fetch_dest: Option<&'a [u8]>,
    /// `Sec-Purpose` or the older `Purpose`: set on prefetches and prerenders.
    pub purpose: Option<&'a [u8]>,
}

impl<'a> Headers<'a> {
    /// Notes header `name` (any case) with `value` if it is one of those above.
    pub fn note(&mut self, name: &[u8], value: &'a [u8]) {
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if is("accept") {
            self.accept = Some(value);
        } else if is("sec-fetch-mode") {
            self.sec_fetch_mode = Some(value);
        } else if is("sec-fetch-dest") {
            self.sec_fetch_dest = Some(value);
        } else if is("sec-purpose") || is("purpose") {
            self.purpose = Some(value);
        }
    }
}

fn trimmed(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &v[start..end]
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// Whether `Accept` prefers JSON to HTML: an app or a single-page app asking for data, which
/// is answered in JSON (and may take a place, as a page load may). `application/json` (or a
/// `+json` type) must be named with a weight above 0, and above that of `text/html` (named,
/// or as `text/*`) when HTML is asked for: `application/json, text/plain, */*` prefers
/// JSON; a browser's `text/html,…,*/*;q=0.8` does not.
pub fn prefers_json(accept: Option<&[u8]>) -> bool {
    let Some(accept) = accept else { return false };
    let (mut json, mut html) = (0u32, None::<u32>);
    for range in accept.split(|&b| b == b',') {
        let mut parts = range.split(|&b| b == b';');
        let kind = trimmed(parts.next().unwrap_or_default());
        let q = parts.find_map(|p| {
            let p = trimmed(p);
            let v = p.strip_prefix(b"q=").or_else(|| p.strip_prefix(b"Q="))?;
            Some(weight(trimmed(v)))
        });
        let q = q.unwrap_or(1000);
        let (ty, sub) = match kind.iter().position(|&b| b == b'/') {
            Some(i) => (&kind[..i], &kind[i + 1..]),
            None => continue,
        };
        let is = |a: &[u8], b: &str| a.eq_ignore_ascii_case(b.as_bytes());
        let json_sub = is(sub, "json") || ends_ci(sub, b"+json");
        if is(ty, "application") && json_sub {
            json = json.max(q);
        } else if (is(ty, "text") && (is(sub, "html") || is(sub, "*"))) || is(sub, "xhtml+xml") {
            html = Some(html.map_or(q, |h| h.max(q)));
        }
    }
    json > 0 && html.is_none_or(|h| json > h)
}

/// A `q` value in thousandths (`0.8` is 800); what cannot be read is 0.
fn weight(v: &[u8]) -> u32 {
    let s = core::str::from_utf8(v).unwrap_or("0");
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let int: u32 = match int {
        "1" => 1,
        "0" | "" => 0,
        _ => return 0,
    };
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    let frac: u32 = format!("{frac:0<3}").parse().unwrap_or(0);
    (int * 1000 + frac).min(1000)
}

fn ends_ci(hay: &[u8], tail: &[u8]) -> bool {
    hay.len() >= tail.len() && hay[hay.len() - tail.len()..].eq_ignore_ascii_case(tail)
}

/// Whether the request is a top-level page load: what a person does by following a link,
/// typing an address, reloading or sending a form. Browsers say so with `Sec-Fetch-Mode:
/// navigate` and `Sec-Fetch-Dest: document`; older ones, which send no `Sec-Fetch-*`, ask for
/// HTML with `Accept`. `HEAD`, images, scripts, styles, `fetch` and XHR, frames, prefetches
/// and prerenders, and clients that do not ask for HTML (`curl`, `wrk`, libraries) are not.
pub fn is_navigation(method: Method, h: &Headers) -> bool {
    if h.purpose.is_some_and(|p| contains_ci(p, b"prefetch") || contains_ci(p, b"prerender")) {
        return false;
    }
    match h.sec_fetch_mode.map(trimmed) {
        Some(mode) => {
            method != Method::Other
                && mode.eq_ignore_ascii_case(b"navigate")
                && h.sec_fetch_dest.map(trimmed).is_none_or(|d| d.eq_ignore_ascii_case(b"document"))
        }
        None => {
            method == Method::Get
                && h.accept.is_some_and(|a| {
                    contains_ci(a, b"text/html") || contains_ci(a, b"application/xhtml+xml")
                })
        }
    }
}

/// Words in the user agents of search engines, link previewers, SEO tools, archivers and
/// uptime monitors; matched without regard to case anywhere in the `User-Agent`.
const CRAWLERS: &[&str] = &[
    // search engines
    "googlebot",
    "google-inspectiontool",
    "googleother",
    "adsbot-google",
    "mediapartners-google",
    "storebot-google",
    "apis-google",
    "bingbot",
    "bingpreview",
    "msnbot",
    "adidxbot",
    "slurp",
    "duckduckbot",
    "duckassistbot",
    "baiduspider",
    "yandexbot",
    "yandex.com/bots",
    "exabot",
    "seznambot",
    "yeti/",
    "applebot",
    "petalbot",
    "qwantify",
    "mojeekbot",
    "coccocbot",
    // link previews and social networks
    "facebookexternalhit",
    "facebookcatalog",
    "meta-externalagent",
    "twitterbot",
    "linkedinbot",
    "slackbot",
    "slack-imgproxy",
    "discordbot",
    "telegrambot",
    "whatsapp",
    "skypeuripreview",
    "pinterestbot",
    "redditbot",
    "embedly",
    "vkshare",
    "iframely",
    "outbrain",
    // SEO tools, archivers, AI crawlers
    "ahrefsbot",
    "semrushbot",
    "mj12bot",
    "dotbot",
    "rogerbot",
    "screaming frog",
    "archive.org_bot",
    "ia_archiver",
    "ccbot",
    "gptbot",
    "chatgpt-user",
    "oai-searchbot",
    "claudebot",
    "claude-user",
    "anthropic-ai",
    "perplexitybot",
    "bytespider",
    "amazonbot",
    "diffbot",
    "dataforseobot",
    // uptime monitors and page-speed tools
    "pingdom",
    "uptimerobot",
    "statuscake",
    "site24x7",
    "newrelicpinger",
    "datadogsynthetics",
    "checkly",
    "better uptime",
    "betteruptime",
    "uptime-kuma",
    "freshping",
    "hetrixtools",
    "gtmetrix",
    "chrome-lighthouse",
    "pagespeed",
    "monitis",
    "nagios",
    "zabbix",
    "catchpoint",
    "elb-healthchecker",
    "googlehc",
    "kube-probe",
];

/// Generic words crawlers put in their user agents. `bot` alone would match phones (the
/// "CUBOT" brand), so only its usual forms are taken.
const CRAWLER_WORDS: &[&str] = &["bot/", "bot;", "bot)", "crawler", "spider", "+http"];

/// Whether `ua` (a `User-Agent` value) is a known crawler, link previewer or monitor.
pub fn is_known_crawler(ua: &[u8]) -> bool {
    CRAWLERS.iter().chain(CRAWLER_WORDS).any(|w| contains_ci(ua, w.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<'a>(accept: Option<&'a str>, mode: Option<&'a str>, dest: Option<&'a str>) -> Headers<'a> {
        Headers {
            accept: accept.map(str::as_bytes),
            sec_fetch_mode: mode.map(str::as_bytes),
            sec_fetch_dest: dest.map(str::as_bytes),
            purpose: None,
        }
    }

    const CHROME_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,\
                                 image/avif,image/webp,*/*;q=0.8";

    #[test]
    fn apps_asking_for_json_get_json() {
        let yes = |a: &str| prefers_json(Some(a.as_bytes()));
        assert!(yes("application/json"));
        assert!(yes("application/json, text/plain, */*"));
        assert!(yes("Application/JSON;charset=utf-8"));
        assert!(yes("application/problem+json"));
        assert!(yes("text/html;q=0.5, application/json"));
        assert!(yes("application/json;q=0.9, text/html;q=0.8"));
        assert!(!yes(CHROME_ACCEPT));
        assert!(!yes("*/*"));
        assert!(!yes("application/json;q=0"));
        assert!(!yes("application/json;q=0.5, text/html"));
        assert!(!yes("application/json, text/html"));
        assert!(!yes("application/json;q=0.5, text/*"));
        assert!(!yes("application/jsonp"));
        assert!(!yes("application/json;q=x"));
        assert!(!prefers_json(None));
        assert_eq!(weight(b"0.8"), 800);
        assert_eq!(weight(b"1.000"), 1000);
        assert_eq!(weight(b"0.0001"), 0);
        assert_eq!(weight(b"2"), 0);
    }

    #[test]
    fn browsers_navigating_join() {
        let nav = h(Some(CHROME_ACCEPT), Some("navigate"), Some("document"));
        assert!(is_navigation(Method::Get, &nav));
        // A form sent to a protected page is a navigation too.
        assert!(is_navigation(Method::Post, &nav));
        // Browsers without Sec-Fetch-* ask for HTML.
        assert!(is_navigation(Method::Get, &h(Some(CHROME_ACCEPT), None, None)));
        assert!(is_navigation(Method::Get, &h(Some("TEXT/HTML"), None, None)));
        assert!(is_navigation(Method::Get, &h(Some(CHROME_ACCEPT), Some(" Navigate "), None)));
    }

    #[test]
    fn everything_else_does_not() {
        let img = h(Some("image/avif,image/webp,*/*"), Some("no-cors"), Some("image"));
        assert!(!is_navigation(Method::Get, &img));
        assert!(!is_navigation(Method::Get, &h(Some("*/*"), Some("cors"), Some("empty"))));
        assert!(!is_navigation(Method::Get, &h(Some("*/*"), Some("no-cors"), Some("script"))));
        // A frame is a navigation, but not a top-level one.
        assert!(!is_navigation(
            Method::Get,
            &h(Some(CHROME_ACCEPT), Some("navigate"), Some("iframe"))
        ));
        // HEAD and other methods never join.
        assert!(!is_navigation(Method::Other, &h(Some(CHROME_ACCEPT), Some("navigate"), None)));
        assert!(!is_navigation(Method::Other, &h(Some(CHROME_ACCEPT), None, None)));
        // curl, wget, wrk, libraries: no Accept, or */*.
        assert!(!is_navigation(Method::Get, &h(None, None, None)));
        assert!(!is_navigation(Method::Get, &h(Some("*/*"), None, None)));
        assert!(!is_navigation(Method::Get, &h(Some("application/json"), None, None)));
        // A POST without Sec-Fetch-* is not known to come from a page.
        assert!(!is_navigation(Method::Post, &h(Some(CHROME_ACCEPT), None, None)));
        // Prefetches and prerenders are speculative.
        let mut pre = h(Some(CHROME_ACCEPT), Some("navigate"), Some("document"));
        pre.purpose = Some(b"prefetch;prerender");
        assert!(!is_navigation(Method::Get, &pre));
    }

    #[test]
    fn headers_are_noted_by_name_in_any_case() {
        let mut n = Headers::default();
        n.note(b"ACCEPT", b"text/html");
        n.note(b"Sec-Fetch-Mode", b"navigate");
        n.note(b"sec-fetch-dest", b"document");
        n.note(b"Purpose", b"prefetch");
        n.note(b"X-Other", b"x");
        assert_eq!(n.accept, Some(&b"text/html"[..]));
        assert_eq!(n.sec_fetch_mode, Some(&b"navigate"[..]));
        assert_eq!(n.sec_fetch_dest, Some(&b"document"[..]));
        assert_eq!(n.purpose, Some(&b"prefetch"[..]));
    }

    #[test]
    fn crawlers_are_known() {
        for ua in [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; \
             +http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
            "Pingdom.com_bot_version_1.4_(http://www.pingdom.com/)",
            "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
            "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
            "Mozilla/5.0 (compatible; SomeNewCrawler/1.0)",
            "kube-probe/1.29",
        ] {
            assert!(is_known_crawler(ua.as_bytes()), "{ua}");
        }
    }

    #[test]
    fn people_are_not_crawlers() {
        for ua in [
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
             Chrome/120.0.0.0 Safari/537.36",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 \
             (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (Linux; Android 9; CUBOT X20 PRO) AppleWebKit/537.36 (KHTML, like \
             Gecko) Chrome/119.0.0.0 Mobile Safari/537.36",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
            "",
        ] {
            assert!(!is_known_crawler(ua.as_bytes()), "{ua}");
        }
    }
}
