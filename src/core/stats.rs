//! The room's counters and the pace of the queue, from which the wait estimate is made. Kept in
//! the region's header, under the lock; times are monotonic milliseconds.

use super::layout::Timing;

/// The statistics window: rates are sampled over windows of at least this length.
const WINDOW_MS: u64 = 5_000;
/// Time constant of the rates' exponential smoothing.
const SMOOTHING_MS: f64 = 30_000.0;
/// The queue's pace is first published after this long of measuring it, from the first call
/// on, and at least `WARM_CALLS` calls: an average from a moment when nobody had left yet
/// would promise waits many times too long.
const WARM_MS: u64 = 20_000;
const WARM_CALLS: u64 = 3;

/// What happened since the zone was made: the counters the status shows.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub admitted_total: u64,
    pub admitted_from_queue: u64,
    pub joined_total: u64,
    pub sessions_left: u64,
    pub sessions_expired: u64,
    pub tickets_abandoned: u64,
    pub tickets_missed: u64,
    pub tickets_left: u64,
    pub rejected_full: u64,
}

/// Requests the room let through without a decision of its own, counted by each worker and
/// added to the zone's counts the next time it holds the lock (within a sweep's interval):
/// counting them needs no lock of its own. Not in the state file: they start again from 0
/// with a new zone, which Prometheus takes as a counter reset.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tallies {
    /// Requests `waiting_room_bypass` let past the room.
    pub bypassed: u64,
    /// Requests `waiting_room_dry_run` let through that the room would have held or refused.
    pub dry_run: u64,
    /// Sessions the origin ended with its response header.
    pub ended_by_origin: u64,
}

