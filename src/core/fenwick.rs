//! A Fenwick (binary indexed) tree over the ticket ring: one counter per ring slot (1 when the
//! slot holds a live ticket), so that "how many live tickets stand before this one" and "which
//! is the k-th live ticket" cost O(log n) whatever the length of the queue.
//!
//! The tree is a plain `[u32]` so that it can live in shared memory. Index `i` of the ring is
//! node `i + 1` of the tree; `tree[0]` is unused.

/// Adds `delta` (+1 or -1) to ring slot `index`.
pub fn add(tree: &mut [u32], index: usize, delta: i32) {
    let mut i = index + 1;
    while i < tree.len() {
        tree[i] = tree[i].wrapping_add_signed(delta);
        i += i & i.wrapping_neg();
    }
}

/// Sum of the counters of ring slots `0..end`.
pub fn prefix(tree: &[u32], end: usize) -> u64 {
    let mut i = end.min(tree.len().saturating_sub(1));
    let mut sum = 0u64;
    while i > 0 {
        sum += u64::from(tree[i]);
        i &= i - 1;
    }
    sum
}

/// The ring slot holding the `k`-th (1-based) counted element in slot order, if there are
/// at least `k`.
pub fn find_kth(tree: &[u32], k: u64) -> Option<usize> {
    descend(tree.len().saturating_sub(1), k, |node| u64::from(tree[node]))
}

/// The ring slot holding the `k`-th (1-based) element counted by `a` and not by `b`, where every
/// element `b` counts `a` counts too (`b` a subset of `a`, over the same slots).
pub fn find_kth_diff(a: &[u32], b: &[u32], k: u64) -> Option<usize> {
    // Node `i` covers the same slots in both trees: the difference is the count there of the
    // elements of `a` not in `b`.
    let n = a.len().min(b.len()).saturating_sub(1);
    descend(n, k, |node| u64::from(a[node].wrapping_sub(b[node])))
}

/// The slot of the `k`-th element of a tree of `n` nodes whose node `i` counts `node(i)`.
fn descend(n: usize, mut k: u64, node: impl Fn(usize) -> u64) -> Option<usize> {
    if k == 0 || n == 0 {
        return None;
    }
    let mut pos = 0usize;
    let mut step = 1usize << (usize::BITS - 1 - n.leading_zeros());
    while step > 0 {
        let next = pos + step;
        if next <= n {
            let here = node(next);
            if here < k {
                pos = next;
                k -= here;
            }
        }
        step >>= 1;
    }
    // `pos` is the longest prefix with fewer than k elements: slot `pos` holds the k-th.
    (pos < n).then_some(pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn matches_a_plain_array(n in 1usize..200, ops in proptest::collection::vec((0usize..200, any::<bool>()), 0..400)) {
            let mut tree = vec![0u32; n + 1];
            let mut plain = vec![0u32; n];
            for (i, on) in ops {
                let i = i % n;
                let want = u32::from(on);
                if plain[i] != want {
                    add(&mut tree, i, if on { 1 } else { -1 });
                    plain[i] = want;
                }
            }
            let mut running = 0u64;
            prop_assert_eq!(prefix(&tree, 0), 0);
            for (i, &bit) in plain.iter().enumerate() {
                running += u64::from(bit);
                prop_assert_eq!(prefix(&tree, i + 1), running);
            }
            let ones: Vec<usize> = (0..n).filter(|&i| plain[i] == 1).collect();
            for (k, &slot) in ones.iter().enumerate() {
                prop_assert_eq!(find_kth(&tree, k as u64 + 1), Some(slot));
            }
            prop_assert_eq!(find_kth(&tree, ones.len() as u64 + 1), None);
        }

        #[test]
        fn the_difference_of_two_trees(n in 1usize..200, ops in proptest::collection::vec((0usize..200, 0u8..3), 0..400)) {
            // Each slot is empty (0), in `a` only (1), or in both (2).
            let (mut a, mut b) = (vec![0u32; n + 1], vec![0u32; n + 1]);
            let mut plain = vec![0u8; n];
            for (i, want) in ops {
                let i = i % n;
                let was = plain[i];
                if (was > 0) != (want > 0) {
                    add(&mut a, i, if want > 0 { 1 } else { -1 });
                }
                if (was == 2) != (want == 2) {
                    add(&mut b, i, if want == 2 { 1 } else { -1 });
                }
                plain[i] = want;
            }
            let only_a: Vec<usize> = (0..n).filter(|&i| plain[i] == 1).collect();
            for (k, &slot) in only_a.iter().enumerate() {
                prop_assert_eq!(find_kth_diff(&a, &b, k as u64 + 1), Some(slot));
            }
            prop_assert_eq!(find_kth_diff(&a, &b, only_a.len() as u64 + 1), None);
        }
    }
}
