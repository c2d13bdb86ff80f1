//! Exempt links: what verifies and what does not, the use table, and a room letting bearers in
//! over `max_active` without anyone else going over it.

use crate::core::layout::{LinkUse, LINK_TABLE};
use crate::core::link::*;
use crate::core::room::*;
use crate::core::token::{Kind, Signer, Token};
use proptest::prelude::*;

use super::{bytes, region, Came, Comes, T};

const KEY: [u8; 40] = [b'k'; 40];
const NOW: u64 = 1_900_000_000;

fn signer(room: &str) -> LinkSigner {
    LinkSigner::new(&KEY, room).unwrap()
}

fn link(id: u64, uses: u16) -> Link {
    Link { id, expires: NOW + 3600, uses }
}

#[test]
fn the_key_and_a_link_are_what_the_script_makes() {
    // The same figures as `scripts/waiting-room-link` computes (and t/23-exempt.t checks
    // end to end): the derivation is part of the link's format.
    let key = link_key(&KEY).unwrap();
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "ded5441edbbd29bc36366c0d0f884519da1c0e415c08c21ae69c5c9493aa04b3");
    let l = Link { id: 0x3f2a_0000_0000_0001, expires: 2_000_000_000, uses: 3 };
    let text = signer("shop").encode(&l);
    assert_eq!(text, "AXQi_RsBAAAAAAAqPwCUNXcAAAAAAwDIQDrpemqoibt-50V9kQsV");
    assert_eq!(text.len(), ENCODED_LEN);
    assert_eq!(signer("shop").verify(text.as_bytes(), NOW), Ok(l));
}

#[test]
fn what_does_not_verify() {
    let s = signer("shop");
    let l = link(7, 1);
    let text = s.encode(&l);
    assert_eq!(s.verify(text.as_bytes(), NOW), Ok(l));
    assert_eq!(s.verify(text.as_bytes(), l.expires), Err(Refusal::Expired));
    assert_eq!(signer("other").verify(text.as_bytes(), NOW), Err(Refusal::OtherRoom));
    let other_key = LinkSigner::new(&[b'z'; 40], "shop").unwrap();
    assert_eq!(other_key.verify(text.as_bytes(), NOW), Err(Refusal::Tampered));
    assert_eq!(s.verify(b"", NOW), Err(Refusal::Malformed));
    assert_eq!(s.verify(&text.as_bytes()[1..], NOW), Err(Refusal::Malformed));
    assert_eq!(s.verify(format!("{text}A").as_bytes(), NOW), Err(Refusal::Malformed));
    assert_eq!(s.verify(&[b'!'; ENCODED_LEN], NOW), Err(Refusal::Malformed));
    assert_eq!(s.verify(s.encode(&link(7, 0)).as_bytes(), NOW), Err(Refusal::Malformed));
    assert_eq!(s.verify(s.encode(&link(0, 1)).as_bytes(), NOW), Err(Refusal::Malformed));
}

#[test]
fn a_cookie_is_no_link_and_a_link_no_cookie() {
    let cookies = Signer::new(&KEY, "shop").unwrap();
    let t = Token {
        kind: Kind::Session,
        number: 1,
        id: 2,
        visitor: 2,
        issued: NOW,
        expires: NOW + 10,
        epoch: 3,
    };
    let cookie = cookies.encode(&t);
    assert!(signer("shop").verify(cookie.as_bytes(), NOW).is_err());
    let text = signer("shop").encode(&link(9, 1));
    assert_eq!(cookies.decode(text.as_bytes(), NOW), None);
    // Even laid out as a cookie (payload "." mac), a link's bytes are signed with another key.
    let (p, m) = text.split_at(31);
    assert_eq!(cookies.decode(format!("{p}.{m}").as_bytes(), NOW), None);
}

