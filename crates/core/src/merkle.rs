//! Merkle trees over transaction ids (RFC 6962 shape, with our own domain tags): a node
//! attests a whole batch of transactions with one signature over the root, and each
//! transaction carries the path that proves it is in the batch.
//!
//! The leaf and inner hashes are domain-separated, and the tree splits at the largest power of
//! two below the size (no duplicated last leaf), so two different lists of leaves never share
//! a root (the weakness of Bitcoin's tree, CVE-2012-2459).

use crate::crypto::{hash_parts, Hash32};
use crate::token::TxId;

/// Most leaves one tree has: bounds the proof's length (11 hashes).
pub const LEAVES_MAX: usize = 1 << 11;
/// Longest proof of a tree of [`LEAVES_MAX`] leaves.
pub const PATH_MAX: usize = 11;

/// What a tree's leaves are: transaction ids (a bank's batch attestation) or compact
/// transactions' hashes (the notary's certificates). Both are 32-byte hashes, hashed alike;
/// the signatures over the roots carry their own domain tags, so a root of one kind cannot
/// stand for the other.
pub trait Leaf {
    fn leaf_hash(&self) -> &Hash32;
}

impl Leaf for TxId {
    fn leaf_hash(&self) -> &Hash32 {
        &self.0
    }
}

impl Leaf for Hash32 {
    fn leaf_hash(&self) -> &Hash32 {
        self
    }
}

fn leaf(item: &impl Leaf) -> Hash32 {
    hash_parts(b"dtenge/merkle/leaf/v1", &[&item.leaf_hash().0])
}

