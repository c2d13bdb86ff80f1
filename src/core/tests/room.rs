//! Property tests of the room over random sequences of arrivals, polls, departures, sweeps
//! and the passing of time.

use crate::core::control::{Change, Settings};
use crate::core::layout::*;
use crate::core::room::*;
use proptest::prelude::*;

use super::{bytes, region, Came, Comes, T};

#[derive(Clone, Debug)]
enum Op {
    Arrive,
    Poll(usize),
    PollAll,
    Visit(usize),
    LeaveSession(usize),
    LeaveTicket(usize),
    Sweep,
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Arrive),
        3 => any::<usize>().prop_map(Op::Poll),
        2 => Just(Op::PollAll),
        2 => any::<usize>().prop_map(Op::Visit),
        1 => any::<usize>().prop_map(Op::LeaveSession),
        1 => any::<usize>().prop_map(Op::LeaveTicket),
        2 => Just(Op::Sweep),
        3 => (0u64..15_000).prop_map(Op::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Capacity is never exceeded, called tickets always lead the queue, every live ticket's
    /// position is its rank, and nobody is admitted directly past a waiting ticket.
    #[test]
    fn invariants_hold(max_active in 1u32..6, ops in proptest::collection::vec(op(), 1..300)) {
        let mut mem = region(64 * 1024);
        let mut room = Room::create(bytes(&mut mem), 8, max_active, b"k", 7).unwrap();
        let mut now = 1_000_000u64;
        let mut tickets: Vec<TicketRef> = Vec::new();
        let mut sessions: Vec<SessionRef> = Vec::new();
        let mut joined = 0u64;
        for op in ops {
            match op {
                Op::Arrive => {
                    let before = room.snapshot();
                    match room.come(now, &T) {
                        Came::Admitted(s) => {
                            let after = room.snapshot();
                            prop_assert_eq!(after.queue_length, u64::from(after.called + after.lapsed), "admitted past a waiting ticket");
                            prop_assert!(before.active_sessions < max_active);
                            sessions.push(s);
                        }
                        Came::Queued { ticket, position } => {
                            prop_assert!(ticket.number >= joined, "ticket numbers only grow");
                            joined = ticket.number + 1;
                            prop_assert_eq!(position, room.snapshot().queue_length);
                            tickets.push(ticket);
                        }
                        Came::Full | Came::Held | Came::Limited => {}
                        c => prop_assert!(false, "a normal room answered {:?}", c),
                    }
                }
                Op::Poll(i) if !tickets.is_empty() => {
                    let t = tickets[i % tickets.len()];
                    match room.poll(t, now, &T) {
                        Poll::Admitted(s, _) => { sessions.push(s); tickets.retain(|x| *x != t); }
                        Poll::Lost => tickets.retain(|x| *x != t),
                        Poll::Waiting { .. } => {}
                    }
                }
                Op::PollAll => {
                    for t in tickets.clone() {
                        match room.poll(t, now, &T) {
                            Poll::Admitted(s, _) => { sessions.push(s); tickets.retain(|x| *x != t); }
                            Poll::Lost => tickets.retain(|x| *x != t),
                            Poll::Waiting { .. } => {}
                        }
                    }
                }
                Op::Visit(i) if !sessions.is_empty() => {
                    let s = sessions[i % sessions.len()];
                    if !room.touch_session(s, now, &T) { sessions.retain(|x| *x != s); }
                }
                Op::LeaveSession(i) if !sessions.is_empty() => {
                    let s = sessions.remove(i % sessions.len());
                    room.leave_session(s, now, &T);
                    prop_assert!(!room.touch_session(s, now, &T));
                }
                Op::LeaveTicket(i) if !tickets.is_empty() => {
                    let t = tickets.remove(i % tickets.len());
                    prop_assert!(room.leave_ticket(t, now, &T) || room.position(t).is_none());
                    prop_assert_eq!(room.poll(t, now, &T), Poll::Lost);
                }
                Op::Sweep => { room.sweep(now, &T, 16); }
                Op::Wait(ms) => now += ms,
                _ => {}
            }
            room.check_invariants();
            // Positions of the tickets still live are 1..n in number order.
            let mut live: Vec<(u64, u64)> = tickets.iter().filter_map(|t| room.position(*t).map(|p| (t.number, p))).collect();
            live.sort();
            for w in live.windows(2) {
                prop_assert!(w[0].1 < w[1].1, "positions follow ticket order");
            }
            if let Some(last) = live.last() { prop_assert!(last.1 <= room.snapshot().queue_length); }
        }
    }

    /// Visitors who keep polling never lose their place, and are admitted in ticket order.
    #[test]
    fn diligent_visitors_are_served_in_order(max_active in 1u32..5, arrivals in 1usize..60, stay in 1u64..5) {
        let mut mem = region(64 * 1024);
        let mut room = Room::create(bytes(&mut mem), 8, max_active, b"k", 7).unwrap();
        let mut now = 1_000_000u64;
        let mut waiting: Vec<TicketRef> = Vec::new();
        let mut inside: Vec<(SessionRef, u64)> = Vec::new();
        let mut admitted: Vec<(u32, u64)> = Vec::new();
        for _ in 0..arrivals {
            match room.come(now, &T) {
                Came::Admitted(s) => inside.push((s, now + stay * 1000)),
                Came::Queued { ticket, .. } => waiting.push(ticket),
                c => prop_assert!(false, "queue full: {:?}", c),
            }
        }
        for round in 0..10_000u32 {
            if waiting.is_empty() { break; }
            now += 1000;
            inside.retain(|(s, until)| {
                if now >= *until { room.leave_session(*s, now, &T); false } else { true }
            });
            // Poll in reverse order, to show the order comes from the room, not the callers.
            for t in waiting.clone().into_iter().rev() {
                match room.poll(t, now, &T) {
                    Poll::Admitted(s, _) => {
                        admitted.push((round, t.number));
                        inside.push((s, now + stay * 1000));
                        waiting.retain(|x| *x != t);
                    }
                    Poll::Lost => prop_assert!(false, "a diligent visitor lost their place"),
                    Poll::Waiting { position } => prop_assert!(position >= 1),
                }
            }
            room.sweep(now, &T, 64);
            room.check_invariants();
            prop_assert!(room.snapshot().active_sessions <= max_active);
        }
        prop_assert!(waiting.is_empty(), "the queue stalled");
        // Claims in one round may come in any order; calls are in ticket order, so any
        // ticket admitted in an earlier round has a smaller number.
        let mut before_max: Option<u64> = None;
        let mut round_max: Option<u64> = None;
        let mut current = 0;
        for (round, number) in admitted {
            if round != current {
                before_max = before_max.max(round_max);
                round_max = None;
                current = round;
            }
            prop_assert!(before_max.is_none_or(|m| m < number), "admitted out of ticket order");
            round_max = round_max.max(Some(number));
        }
    }
}

