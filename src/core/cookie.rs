//! The values of one cookie in a `Cookie` header (`name=value; name2=value2`). This runs on
//! every request a room guards: the separators are found by `memchr` (whole words at a time),
//! and a pair that is not the room's is skipped without trimming its end.

/// Every value of the cookie `name` in one `Cookie` header's `value`, in order, trimmed of
/// spaces and tabs.
pub fn values<'a>(header: &'a [u8], name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = header;
    core::iter::from_fn(move || next_value(&mut rest, name))
}

/// The next value of the cookie `name` in `rest` (a `Cookie` header's value, or what is left
/// of it after an earlier call), trimmed of spaces and tabs; `rest` moves past it.
pub fn next_value<'a>(rest: &mut &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    loop {
        let s = trim_start(rest);
        if s.is_empty() {
            *rest = s;
            return None;
        }
        let (pair, after) = match memchr::memchr(b';', s) {
            Some(i) => (&s[..i], &s[i + 1..]),
            None => (s, &s[s.len()..]),
        };
        *rest = after;
        if let Some(v) = pair.strip_prefix(name) {
            if let [b'=', v @ ..] = trim_start(v) {
                return Some(trim(v));
            }
        }
    }
}

fn trim_start(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    s
}

fn trim(s: &[u8]) -> &[u8] {
    let mut s = trim_start(s);
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The plain reading of the grammar, byte by byte.
    fn naive<'a>(header: &'a [u8], name: &[u8]) -> Vec<&'a [u8]> {
        header
            .split(|&b| b == b';')
            .filter_map(|pair| {
                let pair = trim(pair);
                let eq = pair.iter().position(|&b| b == b'=')?;
                (trim(&pair[..eq]) == name).then(|| trim(&pair[eq + 1..]))
            })
            .collect()
    }

    #[test]
    fn finds_each_value_of_the_name() {
        let h = b"a=1; wr_shop=abc.def;wr_shopx=no; wr_shop = two ;x=wr_shop=3";
        let got: Vec<&[u8]> = values(h, b"wr_shop").collect();
        assert_eq!(got, vec![&b"abc.def"[..], b"two"]);
        assert_eq!(values(b"", b"a").count(), 0);
        assert_eq!(values(b"wr_shop", b"wr_shop").count(), 0, "no value without =");
        assert_eq!(values(b"wr_shop=", b"wr_shop").collect::<Vec<_>>(), vec![&b""[..]]);
    }

    proptest! {
        #[test]
        fn agrees_with_the_plain_reading(
            parts in proptest::collection::vec(
                prop_oneof![Just("wr_r"), Just("wr_rx"), Just("x"), Just("="), Just(";"), Just(" "), Just("\t"), Just("v.1")],
                0..40,
            )
        ) {
            let h = parts.concat();
            let got: Vec<&[u8]> = values(h.as_bytes(), b"wr_r").collect();
            prop_assert_eq!(got, naive(h.as_bytes(), b"wr_r"));
        }

    }
}
