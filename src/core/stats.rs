//! The room's counters and the pace of the queue, from which the wait estimate is made. Kept in
//! the region's header, under the lock; times are monotonic milliseconds.

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

    /// Estimated seconds until `calls_needed` more tickets are called; `None` while the pace
    /// is unknown or the queue is not moving.
    pub fn eta_seconds(&self, calls_needed: u64) -> Option<u64> {
        if self.call_rate_known == 0 || self.call_rate < 0.01 {
            return None;
        }
        Some((calls_needed as f64 * 60.0 / self.call_rate).ceil() as u64)
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