#[test]
fn the_argument_is_found_and_taken_out() {
    assert_eq!(arg(b"wr_exempt=abc"), Some(&b"abc"[..]));
    assert_eq!(arg(b"a=1&wr_exempt=abc&b=2"), Some(&b"abc"[..]));
    assert_eq!(arg(b"a=1&xwr_exempt=abc"), None);
    assert_eq!(arg(b"wr_exempt"), None);
    assert_eq!(arg(b""), None);
    assert_eq!(without_arg(b"/p/?wr_exempt=abc"), b"/p/");
    assert_eq!(without_arg(b"/p/?a=1&wr_exempt=abc&b=2"), b"/p/?a=1&b=2");
    assert_eq!(without_arg(b"/p/?wr_exempt=abc&b=2&wr_exempt=d"), b"/p/?b=2");
    assert_eq!(without_arg(b"/p/?a=1"), b"/p/?a=1");
    assert_eq!(without_arg(b"/p/"), b"/p/");
    // Never to another host.
    assert_eq!(without_arg(b"//evil.example/x?wr_exempt=abc"), b"/evil.example/x");
    assert_eq!(without_arg(b"/\\evil.example/?wr_exempt=abc&a=1"), b"/evil.example/?a=1");
    assert_eq!(without_arg(b"///x"), b"/x");
    assert_eq!(with_arg("/p/", "abc"), "/p/?wr_exempt=abc");
    assert_eq!(with_arg("/p/?a=1", "abc"), "/p/?a=1&wr_exempt=abc");
}