#[test]
fn a_no_show_at_the_head_is_skipped_after_the_claim_window() {
    let mut mem = region(64 * 1024);
    let mut room = Room::create(bytes(&mut mem), 4, 1, b"k", 7).unwrap();
    let mut now = 1_000_000;
    let Came::Admitted(first) = room.come(now, &T) else { panic!() };
    let Came::Queued { ticket: absent, .. } = room.come(now, &T) else { panic!() };
    let Came::Queued { ticket: patient, position } = room.come(now, &T) else { panic!() };
    assert_eq!(position, 2);
    assert!(room.leave_session(first, now, &T));
    // `absent` is called but never comes back; `patient` keeps polling.
    for _ in 0..10 {
        now += 1000;
        assert_eq!(room.poll(patient, now, &T), Poll::Waiting { position: 2 });
        room.sweep(now, &T, 100);
    }
    now += 1000;
    room.sweep(now, &T, 100);
    assert!(matches!(room.poll(patient, now, &T), Poll::Admitted(..)));
    // `absent` lapsed: it keeps its place at the front for one more claim window, then it is
    // dropped.
    assert_eq!(room.snapshot().lapsed, 1);
    now += T.claim_window_ms + 1;
    room.sweep(now, &T, 100);
    assert_eq!(room.poll(absent, now, &T), Poll::Lost);
    assert_eq!(room.snapshot().totals.tickets_missed, 1);
    room.check_invariants();
}

