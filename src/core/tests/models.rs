//! The admission models, the release rate, the event's phases, the modes and run-time changes.

use crate::core::control::{Change, Mode, Model, Phase, Settings, SettingsError};
use crate::core::room::*;
use proptest::prelude::*;

use super::{bytes, region, Came, Comes, T};

const NOW: u64 = 1_000_000;

/// A room of one slot, held by a session, with `waiting` tickets behind it under `model`;
/// `seed` makes the room's draws differ from another's.
fn full_room(
    mem: &mut [u64],
    model: Model,
    waiting: usize,
    seed: u64,
) -> (Room<'_>, SessionRef, Vec<TicketRef>) {
    let mut room = Room::create(bytes(mem), 4, 1, b"k", seed).unwrap();
    let mut s = Settings::new(1);
    s.set_model(model);
    room.adopt_settings(s, 1);
    room.set_wall_clock(1_000);
    let Came::Admitted(inside) = room.come(NOW, &T) else { panic!("the first comes in") };
    let line = (0..waiting)
        .map(|_| match room.come(NOW, &T) {
            Came::Queued { ticket, .. } => ticket,
            c => panic!("queued, not {c:?}"),
        })
        .collect();
    (room, inside, line)
}

/// Which of `line` holds the slot now: called, and comes in when polled.
fn called(room: &mut Room, line: &[TicketRef], now: u64) -> Option<usize> {
    line.iter().position(|&t| matches!(room.poll(t, now, &T), Poll::Admitted(..)))
}

/// Pearson's chi-square of `counts` against equal odds.
fn chi_square(counts: &[u32]) -> f64 {
    let n: u32 = counts.iter().sum();
    let want = f64::from(n) / counts.len() as f64;
    counts.iter().map(|&c| (f64::from(c) - want).powi(2) / want).sum()
}

#[test]
fn random_calls_every_waiting_ticket_alike() {
    // 10 waiting, one slot frees: who is called, over 10,000 rooms with other seeds.
    let mut counts = [0u32; 10];
    let mut mem = region(64 * 1024);
    for seed in 0..10_000u64 {
        let (mut room, inside, line) = full_room(&mut mem, Model::Random, 10, seed * 7919 + 1);
        assert!(room.leave_session(inside, NOW + 10, &T));
        let Some(first) = called(&mut room, &line, NOW + 20) else { panic!("nobody called") };
        counts[first] += 1;
        room.check_invariants();
    }
    // 9 degrees of freedom: above 27.9 once in a thousand runs of a fair draw.
    assert!(chi_square(&counts) < 27.9, "{counts:?}");
}

#[test]
fn fifo_calls_the_first_in_line() {
    let mut mem = region(64 * 1024);
    let (mut room, inside, line) = full_room(&mut mem, Model::Fifo, 10, 5);
    assert!(room.leave_session(inside, NOW + 10, &T));
    assert_eq!(called(&mut room, &line, NOW + 20), Some(0));
}

#[test]
fn random_positions_say_the_draw() {
    let mut mem = region(64 * 1024);
    let (room, _, line) = full_room(&mut mem, Model::Random, 5, 3);
    for t in &line {
        assert_eq!(room.draw_among(*t), 5);
        assert_eq!(room.position(*t), Some(5), "at most everyone in the draw goes first");
    }
    assert_eq!(room.snapshot().in_draw, 5);
}

/// A lottery room of one slot whose event starts at wall-clock 2,000: `before` join before the
/// start, then the draw, then `after` join.
fn lottery(mem: &mut [u64], before: usize, after: usize, seed: u64) -> (Room<'_>, Vec<TicketRef>) {
    let mut room = Room::create(bytes(mem), 4, 1, b"k", seed).unwrap();
    let mut s = Settings::new(1);
    s.set_model(Model::Lottery);
    s.start = 2_000;
    room.adopt_settings(s, 1);
    room.set_wall_clock(1_000);
    assert_eq!(room.phase(), Phase::Before);
    let mut line = Vec::new();
    for _ in 0..before {
        let Came::Queued { ticket, .. } = room.come(NOW, &T) else {
            panic!("before the start everyone waits, slots free or not")
        };
        line.push(ticket);
    }
    assert_eq!(room.snapshot().active_sessions, 0, "nobody in before the start");
    room.set_wall_clock(2_000);
    for _ in 0..after {
        let Came::Queued { ticket, .. } = room.come(NOW + 1, &T) else { panic!("queued") };
        line.push(ticket);
    }
    (room, line)
}

/// The order `line` comes in, one slot at a time.
fn order_served(room: &mut Room, line: &[TicketRef]) -> Vec<usize> {
    let mut order = Vec::new();
    let mut now = NOW + 100;
    while order.len() < line.len() {
        room.sweep(now, &T, 64);
        let Some((i, session)) = (0..line.len()).filter(|i| !order.contains(i)).find_map(|i| {
            match room.poll(line[i], now, &T) {
                Poll::Admitted(s, _) => Some((i, s)),
                _ => None,
            }
        }) else {
            panic!("nobody called with a free slot: {order:?}")
        };
        order.push(i);
        room.check_invariants();
        // The visitor leaves at once: the slot frees for the next.
        assert!(room.leave_session(session, now, &T));
        now += 100;
    }
    order
}

