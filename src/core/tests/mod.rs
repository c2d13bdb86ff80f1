//! Unit and property tests of the core.

mod image;
mod link;
mod metrics;
mod models;
mod pace;
mod people;
mod room;
mod token;

use crate::core::layout::Timing;
use crate::core::room::{Client, Confirm, Entry, Poll, Room, SessionRef, TicketRef};

pub(super) const T: Timing = Timing {
    session_ms: 60_000,
    idle_ms: 20_000,
    queue_timeout_ms: 30_000,
    claim_window_ms: 10_000,
    grace_ms: 5_000,
    confirm_ms: 8_000,
};

/// What a visitor who comes with a browser that keeps cookies gets: the first contact and, at
/// once, the return that confirms it (as the queue page's script or the next page load does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Came {
    Admitted(SessionRef),
    Queued {
        ticket: TicketRef,
        position: u64,
    },
    Full,
    Held,
    Limited,
    /// Turned away (the room closed, the event over) or let through without a place (off).
    Closed,
    Over,
    Passed,
}

pub(super) trait Comes {
    /// A new visitor comes, and comes back at once with the cookie.
    fn come(&mut self, now: u64, t: &Timing) -> Came;
}

impl Comes for Room<'_> {
    fn come(&mut self, now: u64, t: &Timing) -> Came {
        match self.enter(now, t, Client::NONE) {
            Entry::Admitted(s) => {
                assert!(self.touch_session(s, now, t), "a session just opened is live");
                Came::Admitted(s)
            }
            Entry::Arrived { arrival, .. } => match self.confirm(arrival, now, t, Client::NONE) {
                Confirm::Ticket(ticket, Poll::Waiting { position }) => {
                    Came::Queued { ticket, position }
                }
                Confirm::Ticket(_, Poll::Admitted(s, _)) => Came::Admitted(s),
                Confirm::Full => Came::Full,
                Confirm::Limited => Came::Limited,
                Confirm::Held => Came::Held,
                Confirm::Closed => Came::Closed,
                Confirm::Passed => Came::Passed,
                Confirm::Over => Came::Over,
                c => panic!("a fresh arrival came back to {c:?}"),
            },
            Entry::Full => Came::Full,
            Entry::Held => Came::Held,
            Entry::Limited => Came::Limited,
            Entry::Closed => Came::Closed,
            Entry::Over => Came::Over,
            Entry::Passed => Came::Passed,
        }
    }
}

/// An 8-aligned region of `bytes` bytes for a room.
pub(super) fn region(bytes: usize) -> Vec<u64> {
    vec![0u64; bytes / 8]
}

pub(super) fn bytes(v: &mut [u64]) -> &mut [u8] {
    // SAFETY: u8 has no alignment or validity requirement; the length is the same bytes.
    unsafe { core::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, v.len() * 8) }
}