#[test]
fn a_visitor_late_by_a_moment_keeps_the_place_once() {
    let mut mem = region(64 * 1024);
    let mut room = Room::create(bytes(&mut mem), 4, 1, b"k", 7).unwrap();
    let mut now = 1_000_000;
    let Came::Admitted(first) = room.come(now, &T) else { panic!() };
    let mut line = Vec::new();
    for _ in 0..5 {
        let Came::Queued { ticket, .. } = room.come(now, &T) else { panic!() };
        line.push(ticket);
    }
    let late = line[0];
    assert!(room.leave_session(first, now, &T));
    // Called, and back a moment after the window, before any sweep: the slot is still its own.
    now += T.claim_window_ms + 1;
    let Poll::Admitted(inside, _) = room.poll(late, now, &T) else { panic!("late claim") };
    // The next one is called, the sweep lapses it; it comes back with no slot free: it is
    // first in line, ahead of everyone waiting, and called again when a slot frees.
    assert!(room.leave_session(inside, now, &T));
    let again = line[1];
    now += T.claim_window_ms + 1;
    room.sweep(now, &T, 100);
    let Some(Poll::Admitted(taken, _)) =
        line[2..].iter().map(|t| room.poll(*t, now, &T)).find(|p| matches!(p, Poll::Admitted(..)))
    else {
        panic!("the lapsed ticket's slot went to the next")
    };
    assert_eq!(room.poll(again, now, &T), Poll::Waiting { position: 1 }, "first in line");
    assert_eq!(room.position(line[3]), Some(2));
    assert!(room.leave_session(taken, now, &T));
    now += 1;
    let Poll::Admitted(..) = room.poll(again, now, &T) else { panic!("called again first") };
    // Called the second time and late again: no more grace.
    room.check_invariants();
    let next = line[3];
    assert!(matches!(room.poll(next, now, &T), Poll::Waiting { position: 1 }));
}

#[test]
fn a_ticket_not_seen_for_the_queue_timeout_is_lost() {
    let mut mem = region(64 * 1024);
    let mut room = Room::create(bytes(&mut mem), 4, 1, b"k", 7).unwrap();
    let mut now = 1_000_000;
    let Came::Admitted(inside) = room.come(now, &T) else { panic!() };
    let Came::Queued { ticket: gone, .. } = room.come(now, &T) else { panic!() };
    let Came::Queued { ticket: stays, .. } = room.come(now, &T) else { panic!() };
    for _ in 0..40 {
        now += 1000;
        assert!(room.touch_session(inside, now, &T));
        room.poll(stays, now, &T);
        room.sweep(now, &T, 100);
    }
    assert_eq!(room.poll(gone, now, &T), Poll::Lost);
    assert_eq!(room.poll(stays, now, &T), Poll::Waiting { position: 1 });
    assert_eq!(room.snapshot().totals.tickets_abandoned, 1);
}

#[test]
fn sessions_expire_by_idle_and_by_lifetime() {
    let mut mem = region(64 * 1024);
    let mut room = Room::create(bytes(&mut mem), 4, 2, b"k", 7).unwrap();
    let mut now = 1_000_000;
    let Came::Admitted(idle) = room.come(now, &T) else { panic!() };
    let Came::Admitted(busy) = room.come(now, &T) else { panic!() };
    for _ in 0..25 {
        now += 1000;
        assert!(room.touch_session(busy, now, &T));
    }
    room.sweep(now, &T, 100);
    assert!(!room.touch_session(idle, now, &T));
    assert_eq!(room.snapshot().active_sessions, 1);
    for _ in 0..40 {
        now += 1000;
        room.touch_session(busy, now, &T);
    }
    assert!(!room.touch_session(busy, now, &T), "no session outlives session_ms");
    assert_eq!(room.snapshot().active_sessions, 0);
}

