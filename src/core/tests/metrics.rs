//! The operators' metrics: the wait histogram and the history ring in the region, the format a
//! request asks for, and the Prometheus text.

use super::{bytes, region, Came, Comes, T};
use crate::core::metrics::{choose, prometheus, query_flag, Format, UnknownFormat};
use crate::core::room::{Poll, Room};
use crate::core::stats::{History, Sample, WaitHistogram, HISTORY_LEN, HISTORY_STEP_MS};

#[test]
fn the_histogram_counts_each_wait_in_its_bucket() {
    let mut h = WaitHistogram::default();
    for ms in [0, 1_000, 1_001, 5_000, 59_999, 3_600_000, 3_600_001, u64::MAX / 2] {
        h.observe(ms);
    }
    // Bounds 1 5 15 30 60 120 300 600 1800 3600 +Inf; a wait on a bound is in its bucket.
    assert_eq!(h.buckets, [2, 2, 0, 0, 1, 0, 0, 0, 0, 1, 2]);
    assert_eq!(h.cumulative(), [2, 4, 4, 4, 5, 5, 5, 5, 5, 6, 8]);
    assert_eq!(h.count, 8);
}

#[test]
fn an_admission_from_the_line_is_counted_with_its_wait() {
    let mut mem = region(64 * 1024);
    let mut room = Room::create(bytes(&mut mem), 4, 1, b"k", 7).unwrap();
    let mut now = 1_000_000;
    let Came::Admitted(first) = room.come(now, &T) else { panic!() };
    let Came::Queued { ticket, .. } = room.come(now, &T) else { panic!() };
    now += 7_000;
    assert!(room.leave_session(first, now, &T));
    now += 500;
    assert!(matches!(room.poll(ticket, now, &T), Poll::Admitted(..)));
    let w = room.snapshot().waits;
    assert_eq!((w.count, w.sum_ms), (1, 7_500));
    assert_eq!(w.cumulative()[..3], [0, 0, 1]);
    // A newcomer let in at once waited for nothing: not in the histogram.
    assert_eq!(room.snapshot().totals.admitted_from_queue, w.count);
}

#[test]
fn the_history_keeps_the_last_ten_minutes_oldest_first() {
    let mut h = History::default();
    assert!(h.is_empty() && h.due(0));
    for i in 0..(HISTORY_LEN as u64 + 7) {
        let at = 1_000 + i * HISTORY_STEP_MS;
        assert!(h.due(at));
        h.record(Sample { at, admitted_total: i, ..Sample::default() });
        assert!(!h.due(at + 1_000));
    }
    assert_eq!(h.len(), HISTORY_LEN);
    let kept: Vec<u64> = h.iter().map(|s| s.admitted_total).collect();
    assert_eq!(kept, (7..HISTORY_LEN as u64 + 7).collect::<Vec<_>>());
    assert_eq!(h.latest().map(|s| s.admitted_total), Some(HISTORY_LEN as u64 + 6));
}

#[test]
fn the_sweep_samples_the_room_every_five_seconds() {
    let mut mem = region(64 * 1024);
    let mut room = Room::create(bytes(&mut mem), 4, 1, b"k", 7).unwrap();
    let mut now = 1_000_000;
    let _ = room.come(now, &T);
    let _ = room.come(now, &T);
    for _ in 0..21 {
        room.sweep(now, &T, 16);
        // A worker whose clock lags a little sweeps too.
        room.sweep(now.saturating_sub(300), &T, 16);
        now += 1_000;
    }
    let h = room.history();
    assert_eq!(h.len(), 5, "samples at 0, 5, 10, 15 and 20 s");
    let s = h.latest().unwrap();
    assert_eq!((s.active, s.waiting, s.admitted_total), (1, 1, 1));
    // One slot, one ahead: an estimate from the configuration.
    assert!(s.wait_s > 0 && s.wait_s < 1_000, "{s:?}");
    let at: Vec<u64> = h.iter().map(|s| s.at).collect();
    assert!(at.windows(2).all(|w| w[1] - w[0] >= HISTORY_STEP_MS - 500), "{at:?}");
}

