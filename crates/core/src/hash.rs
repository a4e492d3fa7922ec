//! The hash maps of the payment path's large state (the notary's unspent set, the nodes'
//! tokens and accounts).
//!
//! Why not std's `HashMap` as is: its SipHash-1-3 showed at 2-3% of the CPU of `dtenge bench`
//! at 10M tokens, hashing 32-byte ids and client-id strings several times per payment.
//! foldhash is several times faster on such keys and, like std's, seeded at random per map, so
//! an attacker who grinds token ids cannot aim them at one bucket.

/// A hash map with foldhash's randomly seeded fast hasher.
pub type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// A hash set with foldhash's randomly seeded fast hasher.
pub type Set<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;

/// Slices at most this long are searched for repeats pairwise.
pub const PAIRWISE_LEN_MAX: usize = 16;

/// The first item of `items` equal to an earlier one, if any.
///
/// Why not always a hash set: the payment path asks this of every transaction's inputs (two,
/// almost always), and a set costs an allocation and a hash per item for what a handful of
/// comparisons answers. Beyond [`PAIRWISE_LEN_MAX`] items a set keeps it linear.
pub fn first_repeat<T: Eq + std::hash::Hash>(items: &[T]) -> Option<&T> {
    if items.len() <= PAIRWISE_LEN_MAX {
        return items.iter().enumerate().find(|(i, item)| items[..*i].contains(item)).map(|(_, item)| item);
    }
    let mut seen = Set::with_capacity_and_hasher(items.len(), Default::default());
    items.iter().find(|item| !seen.insert(*item))
}

/// `items` without repeats, in first-seen order: pairwise while few are distinct, through a
/// hash set beyond [`PAIRWISE_LEN_MAX`] (so that a long list stays linear).
pub fn distinct<T: Eq + std::hash::Hash + Copy>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    let mut seen: Option<Set<T>> = None;
    for item in items {
        let new = match &mut seen {
            Some(set) => set.insert(item),
            None => !out.contains(&item),
        };
        if new {
            out.push(item);
            if seen.is_none() && out.len() > PAIRWISE_LEN_MAX {
                seen = Some(out.iter().copied().collect());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_keeps_first_seen_order_below_and_above_the_pairwise_bound() {
        for len in [0u32, 1, 5, PAIRWISE_LEN_MAX as u32, PAIRWISE_LEN_MAX as u32 + 1, 200] {
            let items: Vec<u32> = (0..len).flat_map(|i| [i, i / 2]).collect();
            let expected: Vec<u32> = {
                let mut seen = std::collections::HashSet::new();
                items.iter().copied().filter(|i| seen.insert(*i)).collect()
            };
            assert_eq!(distinct(items.iter().copied()), expected, "{len}");
        }
    }

    #[test]
    fn first_repeat_finds_the_first_item_seen_before_at_every_length() {
        for len in [0usize, 1, 2, 3, PAIRWISE_LEN_MAX, PAIRWISE_LEN_MAX + 1, 100] {
            let distinct: Vec<u32> = (0..len as u32).collect();
            assert_eq!(first_repeat(&distinct), None, "{len} distinct items");
            if len >= 2 {
                let mut repeated = distinct.clone();
                repeated[len - 1] = 0;
                assert_eq!(first_repeat(&repeated), Some(&0), "{len} items, the last repeats the first");
            }
            if len >= 3 {
                // Two repeats: of the first item at index 1, of another one at the end.
                let mut two = distinct.clone();
                two[1] = 0;
                two[len - 1] = two[len - 2];
                assert_eq!(first_repeat(&two), Some(&0), "{len} items: the earliest repeat is answered");
            }
        }
    }
}
