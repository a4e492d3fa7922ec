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
