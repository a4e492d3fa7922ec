//! `dtenge-transport`: how roles reach each other.
//!
//! A role sends [`Envelope`]s through a [`Transport`] and never learns how they travel. Three
//! implementations share the one trait, so a role's code is the same in each:
//!
//! - [`InProcess`]: bounded channels between roles of one process (`dtenge up`, the tests,
//!   the bench). Nothing is encoded: the value moves.
//! - [`SimNetwork`]: the deterministic simulator's network. Every envelope is encoded to bytes
//!   and decoded at delivery (so the simulator exercises the wire format), and a [`Faults`]
//!   policy, drawn from the simulation's seed, loses, duplicates and delays it (delays reorder).
//! - the network between machines (mutual TLS under the NBK's certificate authority) comes
//!   with the next step and implements the same trait.
//!
//! Delivery is never promised: a role's protocol retries what must arrive and makes every
//! message idempotent (see `dtenge-wire`'s message docs).

#![forbid(unsafe_code)]

mod in_process;
mod questions;
mod sim;

pub use in_process::{InProcess, Inbox, INBOX_ENVELOPES_MAX};
pub use questions::{Asked, Questions, TooManyQuestions};
pub use sim::{Fate, Faults, NoFaults, SimNetwork, SimStats, SIM_QUEUE_ENVELOPES_MAX};

pub use dtenge_wire::{Envelope, RoleId};
use thiserror::Error;

/// Why an envelope was not sent. The sender treats it as a loss: what must arrive is retried.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum SendError {
    #[error("no role {0} is reachable")]
    Unreachable(RoleId),
    #[error("the inbox of {0} is full")]
    Full(RoleId),
}

/// Sends envelopes to their receivers.
pub trait Transport: Send + Sync {
    /// Hand `envelope` to the network for `envelope.to`. Returns once it is on its way, not
    /// once it arrived.
    fn send(&self, envelope: Envelope) -> Result<(), SendError>;
}
