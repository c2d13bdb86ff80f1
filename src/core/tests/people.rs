//! Only people take places: first contacts that never come back, the per-client limit, and
//! what an image keeps of them.

use crate::core::image::*;
use crate::core::room::*;

use super::{bytes, region, Came, Comes, T};

fn client(tag: u32, limit: u32) -> Client {
    Client { tag, limit }
}

#[test]
fn a_flood_of_first_contacts_leaves_the_line_as_it_was() {
    let mut mem = region(256 * 1024);
    let mut room = Room::create(bytes(&mut mem), 2, 2, b"k", 7).unwrap();
    let now = 1_000_000;
    for _ in 0..2 {
        assert!(matches!(room.come(now, &T), Came::Admitted(_)));
    }
    let line: Vec<TicketRef> = (0..3)
        .map(|_| match room.come(now, &T) {
            Came::Queued { ticket, .. } => ticket,
            c => panic!("{c:?}"),
        })
        .collect();
    let before = room.snapshot();
    // 100,000 first contacts that never come back: far more than the ring holds.
    for i in 0..100_000u64 {
        let e = room.enter(now + i / 100, &T, Client::NONE);
        assert!(matches!(e, Entry::Arrived { position: 4, .. }), "{e:?}");
    }
    let after = room.snapshot();
    assert_eq!(after.queue_length, before.queue_length);
    assert_eq!(after.totals.joined_total, before.totals.joined_total);
    assert_eq!(after.active_sessions, before.active_sessions);
    for (i, t) in line.iter().enumerate() {
        assert_eq!(room.position(*t), Some(i as u64 + 1));
    }
    // A person arriving next takes the fourth place.
    match room.come(now + 1000, &T) {
        Came::Queued { position, .. } => assert_eq!(position, 4),
        c => panic!("{c:?}"),
    }
    room.check_invariants();
}

#[test]
fn an_arrival_takes_one_place_once_and_only_while_fresh() {
    let mut mem = region(256 * 1024);
    let mut room = Room::create(bytes(&mut mem), 1, 1, b"k", 7).unwrap();
    let now = 1_000_000;
    assert!(matches!(room.come(now, &T), Came::Admitted(_)));
    let Entry::Arrived { arrival: a, position: 1 } = room.enter(now, &T, Client::NONE) else {
        panic!()
    };
    let Entry::Arrived { arrival: b, position: 1 } = room.enter(now + 10, &T, Client::NONE) else {
        panic!()
    };
    // b comes back first: b takes the first place.
    let Confirm::Ticket(tb, Poll::Waiting { position: 1 }) =
        room.confirm(b, now + 20, &T, Client::NONE)
    else {
        panic!()
    };
    let Confirm::Ticket(ta, Poll::Waiting { position: 2 }) =
        room.confirm(a, now + 30, &T, Client::NONE)
    else {
        panic!()
    };
    // Again, with the same arrival (a reload racing the page's script): the same place.
    assert_eq!(
        room.confirm(a, now + 40, &T, Client::NONE),
        Confirm::Ticket(ta, Poll::Waiting { position: 2 })
    );
    assert_eq!(room.snapshot().totals.joined_total, 2);
    assert_eq!(room.position(tb), Some(1));
    // Too late, or never issued, or from the future: stale.
    let Entry::Arrived { arrival: late, .. } = room.enter(now, &T, Client::NONE) else { panic!() };
    assert_eq!(room.confirm(late, now + T.confirm_ms + 1, &T, Client::NONE), Confirm::Stale);
    let forged = Arrival { visitor: late.visitor + 5, arrived: now };
    assert_eq!(room.confirm(forged, now, &T, Client::NONE), Confirm::Stale);
    let ahead = Arrival { visitor: late.visitor, arrived: now + 60_000 };
    assert_eq!(room.confirm(ahead, now, &T, Client::NONE), Confirm::Stale);
    // First contacts that never come back, however many, do not make a real one stale.
    let Entry::Arrived { arrival: real, .. } = room.enter(now, &T, Client::NONE) else { panic!() };
    for _ in 0..10 * room.layout().arrival_cap {
        room.enter(now, &T, Client::NONE);
    }
    let Confirm::Ticket(tr, Poll::Waiting { position: 3 }) =
        room.confirm(real, now + 50, &T, Client::NONE)
    else {
        panic!()
    };
    assert_eq!(
        room.confirm(real, now + 60, &T, Client::NONE),
        Confirm::Ticket(tr, Poll::Waiting { position: 3 })
    );
    room.check_invariants();
}

