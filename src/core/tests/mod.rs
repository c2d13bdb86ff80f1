//! Unit and property tests of the core.

mod image;
mod room;
mod token;

use crate::core::layout::Timing;

pub(super) const T: Timing = Timing {
    session_ms: 60_000,
    idle_ms: 20_000,
    queue_timeout_ms: 30_000,
    claim_window_ms: 10_000,
    grace_ms: 5_000,
};

/// An 8-aligned region of `bytes` bytes for a room.
pub(super) fn region(bytes: usize) -> Vec<u64> {
    vec![0u64; bytes / 8]
}

pub(super) fn bytes(v: &mut [u64]) -> &mut [u8] {
    // SAFETY: u8 has no alignment or validity requirement; the length is the same bytes.
    unsafe { core::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, v.len() * 8) }
}