impl Tallies {
    pub fn add(&mut self, o: &Tallies) {
        self.bypassed += o.bypassed;
        self.dry_run += o.dry_run;
        self.ended_by_origin += o.ended_by_origin;
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Counters {
    pub totals: Totals,
    window_start: u64,
    window_calls: u64,
    window_admits: u64,
    window_had_waiting: u32,
    call_rate_known: u32,
    admit_rate_known: u32,
    wait_known: u32,
    /// Calls and time measured so far while the pace is not yet known.
    warm_calls: u64,
    warm_ms: u64,
    /// Tickets called per minute, smoothed.
    call_rate: f64,
    /// Visitors admitted (directly or from the queue) per minute, smoothed.
    admit_rate: f64,
    /// Time from joining to being admitted, smoothed, in milliseconds.
    avg_wait_ms: f64,
    /// Whether `window_start` is set: monotonic time may be small after boot, so 0 is no mark.
    window_open: u32,
    _pad: u32,
}

impl Counters {
    pub fn called(&mut self) {
        self.window_calls += 1;
    }

    pub fn admitted(&mut self) {
        self.totals.admitted_total += 1;
        self.window_admits += 1;
    }

    /// A visitor came in from the line after waiting `wait_ms`.
    pub fn admitted_after(&mut self, wait_ms: u64) {
        self.totals.admitted_from_queue += 1;
        let wait = wait_ms as f64;
        self.avg_wait_ms = if self.wait_known == 0 {
            wait
        } else {
            self.avg_wait_ms + 0.2 * (wait - self.avg_wait_ms)
        };
        self.wait_known = 1;
    }

    /// Closes the statistics window when it is long enough, and folds it into the rates.
    /// `waiting` says whether anyone is waiting now.
    pub fn sample(&mut self, now: u64, waiting: bool) {
        if self.window_open == 0 {
            // The first window also counts what happened before the first sweep.
            self.window_open = 1;
            self.window_start = now;
            self.window_had_waiting = u32::from(waiting);
            return;
        }
        // Each worker's cached clock lags a little: one a moment behind sees a short window.
        let dt = now.saturating_sub(self.window_start);
        if dt < WINDOW_MS {
            return;
        }
        let minutes = dt as f64 / 60_000.0;
        let alpha = 1.0 - (-(dt as f64) / SMOOTHING_MS).exp();
        // The queue's pace is only measurable while people are waiting for it.
        let measurable = self.window_had_waiting != 0 || self.window_calls > 0;
        if self.call_rate_known != 0 {
            if measurable {
                let sample = self.window_calls as f64 / minutes;
                self.call_rate += alpha * (sample - self.call_rate);
            }
        } else if measurable && (self.warm_ms > 0 || self.window_calls > 0) {
            self.warm_calls += self.window_calls;
            self.warm_ms += dt;
            if self.warm_ms >= WARM_MS && self.warm_calls >= WARM_CALLS {
                self.call_rate = self.warm_calls as f64 * 60_000.0 / self.warm_ms as f64;
                self.call_rate_known = 1;
            }
        }
        let sample = self.window_admits as f64 / minutes;
        self.admit_rate = if self.admit_rate_known == 0 {
            sample
        } else {
            self.admit_rate + alpha * (sample - self.admit_rate)
        };
        self.admit_rate_known = 1;
        self.window_start = now;
        self.window_calls = 0;
        self.window_admits = 0;
        self.window_had_waiting = u32::from(waiting);
    }

    /// These counters, carried to a room whose monotonic clock reads `shift(t)` for this one's
    /// `t` (a room restored from a state file). A pace that is not a finite, non-negative
    /// number (a damaged file) is forgotten and measured anew.
    pub fn rebased(mut self, shift: impl Fn(u64) -> u64) -> Counters {
        self.window_start = shift(self.window_start);
        let rates = [
            (&mut self.call_rate, &mut self.call_rate_known),
            (&mut self.admit_rate, &mut self.admit_rate_known),
            (&mut self.avg_wait_ms, &mut self.wait_known),
        ];
        for (value, known) in rates {
            if !value.is_finite() || *value < 0.0 {
                *value = 0.0;
                *known = 0;
            }
        }
        self
    }

    pub fn admitted_per_minute(&self) -> Option<f64> {
        (self.admit_rate_known != 0).then_some(self.admit_rate)
    }

    pub fn called_per_minute(&self) -> Option<f64> {
        (self.call_rate_known != 0).then_some(self.call_rate)
    }

    pub fn avg_wait_seconds(&self) -> Option<f64> {
        (self.wait_known != 0).then_some(self.avg_wait_ms / 1000.0)
    }
}

/// The pace's statistics fade with a time constant (its memory) that holds about this many
/// visits' ends: enough for a steady figure, few enough to follow a change quickly...
const PACE_MEMORY_VISITS: f64 = 10.0;
/// ... and never shorter than this.
const PACE_MEMORY_MIN_S: f64 = 15.0;
/// Below this, in visits and in seconds, nothing is known any more (the room was empty for
/// a long while): the pace starts again from the configuration.
const FORGOTTEN: f64 = 1e-6;

/// How fast the slots turn over, from which the wait estimate is made: the expected time a
/// slot takes per visit (the *cycle*: called, claimed, inside, freed), first from the
/// configuration and then, as visits end, from what is measured, fading with a memory of
/// about ten visits' ends (15 s at least), so that a change of pace is followed quickly. O(1)
/// per event, no allocation; plain data in the region's header, under the lock. Times are
/// monotonic milliseconds.
///
/// The cycle is `(k·prior + inside/2 + ended/2 + claim) / (k + visits ended)`, all faded:
///
/// * `prior`, before anything is measured: a visit lasts about `idle` (the longest pause of a
///   visitor still there, so a visit is a few of them at least), and half the visitors go away
///   without a word and hold their slot an `idle` more: 1.5 × `idle`, at most `session`; plus
///   the time a called visitor takes to claim the slot: it polls at most a third of
///   `claim_window` apart, so a sixth of it on average. It counts for `k` visits: `max_active`
///   at first (as if every slot had seen one), fading as the measurements do (while nothing
///   happens, what was measured is kept; once it has faded away, the prior is back).
/// * `inside`, the time spent inside by all sessions, ended or not, over the visits ended: an
///   exposure estimate, right whatever their age when visits end at a steady rate, but too
///   long while most visits are young (just after an opening, when nobody has left yet).
/// * `ended`, the length of the visits that ended over their number: right in a steady room,
///   but too short while the long visits are still under way, and late to see visits grow
///   longer. Both agree while visits turn over steadily, and they err in opposite directions
///   at an opening and when the pace changes: their mean is taken.
/// * `claim`, the time called tickets held their slot (until claimed, or lapsed) over the
///   visits ended.
///
/// Then `max_active` slots call `max_active / cycle` tickets a second, or fewer under a
/// release rate.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Pace {
    /// Monotonic ms of the last fold; meaningful when `folded` is 1 (monotonic time may be
    /// small after boot, so 0 is no mark).
    at: u64,
    folded: u32,
    /// Sessions live, and tickets called holding a slot, at the last fold.
    active: u32,
    called: u32,
    _pad: u32,
    /// Since the last fold: sessions ended, and the sum of the times they were opened.
    ended_now: u64,
    ended_now_opened: u64,
    /// How much the prior still counts, in visits per slot (of `max_active`).
    prior: f64,
    /// Faded: seconds spent inside by sessions, seconds the visits that ended lasted, seconds
    /// called tickets held their slot, and visits ended.
    inside_s: f64,
    ended_s: f64,
    claim_s: f64,
    ended: f64,
}

impl Pace {
    /// A pace known only from the configuration.
    pub fn new() -> Pace {
        Pace { prior: 1.0, ..Pace::default() }
    }