#[test]
fn the_wait_of_a_confirmed_arrival_counts_from_its_arrival() {
    let mut mem = region(256 * 1024);
    let mut room = Room::create(bytes(&mut mem), 1, 1, b"k", 7).unwrap();
    let now = 1_000_000;
    let Came::Admitted(inside) = room.come(now, &T) else { panic!() };
    let Entry::Arrived { arrival, .. } = room.enter(now, &T, Client::NONE) else { panic!() };
    let Confirm::Ticket(t, _) = room.confirm(arrival, now + 3000, &T, Client::NONE) else {
        panic!()
    };
    assert!(room.leave_session(inside, now + 5000, &T));
    let Poll::Admitted(_, waited) = room.poll(t, now + 6000, &T) else { panic!() };
    assert_eq!(waited, 6000);
}

#[test]
fn a_first_contact_admitted_at_once_holds_its_slot_only_until_confirm() {
    let mut mem = region(256 * 1024);
    let mut room = Room::create(bytes(&mut mem), 2, 2, b"k", 7).unwrap();
    let now = 1_000_000;
    let Entry::Admitted(gone) = room.enter(now, &T, Client::NONE) else { panic!() };
    let Entry::Admitted(back) = room.enter(now, &T, Client::NONE) else { panic!() };
    assert_eq!(room.snapshot().totals.admitted_total, 0, "counted when they come back");
    assert!(room.touch_session(back, now + 1000, &T));
    assert_eq!(room.snapshot().totals.admitted_total, 1);
    // The one that never came back is gone after `confirm`; the other stays for `idle`.
    room.sweep(now + T.confirm_ms + 1, &T, 100);
    assert!(!room.touch_session(gone, now + T.confirm_ms + 2, &T));
    assert!(room.touch_session(back, now + T.confirm_ms + 2, &T));
    assert_eq!(room.snapshot().active_sessions, 1);
    room.check_invariants();
}

#[test]
fn a_client_holds_no_more_places_than_its_limit() {
    let mut mem = region(256 * 1024);
    let mut room = Room::create(bytes(&mut mem), 2, 2, b"k", 7).unwrap();
    let now = 1_000_000;
    let (greedy, other) = (client(77, 3), client(78, 3));
    // Two sessions and one ticket: the limit of 3.
    let Entry::Admitted(s1) = room.enter(now, &T, greedy) else { panic!() };
    let Entry::Admitted(_) = room.enter(now, &T, greedy) else { panic!() };
    let Entry::Arrived { arrival: a, .. } = room.enter(now, &T, greedy) else { panic!() };
    let Confirm::Ticket(t1, _) = room.confirm(a, now, &T, greedy) else { panic!() };
    assert_eq!(room.client_places(77), 3);
    // A fourth: arrivals cost nothing, but taking the place is refused.
    let Entry::Arrived { arrival: b, .. } = room.enter(now, &T, greedy) else { panic!() };
    assert_eq!(room.confirm(b, now, &T, greedy), Confirm::Limited);
    assert_eq!(room.snapshot().queue_length, 1);
    // Another client is not limited by it.
    let Entry::Arrived { arrival: c, .. } = room.enter(now, &T, other) else { panic!() };
    assert!(matches!(room.confirm(c, now, &T, other), Confirm::Ticket(..)));
    // A place given up is a place free again.
    assert!(room.leave_ticket(t1, now, &T));
    assert_eq!(room.client_places(77), 2);
    let Entry::Arrived { arrival: d, .. } = room.enter(now, &T, greedy) else { panic!() };
    assert!(matches!(room.confirm(d, now, &T, greedy), Confirm::Ticket(..)));
    // A session that ends frees its count too.
    assert!(room.leave_session(s1, now, &T));
    assert_eq!(room.client_places(77), 2);
    assert_eq!(room.snapshot().people.refused_client_limit, 1);
    room.check_invariants();
}

