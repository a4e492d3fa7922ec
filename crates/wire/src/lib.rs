//! `dtenge-wire`: the one encoding of dtenge.
//!
//! Everything that crosses from one role to another, and everything that is hashed, signed or
//! stored, is encoded here, by hand, in one explicit and versioned format ([`codec`] documents
//! it byte by byte). The roles (central, bank, notary, oracle, directory) exchange
//! [`message::Envelope`]s; a transport moves them (in one process, in the simulator, later
//! over mutually authenticated TLS), and only the transport changes between those.

#![forbid(unsafe_code)]

pub mod cards;
pub mod codec;
pub mod directory;
pub mod domain;
pub mod message;
pub mod oracle;
pub mod replica;

pub use cards::{CardClaim, CardClaimReply, CardMode, CardNotice, PurchaseRecord};
pub use codec::{Decode, DecodeError, Encode, Reader, Writer};
pub use directory::{ClaimMany, ClaimManyReply, Listed, Lookup, LookupReply, Whom};
pub use message::{
    Abandon, AccountKind, AttestPurpose, AttestReply, AttestRequest, Claim, ClaimReply, Decision, Deliver, DeliverAck,
    Envelope, Message, NotarizeReply, NotarizeRequest, Outcome, Payload, RedeemRefused, RedeemRequest, ReleaseOrder,
    RoleId, Verdict, FORMAT_VERSION,
};
pub use message::{PlanReply, PlanRequest, PlannedSpend, Spend, SpendKind, SPEND_PARTS_MAX, VAT_SUBJECT};
pub use oracle::{OracleAnswer, OracleAsk, Question};
pub use replica::{RaftCall, RaftRpc, ShardFinish, ShardFinished, ShardPrepare, ShardPrepared};
