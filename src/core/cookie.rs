//! The values of one cookie in a `Cookie` header (`name=value; name2=value2`), found without
//! looking at every byte one by one: this runs on every request a room guards.

/// Every value of the cookie `name` in one `Cookie` header's `value`, in order, trimmed of
/// spaces and tabs.
pub fn values<'a>(header: &'a [u8], name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = header;
    core::iter::from_fn(move || {
        while !rest.is_empty() {
            let (pair, after) = match find(rest, b';') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &rest[rest.len()..]),
            };
            rest = after;
            let pair = trim(pair);
            if let Some(v) = pair.strip_prefix(name) {
                let v = trim_start(v);
                if let [b'=', v @ ..] = v {
                    return Some(trim(v));
                }
            }
        }
        None
    })
}

/// The first `byte` in `hay`, eight bytes at a time.
fn find(hay: &[u8], byte: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO * u64::from(byte);
    let mut chunks = hay.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ pattern;
        // A zero byte in `x` is a match; the lowest one is exact (borrows only run upward).
        let found = x.wrapping_sub(LO) & !x & HI;
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks.remainder().iter().position(|&b| b == byte).map(|i| at + i)
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

        #[test]
        fn finds_the_first_byte(hay in proptest::collection::vec(any::<u8>(), 0..64), byte: u8) {
            prop_assert_eq!(find(&hay, byte), hay.iter().position(|&b| b == byte));
        }
    }
}