#[test]
fn a_full_ring_refuses_and_recovers() {
    let len = Layout::min_region_len(1);
    let mut mem = region(len.div_ceil(8) * 8);
    let mut room = Room::create(bytes(&mut mem), 1, 1, b"k", 7).unwrap();
    let cap = room.snapshot().queue_capacity;
    let now = 1_000_000;
    let Came::Admitted(_) = room.come(now, &T) else { panic!() };
    let mut first = None;
    for _ in 0..cap {
        let Came::Queued { ticket, .. } = room.come(now, &T) else {
            panic!("queue full too early")
        };
        first.get_or_insert(ticket);
    }
    assert_eq!(room.come(now, &T), Came::Full);
    assert!(room.leave_ticket(first.unwrap(), now, &T));
    assert!(matches!(room.come(now, &T), Came::Queued { .. }));
    room.check_invariants();
}

#[test]
fn positions_at_a_million_tickets() {
    let len = Layout::min_region_len(16) + 1_000_000 * BYTES_PER_TICKET;
    let mut mem = region(len.div_ceil(8) * 8);
    let mut room = Room::create(bytes(&mut mem), 16, 16, b"k", 7).unwrap();
    let now = 1_000_000;
    let mut last = None;
    for _ in 0..16 {
        room.come(now, &T);
    }
    for _ in 0..1_000_000 {
        if let Came::Queued { ticket, .. } = room.come(now, &T) {
            last = Some(ticket);
        }
    }
    assert_eq!(room.snapshot().queue_length, 1_000_000);
    assert_eq!(room.position(last.unwrap()), Some(1_000_000));
}

#[test]
fn attach_finds_the_room_again_and_rejects_other_layouts() {
    let mut mem = region(64 * 1024);
    {
        let mut room = Room::create(bytes(&mut mem), 8, 3, b"secret", 7).unwrap();
        room.come(1, &T);
    }
    let room = Room::attach(bytes(&mut mem)).unwrap();
    assert_eq!(room.snapshot().active_sessions, 1);
    assert_eq!(room.key(), b"secret");
    let mut other = region(64 * 1024);
    assert_eq!(Room::attach(bytes(&mut other)).err(), Some(AttachError::NotARoom));
    let short = &mut bytes(&mut mem)[..32 * 1024];
    assert_eq!(Room::attach(short).err(), Some(AttachError::LayoutChanged));
}

#[test]
fn the_estimate_starts_from_the_configuration_and_follows_the_pace() {
    let mut mem = region(64 * 1024);
    let mut room = Room::create(bytes(&mut mem), 4, 1, b"k", 7).unwrap();
    let mut now = 1_000_000;
    let Came::Admitted(mut inside) = room.come(now, &T) else { panic!() };
    let mut line = Vec::new();
    for _ in 0..60 {
        let Came::Queued { ticket, .. } = room.come(now, &T) else { panic!() };
        line.push(ticket);
    }
    // Before anything is measured: a visit of 1.5 × idle (30 s) and a sixth of the claim
    // window (10 s) to claim the slot, for the one slot.
    assert_eq!(room.eta_seconds(5, &T), Some(158), "5 × 31.7 s");
    // Nobody leaves for the first 20 s: visits are longer than the configuration says.
    for _ in 0..20 {
        now += 1000;
        room.touch_session(inside, now, &T);
        for t in &line {
            room.poll(*t, now, &T);
        }
        room.sweep(now, &T, 100);
    }
    let longer = room.eta_seconds(5, &T).unwrap();
    assert!(longer > 158, "no departure in 20 s makes the wait longer, got {longer}");
    // Then one admission every 2 seconds: 30 a minute.
    for _ in 0..40 {
        now += 2000;
        room.leave_session(inside, now, &T);
        let next = line.remove(0);
        let Poll::Admitted(s, _) = room.poll(next, now, &T) else { panic!() };
        inside = s;
        for t in &line {
            room.poll(*t, now, &T);
        }
        room.sweep(now, &T, 100);
    }
    let eta = room.eta_seconds(10, &T).unwrap();
    assert!((15..=25).contains(&eta), "10 ahead at 30/min is about 20 s, got {eta}");
    // A release rate below the pace is the pace: 10 ahead at 10 a minute.
    let rate = |r| Change { rate_per_minute: Some(r), ..Change::default() };
    room.change_settings(&rate(10), now, &T).unwrap();
    assert_eq!(room.eta_seconds(10, &T), Some(60));
    room.change_settings(&rate(600), now, &T).unwrap();
    assert_eq!(room.eta_seconds(10, &T), Some(eta), "a cap above the pace");
    let avg = room.snapshot().avg_wait_seconds.unwrap();
    assert!(avg > 0.0);
}

