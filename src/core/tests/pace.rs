//! Tests of the pace of the queue, from which the wait estimate is made: the prior from the
//! configuration, convergence to what is measured, following a slowdown, the release rate.

use crate::core::layout::Timing;
use crate::core::stats::Pace;

use super::T;

/// A room of `slots` slots, always full (a line waits), whose visits last as long as `visit`
/// says for a visit opened at a given time; the pace is folded every second, as the sweep does.
struct Full {
    pace: Pace,
    slots: u32,
    /// When each slot's visit was opened.
    opened: Vec<u64>,
    now: u64,
}

const START: u64 = 1_000_000;

impl Full {
    /// An opening: every slot's visit opens at once.
    fn opening(slots: u32) -> Full {
        Full { pace: Pace::new(), slots, opened: vec![START; slots as usize], now: START }
    }

    /// A room already turning over steadily: visits of `visit_ms`, their starts spread evenly.
    fn steady(slots: u32, visit_ms: u64) -> Full {
        let opened =
            (0..u64::from(slots)).map(|i| START - i * visit_ms / u64::from(slots)).collect();
        Full { pace: Pace::new(), slots, opened, now: START }
    }

    /// Runs for `secs` seconds: a visit ends when it has lasted `visit(slot, opened)`, and
    /// the slot is taken again at once by the next in line.
    fn run(&mut self, secs: u64, t: &Timing, visit: impl Fn(usize, u64) -> u64) {
        for _ in 0..secs {
            self.now += 1000;
            for (slot, o) in self.opened.iter_mut().enumerate() {
                if self.now - *o >= visit(slot, *o) {
                    self.pace.session_ended(*o);
                    *o = self.now;
                }
            }
            self.pace.fold(self.now, self.slots, 0, self.slots, t);
        }
    }

    fn cycle(&self, t: &Timing) -> f64 {
        self.pace.cycle_seconds(self.slots, t)
    }
}

fn near(got: f64, want: f64, within: f64) -> bool {
    (got - want).abs() <= want * within
}

#[test]
fn before_any_departure_the_configuration_says_the_pace() {
    // A visit of 1.5 × idle (30 s), and a sixth of the claim window (10 s) to claim the slot.
    let prior = Pace::prior_cycle_seconds(&T);
    assert!(near(prior, 30.0 + 10.0 / 6.0, 1e-9), "{prior}");
    // A session limit below that bounds the visit.
    let short = Timing { session_ms: 12_000, ..T };
    assert!(near(Pace::prior_cycle_seconds(&short), 12.0 + 10.0 / 6.0, 1e-9));
    // 20 slots turn over 20 visits every cycle: 40 ahead wait two cycles.
    let p = Pace::new();
    assert!(near(p.cycle_seconds(20, &T), prior, 1e-9));
    assert_eq!(p.eta_seconds(40, 20, &T, None), Some((2.0 * prior).round() as u64));
    assert_eq!(p.eta_seconds(0, 20, &T, None), Some(0));
    // No slot: the line does not move.
    assert_eq!(p.eta_seconds(5, 0, &T, None), None);
    // Nothing measured yet in a default (zeroed) pace is no pace at all, not a division by 0.
    assert!(near(Pace::default().cycle_seconds(20, &T), prior, 1e-9));
}

#[test]
fn young_visits_at_an_opening_do_not_make_the_estimate_run_away() {
    // Everyone came in at once and nobody has left yet: that says little yet.
    let mut room = Full::opening(20);
    let prior = Pace::prior_cycle_seconds(&T);
    for _ in 0..10 {
        room.run(1, &T, |_, _| u64::MAX);
        let c = room.cycle(&T);
        assert!(c >= prior && c <= 1.25 * prior, "{c} vs {prior}");
    }
}

#[test]
fn the_estimate_converges_to_the_measured_pace() {
    let t = Timing { session_ms: 3_600_000, ..T };
    for visit in [5_000u64, 60_000, 300_000] {
        let mut room = Full::steady(20, visit);
        // Four memories of the pace (one visit's turn, at least 30 s) are plenty.
        room.run((4 * visit / 1000).max(120), &t, |_, _| visit);
        let want = visit as f64 / 1000.0;
        let c = room.cycle(&t);
        assert!(near(c, want, 0.05), "visits of {want} s: cycle {c}");
        // 100 ahead of 20 slots: five visits' length.
        let eta = room.pace.eta_seconds(100, 20, &t, None).unwrap() as f64;
        assert!(near(eta, 5.0 * want, 0.06), "{eta}");
    }
}

#[test]
fn an_opening_converges_too() {
    // Visits of 10 to 40 s, 25 s on average, all opened at once.
    let mut room = Full::opening(20);
    let visit = |slot: usize, opened: u64| {
        let h = (opened / 1000 + 1).wrapping_mul(2_654_435_761) ^ (slot as u64 * 40_503);
        10_000 + h.wrapping_mul(6_364_136_223_846_793_005) % 30_001
    };
    room.run(300, &T, visit);
    let c = room.cycle(&T);
    assert!(near(c, 25.0, 0.15), "cycle {c}, visits of 25 s on average");
}