#[test]
fn an_image_keeps_the_counts_and_the_first_contacts() {
    let mut mem_a = region(256 * 1024);
    let mut a = Room::create(bytes(&mut mem_a), 2, 2, b"k", 7).unwrap();
    let now = 1_000_000;
    let greedy = client(77, 5);
    let Entry::Admitted(unconfirmed) = a.enter(now, &T, greedy) else { panic!() };
    let Entry::Admitted(_) = a.enter(now, &T, greedy) else { panic!() };
    let Entry::Arrived { arrival, .. } = a.enter(now, &T, greedy) else { panic!() };
    let Confirm::Ticket(..) = a.confirm(arrival, now, &T, greedy) else { panic!() };
    let mut image = vec![0u8; a.image_len_max()];
    let len = a.export(&mut image).unwrap();
    image.truncate(len);

    let mut mem_b = region(512 * 1024);
    let mut b = Room::create(bytes(&mut mem_b), 4, 2, b"k", 9).unwrap();
    b.import(&image, 500).unwrap();
    assert_eq!(b.client_places(77), 3);
    assert_eq!(b.snapshot().people, a.snapshot().people);
    // The first contact admitted at once is still unconfirmed: it goes after `confirm`.
    b.sweep(now + 500 + T.confirm_ms + 1, &T, 100);
    assert!(!b.touch_session(unconfirmed, now + 500 + T.confirm_ms + 2, &T));
    b.check_invariants();
}

#[test]
fn an_image_of_the_older_format_is_taken() {
    let mut mem_a = region(256 * 1024);
    let mut a = Room::create(bytes(&mut mem_a), 2, 1, b"k", 7).unwrap();
    let now = 1_000_000;
    let Came::Admitted(inside) = a.come(now, &T) else { panic!() };
    let Came::Queued { ticket, .. } = a.come(now, &T) else { panic!() };
    let mut image = vec![0u8; a.image_len_max()];
    let len = a.export(&mut image).unwrap();
    image.truncate(len);
    let old = downgrade_to_v1(&image);
    assert!(old.len() < image.len());

    let mut mem_b = region(256 * 1024);
    let mut b = Room::create(bytes(&mut mem_b), 2, 1, b"k", 9).unwrap();
    assert_eq!(b.import(&old, 0), Ok(Imported { sessions: 1, tickets: 1 }));
    assert!(b.touch_session(inside, now, &T));
    assert_eq!(b.position(ticket), Some(1));
    assert_eq!(b.epoch(), 7);
    b.check_invariants();
}

#[test]
fn a_first_contact_is_confirmed_under_the_lock_only() {
    let mut mem = region(256 * 1024);
    let now = 1_000_000;
    let (layout, s) = {
        let mut room = Room::create(bytes(&mut mem), 2, 2, b"k", 7).unwrap();
        let Entry::Admitted(s) = room.enter(now, &T, Client::NONE) else { panic!() };
        (room.layout(), s)
    };
    let base = mem.as_mut_ptr() as *mut u8;
    // SAFETY: `base` is the region laid out above, alive for the test.
    assert!(!unsafe { touch_session_unlocked(base, &layout, s, now + 10, &T) });
    {
        let mut room = Room::attach(bytes(&mut mem)).unwrap();
        assert!(room.touch_session(s, now + 10, &T));
        assert_eq!(room.snapshot().people.sessions_confirmed, 1);
    }
    let base = mem.as_mut_ptr() as *mut u8;
    // SAFETY: as above.
    assert!(unsafe { touch_session_unlocked(base, &layout, s, now + 20, &T) });
}

#[test]
fn what_workers_count_without_the_lock_adds_up_in_the_zone_and_leaves_the_room_alone() {
    use crate::core::stats::Tallies;
    let mut mem = region(256 * 1024);
    let mut room = Room::create(bytes(&mut mem), 2, 2, b"k", 7).unwrap();
    let before = room.snapshot();
    let one = Tallies { bypassed: 3, dry_run: 2, ended_by_origin: 1 };
    room.add_tallies(&one);
    room.add_tallies(&Tallies { bypassed: 1, ..Tallies::default() });
    let after = room.snapshot();
    assert_eq!(after.tallies, Tallies { bypassed: 4, dry_run: 2, ended_by_origin: 1 });
    assert_eq!(after.active_sessions, before.active_sessions);
    assert_eq!(after.queue_length, before.queue_length);
    assert_eq!(after.totals, before.totals);
    room.check_invariants();
}