#[test]
fn the_format_is_chosen_by_the_query_then_by_accept() {
    let ok = |args: &str, accept: Option<&str>| choose(args.as_bytes(), accept.map(str::as_bytes));
    assert_eq!(ok("", None), Ok(Format::Json));
    assert_eq!(ok("", Some("*/*")), Ok(Format::Json));
    assert_eq!(ok("", Some("application/json")), Ok(Format::Json));
    assert_eq!(ok("", Some("image/png")), Ok(Format::Json));
    let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8";
    assert_eq!(ok("", Some(browser)), Ok(Format::Html));
    assert_eq!(ok("", Some("text/plain;version=0.0.4")), Ok(Format::Prometheus));
    assert_eq!(ok("", Some("text/plain; version=\"0.0.4\"; q=0.9")), Ok(Format::Prometheus));
    assert_eq!(ok("", Some("text/plain")), Ok(Format::Prometheus));
    // Another version of the text format is not ours; a wildcard on text/* is a tie to JSON.
    assert_eq!(ok("", Some("text/plain;version=9.9")), Ok(Format::Json));
    let prometheus = "application/openmetrics-text;version=1.0.0,\
                      application/openmetrics-text;version=0.0.1;q=0.75,\
                      text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    assert_eq!(ok("", Some(prometheus)), Ok(Format::OpenMetrics));
    assert_eq!(
        ok("", Some("application/openmetrics-text;version=0.0.1,text/plain;q=0.5")),
        Ok(Format::Prometheus)
    );
    assert_eq!(
        ok("", Some("application/json;q=0.2,text/plain;version=0.0.4")),
        Ok(Format::Prometheus)
    );
    assert_eq!(ok("", Some("text/html;q=0,*/*")), Ok(Format::Json));
    assert_eq!(ok("", Some("text/*")), Ok(Format::Html));
    assert_eq!(ok("", Some("garbage;;;,q=x")), Ok(Format::Json));
    assert_eq!(ok("format=prometheus", Some(browser)), Ok(Format::Prometheus));
    assert_eq!(ok("history=1&format=openmetrics", None), Ok(Format::OpenMetrics));
    assert_eq!(ok("format=html", None), Ok(Format::Html));
    assert_eq!(ok("format=json", Some(prometheus)), Ok(Format::Json));
    assert_eq!(ok("format=xml", None), Err(UnknownFormat));
    assert!(query_flag(b"format=json&history=1", b"history"));
    assert!(query_flag(b"history", b"history"));
    assert!(!query_flag(b"history=0", b"history"));
    assert!(!query_flag(b"xhistory=1", b"history"));
}

#[test]
fn the_exposition_has_help_type_and_escaped_labels() {
    let mut mem = region(64 * 1024);
    let mut room = Room::create(bytes(&mut mem), 4, 1, b"k", 7).unwrap();
    let _ = room.come(1_000_000, &T);
    let snap = room.snapshot();
    let text = prometheus("a\"b\\c\nd", &snap, Some(42), false);
    assert!(text.contains(
        "# HELP waiting_room_active_sessions Sessions inside now.\n\
         # TYPE waiting_room_active_sessions gauge\n\
         waiting_room_active_sessions{room=\"a\\\"b\\\\c\\nd\"} 1\n"
    ));
    assert!(text.contains("# TYPE waiting_room_admitted_total counter\n"));
    assert!(text
        .contains("waiting_room_refused_total{room=\"a\\\"b\\\\c\\nd\",reason=\"crawler\"} 0\n"));
    assert!(
        text.contains("waiting_room_wait_seconds_bucket{room=\"a\\\"b\\\\c\\nd\",le=\"+Inf\"} 0\n")
    );
    assert!(text.contains("waiting_room_wait_seconds_sum{room=\"a\\\"b\\\\c\\nd\"} 0.0\n"));
    assert!(text.contains("waiting_room_estimated_wait_seconds{room=\"a\\\"b\\\\c\\nd\"} 42\n"));
    assert!(!text.contains("# EOF"));
    // Every line is a comment or a sample; each family is described once.
    let mut families = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            assert!(!families.contains(&name.to_string()), "{name} twice");
            families.push(name.to_string());
        } else if !line.starts_with("# HELP ") {
            assert!(line.starts_with("waiting_room_") && line.contains("} "), "{line}");
        }
    }

    let om = prometheus("r", &snap, None, true);
    assert!(om.ends_with("\n# EOF\n"));
    assert!(om.contains("waiting_room_estimated_wait_seconds{room=\"r\"} NaN\n"));
    // OpenMetrics names the counter family without `_total`, and writes bounds as floats.
    assert!(om.contains(
        "# TYPE waiting_room_admitted counter\nwaiting_room_admitted_total{room=\"r\"} 1\n"
    ));
    assert!(om.contains("waiting_room_wait_seconds_bucket{room=\"r\",le=\"1.0\"} 0\n"));
}
