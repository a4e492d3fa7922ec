//! The deterministic simulator: the roles (the notary, central, the directory, the oracle and
//! three banks) as separate simulated processes, each on its own simulated disk, exchanging
//! envelopes over a simulated network that loses, duplicates, delays and reorders them, while
//! any one of them crashes (between steps, or inside a commit: before the write, torn, after
//! the write) and restarts. Everything comes from one seed, so a failing seed replays
//! exactly: `dtenge sim --seed N --trace`. What runs and what is checked: [`roles`].
//!
//! The simulator of the one-process network went with that network's crate (`dtenge-network`,
//! deleted): the roles are what `dtenge up` runs.

pub mod roles;
