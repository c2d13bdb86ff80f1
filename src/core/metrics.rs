//! The status location's other answers: which format a request asks for (JSON, the live page,
//! or Prometheus' text formats), and the room's metrics in Prometheus' text exposition format
//! (version 0.0.4) or in OpenMetrics 1.0.0. Pure text, no nginx.
//!
//! The encoder is ours, not the `prometheus-client` crate's: that crate writes OpenMetrics
//! only (not the 0.0.4 text that older scrapers and tools ask for), and is built around a
//! registry of live metric objects; here every value is read at once from a snapshot of the
//! zone, and one short writer for both formats is less than the glue the crate would need.

use core::fmt::Write as _;

use super::room::Snapshot;
use super::stats::WAIT_BUCKETS_S;

/// What the status location answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    /// The live page, for a browser.
    Html,
    /// Prometheus' text exposition format, version 0.0.4.
    Prometheus,
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Html => "text/html; charset=utf-8",
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format a `format=` query parameter names.
    fn named(v: &[u8]) -> Option<Format> {
        Some(match v {
            b"json" => Format::Json,
            b"html" => Format::Html,
            b"prometheus" => Format::Prometheus,
            b"openmetrics" => Format::OpenMetrics,
            _ => return None,
        })
    }
}

/// The value of a query parameter `name` in `args` (the part after `?`), as sent: only plain
/// words are looked for here, so no percent-decoding is needed.
pub fn query_param<'a>(args: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    args.split(|&b| b == b'&').find_map(|pair| {
        let mut kv = pair.splitn(2, |&b| b == b'=');
        (kv.next()? == name).then(|| kv.next().unwrap_or(b""))
    })
}

/// Whether a query flag such as `history=1` is on: present, and not `0`, `false` or `no`.
pub fn query_flag(args: &[u8], name: &[u8]) -> bool {
    query_param(args, name).is_some_and(|v| !matches!(v, b"0" | b"false" | b"no" | b"off"))
}

/// `format=` names no format we have: a `400`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownFormat;

/// The format for a request: `format=` in the query first, then the `Accept` header, JSON when
/// it says nothing or as much for several (`*/*`, as `curl` sends). Each format is taken at the
/// quality of the most specific range that matches it (type and subtype, then `type/*`, then
/// `*/*`); the best quality wins, ties going to JSON, then the page, then OpenMetrics, then the
/// 0.0.4 text. `text/plain` counts for the 0.0.4 text unless it names another `version`, and
/// `application/openmetrics-text` for OpenMetrics unless it names a version other than 1.0.0.
/// An `Accept` that takes none of them gets JSON too (rather than a `406` a monitor would
/// take for an outage).
pub fn choose(args: &[u8], accept: Option<&[u8]>) -> Result<Format, UnknownFormat> {
    if let Some(name) = query_param(args, b"format") {
        return Format::named(name).ok_or(UnknownFormat);
    }
    let Some(accept) = accept.filter(|a| !a.trim_ascii().is_empty()) else {
        return Ok(Format::Json);
    };
    // Each format, in the order ties go: its type, subtype and the version it is.
    type Offer = (Format, &'static [u8], &'static [u8], &'static [u8]);
    const ORDER: [Offer; 4] = [
        (Format::Json, b"application", b"json", b""),
        (Format::Html, b"text", b"html", b""),
        (Format::OpenMetrics, b"application", b"openmetrics-text", b"1.0.0"),
        (Format::Prometheus, b"text", b"plain", b"0.0.4"),
    ];
    let mut best: Option<(Format, u32)> = None;
    for (format, ty, sub, version) in ORDER {
        let q = quality(accept, ty, sub, version);
        if q > 0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((format, q));
        }
    }
    Ok(best.map_or(Format::Json, |(f, _)| f))
}