#[test]
fn a_lottery_draws_those_in_line_at_the_start_then_serves_the_rest_in_order() {
    let mut first = [0u32; 6];
    let mut mem = region(64 * 1024);
    for seed in 0..3_000u64 {
        let (mut room, line) = lottery(&mut mem, 6, 3, seed * 104_729 + 11);
        if seed == 0 {
            // One of the draw was called as the first slot was free; five wait in it.
            assert_eq!(room.snapshot().in_draw, 5);
            assert_eq!(line[..6].iter().filter(|t| room.draw_among(**t) == 5).count(), 5);
            assert_eq!(room.draw_among(line[6]), 0, "after the draw: a place in line");
            assert_eq!(room.position(line[6]), Some(7));
        }
        let order = order_served(&mut room, &line);
        let (drawn, later) = order.split_at(6);
        assert!(drawn.iter().all(|&i| i < 6), "the draw first: {order:?}");
        assert_eq!(later, &[6, 7, 8], "then those who came after, in order");
        first[order[0]] += 1;
    }
    // 5 degrees of freedom: above 20.5 once in a thousand runs of a fair draw.
    assert!(chi_square(&first) < 20.5, "{first:?}");
}

#[test]
fn the_rate_bounds_admissions_a_minute() {
    let mut mem = region(256 * 1024);
    let mut room = Room::create(bytes(&mut mem), 400, 200, b"k", 9).unwrap();
    let mut s = Settings::new(200);
    s.rate_per_minute = 30;
    room.adopt_settings(s, 1);
    let mut admitted = 0;
    let mut line = Vec::new();
    // Two newcomers a second for a minute, with room for all of them inside.
    for i in 0..120u64 {
        let now = NOW + i * 500;
        match room.come(now, &T) {
            Came::Admitted(_) => admitted += 1,
            Came::Queued { ticket, .. } => line.push(ticket),
            c => panic!("{c:?}"),
        }
        room.sweep(now, &T, 64);
        line.retain(|&t| {
            let adm = matches!(room.poll(t, now, &T), Poll::Admitted(..));
            admitted += u32::from(adm);
            !adm
        });
    }
    // 30 a minute, and one at once.
    assert!((30..=31).contains(&admitted), "{admitted} admitted in a minute");
    room.check_invariants();
}

#[test]
fn modes_turn_newcomers_in_and_away() {
    let mut mem = region(64 * 1024);
    let mut room = Room::create(bytes(&mut mem), 8, 2, b"k", 5).unwrap();
    let change = |m| Change { mode: Some(m), ..Change::default() };
    // Queue: everyone new waits, slots free or not, and nobody is called.
    room.change_settings(&change(Mode::Queue), NOW, &T).unwrap();
    let Came::Queued { ticket: a, .. } = room.come(NOW, &T) else { panic!("queue mode queues") };
    assert_eq!(room.snapshot().active_sessions, 0);
    // Reject: newcomers are turned away; who is in line is called as slots free.
    room.change_settings(&change(Mode::Reject), NOW, &T).unwrap();
    assert_eq!(room.come(NOW, &T), Came::Closed);
    assert!(matches!(room.poll(a, NOW + 1, &T), Poll::Admitted(..)), "the line goes on");
    // Pass: in while slots are free (counted), through without a place after.
    room.change_settings(&change(Mode::Pass), NOW, &T).unwrap();
    assert!(matches!(room.come(NOW, &T), Came::Admitted(_)));
    assert_eq!(room.come(NOW, &T), Came::Passed);
    let snap = room.snapshot();
    assert_eq!((snap.active_sessions, snap.passed, snap.turned_away), (2, 1, 1));
    room.change_settings(&change(Mode::Normal), NOW, &T).unwrap();
    assert!(matches!(room.come(NOW, &T), Came::Queued { .. }));
    room.check_invariants();
}

#[test]
fn an_event_over_turns_newcomers_away_and_keeps_those_inside() {
    let mut mem = region(64 * 1024);
    let mut room = Room::create(bytes(&mut mem), 8, 1, b"k", 5).unwrap();
    let mut s = Settings::new(1);
    s.start = 100;
    s.end = 200;
    room.adopt_settings(s, 1);
    room.set_wall_clock(150);
    let Came::Admitted(inside) = room.come(NOW, &T) else { panic!() };
    let Came::Queued { ticket, .. } = room.come(NOW, &T) else { panic!() };
    room.set_wall_clock(200);
    assert_eq!(room.come(NOW, &T), Came::Over);
    assert!(room.touch_session(inside, NOW + 1, &T));
    assert!(room.leave_session(inside, NOW + 2, &T));
    assert!(matches!(room.poll(ticket, NOW + 3, &T), Poll::Admitted(..)), "the line is served");
}