#[test]
fn a_link_request_is_checked() {
    let parse = |s: &str| parse_link_request(&serde_json::from_str(s).unwrap());
    assert_eq!(
        parse(r#"{"path":"/checkout/"}"#),
        Ok(LinkRequest { path: "/checkout/".into(), uses: 1, expires_in: 3600 })
    );
    assert_eq!(
        parse(r#"{"path":"/a?b=1","uses":3,"expires_in":60}"#),
        Ok(LinkRequest { path: "/a?b=1".into(), uses: 3, expires_in: 60 })
    );
    for bad in [
        r#"{}"#,
        r#""/x""#,
        r#"{"path":"x"}"#,
        r#"{"path":"/a b"}"#,
        r#"{"path":"/a#b"}"#,
        r#"{"path":"/a?wr_exempt=1"}"#,
        r#"{"path":"/","uses":0}"#,
        r#"{"path":"/","uses":65536}"#,
        r#"{"path":"/","uses":"1"}"#,
        r#"{"path":"/","expires_in":0}"#,
        r#"{"path":"/","expires_in":99999999999}"#,
        r#"{"path":"/","other":1}"#,
    ] {
        assert!(parse(bad).is_err(), "{bad} accepted");
    }
}

#[test]
fn the_table_counts_uses_reuses_expired_records_and_refuses_when_full() {
    let mut table = vec![LinkUse::default(); 4];
    let once = link(1, 1);
    let found = find_use(&table, &once, NOW);
    assert_eq!(found, Counted::Use { n: 1, at: 0, new: true });
    count_use(&mut table, &once, found);
    assert_eq!(find_use(&table, &once, NOW), Counted::UsedUp);

    let thrice = link(2, 3);
    for n in 1..=3 {
        let found = find_use(&table, &thrice, NOW);
        assert!(matches!(found, Counted::Use { n: got, .. } if got == n));
        count_use(&mut table, &thrice, found);
    }
    assert_eq!(find_use(&table, &thrice, NOW), Counted::UsedUp);

    for id in [3, 4] {
        let l = link(id, 1);
        let found = find_use(&table, &l, NOW);
        count_use(&mut table, &l, found);
    }
    assert_eq!(find_use(&table, &link(5, 1), NOW), Counted::Full, "full of unexpired links");
    // Once the first links expire, their records are taken by new ones.
    let later = once.expires;
    assert_eq!(find_use(&table, &link(5, 1), later), Counted::Use { n: 1, at: 0, new: true });
}

fn room_link(id: u64, uses: u16) -> Link {
    Link { id, expires: 5000, uses }
}

#[test]
fn a_full_room_lets_a_bearer_in_at_once_and_calls_nobody_meanwhile() {
    let mut mem = region(64 * 1024);
    let mut room = Room::create(bytes(&mut mem), 4, 2, b"k", 7).unwrap();
    let now = 1_000_000;
    let inside: Vec<SessionRef> = (0..2)
        .map(|_| match room.come(now, &T) {
            Came::Admitted(s) => s,
            c => panic!("{c:?}"),
        })
        .collect();
    let waiting = match room.come(now, &T) {
        Came::Queued { ticket, .. } => ticket,
        c => panic!("{c:?}"),
    };
    let used = room.use_link(&room_link(1, 1), now, 1000, 0).unwrap();
    assert_eq!(used.n, 1);
    assert!(room.touch_session(used.session, now, &T), "the bearer's session is live");
    assert_eq!(room.snapshot().active_sessions, 3, "over max_active");
    room.check_invariants();
    assert_eq!(room.use_link(&room_link(1, 1), now, 1000, 0), Err(Refusal::UsedUp { uses: 1 }));
    // One of those inside leaves: the room is at max_active still, nobody is called.
    assert!(room.leave_session(inside[0], now, &T));
    assert!(matches!(room.poll(waiting, now, &T), Poll::Waiting { position: 1 }));
    room.check_invariants();
    // Another leaves: now a slot is free, and the line moves.
    assert!(room.leave_session(inside[1], now, &T));
    assert!(matches!(room.poll(waiting, now, &T), Poll::Admitted(..)));
    room.check_invariants();
    let e = room.snapshot().exempt;
    assert_eq!((e.used, e.refused), (1, 1));
}

#[test]
fn no_session_slot_or_standby_means_no_entry_and_no_use_counted() {
    let mut mem = region(64 * 1024);
    let mut room = Room::create(bytes(&mut mem), 2, 2, b"k", 7).unwrap();
    let now = 1_000_000;
    for _ in 0..2 {
        assert!(matches!(room.come(now, &T), Came::Admitted(_)));
    }
    assert_eq!(room.use_link(&room_link(1, 1), now, 1000, 0), Err(Refusal::NoSession));
    assert!(room.link_uses().iter().all(|l| l.id == 0), "the use was not counted");
    room.set_standby(true);
    assert_eq!(room.use_link(&room_link(1, 1), now, 1000, 0), Err(Refusal::StandingBy));
    assert_eq!(room.use_link(&room_link(2, 1), now, 5000, 0), Err(Refusal::StandingBy));
    room.set_standby(false);
    assert_eq!(room.use_link(&room_link(2, 1), now, 5000, 0), Err(Refusal::Expired));
}

#[test]
fn a_room_full_of_unexpired_links_refuses_a_new_one() {
    let mut mem = region(256 * 1024);
    let mut room = Room::create(bytes(&mut mem), 600, 600, b"k", 7).unwrap();
    for id in 1..=LINK_TABLE as u64 {
        assert!(room.use_link(&room_link(id, 1), 1000, 1000, 0).is_ok());
    }
    let extra = room_link(LINK_TABLE as u64 + 1, 1);
    assert_eq!(room.use_link(&extra, 1000, 1000, 0), Err(Refusal::TableFull));
    // Used-up links are still refused, not forgotten.
    assert_eq!(room.use_link(&room_link(1, 1), 1000, 1000, 0), Err(Refusal::UsedUp { uses: 1 }));
    room.check_invariants();
}

#[derive(Clone, Debug)]
enum Op {
    Arrive,
    Exempt(u64, u16),
    Poll(usize),
    Leave(usize),
    Sweep,
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Arrive),
        2 => (1u64..6, 1u16..4).prop_map(|(id, uses)| Op::Exempt(id, uses)),
        3 => any::<usize>().prop_map(Op::Poll),
        2 => any::<usize>().prop_map(Op::Leave),
        2 => Just(Op::Sweep),
        2 => (0u64..15_000).prop_map(Op::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// With bearers of links coming among the crowd: no link gives more sessions than its
    /// uses, a bearer never takes anyone's place in line, and nobody but a bearer goes over
    /// `max_active` (`check_invariants`: the sessions not given by links and the called
    /// tickets stay within it, so nobody is called while bearers hold the room over it).
    #[test]
    fn links_never_give_more_than_their_uses(
        max_active in 1u32..4,
        ops in proptest::collection::vec(op(), 1..250),
    ) {
        let mut mem = region(64 * 1024);
        let mut room = Room::create(bytes(&mut mem), 8, max_active, b"k", 7).unwrap();
        let mut now = 1_000_000u64;
        let mut tickets: Vec<TicketRef> = Vec::new();
        let mut sessions: Vec<SessionRef> = Vec::new();
        let mut given = [0u32; 6];
        let mut first_uses = [0u16; 6];
        for op in ops {
            match op {
                Op::Arrive => match room.come(now, &T) {
                    Came::Admitted(s) => sessions.push(s),
                    Came::Queued { ticket, .. } => tickets.push(ticket),
                    _ => {}
                },
                Op::Exempt(id, uses) => {
                    // A link's uses are signed: the same id always comes with the same uses.
                    if first_uses[id as usize] == 0 {
                        first_uses[id as usize] = uses;
                    }
                    let uses = first_uses[id as usize];
                    let before = room.snapshot();
                    match room.use_link(&room_link(id, uses), now, 1000, 0) {
                        Ok(u) => {
                            given[id as usize] += 1;
                            prop_assert_eq!(u.n, given[id as usize]);
                            prop_assert_eq!(room.snapshot().queue_length, before.queue_length);
                            sessions.push(u.session);
                        }
                        Err(Refusal::UsedUp { .. }) => {
                            prop_assert_eq!(given[id as usize], u32::from(uses));
                        }
                        Err(Refusal::NoSession) => {
                            prop_assert_eq!(before.active_sessions, before.session_capacity);
                        }
                        Err(e) => prop_assert!(false, "refused: {e}"),
                    }
                }
                Op::Poll(i) if !tickets.is_empty() => {
                    let t = tickets[i % tickets.len()];
                    match room.poll(t, now, &T) {
                        Poll::Admitted(s, _) => {
                            sessions.push(s);
                            tickets.retain(|x| *x != t);
                        }
                        Poll::Lost => tickets.retain(|x| *x != t),
                        Poll::Waiting { .. } => {}
                    }
                }
                Op::Leave(i) if !sessions.is_empty() => {
                    let s = sessions.remove(i % sessions.len());
                    room.leave_session(s, now, &T);
                }
                Op::Sweep => {
                    room.sweep(now, &T, 16);
                }
                Op::Wait(ms) => now += ms,
                _ => {}
            }
            room.check_invariants();
            let s = room.snapshot();
            prop_assert!(s.active_sessions <= s.session_capacity);
        }
        for (id, n) in given.iter().enumerate() {
            prop_assert!(*n <= u32::from(first_uses[id]));
        }
    }

    /// Any change to a link's text makes it refused (or, if the change leaves the same bytes,
    /// the same link).
    #[test]
    fn a_changed_link_is_refused(id in 1u64.., uses in 1u16.., at in 0usize..ENCODED_LEN, to in 0u8..64) {
        let s = signer("shop");
        let l = Link { id, expires: NOW + 10, uses };
        let mut text = s.encode(&l).into_bytes();
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let was = text[at];
        text[at] = ALPHABET[to as usize];
        match s.verify(&text, NOW) {
            Ok(got) => prop_assert!(text[at] == was || got == l),
            Err(_) => prop_assert!(text[at] != was),
        }
    }
}