/// The quality (in thousandths) an `Accept` header gives `ty/sub`: that of the most specific
/// range matching it, 0 when none does. A range on `ty/sub` itself that names a `version`
/// other than `version` does not match.
fn quality(accept: &[u8], ty: &[u8], sub: &[u8], version: &[u8]) -> u32 {
    // (specificity, quality) of the best match so far.
    let mut found: Option<(u8, u32)> = None;
    for range in accept.split(|&b| b == b',') {
        let mut parts = range.split(|&b| b == b';');
        let media = parts.next().unwrap_or(b"").trim_ascii();
        let mut q = 1000;
        let mut other_version = false;
        for p in parts {
            let mut kv = p.splitn(2, |&b| b == b'=');
            let k = kv.next().unwrap_or(b"").trim_ascii();
            let v = kv.next().unwrap_or(b"").trim_ascii();
            let v = v.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")).unwrap_or(v);
            if k.eq_ignore_ascii_case(b"q") {
                q = parse_q(v);
            } else if k.eq_ignore_ascii_case(b"version") && !version.is_empty() && v != version {
                other_version = true;
            }
        }
        let mut halves = media.splitn(2, |&b| b == b'/');
        let (t, s) = (halves.next().unwrap_or(b""), halves.next().unwrap_or(b""));
        let specificity = if t.eq_ignore_ascii_case(ty) && s.eq_ignore_ascii_case(sub) {
            if other_version {
                continue;
            }
            3
        } else if t.eq_ignore_ascii_case(ty) && s == b"*" {
            2
        } else if t == b"*" && s == b"*" {
            1
        } else {
            continue;
        };
        if found.is_none_or(|(sp, fq)| specificity > sp || (specificity == sp && q > fq)) {
            found = Some((specificity, q));
        }
    }
    found.map_or(0, |(_, q)| q)
}

/// A `q` value, `0` to `1` with up to three decimals, in thousandths; a malformed one is 0.
fn parse_q(v: &[u8]) -> u32 {
    let text = core::str::from_utf8(v).unwrap_or("");
    match text.parse::<f64>() {
        Ok(q) if (0.0..=1.0).contains(&q) => (q * 1000.0).round() as u32,
        _ => 0,
    }
}

/// A Prometheus metric's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
    Histogram,
}

/// Writes metric families in the 0.0.4 text format or in OpenMetrics, every sample labelled
/// with the room. A counter's name ends in `_total` (the family's name in OpenMetrics drops
/// it); names and HELP texts are the program's own, only label values come from outside.
pub struct Exposition {
    out: String,
    room: String,
    open_metrics: bool,
}

impl Exposition {
    pub fn new(room: &str, open_metrics: bool) -> Exposition {
        Exposition { out: String::with_capacity(4096), room: label_value(room), open_metrics }
    }

    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let family = match (kind, self.open_metrics) {
            (Kind::Counter, true) => name.strip_suffix("_total").unwrap_or(name),
            _ => name,
        };
        let kind = match kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(self.out, "# HELP {family} {}", help_text(help));
        let _ = writeln!(self.out, "# TYPE {family} {kind}");
    }

    /// One sample: `name{room="…"[,key="value"]} value`.
    fn sample(&mut self, name: &str, extra: Option<(&str, &str)>, value: &str) {
        let _ = write!(self.out, "{name}{{room=\"{}\"", self.room);
        if let Some((k, v)) = extra {
            let _ = write!(self.out, ",{k}=\"{}\"", label_value(v));
        }
        let _ = writeln!(self.out, "}} {value}");
    }

    pub fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, Kind::Gauge, help);
        self.sample(name, None, &value.to_string());
    }

    /// A gauge that may be unknown: `NaN` then.
    pub fn gauge_or_nan(&mut self, name: &str, help: &str, value: Option<u64>) {
        self.family(name, Kind::Gauge, help);
        self.sample(name, None, &value.map_or_else(|| "NaN".into(), |v| v.to_string()));
    }

    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, Kind::Counter, help);
        self.sample(name, None, &value.to_string());
    }

    /// A counter with one more label, `key`, a sample for each of its values.
    pub fn counter_by(&mut self, name: &str, help: &str, key: &str, values: &[(&str, u64)]) {
        self.family(name, Kind::Counter, help);
        for (v, n) in values {
            self.sample(name, Some((key, v)), &n.to_string());
        }
    }

    /// A histogram: cumulative counts for each upper bound (in seconds), then `+Inf`, the sum
    /// and the count.
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        bounds: &[u64],
        cumulative: &[u64],
        sum: f64,
    ) {
        self.family(name, Kind::Histogram, help);
        let bucket = format!("{name}_bucket");
        for (b, c) in bounds.iter().zip(cumulative) {
            // OpenMetrics wants a bound written as a float.
            let le = if self.open_metrics { format!("{b}.0") } else { b.to_string() };
            self.sample(&bucket, Some(("le", &le)), &c.to_string());
        }
        let count = cumulative.last().copied().unwrap_or(0);
        self.sample(&bucket, Some(("le", "+Inf")), &count.to_string());
        self.sample(&format!("{name}_sum"), None, &float(sum));
        self.sample(&format!("{name}_count"), None, &count.to_string());
    }

    pub fn finish(mut self) -> String {
        if self.open_metrics {
            self.out.push_str("# EOF\n");
        }
        self.out
    }
}