#[test]
fn a_change_is_checked_whole_and_kept_over_a_reload() {
    let mut mem = region(64 * 1024);
    let mut room = Room::create(bytes(&mut mem), 8, 2, b"k", 5).unwrap();
    room.adopt_settings(Settings::new(2), 1);
    let bad = Change { max_active: Some(4), start: Some(300), end: Some(200), ..Change::default() };
    assert_eq!(room.change_settings(&bad, NOW, &T), Err(SettingsError::EndBeforeStart));
    assert_eq!(room.max_active(), 2, "nothing half-applied");
    let too_many = Change { max_active: Some(9), ..Change::default() };
    assert_eq!(
        room.change_settings(&too_many, NOW, &T),
        Err(SettingsError::MaxActive { capacity: room.session_capacity() })
    );
    let good = Change { max_active: Some(4), model: Some(Model::Random), ..Change::default() };
    let (before, after) = room.change_settings(&good, NOW, &T).unwrap();
    assert_eq!(before.differences(&after).collect::<Vec<_>>(), ["max_active", "model"]);
    // A reload whose configuration says what it said before keeps the change...
    room.adopt_settings(Settings::new(2), 2);
    assert_eq!((room.max_active(), room.settings().model()), (4, Model::Random));
    // ...and one that says another max_active puts that in force, keeping the model.
    room.adopt_settings(Settings::new(3), 3);
    assert_eq!((room.max_active(), room.settings().model()), (3, Model::Random));
    // Back to the configuration.
    room.change_settings(&Change { reset: true, ..Change::default() }, NOW, &T).unwrap();
    assert_eq!(room.settings(), Settings::new(3));
    assert_eq!(room.snapshot().changes, 2, "the refused changes count for nothing");
}

#[test]
fn settings_travel_in_the_image() {
    let mut mem = region(64 * 1024);
    let mut room = Room::create(bytes(&mut mem), 8, 1, b"k", 5).unwrap();
    let Came::Admitted(_) = room.come(NOW, &T) else { panic!() };
    for _ in 0..5 {
        room.come(NOW, &T);
    }
    let change =
        Change { model: Some(Model::Random), rate_per_minute: Some(90), ..Change::default() };
    room.change_settings(&change, NOW, &T).unwrap();
    let mut image = vec![0u8; room.image_len_max()];
    let len = room.export(&mut image).unwrap();
    let mut mem2 = region(128 * 1024);
    let mut other = Room::create(bytes(&mut mem2), 16, 1, b"x", 6).unwrap();
    other.import(&image[..len], 0).unwrap();
    assert_eq!(other.settings(), room.settings());
    assert_eq!(other.snapshot().in_draw, 5);
    other.check_invariants();
}

#[derive(Clone, Debug)]
enum Op {
    Come,
    Poll(usize),
    Leave(usize),
    Sweep,
    Wait(u64),
    Steer(u8, u8, u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Come),
        4 => (0usize..64).prop_map(Op::Poll),
        2 => (0usize..64).prop_map(Op::Leave),
        1 => Just(Op::Sweep),
        2 => (1u64..15_000).prop_map(Op::Wait),
        1 => (0u8..3, 0u8..4, 1u32..6).prop_map(|(m, o, c)| Op::Steer(m, o, c)),
    ]
}

proptest! {
    /// Whatever the model, the mode and their changes: the invariants hold and never more are
    /// inside (or called) than `max_active` allows.
    #[test]
    fn any_model_keeps_the_room_sound(ops in proptest::collection::vec(op(), 1..300)) {
        let mut mem = region(64 * 1024);
        let mut room = Room::create(bytes(&mut mem), 8, 3, b"k", 17).unwrap();
        let (mut now, mut tickets, mut sessions) = (NOW, Vec::new(), Vec::new());
        let mut before_held = 0;
        for op in ops {
            match op {
                Op::Come => match room.come(now, &T) {
                    Came::Queued { ticket, .. } => tickets.push(ticket),
                    Came::Admitted(s) => sessions.push(s),
                    _ => {}
                },
                Op::Poll(i) if !tickets.is_empty() => {
                    let t = tickets[i % tickets.len()];
                    if let Poll::Admitted(s, _) = room.poll(t, now, &T) {
                        sessions.push(s);
                    }
                }
                Op::Leave(i) if !sessions.is_empty() => {
                    let s = sessions.swap_remove(i % sessions.len());
                    room.leave_session(s, now, &T);
                }
                Op::Sweep => {
                    room.sweep(now, &T, 16);
                }
                Op::Wait(ms) => now += ms,
                Op::Steer(model, mode, max) => {
                    let change = Change {
                        model: Some(Model::ALL[model as usize]),
                        mode: Some(Mode::ALL[mode as usize]),
                        max_active: Some(max),
                        ..Change::default()
                    };
                    prop_assert!(room.change_settings(&change, now, &T).is_ok());
                }
                _ => {}
            }
            // Lowered at run time, `max_active` may be below who is inside: then nobody more
            // comes in until enough have left.
            let (after, max) = (room.snapshot(), room.max_active());
            let held = after.active_sessions + after.called;
            prop_assert!(held <= max.max(before_held), "{} held, {} allowed", held, max);
            before_held = held;
            room.check_tables();
        }
    }
}