#[test]
fn a_live_session_is_seen_without_the_lock() {
    let mut mem = region(64 * 1024);
    let (layout, first, second) = {
        let mut room = Room::create(bytes(&mut mem), 4, 2, b"k", 7).unwrap();
        let Came::Admitted(a) = room.come(1_000_000, &T) else { panic!() };
        let Came::Admitted(b) = room.come(1_000_000, &T) else { panic!() };
        (room.layout(), a, b)
    };
    let base = mem.as_mut_ptr() as *mut u8;
    let mut now = 1_000_000;
    // SAFETY (for each call): `base` is the region laid out above, alive for the test.
    for _ in 0..30 {
        now += 1000;
        assert!(unsafe { touch_session_unlocked(base, &layout, first, now, &T) });
    }
    // `first` was kept alive without the lock; `second` went idle.
    assert!(!unsafe { touch_session_unlocked(base, &layout, second, now, &T) });
    let forged = SessionRef { slot: first.slot, id: first.id + 1 };
    assert!(!unsafe { touch_session_unlocked(base, &layout, forged, now, &T) });
    let outside = SessionRef { slot: 99, id: first.id };
    assert!(!unsafe { touch_session_unlocked(base, &layout, outside, now, &T) });
    {
        let mut room = Room::attach(bytes(&mut mem)).unwrap();
        room.sweep(now, &T, 100);
        assert_eq!(room.snapshot().active_sessions, 1, "the sweep ended only the idle one");
        assert!(room.leave_session(first, now, &T));
    }
    let base = mem.as_mut_ptr() as *mut u8;
    assert!(!unsafe { touch_session_unlocked(base, &layout, first, now, &T) });
}

#[test]
fn the_session_table_has_headroom() {
    let len = 1 << 20;
    let l = Layout::for_max_active(len, 200).unwrap();
    assert_eq!(l.session_cap, 400, "twice max_active");
    assert_eq!(Layout::for_max_active(len, 2).unwrap().session_cap, 66, "at least 64 more");
    // Never more than an eighth of the region, never less than max_active.
    let small = Layout::for_max_active(32 * 1024, 1).unwrap();
    assert!(small.session_cap >= 1 && small.session_cap as usize * BYTES_PER_SESSION <= 4096);
    let big = Layout::for_max_active(len, 20_000).unwrap();
    assert_eq!(big.session_cap, 20_000);
}