    /// This pace, carried to a room on another monotonic clock (an image's): what was
    /// measured is kept, and the next fold starts from then.
    pub fn rebased(mut self) -> Pace {
        self.folded = 0;
        self.ended_now = 0;
        self.ended_now_opened = 0;
        self
    }

    /// A session opened at `opened` has ended (now: it is counted at the next fold).
    pub fn session_ended(&mut self, opened: u64) {
        self.ended_now = self.ended_now.saturating_add(1);
        self.ended_now_opened = self.ended_now_opened.wrapping_add(opened);
    }

    /// The expected seconds a slot takes per visit, before anything is measured.
    pub fn prior_cycle_seconds(t: &Timing) -> f64 {
        let visit_ms = t.session_ms.min(t.idle_ms.saturating_add(t.idle_ms / 2));
        (visit_ms as f64 + t.claim_window_ms as f64 / 6.0) / 1000.0
    }

    /// The expected seconds a slot takes per visit, with `max_active` slots.
    pub fn cycle_seconds(&self, max_active: u32, t: &Timing) -> f64 {
        let prior = Pace::prior_cycle_seconds(t);
        let k = self.prior * f64::from(max_active);
        let measured = (self.inside_s + self.ended_s) / 2.0 + self.claim_s;
        let cycle = (k * prior + measured) / (k + self.ended);
        if cycle.is_finite() && cycle > 0.0 {
            cycle
        } else {
            prior
        }
    }

