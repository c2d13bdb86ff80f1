//! Small rules for the edges where nginx calls us: no panic may unwind into nginx, a periodic
//! timer must not stop for good because one run failed, and a problem that recurs on every
//! request must not flood the error log.

use core::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A panic was caught before it could unwind into nginx.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Panicked;

/// Runs `f`, turning a panic into `Err(Panicked)`.
pub fn catch<R>(f: impl FnOnce() -> R) -> Result<R, Panicked> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|_| Panicked)
}

/// What one run of a periodic timer's handler came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fired {
    /// Arm the timer again.
    pub again: bool,
    /// The work panicked (and was stopped there).
    pub panicked: bool,
}

/// One run of a periodic timer: does `work`, then says whether to run again. The answer does
/// not depend on how `work` ended: a panic in it must not stop the timer for good. Only a
/// worker that is `stopping` lets its timer go.
pub fn periodic(work: impl FnOnce(), stopping: bool) -> Fired {
    let panicked = catch(work).is_err();
    Fired { again: !stopping, panicked }
}

/// Lets a message through at most once per interval, per process: for conditions that would
/// otherwise be logged on every request (a full line, an unusable zone).
#[derive(Debug, Default)]
pub struct Throttle {
    last: Cell<Option<u64>>,
}

impl Throttle {
    pub const fn new() -> Throttle {
        Throttle { last: Cell::new(None) }
    }

    /// Whether to log now (`now` in monotonic milliseconds).
    pub fn ready(&self, now: u64, interval_ms: u64) -> bool {
        match self.last.get() {
            Some(t) if now >= t && now - t < interval_ms => false,
            _ => {
                self.last.set(Some(now));
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_run_still_arms_the_timer_again() {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let f = periodic(|| panic!("a bug in the sweep"), false);
        std::panic::set_hook(prev);
        assert_eq!(f, Fired { again: true, panicked: true });
        assert_eq!(periodic(|| {}, false), Fired { again: true, panicked: false });
        assert_eq!(periodic(|| {}, true), Fired { again: false, panicked: false });
    }

    #[test]
    fn the_throttle_lets_one_message_through_per_interval() {
        let t = Throttle::new();
        assert!(t.ready(1_000, 10_000));
        assert!(!t.ready(1_001, 10_000));
        assert!(!t.ready(10_999, 10_000));
        assert!(t.ready(11_000, 10_000));
        // A clock that went back (another layout's time base) does not silence it for good.
        assert!(t.ready(5, 10_000));
    }
}