fn inner(left: &Hash32, right: &Hash32) -> Hash32 {
    hash_parts(b"dtenge/merkle/inner/v1", &[&left.0, &right.0])
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn root_of(leaves: &[Hash32]) -> Hash32 {
    match leaves.len() {
        0 => hash_parts(b"dtenge/merkle/empty/v1", &[]),
        1 => leaves[0],
        n => {
            let k = split(n);
            inner(&root_of(&leaves[..k]), &root_of(&leaves[k..]))
        }
    }
}

/// The root over `tx_ids`, in order.
pub fn root<L: Leaf>(tx_ids: &[L]) -> Hash32 {
    debug_assert!(tx_ids.len() <= LEAVES_MAX);
    let leaves: Vec<Hash32> = tx_ids.iter().map(leaf).collect();
    root_of(&leaves)
}

/// The path proving leaf `index` of `tx_ids`: sibling hashes from the leaf up.
pub fn path<L: Leaf>(tx_ids: &[L], index: usize) -> Vec<Hash32> {
    assert!(index < tx_ids.len(), "index inside the tree");
    let leaves: Vec<Hash32> = tx_ids.iter().map(leaf).collect();
    let mut out = Vec::with_capacity(PATH_MAX);
    path_of(&leaves, index, &mut out);
    out
}

/// The root and every leaf's path at once, each subtree hashed once: O(n log n) hashes, where
/// [`path`] for every leaf would take O(n²) (a node attests up to [`LEAVES_MAX`] at a time).
pub fn root_and_paths<L: Leaf>(tx_ids: &[L]) -> (Hash32, Vec<Vec<Hash32>>) {
    debug_assert!(tx_ids.len() <= LEAVES_MAX);
    let leaves: Vec<Hash32> = tx_ids.iter().map(leaf).collect();
    let mut paths = vec![Vec::with_capacity(PATH_MAX); leaves.len()];
    let root = fill_paths(&leaves, &mut paths);
    (root, paths)
}

/// The root of `leaves`; appends to each leaf's path the siblings within this subtree, the
/// leaf level first (the children's siblings are pushed before this level's).
fn fill_paths(leaves: &[Hash32], paths: &mut [Vec<Hash32>]) -> Hash32 {
    if leaves.len() <= 1 {
        return root_of(leaves);
    }
    let k = split(leaves.len());
    let (left_paths, right_paths) = paths.split_at_mut(k);
    let left = fill_paths(&leaves[..k], left_paths);
    let right = fill_paths(&leaves[k..], right_paths);
    left_paths.iter_mut().for_each(|p| p.push(right));
    right_paths.iter_mut().for_each(|p| p.push(left));
    inner(&left, &right)
}

fn path_of(leaves: &[Hash32], index: usize, out: &mut Vec<Hash32>) {
    if leaves.len() <= 1 {
        return;
    }
    let k = split(leaves.len());
    if index < k {
        path_of(&leaves[..k], index, out);
        out.push(root_of(&leaves[k..]));
    } else {
        path_of(&leaves[k..], index - k, out);
        out.push(root_of(&leaves[..k]));
    }
}

/// The root that `path` proves for `tx_id` at `index` of a tree of `size` leaves, or `None`
/// when the path has the wrong length for that position.
pub fn root_from_path(tx_id: &impl Leaf, index: usize, size: usize, path: &[Hash32]) -> Option<Hash32> {
    if index >= size || size > LEAVES_MAX || path.len() > PATH_MAX {
        return None;
    }
    let used = fold(leaf(tx_id), index, size, path)?;
    (used.1 == path.len()).then_some(used.0)
}

/// [`root_from_path`] for many leaves of the same trees, with the inner hashes already
/// computed for earlier paths taken from `memo`: the same answer, fewer hashes. Consecutive
/// leaves share most of their paths (16 consecutive leaves of a tree of 256 need 19 distinct
/// inner hashes, not 128), and a verifier checks the proofs of a whole chunk of one bank's
/// batch together.
pub fn root_from_path_memo(
    tx_id: &impl Leaf,
    index: usize,
    size: usize,
    path: &[Hash32],
    memo: &mut InnerMemo,
) -> Option<Hash32> {
    if index >= size || size > LEAVES_MAX || path.len() > PATH_MAX {
        return None;
    }
    let leaf_hash = leaf(tx_id);
    let mut left = [false; PATH_MAX];
    let depth = descent(index, size, &mut left);
    if path.len() != depth {
        // What the fold would find: a path of the wrong length proves nothing.
        return None;
    }
    let mut last = memo.last.take().unwrap_or_default();
    let root = match last.shortcut(&leaf_hash, index, size, path, memo) {
        Some(root) => root,
        None => {
            // The whole fold, every node kept for the next path.
            last.nodes.clear();
            last.nodes.push(leaf_hash);
            let mut node = leaf_hash;
            for level in 0..depth {
                let sibling = &path[level];
                node = if left[depth - 1 - level] { memo.inner(&node, sibling) } else { memo.inner(sibling, &node) };
                last.nodes.push(node);
            }
            last.size = size;
            last.index = index;
            last.path.clear();
            last.path.extend_from_slice(path);
            node
        }
    };
    memo.last = Some(last);
    Some(root)
}

/// The decisions from the root down to leaf `index` of a tree of `size` leaves (`true`: the
/// leaf is in the left subtree), into `left`; returns how many (the path's length).
fn descent(index: usize, size: usize, left: &mut [bool; PATH_MAX]) -> usize {
    let (mut index, mut size, mut depth) = (index, size, 0);
    while size > 1 {
        let k = split(size);
        left[depth] = index < k;
        if index < k {
            size = k;
        } else {
            index -= k;
            size -= k;
        }
        depth += 1;
    }
    depth
}

/// The last path an [`InnerMemo`] folded: its tree's size, its leaf's index, the path, and
/// every node it computed (`nodes[0]` the leaf's hash, `nodes[path.len()]` the root).
#[derive(Debug, Default)]
struct LastFold {
    size: usize,
    index: usize,
    path: Vec<Hash32>,
    nodes: Vec<Hash32>,
}

impl LastFold {
    /// The root `path` folds to, when it meets the last path and agrees with it from there up:
    /// below the two leaves' common ancestor the new leaf's nodes are hashed; at the ancestor,
    /// the new leaf's child must be the last path's sibling and the new path's sibling the
    /// last path's child (so the ancestor is the same node); above it the two paths must be
    /// equal. Then every further step of the fold is the last path's, and so is the root.
    /// `None` (fold it all) otherwise. On success `self` becomes the new path's fold.
    fn shortcut(
        &mut self,
        leaf_hash: &Hash32,
        index: usize,
        size: usize,
        path: &[Hash32],
        memo: &mut InnerMemo,
    ) -> Option<Hash32> {
        if self.nodes.is_empty() || self.size != size || self.index == index {
            return None;
        }
        // Walk down both leaves' decisions to where they part: `shared` levels in common.
        let (mut a, mut b, mut s, mut shared) = (self.index, index, size, 0);
        loop {
            // Different leaves of one tree part before the bottom.
            debug_assert!(s > 1);
            let k = split(s);
            if (a < k) != (b < k) {
                break;
            }
            if b < k {
                s = k;
            } else {
                a -= k;
                b -= k;
                s -= k;
            }
            shared += 1;
        }
        let (depth, last_depth) = (path.len(), self.path.len());
        // Levels below the common ancestor, on the new leaf's side.
        let below = depth.checked_sub(shared + 1)?;
        let last_below = last_depth.checked_sub(shared + 1)?;
        if path[below + 1..] != self.path[last_below + 1..] || path[below] != self.nodes[last_below] {
            return None;
        }
        let mut left = [false; PATH_MAX];
        let full = descent(index, size, &mut left);
        debug_assert_eq!(full, depth, "the caller checked the path's length");
        let mut nodes = Vec::with_capacity(depth + 1);
        nodes.push(*leaf_hash);
        let mut node = *leaf_hash;
        for level in 0..below {
            let sibling = &path[level];
            node = if left[depth - 1 - level] { memo.inner(&node, sibling) } else { memo.inner(sibling, &node) };
            nodes.push(node);
        }
        if node != self.path[last_below] {
            return None;
        }
        // From the common ancestor up, the last path's nodes.
        nodes.extend_from_slice(&self.nodes[last_below + 1..]);
        let root = *self.nodes.last()?;
        self.nodes = nodes;
        self.index = index;
        self.path.clear();
        self.path.extend_from_slice(path);
        Some(root)
    }
}

/// Inner hashes computed recently, `(left, right, parent)`: a memo of a pure function, so a
/// path checked with it proves exactly what it proves without. Bounded: a direct-mapped table
/// of [`INNER_MEMO_SLOTS`] entries, placed by bits of the children (hashes, so uniform); an
/// entry makes way for a newer one that maps to its slot. One comparison per lookup: the
/// linear search of the 32 newest entries it replaces cost about as much as the hashes it
/// saved on 600-transaction batches.
#[derive(Debug, Default)]
pub struct InnerMemo {
    slots: Vec<Option<(Hash32, Hash32, Hash32)>>,
    /// The last root whose message was asked for, with that message: every transaction of a
    /// batch carries the same batch root.
    root_message: Option<(Hash32, Hash32)>,
    /// The last path folded: the next leaf of the same tree folds only up to where the two
    /// paths meet (consecutive leaves meet near the bottom), then compares what is left.
    last: Option<LastFold>,
}

/// Slots of an [`InnerMemo`]: the distinct inner nodes of a batch's paths near the leaves
/// being folded (consecutive leaves share all but the lowest) fit with room to spare.
const INNER_MEMO_SLOTS: usize = 256;

impl InnerMemo {
    fn inner(&mut self, left: &Hash32, right: &Hash32) -> Hash32 {
        if self.slots.is_empty() {
            self.slots = vec![None; INNER_MEMO_SLOTS];
        }
        let slot = (usize::from(left.0[0]) ^ usize::from(right.0[1])) % INNER_MEMO_SLOTS;
        if let Some((l, r, parent)) = &self.slots[slot] {
            if l == left && r == right {
                return *parent;
            }
        }
        let parent = inner(left, right);
        self.slots[slot] = Some((*left, *right, parent));
        parent
    }

    /// `message_of(root)`, computed once for a run of the same root.
    pub fn root_message(&mut self, root: &Hash32, message_of: impl FnOnce(&Hash32) -> Hash32) -> Hash32 {
        match self.root_message {
            Some((known, message)) if known == *root => message,
            _ => {
                let message = message_of(root);
                self.root_message = Some((*root, message));
                message
            }
        }
    }
}

/// Walk down to the leaf's subtree, then hash back up with the path (consumed from its start,
/// leaf level first). Returns the root and how many path entries were used.
fn fold(leaf_hash: Hash32, index: usize, size: usize, path: &[Hash32]) -> Option<(Hash32, usize)> {
    fold_with(leaf_hash, index, size, path, &mut inner)
}

/// [`fold`] with the inner hash supplied (memoized or not). The recursion is as deep as the
/// path, at most [`PATH_MAX`].
fn fold_with(
    leaf_hash: Hash32,
    index: usize,
    size: usize,
    path: &[Hash32],
    inner: &mut impl FnMut(&Hash32, &Hash32) -> Hash32,
) -> Option<(Hash32, usize)> {
    if size == 1 {
        return Some((leaf_hash, 0));
    }
    let k = split(size);
    let (sub, used) = if index < k {
        fold_with(leaf_hash, index, k, path, inner)?
    } else {
        fold_with(leaf_hash, index - k, size - k, path, inner)?
    };
    let sibling = path.get(used)?;
    let parent = if index < k { inner(&sub, sibling) } else { inner(sibling, &sub) };
    Some((parent, used + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids(n: usize) -> Vec<TxId> {
        (0..n).map(|i| TxId(hash_parts(b"test", &[&(i as u64).to_le_bytes()]))).collect()
    }

    #[test]
    fn every_leaf_proves_the_root_and_nothing_else_does() {
        for n in [1, 2, 3, 5, 8, 13, 16, 17, 100] {
            let ids = ids(n);
            let r = root(&ids);
            for (i, id) in ids.iter().enumerate() {
                let p = path(&ids, i);
                assert!(p.len() <= PATH_MAX);
                assert_eq!(root_from_path(id, i, n, &p), Some(r), "leaf {i} of {n}");
                // Another position or another id: not this root.
                if n > 1 {
                    assert_ne!(root_from_path(id, (i + 1) % n, n, &p), Some(r));
                }
                assert_ne!(root_from_path(&TxId(Hash32([9; 32])), i, n, &p), Some(r));
            }
        }
    }

    #[test]
    fn all_paths_at_once_equal_each_path_alone() {
        for n in 0..70 {
            let ids = ids(n);
            let (r, paths) = root_and_paths(&ids);
            assert_eq!(r, root(&ids), "root of {n}");
            assert_eq!(paths.len(), n);
            for (i, p) in paths.iter().enumerate() {
                assert_eq!(*p, path(&ids, i), "leaf {i} of {n}");
            }
        }
    }

    #[test]
    fn different_lists_have_different_roots() {
        let a = ids(3);
        let mut b = a.clone();
        b.push(a[2]);
        assert_ne!(root(&a), root(&b), "duplicating the last leaf changes the root");
    }

    proptest! {
        /// The memo changes the cost, never the answer: one memo across proofs of several
        /// trees, good and tampered (a sibling flipped, the wrong index), in any order, answers
        /// each proof as `root_from_path` does.
        #[test]
        fn a_memo_gives_the_answers_of_no_memo(
            sizes in proptest::collection::vec(1usize..200, 1..4),
            picks in proptest::collection::vec((0usize..4, 0usize..200, 0u8..4, 0usize..PATH_MAX), 1..120),
        ) {
            let trees: Vec<Vec<TxId>> = sizes
                .iter()
                .enumerate()
                .map(|(t, &n)| (0..n).map(|i| TxId(hash_parts(b"memo", &[&[t as u8], &(i as u64).to_le_bytes()]))).collect())
                .collect();
            let mut memo = InnerMemo::default();
            for (tree, pick, tamper, at) in picks {
                let ids = &trees[tree % trees.len()];
                let n = ids.len();
                let i = pick % n;
                let mut p = path(ids, i);
                let mut index = i;
                match tamper {
                    1 if !p.is_empty() => { let k = at % p.len(); p[k].0[0] ^= 1; }
                    2 => index = (i + 1) % n,
                    3 if !p.is_empty() => { p.pop(); }
                    _ => {}
                }
                let plain = root_from_path(&ids[i], index, n, &p);
                prop_assert_eq!(root_from_path_memo(&ids[i], index, n, &p, &mut memo), plain);
                if tamper == 0 {
                    prop_assert_eq!(plain, Some(root(ids)));
                }
            }
        }

        /// The same with the leaves in ascending order, as a batch's are checked (the memo
        /// then folds each path only up to where it meets the last one), over two trees of one
        /// size (their paths have the same shape and different nodes).
        #[test]
        fn a_memo_gives_the_answers_of_no_memo_for_ascending_leaves(
            n in 2usize..300,
            picks in proptest::collection::vec((0usize..2, 0usize..300, 0u8..8, 0usize..PATH_MAX), 1..150),
        ) {
            let trees: Vec<Vec<TxId>> = (0..2u8)
                .map(|t| (0..n).map(|i| TxId(hash_parts(b"asc", &[&[t], &(i as u64).to_le_bytes()]))).collect())
                .collect();
            let mut picks = picks;
            picks.sort_by_key(|(_, pick, _, _)| pick % n);
            let mut memo = InnerMemo::default();
            for (tree, pick, tamper, at) in picks {
                let ids = &trees[tree];
                let i = pick % n;
                let mut p = path(ids, i);
                let mut index = i;
                match tamper {
                    1 => { let k = at % p.len(); p[k].0[0] ^= 1; }
                    2 => index = (i + 1) % n,
                    3 => { p.pop(); }
                    // The top sibling: what the shortcut compares instead of hashing.
                    4 => { let k = p.len() - 1; p[k].0[31] ^= 0x80; }
                    5 => p.push(p[0]),
                    _ => {}
                }
                let plain = root_from_path(&ids[i], index, n, &p);
                prop_assert_eq!(root_from_path_memo(&ids[i], index, n, &p, &mut memo), plain);
                if tamper == 0 || tamper > 5 {
                    prop_assert_eq!(plain, Some(root(ids)));
                }
            }
        }

        #[test]
        fn paths_verify_for_any_size(n in 1usize..300, pick in 0usize..300) {
            let ids = ids(n);
            let i = pick % n;
            prop_assert_eq!(root_from_path(&ids[i], i, n, &path(&ids, i)), Some(root(&ids)));
        }
    }
}