#[test]
fn a_slowdown_is_followed_quickly() {
    // Visits of 20 s, then from `slow` on visits of 60 s.
    let mut room = Full::steady(20, 20_000);
    room.run(300, &T, |_, _| 20_000);
    let slow = room.now;
    let visit = |_, opened: u64| if opened >= slow { 60_000 } else { 20_000 };
    assert!(near(room.cycle(&T), 20.0, 0.05));
    // Before the first long visit ends, the visits under way already tell: most of the way
    // to three times longer within 50 s (for a while nobody leaves at all: longer yet).
    room.run(50, &T, visit);
    let c = room.cycle(&T);
    assert!(c > 40.0, "50 s in: {c}");
    room.run(40, &T, visit);
    let c = room.cycle(&T);
    assert!(c > 45.0, "90 s in: {c}");
    room.run(240, &T, visit);
    let c = room.cycle(&T);
    assert!(near(c, 60.0, 0.1), "5.5 min in: {c}");
}

#[test]
fn a_speedup_is_followed_quickly() {
    let mut room = Full::steady(20, 60_000);
    room.run(400, &T, |_, _| 60_000);
    let fast = room.now;
    let visit = |_, opened: u64| if opened >= fast { 15_000 } else { 60_000 };
    room.run(90, &T, visit);
    let c = room.cycle(&T);
    assert!(c < 20.0, "90 s in: {c}");
    room.run(150, &T, visit);
    assert!(near(room.cycle(&T), 15.0, 0.1), "{}", room.cycle(&T));
}

#[test]
fn a_release_rate_caps_the_pace() {
    let mut room = Full::steady(20, 10_000);
    room.run(200, &T, |_, _| 10_000);
    // 20 slots of 10 s visits: 120 a minute. 60 ahead: 30 s.
    let free = room.pace.eta_seconds(60, 20, &T, None).unwrap();
    assert!((28..=32).contains(&free), "{free}");
    // Released at 30 a minute: two minutes.
    assert_eq!(room.pace.eta_seconds(60, 20, &T, Some(30.0)), Some(120));
    // A cap above the pace does not speed it up; 0, negative or not a number is no cap.
    for r in [Some(1000.0), Some(0.0), Some(-5.0), Some(f64::NAN), None] {
        assert_eq!(room.pace.eta_seconds(60, 20, &T, r), Some(free), "{r:?}");
    }
    // Before anything is measured, too.
    let fresh = Pace::new();
    assert_eq!(fresh.eta_seconds(10, 20, &T, Some(6.0)), Some(100));
}

#[test]
fn more_slots_turn_over_faster() {
    // `max_active` raised on reload: the same visits, twice the slots, half the wait.
    let mut room = Full::steady(20, 30_000);
    room.run(200, &T, |_, _| 30_000);
    let at20 = room.pace.eta_seconds(200, 20, &T, None).unwrap() as f64;
    let at40 = room.pace.eta_seconds(200, 40, &T, None).unwrap() as f64;
    assert!(near(at40, at20 / 2.0, 0.05), "{at20} {at40}");
}

#[test]
fn an_empty_room_keeps_its_pace_then_forgets_it() {
    let mut room = Full::steady(20, 10_000);
    room.run(200, &T, |_, _| 10_000);
    let measured = room.cycle(&T);
    // Everyone leaves; nobody comes for a while: what was measured stays.
    for o in &room.opened {
        room.pace.session_ended(*o);
    }
    let mut now = room.now;
    for _ in 0..120 {
        now += 1000;
        room.pace.fold(now, 0, 0, 20, &T);
    }
    let kept = room.pace.cycle_seconds(20, &T);
    assert!(near(kept, measured, 0.3), "{kept} vs {measured}");
    // Hours later, the configuration speaks again.
    for _ in 0..200 {
        now += 60_000;
        room.pace.fold(now, 0, 0, 20, &T);
    }
    let prior = Pace::prior_cycle_seconds(&T);
    assert!(near(room.pace.cycle_seconds(20, &T), prior, 0.01));
}

#[test]
fn a_lagging_clock_and_a_damaged_pace_do_no_harm() {
    let mut p = Pace::new();
    p.fold(START, 3, 0, 20, &T);
    // A worker whose clock is behind: no time passes, nothing goes wrong.
    p.session_ended(START + 500);
    p.fold(START - 200, 3, 0, 20, &T);
    let c = p.cycle_seconds(20, &T);
    assert!(c.is_finite() && c > 0.0);
    assert!(p.eta_seconds(u64::MAX, 20, &T, None).is_some_and(|s| s <= 365 * 86_400));
}