/// A label value, escaped as both formats want: backslash, double quote and line feed.
fn label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A HELP text, escaped as both formats want: backslash and line feed. (OpenMetrics also
/// escapes a double quote there, which the 0.0.4 text does not: our texts have none.)
fn help_text(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A float as both formats read it: finite, with a decimal point.
fn float(v: f64) -> String {
    if !v.is_finite() {
        return "0.0".into();
    }
    let s = format!("{v}");
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

/// The room's metrics, from a snapshot, in the 0.0.4 text format or OpenMetrics. Adding a
/// metric is one line here; the README lists them (see "Prometheus").
pub fn prometheus(
    room: &str,
    s: &Snapshot,
    back_of_line_eta: Option<u64>,
    open_metrics: bool,
) -> String {
    let mut e = Exposition::new(room, open_metrics);
    let (t, p) = (&s.totals, &s.people);
    e.gauge("waiting_room_active_sessions", "Sessions inside now.", s.active_sessions.into());
    e.gauge("waiting_room_max_active", "Most sessions let inside at once.", s.max_sessions.into());
    e.gauge("waiting_room_queue_length", "People in line, including those called.", s.queue_length);
    e.gauge(
        "waiting_room_called_unclaimed",
        "Called from the line, not come in yet.",
        s.called.into(),
    );
    e.gauge_or_nan(
        "waiting_room_estimated_wait_seconds",
        "Estimated wait for someone joining the back of the line now.",
        back_of_line_eta,
    );
    e.counter("waiting_room_joined_total", "Places taken in line.", t.joined_total);
    e.counter("waiting_room_admitted_total", "Visitors let inside.", t.admitted_total);
    e.counter(
        "waiting_room_admitted_from_queue_total",
        "Visitors let inside from the line.",
        t.admitted_from_queue,
    );
    e.counter(
        "waiting_room_tickets_abandoned_total",
        "Places dropped after queue_timeout.",
        t.tickets_abandoned,
    );
    e.counter(
        "waiting_room_tickets_missed_total",
        "Called places not claimed in time.",
        t.tickets_missed,
    );
    e.counter(
        "waiting_room_tickets_left_total",
        "Places given up by their visitor.",
        t.tickets_left,
    );
    e.counter(
        "waiting_room_sessions_left_total",
        "Sessions ended by their visitor.",
        t.sessions_left,
    );
    e.counter(
        "waiting_room_sessions_expired_total",
        "Sessions ended by idle or session.",
        t.sessions_expired,
    );
    e.counter(
        "waiting_room_rejected_full_total",
        "Newcomers refused: the line was full.",
        t.rejected_full,
    );
    e.counter_by(
        "waiting_room_refused_total",
        "Requests that could take no place, by reason.",
        "reason",
        &[
            ("not_navigation", p.refused_not_navigation),
            ("crawler", p.refused_crawler),
            ("client_limit", p.refused_client_limit),
        ],
    );
    e.counter(
        "waiting_room_turned_away_total",
        "Newcomers sent the closed or event over page.",
        s.turned_away,
    );
    e.counter(
        "waiting_room_bypassed_total",
        "Requests let past the room by waiting_room_bypass or as crawlers.",
        s.tallies.bypassed,
    );
    e.counter(
        "waiting_room_dry_run_total",
        "Requests let through by waiting_room_dry_run that the room would have held or refused.",
        s.tallies.dry_run,
    );
    e.counter(
        "waiting_room_ended_by_origin_total",
        "Sessions the origin ended with X-Waiting-Room-Command.",
        s.tallies.ended_by_origin,
    );
    e.counter_by(
        "waiting_room_exempt_links_total",
        "Exempt links presented, by what became of them.",
        "outcome",
        &[("used", s.exempt.used), ("refused", s.exempt.refused)],
    );
    e.histogram(
        "waiting_room_wait_seconds",
        "Time from taking a place in line to being let inside.",
        &WAIT_BUCKETS_S,
        &s.waits.cumulative(),
        s.waits.sum_seconds(),
    );
    e.finish()
}
