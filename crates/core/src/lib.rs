//! The pure domain core of `dtenge`.
//!
//! Everything here is deterministic: no I/O, no clock, no randomness. Time arrives as
//! arguments (`now_ms`), key material arrives as seeds. That is what lets the whole network
//! run under a deterministic simulator and what makes every rule unit-testable.
//!
//! - [`money`]: amounts in tiyn (1/100 tenge), checked arithmetic only.
//! - [`party`]: a digital account as other participants name it.
//! - [`crypto`]: keys, signatures and addresses, tagged with an algorithm id (Ed25519 today).
//! - [`token`]: unspent outputs (tokens) and their identifiers (the notary's unspent hashes).
//! - [`tx`]: transactions, their canonical encoding and id.
//! - [`validate`]: the stateless validation rules every validating node applies.
//! - [`anchors`]: the network's trust anchors as a validator holds them.
//! - [`coins`]: coin selection with change.
//! - [`merkle`]: Merkle trees over transaction ids, for attesting a batch with one signature.
//! - [`certificate`]: the notary's signed commit certificate over a batch.
//! - [`calendar`]: civil dates and the operational-day calendar.
//! - [`error`]: the one error type, with stable codes.

pub mod anchors;
pub mod calendar;
pub mod certificate;
pub mod coins;
pub mod crypto;
pub mod error;
pub mod hash;
pub mod merkle;
pub mod money;
pub mod party;
pub mod token;
pub mod tx;
pub mod validate;

pub use error::{Error, ErrorCode, Result};
pub use money::Amount;