    /// Folds what happened since the last fold into the statistics: `active` sessions live
    /// and `called` tickets holding a slot now (each taken to have changed evenly since the
    /// last fold), and the sessions ended meanwhile.
    pub fn fold(&mut self, now: u64, active: u32, called: u32, max_active: u32, t: &Timing) {
        let sane = [self.prior, self.inside_s, self.ended_s, self.claim_s, self.ended]
            .iter()
            .all(|v| v.is_finite() && *v >= 0.0);
        if !sane {
            // Never written so by this code; a damaged header starts again from the prior.
            *self = Pace::new();
        }
        if self.folded == 0 {
            self.folded = 1;
            self.at = now;
            self.active = active;
            self.called = called;
        }
        // Each worker's cached clock lags a little: one a moment behind folds no time.
        let dt = now.saturating_sub(self.at) as f64 / 1000.0;
        let slots = f64::from(max_active.max(1));
        let memory =
            (PACE_MEMORY_VISITS * self.cycle_seconds(max_active, t) / slots).max(PACE_MEMORY_MIN_S);
        let keep = (-dt / memory).exp();
        // The weight of the interval's moments, each faded by its age: ∫ e^(-s/memory) ds.
        let span = memory * (1.0 - keep);
        let ended = self.ended_now as f64;
        // How long they lasted, summed: exact in wrapping arithmetic as long as the true sum
        // fits. One opened by a worker whose clock is a moment ahead of `now` would make it
        // negative: then their lengths are left out.
        let lasted = self.ended_now.wrapping_mul(now).wrapping_sub(self.ended_now_opened);
        let longest = self.ended_now.saturating_mul(t.session_ms.saturating_add(60_000));
        let lasted_ms = if lasted <= longest { lasted as f64 } else { 0.0 };
        self.inside_s = self.inside_s * keep
            + f64::from(self.active) / 2.0 * span
            + f64::from(active) / 2.0 * span;
        self.claim_s = self.claim_s * keep
            + f64::from(self.called) / 2.0 * span
            + f64::from(called) / 2.0 * span;
        self.ended_s = self.ended_s * keep + lasted_ms / 1000.0;
        self.ended = self.ended * keep + ended;
        self.prior *= keep;
        if self.prior + self.ended < FORGOTTEN
            && self.inside_s + self.ended_s + self.claim_s < FORGOTTEN
        {
            self.prior = 1.0;
        }
        self.at = self.at.max(now);
        self.active = active;
        self.called = called;
        self.ended_now = 0;
        self.ended_now_opened = 0;
    }

    /// Tickets called a second, with `max_active` slots and at most `release_per_minute`
    /// admissions a minute (`None` or 0: no such cap).
    pub fn calls_per_second(
        &self,
        max_active: u32,
        t: &Timing,
        release_per_minute: Option<f64>,
    ) -> f64 {
        let turnover = f64::from(max_active) / self.cycle_seconds(max_active, t);
        match release_per_minute {
            Some(r) if r.is_finite() && r > 0.0 => turnover.min(r / 60.0),
            _ => turnover,
        }
    }

    /// Estimated seconds until `calls_needed` more tickets are called, with `max_active`
    /// slots and at most `release_per_minute` admissions a minute (`None` or 0: no such cap);
    /// `None` when the queue cannot move (no slot).
    pub fn eta_seconds(
        &self,
        calls_needed: u64,
        max_active: u32,
        t: &Timing,
        release_per_minute: Option<f64>,
    ) -> Option<u64> {
        let rate = self.calls_per_second(max_active, t, release_per_minute);
        if !(rate.is_finite() && rate > 1e-9) {
            return None;
        }
        if calls_needed == 0 {
            return Some(0);
        }
        // Rounded, not rounded up: an estimate a second long on average is no honest one;
        // but someone not called yet waits a second at least.
        let eta = (calls_needed as f64 / rate).round().max(1.0);
        // Beyond a year the estimate means nothing; it is said as such rather than wrapped.
        Some(eta.min(365.0 * 86_400.0) as u64)
    }
}

/// The upper bounds, in seconds, of the wait histogram's buckets; one more bucket, `+Inf`,
/// counts the longer waits.
pub const WAIT_BUCKETS_S: [u64; 10] = [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600];

/// How long the visitors let in from the line waited (from taking their place to being let
/// in), as counts per bucket: the Prometheus histogram `waiting_room_wait_seconds`. Kept in the
/// region's header under the lock, and not in the state file's image: a restart or a zone size
/// change starts it again, which Prometheus takes as a counter reset.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WaitHistogram {
    /// Waits in each bucket (not cumulative): `buckets[i]` counts the waits above the bound
    /// before `WAIT_BUCKETS_S[i]` and up to it; the last counts those above the last bound.
    pub buckets: [u64; WAIT_BUCKETS_S.len() + 1],
    /// The waits summed, in milliseconds, and their number.
    pub sum_ms: u64,
    pub count: u64,
}