#[test]
fn a_changed_max_active_is_adopted_by_the_newer_configuration_only() {
    let mut mem = region(64 * 1024);
    let mut room = Room::create(bytes(&mut mem), 8, 2, b"k", 7).unwrap();
    let now = 1_000_000;
    let Came::Admitted(_) = room.come(now, &T) else { panic!() };
    let Came::Admitted(_) = room.come(now, &T) else { panic!() };
    let Came::Queued { ticket, .. } = room.come(now, &T) else { panic!() };
    room.adopt_settings(Settings::new(3), 10);
    assert_eq!(room.max_active(), 3);
    // An older configuration's workers (still running during a reload) do not put theirs back.
    room.adopt_settings(Settings::new(2), 9);
    assert_eq!(room.max_active(), 3);
    assert!(matches!(room.poll(ticket, now, &T), Poll::Admitted(..)), "the raise lets the next in");
    room.adopt_settings(Settings::new(1), 11);
    assert_eq!(room.snapshot().active_sessions, 3, "lowering ends no session");
    room.adopt_settings(Settings::new(100), 12);
    assert_eq!(room.max_active(), 8, "at most the session table's capacity");
    room.check_invariants();
}

#[test]
fn a_page_left_keeps_the_place_for_the_grace_only() {
    let mut mem = region(64 * 1024);
    let mut room = Room::create(bytes(&mut mem), 4, 2, b"k", 7).unwrap();
    let mut now = 1_000_000;
    let Came::Admitted(reloads) = room.come(now, &T) else { panic!() };
    let Came::Admitted(closes) = room.come(now, &T) else { panic!() };
    let Came::Queued { ticket: waits, .. } = room.come(now, &T) else { panic!() };
    let Came::Queued { ticket: goes, .. } = room.come(now, &T) else { panic!() };
    assert!(room.away_session(reloads, now, &T) && room.away_session(closes, now, &T));
    assert!(room.away_ticket(goes, now, &T));
    assert!(!room.away_session(SessionRef { slot: 3, id: 1 }, now, &T), "no such session");
    // The reloaded page comes back within the grace; the closed one does not.
    now += T.grace_ms - 1;
    assert!(room.touch_session(reloads, now, &T));
    assert!(matches!(room.poll(waits, now, &T), Poll::Waiting { position: 1 }));
    now += 2;
    room.sweep(now, &T, 100);
    assert!(room.touch_session(reloads, now, &T), "seen again: kept");
    assert!(!room.touch_session(closes, now, &T), "gone after the grace");
    assert_eq!(room.poll(goes, now, &T), Poll::Lost, "a ticket left is lost after the grace");
    assert!(matches!(room.poll(waits, now, &T), Poll::Admitted(..)), "the freed slot goes on");
    // Seen again, a session left earlier lasts `idle` as before (less the granularity of
    // `last_seen`).
    now += T.idle_ms - 2_000;
    assert!(room.touch_session(reloads, now, &T));
    room.check_invariants();
}

#[test]
fn the_front_of_the_line_is_swept_past_the_empty_slots_of_those_who_left() {
    let mut mem = region(64 * 1024);
    let mut room = Room::create(bytes(&mut mem), 4, 1, b"k", 7).unwrap();
    let mut now = 1_000_000;
    let Came::Admitted(a) = room.come(now, &T) else { panic!() };
    let Came::Queued { ticket: x, .. } = room.come(now, &T) else { panic!() };
    for _ in 0..20 {
        let Came::Queued { ticket, .. } = room.come(now, &T) else { panic!() };
        assert!(room.leave_ticket(ticket, now, &T));
    }
    let Came::Queued { ticket: y, .. } = room.come(now, &T) else { panic!() };
    assert!(room.leave_session(a, now, &T));
    now += T.claim_window_ms + 1;
    room.sweep(now, &T, 16);
    // X lapsed, Y was called; X comes back with no slot free.
    assert_eq!(room.poll(x, now, &T), Poll::Waiting { position: 1 });
    // Y's visitor is gone: Y lapses in turn, beyond 20 empty slots, and X is called again.
    now += T.claim_window_ms + 1;
    room.poll(x, now, &T);
    room.sweep(now, &T, 16);
    assert!(matches!(room.poll(x, now, &T), Poll::Admitted(..)), "X let in");
    now += T.claim_window_ms + 1;
    room.sweep(now, &T, 16);
    assert_eq!(room.poll(y, now, &T), Poll::Lost, "Y gone for good");
    room.check_invariants();
}
