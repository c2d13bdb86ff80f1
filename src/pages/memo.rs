//! Pages made lately, by everything they were made from.
//!
//! A page is a pure function of its template, its language and its [`View`](super::render::View):
//! a template sees no clock and no randomness. So the same inputs make the same bytes, and a
//! page made once serves everyone who would see the very same one: every first contact of a
//! crowd arriving at one URL in one language (they have no place yet), and a visitor whose
//! place, line and estimate have not moved since the page last reloaded. Anything else is
//! made afresh, as before.

use std::sync::{Arc, Mutex, PoisonError};

/// How many pages one set of pages (the built-in one, or a location's own) keeps in each
/// worker process. A queue page is some 14 KB and a key some 150 bytes and the URI: at most
/// about 550 KB a set, with the longest keys kept.
pub const SLOTS: usize = 32;

/// The longest key kept (the URI and a form's page make most of it): a page with a longer
/// one is made each time.
pub const LONGEST_KEY: usize = 2048;

/// The pages kept: a ring, the oldest replaced first.
#[derive(Default)]
pub struct Memo {
    inner: Mutex<Ring>,
}

#[derive(Default)]
struct Ring {
    slots: Vec<(Vec<u8>, Arc<str>)>,
    next: usize,
}

impl Memo {
    /// The page made from `key`, if it is kept.
    pub fn get(&self, key: &[u8]) -> Option<Arc<str>> {
        // Nothing here panics while holding the lock, and the ring is whole between any two
        // of its statements: a poisoned lock's ring is as good as any.
        let ring = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        ring.slots.iter().find(|(k, _)| k.as_slice() == key).map(|(_, page)| Arc::clone(page))
    }

    /// Keeps `page`, made from `key`, in place of the oldest.
    pub fn put(&self, key: Vec<u8>, page: Arc<str>) {
        let mut ring = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if ring.slots.len() < SLOTS {
            ring.slots.push((key, page));
        } else {
            let at = ring.next;
            ring.slots[at] = (key, page);
            ring.next = (at + 1) % SLOTS;
        }
    }
}

/// A key's bytes: numbers and flags as they are, strings with their lengths, so that two
/// different inputs never make the same key.
#[derive(Default)]
pub struct Key(pub Vec<u8>);

impl Key {
    pub fn with_capacity(n: usize) -> Key {
        Key(Vec::with_capacity(n))
    }

    pub fn num(&mut self, n: u64) -> &mut Self {
        self.0.extend_from_slice(&n.to_le_bytes());
        self
    }

    pub fn opt(&mut self, n: Option<u64>) -> &mut Self {
        match n {
            Some(n) => self.flag(true).num(n),
            None => self.flag(false),
        }
    }

    pub fn flag(&mut self, b: bool) -> &mut Self {
        self.0.push(u8::from(b));
        self
    }

    pub fn str(&mut self, s: &str) -> &mut Self {
        self.num(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(f: impl FnOnce(&mut Key) -> &mut Key) -> Vec<u8> {
        let mut k = Key::default();
        f(&mut k);
        k.0
    }

    #[test]
    fn keeps_the_latest_pages_by_their_whole_key() {
        let m = Memo::default();
        assert!(m.get(b"a").is_none());
        m.put(b"a".to_vec(), Arc::from("page a"));
        assert_eq!(m.get(b"a").as_deref(), Some("page a"));
        assert!(m.get(b"ab").is_none(), "a longer key is another key");
        for i in 0..SLOTS {
            m.put(format!("k{i}").into_bytes(), Arc::from(format!("page {i}")));
        }
        assert!(m.get(b"a").is_none(), "the oldest goes first");
        assert_eq!(m.get(b"k0").as_deref(), Some("page 0"));
        m.put(b"new".to_vec(), Arc::from("new"));
        assert!(m.get(b"k0").is_none());
        assert_eq!(m.get(b"k1").as_deref(), Some("page 1"));
        assert_eq!(m.get(b"new").as_deref(), Some("new"));
    }

    #[test]
    fn different_inputs_make_different_keys() {
        assert_ne!(key(|k| k.str("ab").str("c")), key(|k| k.str("a").str("bc")));
        assert_ne!(key(|k| k.opt(None).num(0)), key(|k| k.opt(Some(0))));
        assert_ne!(key(|k| k.flag(true)), key(|k| k.flag(false)));
    }
}