impl WaitHistogram {
    /// A visitor was let in from the line after waiting `wait_ms`.
    pub fn observe(&mut self, wait_ms: u64) {
        let i = WAIT_BUCKETS_S
            .iter()
            .position(|&b| wait_ms <= b.saturating_mul(1000))
            .unwrap_or(WAIT_BUCKETS_S.len());
        if let Some(b) = self.buckets.get_mut(i) {
            *b = b.wrapping_add(1);
        }
        self.sum_ms = self.sum_ms.wrapping_add(wait_ms);
        self.count = self.count.wrapping_add(1);
    }

    /// The cumulative counts Prometheus wants: waits up to each bound, then all of them.
    pub fn cumulative(&self) -> [u64; WAIT_BUCKETS_S.len() + 1] {
        let mut out = self.buckets;
        let mut sum = 0u64;
        for c in out.iter_mut() {
            sum = sum.wrapping_add(*c);
            *c = sum;
        }
        out
    }

    pub fn sum_seconds(&self) -> f64 {
        self.sum_ms as f64 / 1000.0
    }
}

/// How often the history takes a sample, and how many it keeps: ten minutes.
pub const HISTORY_STEP_MS: u64 = 5_000;
pub const HISTORY_LEN: usize = 120;
/// A worker's cached clock lags a little: a sample this much early is taken anyway, so that
/// the steps stay 5 s apart on average rather than drifting to 6.
const HISTORY_SLACK_MS: u64 = 500;
/// `Sample::wait_s` when the wait could not be estimated.
pub const WAIT_UNKNOWN: u32 = u32::MAX;

/// The room at one moment, for the live page's chart.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// Monotonic milliseconds.
    pub at: u64,
    pub admitted_total: u64,
    pub active: u32,
    pub waiting: u32,
    /// The estimated wait at the back of the line, in seconds ([`WAIT_UNKNOWN`] when none).
    pub wait_s: u32,
    pub _pad: u32,
}

/// The last ten minutes of the room, a sample every 5 s, in a ring: taken by the sweep, shown
/// by the status location's history and its live page. In the region's header, under the
/// lock; not in the state file's image.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct History {
    samples: [Sample; HISTORY_LEN],
    /// Where the next sample goes, and how many are kept (at most [`HISTORY_LEN`]).
    next: u32,
    len: u32,
}

impl Default for History {
    fn default() -> History {
        History { samples: [Sample::default(); HISTORY_LEN], next: 0, len: 0 }
    }
}

impl History {
    /// Whether a sample is due at `now`.
    pub fn due(&self, now: u64) -> bool {
        match self.latest() {
            None => true,
            Some(last) => now.saturating_add(HISTORY_SLACK_MS) >= last.at + HISTORY_STEP_MS,
        }
    }

    /// Keeps `s`, in place of the oldest when the ring is full.
    pub fn record(&mut self, s: Sample) {
        let i = self.next as usize % HISTORY_LEN;
        self.samples[i] = s;
        self.next = ((i + 1) % HISTORY_LEN) as u32;
        self.len = (self.len.saturating_add(1)).min(HISTORY_LEN as u32);
    }

    pub fn len(&self) -> usize {
        (self.len as usize).min(HISTORY_LEN)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The newest sample.
    pub fn latest(&self) -> Option<Sample> {
        self.iter().last()
    }

    /// The samples kept, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = Sample> + '_ {
        let len = self.len();
        let start = (self.next as usize % HISTORY_LEN + HISTORY_LEN - len) % HISTORY_LEN;
        (0..len).map(move |k| self.samples[(start + k) % HISTORY_LEN])
    }
}
