//! Messages between roles, and the envelope that carries them.
//!
//! An envelope on the wire is `FORMAT_VERSION` (one byte), the sender, the receiver, then the
//! message: a `u16` kind and the message's fields. A receiver refuses another format version
//! whole, and an unknown kind, with a [`DecodeError`]; nothing in a refused envelope is acted
//! on.
//!
//! The payment protocol (see `docs/ARCHITECTURE.md`, "Roles and their messages"):
//!
//! 1. the payer's bank checks and attests a batch and sends [`NotarizeRequest`];
//! 2. the notary verifies the attestations itself, spends each transaction atomically and
//!    idempotently, commits durably and answers [`NotarizeReply`]: one [`CommitCertificate`]
//!    over the committed transactions and an [`Outcome`] for each transaction;
//! 3. the payer's bank applies its side and sends each payee bank a [`Deliver`] with the
//!    transactions and their proofs; the payee applies from the certificate and answers
//!    [`DeliverAck`]. A delivery is resent until it is acknowledged and applied once per
//!    transaction id.
//!
//! Redemption (DT back to a bank's correspondent account): the bank sends central a
//! [`RedeemRequest`] (its `Redeem` transaction, signed and attested) until it has an answer;
//! central validates it, attests it with the NBK key and notarizes it itself, and answers with
//! the certified transaction on its numbered delivery stream to the bank ([`Deliver`]), or
//! with a final [`RedeemRefused`].
//!
//! Hold and release (programmed money, the oracle): the payer's bank builds the hold and asks
//! the oracle to attest it ([`AttestRequest`]); the oracle checks it against the event and
//! answers once per transaction id ([`AttestReply`]); the bank notarizes it and delivers the
//! certified transaction to the oracle on its numbered stream ([`Deliver`]). A release starts
//! at the oracle: a provider's confirmation becomes a [`ReleaseOrder`] to the holding bank,
//! which builds the release, asks for the attestation, notarizes it and delivers it to the
//! payee banks and the oracle. A transaction the notary refused is given up at the oracle with
//! [`Abandon`], so that the event can be held (or its release ordered) again.
//!
//! Programmed spends (markings, VAT, contracts; kinds 20 to 39): the payer's bank asks the
//! oracle for a plan ([`PlanRequest`], answered [`PlanReply`]: what the payer spends of which
//! kinds, and exactly what it pays), builds the transaction from it and asks for its
//! attestation ([`AttestPurpose::Spend`]); from there the spend goes as a hold (notarized
//! alone, delivered to the oracle and the payees' banks, or given up with [`Abandon`]).
//! Cards (kinds 40-59, `crate::cards`): a bank claims a card number at the directory
//! (`CardClaim`, `CardClaimReply`); purchases, refunds and withdrawals tell the other bank and
//! central what they owe on the numbered delivery streams (`Payload::Card`).

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use dtenge_core::certificate::{CommitCertificate, CommitProof, CompactTx};
use dtenge_core::crypto::{Address, Signature};
use dtenge_core::merkle::LEAVES_MAX;
use dtenge_core::party::Party;
use dtenge_core::token::{Output, Policy, TxId};
use dtenge_core::tx::{Attestation, Transaction, TX_OUTPUTS_MAX};
use dtenge_core::Amount;

/// The version of every encoding in this crate. A change to any encoding that an older reader
/// would misread takes the next number.
pub const FORMAT_VERSION: u8 = 1;

/// Most transactions in one notarize request or one delivery: a certificate covers at most a
/// Merkle tree's leaves.
pub const BATCH_TXS_MAX: usize = LEAVES_MAX;

/// Most bytes of a bank or node id.
pub const ROLE_ID_BYTES_MAX: usize = 64;

/// A role of the network: where a message comes from and where it goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoleId {
    /// The NBK: its node, the ABS, the NBK registry, the operator's controls.
    Central,
    Notary,
    Oracle,
    /// The ID center, as a read model of who holds which account where.
    Directory,
    /// A bank's node, or the Treasury's, by its id.
    Bank(String),
    /// One replica of the replicated notary, by its number (1 to
    /// [`NOTARY_REPLICAS_MAX`]). The replicas talk to each other under these names (Raft's
    /// messages, a request handed to the leader); to everyone else they answer as
    /// [`RoleId::Notary`], the one notary the network knows.
    NotaryReplica(u8),
    /// A replica of one shard of a sharded notary: the shard's number (1 to
    /// [`NOTARY_SHARDS_MAX`]) and the replica's within it (1 to [`NOTARY_REPLICAS_MAX`]). A
    /// shard holds the unspent tokens of one range of token ids and talks only to the
    /// notary's replicas (its coordinator) and to its own.
    NotaryShard {
        shard: u8,
        replica: u8,
    },
}

/// Most shards of one notary.
pub const NOTARY_SHARDS_MAX: u8 = 64;

/// Most replicas of one notary: a Raft group of up to seven voters (more adds latency and no
/// safety that matters here).
pub const NOTARY_REPLICAS_MAX: u8 = 7;

impl Encode for RoleId {
    fn encode(&self, w: &mut Writer) {
        match self {
            RoleId::Central => w.u8(1),
            RoleId::Notary => w.u8(2),
            RoleId::Oracle => w.u8(3),
            RoleId::Directory => w.u8(4),
            RoleId::Bank(id) => {
                w.u8(5);
                w.str(id);
            }
            RoleId::NotaryReplica(n) => {
                w.u8(6);
                w.u8(*n);
            }
            RoleId::NotaryShard { shard, replica } => {
                w.u8(7);
                w.u8(*shard);
                w.u8(*replica);
            }
        }
    }
}

impl Decode for RoleId {
    const ENCODED_BYTES_MIN: usize = 1;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("role")? {
            1 => Ok(RoleId::Central),
            2 => Ok(RoleId::Notary),
            3 => Ok(RoleId::Oracle),
            4 => Ok(RoleId::Directory),
            5 => {
                let id = r.string("bank id")?;
                if id.is_empty() || id.len() > ROLE_ID_BYTES_MAX {
                    return Err(DecodeError::Invalid { what: "bank id", reason: format!("{} bytes", id.len()) });
                }
                Ok(RoleId::Bank(id))
            }
            6 => match r.u8("notary replica")? {
                n @ 1..=NOTARY_REPLICAS_MAX => Ok(RoleId::NotaryReplica(n)),
                n => Err(DecodeError::Invalid {
                    what: "notary replica",
                    reason: format!("{n} is not 1 to {NOTARY_REPLICAS_MAX}"),
                }),
            },
            7 => {
                let (shard, replica) = (r.u8("notary shard")?, r.u8("notary shard replica")?);
                if !(1..=NOTARY_SHARDS_MAX).contains(&shard) || !(1..=NOTARY_REPLICAS_MAX).contains(&replica) {
                    return Err(DecodeError::Invalid {
                        what: "notary shard",
                        reason: format!(
                            "shard {shard} replica {replica}: shards 1 to {NOTARY_SHARDS_MAX}, replicas 1 to {NOTARY_REPLICAS_MAX}"
                        ),
                    });
                }
                Ok(RoleId::NotaryShard { shard, replica })
            }
            tag => Err(DecodeError::UnknownTag { what: "role", tag: u64::from(tag) }),
        }
    }
}

impl std::fmt::Display for RoleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RoleId::Central => f.write_str("central"),
            RoleId::Notary => f.write_str("notary"),
            RoleId::Oracle => f.write_str("oracle"),
            RoleId::Directory => f.write_str("directory"),
            RoleId::Bank(id) => write!(f, "bank:{id}"),
            RoleId::NotaryReplica(n) => write!(f, "notary-replica:{n}"),
            RoleId::NotaryShard { shard, replica } => write!(f, "notary-shard:{shard}:{replica}"),
        }
    }
}

/// The inverse of `Display`: `central`, `notary`, `oracle`, `directory` or `bank:<id>`, as
/// configurations and the certificate authority's command line name a participant.
impl std::str::FromStr for RoleId {
    type Err = DecodeError;

    fn from_str(text: &str) -> Result<RoleId, DecodeError> {
        match text {
            "central" => Ok(RoleId::Central),
            "notary" => Ok(RoleId::Notary),
            "oracle" => Ok(RoleId::Oracle),
            "directory" => Ok(RoleId::Directory),
            _ => {
                if let Some(id) = text.strip_prefix("bank:") {
                    if !id.is_empty() && id.len() <= ROLE_ID_BYTES_MAX {
                        return Ok(RoleId::Bank(id.to_string()));
                    }
                }
                if let Some(n) = text.strip_prefix("notary-replica:").and_then(|n| n.parse::<u8>().ok()) {
                    if (1..=NOTARY_REPLICAS_MAX).contains(&n) {
                        return Ok(RoleId::NotaryReplica(n));
                    }
                }
                if let Some((shard, replica)) = text.strip_prefix("notary-shard:").and_then(|t| t.split_once(':')) {
                    if let (Ok(shard), Ok(replica)) = (shard.parse::<u8>(), replica.parse::<u8>()) {
                        if (1..=NOTARY_SHARDS_MAX).contains(&shard) && (1..=NOTARY_REPLICAS_MAX).contains(&replica) {
                            return Ok(RoleId::NotaryShard { shard, replica });
                        }
                    }
                }
                Err(DecodeError::Invalid {
                    what: "role",
                    reason: format!(
                        "{text:?} is none of central, notary, oracle, directory, bank:<id>, notary-replica:<1-{NOTARY_REPLICAS_MAX}>"
                    ),
                })
            }
        }
    }
}

/// "Spend these transactions": a batch of compact transactions, numbered and signed once by
/// its sender (`dtenge_core::certificate::notarize_message` over the Merkle root of their
/// compact hashes). A retry sends the same transactions again (under the same or a new
/// number); the notary answers each transaction by its id, so a retry never spends twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotarizeRequest {
    /// The sender's number for this batch, echoed in the reply.
    pub batch: u64,
    pub txs: Vec<CompactTx>,
    /// The sender's node key's signature.
    pub signature: Signature,
}

/// What became of one transaction of a [`NotarizeRequest`], in request order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Committed (now, or before): the reply's certificate covers it with this proof.
    Committed(CommitProof),
    /// Refused: nothing was spent. `REQUEST_IN_PROGRESS` means the same transaction is being
    /// committed by another request: ask again.
    Refused(dtenge_core::Error),
}

/// The notary's answer to a [`NotarizeRequest`], sent after its durable commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotarizeReply {
    pub batch: u64,
    /// Covers every transaction whose outcome is `Committed`; `None` when none is.
    pub certificate: Option<CommitCertificate>,
    pub outcomes: Vec<Outcome>,
}

/// What must reach another role exactly once, in order. Deliveries from one sender to one
/// receiver are numbered from 1 (`seq`) and applied in that order, each once: the receiver
/// keeps the last number it applied, acknowledges anything at or below it again without
/// applying it, and drops anything beyond the next (the sender resends in order until
/// acknowledged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deliver {
    pub seq: u64,
    pub payload: Payload,
}

/// What a delivery carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// Committed transactions for their payee bank (or the NBK), with the certificate that
    /// proves them.
    Certified { certificate: CommitCertificate, txs: Vec<(Transaction, CommitProof)> },
    /// An operator's decision, from central to every role it concerns.
    Decision(Decision),
    /// A card flow's notice (`crate::cards`): payload tag 40.
    Card(crate::cards::CardNotice),
}

/// The NBK operator's decisions that other roles enforce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Block a bank (or the Treasury), or lift its block: from the moment a role applies it,
    /// that role starts nothing new for the bank (the notary spends nothing it sends). What
    /// was certified before still completes.
    Blocked { bank: String, blocked: bool, reason: String },
}

/// The receiver applied (durably) every delivery from this sender up to `seq`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliverAck {
    pub seq: u64,
}

/// What kind of client an account is for, as the ID center lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccountKind {
    Individual,
    LegalEntity,
    GovernmentAgency,
    /// A bank's (or the Treasury's) own account.
    Institution,
}

/// Most bytes of a client id, a display name or a phone number in a claim.
pub const CLAIM_FIELD_BYTES_MAX: usize = 256;

/// A bank asks the ID center to list a new account: its client, its address, its phone. The
/// ID center refuses an address or a client already listed elsewhere and a phone that belongs
/// to another client; the same claim again is answered as the first time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// IIN or BIN (`own` for the bank's own account).
    pub client_id: String,
    pub address: Address,
    pub kind: AccountKind,
    /// The name a payer is shown before paying (shortened: personal data stays at the bank).
    pub display_name: String,
    pub phone: Option<String>,
}

/// The ID center's answer to a [`Claim`], by the claimed address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimReply {
    pub address: Address,
    /// `None`: listed (now or before).
    pub refused: Option<dtenge_core::Error>,
}

/// A bank asks central (the NBK) to redeem DT from its own account into its correspondent
/// account (SPEC sub-scenario 13). `tx` is a `Redeem` the bank built from its own account's
/// tokens, its change (if any) back to that account, signed by the account's key and attested
/// by the bank's node key; central adds the NBK's attestation. Sent again until central
/// answers; central answers each transaction id once: a certified delivery when it is
/// redeemed, or [`RedeemRefused`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedeemRequest {
    pub tx: Transaction,
}

/// Central refuses a redemption, for good: nothing was spent or posted, and a copy of the same
/// request arriving later gets the same answer (so a bank that released its reservation never
/// sees the redemption happen after all).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedeemRefused {
    pub tx_id: TxId,
    pub refused: dtenge_core::Error,
}

/// Most bytes of an oracle event id.
pub const EVENT_ID_BYTES_MAX: usize = 64;

/// What a bank asks the oracle to attest a transaction as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttestPurpose {
    /// A hold of the event's amount on its sender's account; the client named `payee` as the
    /// one it holds for (the oracle refuses an event that does not pay it).
    Hold { payee: Address },
    /// The release the oracle ordered ([`ReleaseOrder`]), built by the holding bank.
    Release,
    /// A programmed spend (marking, VAT, contract) the bank built from the oracle's plan
    /// ([`PlanReply`]); the request's `event_id` is the spend's [`Spend::subject`].
    Spend(Spend),
}

/// Most parts (kinds of token) of one planned spend.
pub const SPEND_PARTS_MAX: usize = 4;

/// What a programmed spend does, as the payer's bank asks the oracle for it (SPEC §5.2,
/// §5.3). The oracle plans it from its registry ([`PlanRequest`]) and checks the transaction
/// the bank built against the same plan ([`AttestPurpose::Spend`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpendKind {
    /// Marked DT one level down marking `marking_id` (standard DT of its initiator to level 1).
    MarkedTransfer { marking_id: String, to: Party, amount: Amount },
    /// E-invoice `invoice_id` paid in full (`amount`: net and VAT); `vat_available` is the
    /// payer's VAT-marked DT its bank may spend for the VAT part.
    InvoicePayment { invoice_id: String, amount: Amount, vat_available: Amount },
    /// VAT-marked DT paid to the tax authority's account.
    VatPayment { amount: Amount },
    /// Paid under contract `contract` by its sender.
    ContractPayment { contract: String, amount: Amount },
    /// DT of contract `contract` converted to bank money: paid to `bank_account`, the
    /// holder's bank's own account, which credits the holder's bank money.
    ContractWithdrawal { contract: String, amount: Amount, bank_account: Party },
}

/// A programmed spend of `payer` (a client of the asking bank).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spend {
    pub payer: Party,
    pub kind: SpendKind,
}

impl Spend {
    /// What the spend is under: the marking, the invoice or the contract (`VAT` for a VAT
    /// payment). The oracle attests one spend per subject at a time.
    pub fn subject(&self) -> &str {
        match &self.kind {
            SpendKind::MarkedTransfer { marking_id, .. } => marking_id,
            SpendKind::InvoicePayment { invoice_id, .. } => invoice_id,
            SpendKind::VatPayment { .. } => VAT_SUBJECT,
            SpendKind::ContractPayment { contract, .. } | SpendKind::ContractWithdrawal { contract, .. } => contract,
        }
    }

    /// What the payer pays in all.
    pub fn amount(&self) -> Amount {
        match &self.kind {
            SpendKind::MarkedTransfer { amount, .. }
            | SpendKind::InvoicePayment { amount, .. }
            | SpendKind::VatPayment { amount }
            | SpendKind::ContractPayment { amount, .. }
            | SpendKind::ContractWithdrawal { amount, .. } => *amount,
        }
    }
}

/// The subject of every VAT payment.
pub const VAT_SUBJECT: &str = "VAT";

/// The oracle's plan of a spend: how much of which kinds of the payer's tokens it spends
/// (distinct policies), paying exactly `outputs` in this order before the change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedSpend {
    pub parts: Vec<(Policy, Amount)>,
    pub outputs: Vec<Output>,
}

/// A bank asks the oracle to plan a spend. Nothing is decided or written: the bank builds
/// the transaction from the answer and asks [`AttestRequest`] for exactly that transaction.
/// Sent again until answered; `request` is the bank's number for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanRequest {
    pub request: u64,
    pub spend: Spend,
}

/// The oracle's plan, or why it refuses the spend now. Echoes the request (number and
/// spend), so a late answer is never taken for another request's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanReply {
    pub request: u64,
    pub spend: Spend,
    pub plan: std::result::Result<PlannedSpend, dtenge_core::Error>,
}

/// A bank asks the oracle to attest `tx` for `event_id`. Sent again until answered; the
/// oracle decides each transaction id once, for good, and answers every copy the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestRequest {
    pub event_id: String,
    pub purpose: AttestPurpose,
    pub tx: Transaction,
}

/// The oracle's decision on one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It does what the oracle's registry calls for: the oracle's attestation to add.
    Attested(Attestation),
    /// It does not, or the event does not allow it now: final for this transaction id.
    Refused(dtenge_core::Error),
    /// The bank gave it up ([`Abandon`]): it will never be attested.
    Abandoned,
}

/// The oracle's answer to an [`AttestRequest`] or an [`Abandon`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestReply {
    pub event_id: String,
    pub tx_id: TxId,
    pub verdict: Verdict,
}

/// The oracle orders the bank holding `event_id`'s funds to release them: spend every token
/// held for the event on `sender`'s account (`held` in all) into exactly `outputs`, with
/// `attempt` as the transaction's nonce (a release the notary refused is ordered again under
/// the next attempt, so that its transaction is a new one). Sent again until the bank asks for
/// the attestation of that release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseOrder {
    pub event_id: String,
    pub attempt: u64,
    pub sender: Address,
    pub held: Amount,
    pub outputs: Vec<Output>,
}

/// The bank gives up a transaction the oracle attested: the notary refused it for good
/// (`refused`), so it will never commit. Sent again until the oracle answers
/// [`Verdict::Abandoned`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Abandon {
    pub event_id: String,
    pub tx_id: TxId,
    pub refused: dtenge_core::Error,
}

/// Every message between roles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    NotarizeRequest(NotarizeRequest),
    NotarizeReply(NotarizeReply),
    Deliver(Deliver),
    DeliverAck(DeliverAck),
    Claim(Claim),
    ClaimReply(ClaimReply),
    RedeemRequest(RedeemRequest),
    RedeemRefused(RedeemRefused),
    AttestRequest(AttestRequest),
    AttestReply(AttestReply),
    ReleaseOrder(ReleaseOrder),
    Abandon(Abandon),
    PlanRequest(PlanRequest),
    PlanReply(PlanReply),
    /// A bank's question to the oracle about holding, and its answer (`crate::oracle`).
    OracleAsk(crate::oracle::OracleAsk),
    OracleAnswer(crate::oracle::OracleAnswer),
    // Cards (`crate::cards`): kinds 40-59.
    CardClaim(crate::cards::CardClaim),
    CardClaimReply(crate::cards::CardClaimReply),
    // The directory across processes (`crate::directory`): kinds 60-79.
    ClaimMany(crate::directory::ClaimMany),
    ClaimManyReply(crate::directory::ClaimManyReply),
    Lookup(crate::directory::Lookup),
    LookupReply(crate::directory::LookupReply),
    // Between the notary's replicas (`crate::replica`): kinds 80-99.
    RaftRequest(crate::replica::RaftRpc),
    RaftReply(crate::replica::RaftRpc),
    /// A participant's envelope, handed by a replica to the leader.
    Forwarded(Box<Envelope>),
    /// Two-phase commit between the notary (the coordinator) and its shards (kinds 83-88).
    ShardPrepare(crate::replica::ShardPrepare),
    ShardPrepared(crate::replica::ShardPrepared),
    ShardFinish(crate::replica::ShardFinish),
    ShardFinished(crate::replica::ShardFinished),
    /// The coordinator's own log: the shards' answers decided, and a transaction done.
    ShardDecide(crate::replica::ShardPrepared),
    ShardDone(crate::replica::ShardFinished),
}

impl Message {
    /// The message's kind on the wire. Numbers are never reused.
    pub fn kind(&self) -> u16 {
        match self {
            Message::NotarizeRequest(_) => 1,
            Message::NotarizeReply(_) => 2,
            Message::Deliver(_) => 3,
            Message::DeliverAck(_) => 4,
            Message::Claim(_) => 5,
            Message::ClaimReply(_) => 6,
            Message::RedeemRequest(_) => 7,
            Message::RedeemRefused(_) => 8,
            Message::AttestRequest(_) => 9,
            Message::AttestReply(_) => 10,
            Message::ReleaseOrder(_) => 11,
            Message::Abandon(_) => 12,
            // Programmed spends: kinds 20 to 39.
            Message::PlanRequest(_) => 20,
            Message::PlanReply(_) => 21,
            Message::OracleAsk(_) => 22,
            Message::OracleAnswer(_) => 23,
            // Cards: kinds 40-59.
            Message::CardClaim(_) => 40,
            Message::CardClaimReply(_) => 41,
            // The directory across processes: kinds 60-79.
            Message::ClaimMany(_) => 60,
            Message::ClaimManyReply(_) => 61,
            Message::Lookup(_) => 62,
            Message::LookupReply(_) => 63,
            // Between the notary's replicas: kinds 80-99.
            Message::RaftRequest(_) => 80,
            Message::RaftReply(_) => 81,
            Message::Forwarded(_) => 82,
            Message::ShardPrepare(_) => 83,
            Message::ShardPrepared(_) => 84,
            Message::ShardFinish(_) => 85,
            Message::ShardFinished(_) => 86,
            Message::ShardDecide(_) => 87,
            Message::ShardDone(_) => 88,
        }
    }
}

/// A message with its sender and receiver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub from: RoleId,
    pub to: RoleId,
    pub message: Message,
}

impl Encode for Outcome {
    fn encode(&self, w: &mut Writer) {
        match self {
            Outcome::Committed(proof) => {
                w.u8(1);
                w.put(proof);
            }
            Outcome::Refused(error) => {
                w.u8(2);
                w.put(error);
            }
        }
    }
}

impl Decode for Outcome {
    const ENCODED_BYTES_MIN: usize = 1 + 5;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("outcome")? {
            1 => Ok(Outcome::Committed(r.get()?)),
            2 => Ok(Outcome::Refused(r.get()?)),
            tag => Err(DecodeError::UnknownTag { what: "outcome", tag: u64::from(tag) }),
        }
    }
}

impl Encode for Message {
    fn encode(&self, w: &mut Writer) {
        w.u16(self.kind());
        match self {
            Message::NotarizeRequest(m) => {
                w.u64(m.batch);
                w.seq(&m.txs);
                w.put(&m.signature);
            }
            Message::NotarizeReply(m) => {
                w.u64(m.batch);
                w.put(&m.certificate);
                w.seq(&m.outcomes);
            }
            Message::Deliver(m) => {
                w.u64(m.seq);
                match &m.payload {
                    Payload::Certified { certificate, txs } => {
                        w.u8(1);
                        w.put(certificate);
                        w.seq(txs);
                    }
                    Payload::Decision(Decision::Blocked { bank, blocked, reason }) => {
                        w.u8(2);
                        w.u8(1);
                        w.str(bank);
                        w.bool(*blocked);
                        w.str(reason);
                    }
                    Payload::Card(notice) => {
                        w.u8(40);
                        w.put(notice);
                    }
                }
            }
            Message::DeliverAck(m) => w.u64(m.seq),
            Message::Claim(m) => w.put(m),
            Message::ClaimReply(m) => {
                w.put(&m.address);
                w.put(&m.refused);
            }
            Message::RedeemRequest(m) => w.put(&m.tx),
            Message::RedeemRefused(m) => {
                w.put(&m.tx_id);
                w.put(&m.refused);
            }
            Message::AttestRequest(m) => {
                w.str(&m.event_id);
                match &m.purpose {
                    AttestPurpose::Hold { payee } => {
                        w.u8(1);
                        w.put(payee);
                    }
                    AttestPurpose::Release => w.u8(2),
                    AttestPurpose::Spend(spend) => {
                        w.u8(3);
                        w.put(spend);
                    }
                }
                w.put(&m.tx);
            }
            Message::AttestReply(m) => {
                w.str(&m.event_id);
                w.put(&m.tx_id);
                match &m.verdict {
                    Verdict::Attested(attestation) => {
                        w.u8(1);
                        w.put(attestation);
                    }
                    Verdict::Refused(error) => {
                        w.u8(2);
                        w.put(error);
                    }
                    Verdict::Abandoned => w.u8(3),
                }
            }
            Message::ReleaseOrder(m) => {
                w.str(&m.event_id);
                w.u64(m.attempt);
                w.put(&m.sender);
                w.put(&m.held);
                w.seq(&m.outputs);
            }
            Message::Abandon(m) => {
                w.str(&m.event_id);
                w.put(&m.tx_id);
                w.put(&m.refused);
            }
            Message::PlanRequest(m) => {
                w.u64(m.request);
                w.put(&m.spend);
            }
            Message::PlanReply(m) => {
                w.u64(m.request);
                w.put(&m.spend);
                match &m.plan {
                    Ok(plan) => {
                        w.u8(1);
                        w.seq(&plan.parts);
                        w.seq(&plan.outputs);
                    }
                    Err(error) => {
                        w.u8(2);
                        w.put(error);
                    }
                }
            }
            Message::CardClaim(m) => w.put(m),
            Message::CardClaimReply(m) => w.put(m),
            Message::ClaimMany(m) => w.put(m),
            Message::ClaimManyReply(m) => w.put(m),
            Message::Lookup(m) => w.put(m),
            Message::OracleAsk(m) => w.put(m),
            Message::OracleAnswer(m) => w.put(m),
            Message::LookupReply(m) => w.put(m),
            Message::RaftRequest(m) | Message::RaftReply(m) => w.put(m),
            Message::Forwarded(envelope) => w.put(&**envelope),
            Message::ShardPrepare(m) => w.put(m),
            Message::ShardPrepared(m) | Message::ShardDecide(m) => w.put(m),
            Message::ShardFinish(m) => w.put(m),
            Message::ShardFinished(m) | Message::ShardDone(m) => w.put(m),
        }
    }
}

impl Decode for Message {
    const ENCODED_BYTES_MIN: usize = 2;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u16("message kind")? {
            1 => Ok(Message::NotarizeRequest(NotarizeRequest {
                batch: r.u64("batch")?,
                txs: r.seq("compact transactions", BATCH_TXS_MAX)?,
                signature: r.get()?,
            })),
            2 => Ok(Message::NotarizeReply(NotarizeReply {
                batch: r.u64("batch")?,
                certificate: r.get()?,
                outcomes: r.seq("outcomes", BATCH_TXS_MAX)?,
            })),
            3 => {
                let seq = r.u64("delivery seq")?;
                let payload = match r.u8("delivery payload")? {
                    1 => Payload::Certified { certificate: r.get()?, txs: r.seq("deliveries", BATCH_TXS_MAX)? },
                    2 => match r.u8("decision")? {
                        1 => Payload::Decision(Decision::Blocked {
                            bank: bounded_string(r, "bank")?,
                            blocked: r.bool("blocked")?,
                            reason: bounded_string(r, "reason")?,
                        }),
                        tag => return Err(DecodeError::UnknownTag { what: "decision", tag: u64::from(tag) }),
                    },
                    40 => Payload::Card(r.get()?),
                    tag => return Err(DecodeError::UnknownTag { what: "delivery payload", tag: u64::from(tag) }),
                };
                Ok(Message::Deliver(Deliver { seq, payload }))
            }
            4 => Ok(Message::DeliverAck(DeliverAck { seq: r.u64("delivery seq")? })),
            5 => Ok(Message::Claim(r.get()?)),
            6 => Ok(Message::ClaimReply(ClaimReply { address: r.get()?, refused: r.get()? })),
            7 => Ok(Message::RedeemRequest(RedeemRequest { tx: r.get()? })),
            8 => Ok(Message::RedeemRefused(RedeemRefused { tx_id: r.get()?, refused: r.get()? })),
            9 => Ok(Message::AttestRequest(AttestRequest {
                event_id: event_id(r)?,
                purpose: match r.u8("attest purpose")? {
                    1 => AttestPurpose::Hold { payee: r.get()? },
                    2 => AttestPurpose::Release,
                    3 => AttestPurpose::Spend(r.get()?),
                    tag => return Err(DecodeError::UnknownTag { what: "attest purpose", tag: u64::from(tag) }),
                },
                tx: r.get()?,
            })),
            10 => Ok(Message::AttestReply(AttestReply {
                event_id: event_id(r)?,
                tx_id: r.get()?,
                verdict: match r.u8("verdict")? {
                    1 => Verdict::Attested(r.get()?),
                    2 => Verdict::Refused(r.get()?),
                    3 => Verdict::Abandoned,
                    tag => return Err(DecodeError::UnknownTag { what: "verdict", tag: u64::from(tag) }),
                },
            })),
            11 => Ok(Message::ReleaseOrder(ReleaseOrder {
                event_id: event_id(r)?,
                attempt: r.u64("attempt")?,
                sender: r.get()?,
                held: r.get()?,
                outputs: r.seq("release outputs", TX_OUTPUTS_MAX)?,
            })),
            12 => Ok(Message::Abandon(Abandon { event_id: event_id(r)?, tx_id: r.get()?, refused: r.get()? })),
            20 => Ok(Message::PlanRequest(PlanRequest { request: r.u64("plan request")?, spend: r.get()? })),
            21 => Ok(Message::PlanReply(PlanReply {
                request: r.u64("plan request")?,
                spend: r.get()?,
                plan: match r.u8("plan")? {
                    1 => Ok(PlannedSpend {
                        parts: r.seq("spend parts", SPEND_PARTS_MAX)?,
                        outputs: r.seq("spend outputs", TX_OUTPUTS_MAX)?,
                    }),
                    2 => Err(r.get()?),
                    tag => return Err(DecodeError::UnknownTag { what: "plan", tag: u64::from(tag) }),
                },
            })),
            40 => Ok(Message::CardClaim(r.get()?)),
            41 => Ok(Message::CardClaimReply(r.get()?)),
            60 => Ok(Message::ClaimMany(r.get()?)),
            61 => Ok(Message::ClaimManyReply(r.get()?)),
            62 => Ok(Message::Lookup(r.get()?)),
            22 => Ok(Message::OracleAsk(r.get()?)),
            23 => Ok(Message::OracleAnswer(r.get()?)),
            63 => Ok(Message::LookupReply(r.get()?)),
            80 => Ok(Message::RaftRequest(r.get()?)),
            81 => Ok(Message::RaftReply(r.get()?)),
            82 => {
                let envelope: Envelope = r.get()?;
                // One level only: a replica forwards what a participant sent, never a forward
                // (and nesting must not be a way to exhaust the decoder's stack).
                if matches!(envelope.message, Message::Forwarded(_)) {
                    return Err(DecodeError::Invalid {
                        what: "forwarded envelope",
                        reason: "forwards a forward".into(),
                    });
                }
                Ok(Message::Forwarded(Box::new(envelope)))
            }
            83 => Ok(Message::ShardPrepare(r.get()?)),
            84 => Ok(Message::ShardPrepared(r.get()?)),
            85 => Ok(Message::ShardFinish(r.get()?)),
            86 => Ok(Message::ShardFinished(r.get()?)),
            87 => Ok(Message::ShardDecide(r.get()?)),
            88 => Ok(Message::ShardDone(r.get()?)),
            kind => Err(DecodeError::UnknownTag { what: "message kind", tag: u64::from(kind) }),
        }
    }
}

/// An oracle event id: 1 to [`EVENT_ID_BYTES_MAX`] bytes.
fn event_id(r: &mut Reader<'_>) -> Result<String, DecodeError> {
    let id = r.string("event id")?;
    if id.is_empty() || id.len() > EVENT_ID_BYTES_MAX {
        return Err(DecodeError::Invalid { what: "event id", reason: format!("{} bytes", id.len()) });
    }
    Ok(id)
}

pub(crate) fn bounded_string(r: &mut Reader<'_>, what: &'static str) -> Result<String, DecodeError> {
    let text = r.string(what)?;
    if text.len() > CLAIM_FIELD_BYTES_MAX {
        return Err(DecodeError::Invalid { what, reason: format!("{} bytes", text.len()) });
    }
    Ok(text)
}

impl Encode for Spend {
    fn encode(&self, w: &mut Writer) {
        w.put(&self.payer);
        match &self.kind {
            SpendKind::MarkedTransfer { marking_id, to, amount } => {
                w.u8(1);
                w.str(marking_id);
                w.put(to);
                w.put(amount);
            }
            SpendKind::InvoicePayment { invoice_id, amount, vat_available } => {
                w.u8(2);
                w.str(invoice_id);
                w.put(amount);
                w.put(vat_available);
            }
            SpendKind::VatPayment { amount } => {
                w.u8(3);
                w.put(amount);
            }
            SpendKind::ContractPayment { contract, amount } => {
                w.u8(4);
                w.str(contract);
                w.put(amount);
            }
            SpendKind::ContractWithdrawal { contract, amount, bank_account } => {
                w.u8(5);
                w.str(contract);
                w.put(amount);
                w.put(bank_account);
            }
        }
    }
}

impl Decode for Spend {
    const ENCODED_BYTES_MIN: usize = Party::ENCODED_BYTES_MIN + 1 + 8;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let payer = r.get()?;
        let kind = match r.u8("spend kind")? {
            1 => SpendKind::MarkedTransfer { marking_id: event_id(r)?, to: r.get()?, amount: r.get()? },
            2 => SpendKind::InvoicePayment { invoice_id: event_id(r)?, amount: r.get()?, vat_available: r.get()? },
            3 => SpendKind::VatPayment { amount: r.get()? },
            4 => SpendKind::ContractPayment { contract: event_id(r)?, amount: r.get()? },
            5 => SpendKind::ContractWithdrawal { contract: event_id(r)?, amount: r.get()?, bank_account: r.get()? },
            tag => return Err(DecodeError::UnknownTag { what: "spend kind", tag: u64::from(tag) }),
        };
        Ok(Spend { payer, kind })
    }
}

impl Encode for Claim {
    fn encode(&self, w: &mut Writer) {
        w.str(&self.client_id);
        w.put(&self.address);
        w.put(&self.kind);
        w.str(&self.display_name);
        w.put(&self.phone);
    }
}

impl Decode for Claim {
    const ENCODED_BYTES_MIN: usize = 4 + 32 + 1 + 4 + 1;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Claim {
            client_id: bounded_string(r, "client id")?,
            address: r.get()?,
            kind: r.get()?,
            display_name: bounded_string(r, "display name")?,
            phone: match r.u8("phone")? {
                0 => None,
                1 => Some(bounded_string(r, "phone")?),
                tag => return Err(DecodeError::UnknownTag { what: "phone", tag: u64::from(tag) }),
            },
        })
    }
}

impl Encode for AccountKind {
    fn encode(&self, w: &mut Writer) {
        w.u8(match self {
            AccountKind::Individual => 1,
            AccountKind::LegalEntity => 2,
            AccountKind::GovernmentAgency => 3,
            AccountKind::Institution => 4,
        });
    }
}

impl Decode for AccountKind {
    const ENCODED_BYTES_MIN: usize = 1;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("account kind")? {
            1 => Ok(AccountKind::Individual),
            2 => Ok(AccountKind::LegalEntity),
            3 => Ok(AccountKind::GovernmentAgency),
            4 => Ok(AccountKind::Institution),
            tag => Err(DecodeError::UnknownTag { what: "account kind", tag: u64::from(tag) }),
        }
    }
}

impl Encode for Envelope {
    fn encode(&self, w: &mut Writer) {
        w.u8(FORMAT_VERSION);
        w.put(&self.from);
        w.put(&self.to);
        w.put(&self.message);
    }
}

impl Decode for Envelope {
    const ENCODED_BYTES_MIN: usize = 1 + 1 + 1 + 2;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.u8("format version")?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::UnknownVersion { found: version, expected: FORMAT_VERSION });
        }
        Ok(Envelope { from: r.get()?, to: r.get()?, message: r.get()? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dtenge_core::crypto::{Hash32, SecretKey};
    use proptest::prelude::*;

    fn envelope(txs: Vec<Transaction>) -> Vec<Envelope> {
        let notary = SecretKey::from_seed([3; 32]);
        let compact: Vec<CompactTx> =
            txs.iter().map(|tx| CompactTx::of(&dtenge_core::validate::TxIds::of(tx).unwrap())).collect();
        let leaves: Vec<Hash32> = compact.iter().map(CompactTx::hash).collect();
        let bank = RoleId::Bank("steppe".into());
        let signature = SecretKey::from_seed([4; 32])
            .sign(&dtenge_core::certificate::notarize_message(9, &dtenge_core::merkle::root(&leaves)).0);
        let mut out = vec![Envelope {
            from: bank.clone(),
            to: RoleId::Notary,
            message: Message::NotarizeRequest(NotarizeRequest { batch: 9, txs: compact, signature }),
        }];
        if !txs.is_empty() {
            let (certificate, proofs) = CommitCertificate::sign(&notary, 5, &leaves);
            let mut outcomes: Vec<Outcome> = proofs.iter().cloned().map(Outcome::Committed).collect();
            outcomes.push(Outcome::Refused(dtenge_core::Error::new(dtenge_core::ErrorCode::DoubleSpend, "spent")));
            out.push(Envelope {
                from: RoleId::Notary,
                to: bank.clone(),
                message: Message::NotarizeReply(NotarizeReply {
                    batch: 9,
                    certificate: Some(certificate.clone()),
                    outcomes,
                }),
            });
            out.push(Envelope {
                from: bank.clone(),
                to: RoleId::Bank("sapa".into()),
                message: Message::Deliver(Deliver {
                    seq: 1,
                    payload: Payload::Certified { certificate, txs: txs.iter().cloned().zip(proofs).collect() },
                }),
            });
        }
        out.push(Envelope {
            from: RoleId::Bank("sapa".into()),
            to: bank.clone(),
            message: Message::DeliverAck(DeliverAck { seq: 5 }),
        });
        out.push(Envelope {
            from: RoleId::Central,
            to: RoleId::Notary,
            message: Message::Deliver(Deliver {
                seq: 3,
                payload: Payload::Decision(Decision::Blocked {
                    bank: "tulpar".into(),
                    blocked: true,
                    reason: "licence revoked".into(),
                }),
            }),
        });
        let address = SecretKey::from_seed([6; 32]).address();
        out.push(Envelope {
            from: bank.clone(),
            to: RoleId::Directory,
            message: Message::Claim(Claim {
                client_id: "900101300123".into(),
                address,
                kind: AccountKind::Individual,
                display_name: "Aigerim S.".into(),
                phone: Some("+77011234567".into()),
            }),
        });
        out.push(Envelope {
            from: RoleId::Directory,
            to: bank.clone(),
            message: Message::ClaimReply(ClaimReply {
                address,
                refused: Some(dtenge_core::Error::new(dtenge_core::ErrorCode::DuplicateAccount, "taken")),
            }),
        });
        for tx in &txs {
            out.push(Envelope {
                from: bank.clone(),
                to: RoleId::Central,
                message: Message::RedeemRequest(RedeemRequest { tx: tx.clone() }),
            });
            out.push(Envelope {
                from: RoleId::Central,
                to: bank.clone(),
                message: Message::RedeemRefused(RedeemRefused {
                    tx_id: tx.id(),
                    refused: dtenge_core::Error::new(dtenge_core::ErrorCode::BankBlocked, "blocked"),
                }),
            });
            out.extend(oracle_envelopes(tx, &bank));
        }
        out
    }

    /// The hold and release messages between a bank and the oracle, about `tx`.
    fn oracle_envelopes(tx: &Transaction, bank: &RoleId) -> Vec<Envelope> {
        let oracle = SecretKey::from_seed([7; 32]);
        let payee = SecretKey::from_seed([8; 32]).address();
        let attestation = Attestation {
            public_key: oracle.public_key(),
            signature: oracle.sign(&dtenge_core::tx::node_message(&tx.id()).0),
            batch: None,
        };
        let refused = dtenge_core::Error::new(dtenge_core::ErrorCode::Conflict, "held already");
        let to_oracle = |message| Envelope { from: bank.clone(), to: RoleId::Oracle, message };
        let to_bank = |message| Envelope { from: RoleId::Oracle, to: bank.clone(), message };
        let reply = |verdict| AttestReply { event_id: "EV0000001".into(), tx_id: tx.id(), verdict };
        vec![
            to_oracle(Message::AttestRequest(AttestRequest {
                event_id: "EV0000001".into(),
                purpose: AttestPurpose::Hold { payee },
                tx: tx.clone(),
            })),
            to_oracle(Message::AttestRequest(AttestRequest {
                event_id: "EV0000002".into(),
                purpose: AttestPurpose::Release,
                tx: tx.clone(),
            })),
            to_bank(Message::AttestReply(reply(Verdict::Attested(attestation)))),
            to_bank(Message::AttestReply(reply(Verdict::Refused(refused.clone())))),
            to_bank(Message::AttestReply(reply(Verdict::Abandoned))),
            to_bank(Message::ReleaseOrder(ReleaseOrder {
                event_id: "EV0000001".into(),
                attempt: 2,
                sender: payee,
                held: tx.body.outputs.first().map_or(Amount::ZERO, |o| o.amount_tiyn),
                outputs: tx.body.outputs.clone(),
            })),
            to_oracle(Message::Abandon(Abandon { event_id: "EV0000001".into(), tx_id: tx.id(), refused })),
        ]
    }

    #[test]
    fn a_role_reads_back_from_its_display() {
        for role in [RoleId::Central, RoleId::Notary, RoleId::Oracle, RoleId::Directory, RoleId::Bank("bank-a".into())]
        {
            assert_eq!(role.to_string().parse::<RoleId>().unwrap(), role);
        }
        assert!("bank:".parse::<RoleId>().is_err());
        assert!("treasury".parse::<RoleId>().is_err());
        assert!(format!("bank:{}", "x".repeat(ROLE_ID_BYTES_MAX + 1)).parse::<RoleId>().is_err());
    }

    proptest! {
        #[test]
        fn every_envelope_decodes_to_itself(txs in prop::collection::vec(crate::domain::tests::transaction(), 0..4)) {
            for e in envelope(txs) {
                let bytes = e.to_bytes();
                prop_assert_eq!(Envelope::from_bytes(&bytes).unwrap(), e);
            }
        }
    }

    #[test]
    fn the_oracle_messages_have_fixed_kinds_and_an_empty_or_long_event_id_is_refused() {
        // Pinned: the kinds of the hold and release messages are the protocol.
        let tx_id = TxId(Hash32([0xcd; 32]));
        let abandoned =
            Message::AttestReply(AttestReply { event_id: "EV1".into(), tx_id, verdict: Verdict::Abandoned });
        let bytes = abandoned.to_bytes();
        assert_eq!(&bytes[..2], &[10, 0], "kind 10, little-endian");
        assert_eq!(&bytes[2..9], &[3, 0, 0, 0, b'E', b'V', b'1']);
        assert_eq!(&bytes[9..41], &[0xcd; 32]);
        assert_eq!(bytes[41], 3, "the verdict's tag");
        assert_eq!(Message::from_bytes(&bytes).unwrap(), abandoned);
        for cut in 0..bytes.len() {
            assert!(Message::from_bytes(&bytes[..cut]).is_err(), "a prefix of {cut} bytes decodes");
        }
        for id in [String::new(), "E".repeat(EVENT_ID_BYTES_MAX + 1)] {
            let long = Message::Abandon(Abandon {
                event_id: id,
                tx_id,
                refused: dtenge_core::Error::new(dtenge_core::ErrorCode::BankBlocked, "no"),
            });
            assert!(Message::from_bytes(&long.to_bytes()).is_err());
        }
        let order = Message::ReleaseOrder(ReleaseOrder {
            event_id: "EV1".into(),
            attempt: 1,
            sender: Address(Hash32([1; 32])),
            held: Amount::from_tiyn(5).unwrap(),
            outputs: vec![],
        });
        assert_eq!(&order.to_bytes()[..2], &[11, 0]);
        let mut unknown = abandoned.to_bytes();
        unknown[41] = 9;
        assert!(matches!(Message::from_bytes(&unknown), Err(DecodeError::UnknownTag { what: "verdict", .. })));
    }

    #[test]
    fn programmed_spend_messages_decode_to_themselves_with_fixed_kinds() {
        let party = |n: u8, bank: &str| Party {
            bank: bank.into(),
            client_id: format!("90010130000{n}"),
            address: SecretKey::from_seed([n; 32]).address(),
        };
        let amount = Amount::from_tiyn(1_120_00).unwrap();
        let kinds = [
            SpendKind::MarkedTransfer { marking_id: "MK0000001".into(), to: party(2, "sapa"), amount },
            SpendKind::InvoicePayment { invoice_id: "ESF-1".into(), amount, vat_available: Amount::ZERO },
            SpendKind::VatPayment { amount },
            SpendKind::ContractPayment { contract: "GZ-1".into(), amount },
            SpendKind::ContractWithdrawal { contract: "GZ-1".into(), amount, bank_account: party(3, "steppe") },
        ];
        let output = Output::standard(amount, party(2, "sapa").address, party(9, "nbk").address);
        let tx = Transaction::new(dtenge_core::tx::TxBody {
            command: dtenge_core::tx::Command::Transfer,
            inputs: vec![],
            outputs: vec![output.clone()],
            nonce: 3,
        });
        for kind in kinds {
            let spend = Spend { payer: party(1, "steppe"), kind };
            let plan = PlannedSpend { parts: vec![(Policy::Vat, amount)], outputs: vec![output.clone()] };
            let refused = dtenge_core::Error::new(dtenge_core::ErrorCode::RecipientNotAllowed, "not in the tree");
            let messages = [
                Message::PlanRequest(PlanRequest { request: 7, spend: spend.clone() }),
                Message::PlanReply(PlanReply { request: 7, spend: spend.clone(), plan: Ok(plan) }),
                Message::PlanReply(PlanReply { request: 8, spend: spend.clone(), plan: Err(refused) }),
                Message::AttestRequest(AttestRequest {
                    event_id: spend.subject().into(),
                    purpose: AttestPurpose::Spend(spend.clone()),
                    tx: tx.clone(),
                }),
            ];
            for message in messages {
                let bytes = message.to_bytes();
                assert_eq!(Message::from_bytes(&bytes).unwrap(), message);
                assert!(Message::from_bytes(&bytes[..bytes.len() - 1]).is_err());
            }
        }
        // Pinned: the kinds and field order of the programmed spends' messages are the protocol.
        let spend = Spend { payer: party(1, "steppe"), kind: SpendKind::VatPayment { amount } };
        let bytes = Message::PlanRequest(PlanRequest { request: 1, spend: spend.clone() }).to_bytes();
        assert_eq!(&bytes[..10], &[20, 0, 1, 0, 0, 0, 0, 0, 0, 0], "kind 20, then the request number");
        assert_eq!(&bytes[10..20], &[6, 0, 0, 0, b's', b't', b'e', b'p', b'p', b'e'], "the payer's bank");
        let tag = 10 + 10 + 4 + 12 + 32;
        assert_eq!(bytes[tag], 3, "the spend kind's tag, after the payer");
        assert_eq!(&bytes[tag + 1..], &1_120_00u64.to_le_bytes(), "the amount");
        let reply = PlanReply { request: 1, spend, plan: Err(dtenge_core::Error::malformed("no")) };
        assert_eq!(&Message::PlanReply(reply).to_bytes()[..2], &[21, 0]);
    }

    #[test]
    fn another_format_version_is_refused_whole() {
        let e = Envelope {
            from: RoleId::Central,
            to: RoleId::Directory,
            message: Message::DeliverAck(DeliverAck { seq: 1 }),
        };
        let mut bytes = e.to_bytes();
        bytes[0] = FORMAT_VERSION + 1;
        assert_eq!(
            Envelope::from_bytes(&bytes).unwrap_err(),
            DecodeError::UnknownVersion { found: FORMAT_VERSION + 1, expected: FORMAT_VERSION }
        );
    }

    #[test]
    fn an_unknown_message_kind_and_an_empty_bank_id_are_refused() {
        let mut w = Writer::new();
        w.u8(FORMAT_VERSION);
        RoleId::Central.encode(&mut w);
        RoleId::Notary.encode(&mut w);
        w.u16(999);
        assert!(matches!(Envelope::from_bytes(&w.into_bytes()), Err(DecodeError::UnknownTag { tag: 999, .. })));
        assert!(RoleId::from_bytes(&[5, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn a_redemption_refusal_has_fixed_bytes_and_a_truncated_redeem_request_is_refused() {
        // Pinned: the kinds and field order of the redemption messages are the protocol.
        let refused = Message::RedeemRefused(RedeemRefused {
            tx_id: TxId(Hash32([0xab; 32])),
            refused: dtenge_core::Error::new(dtenge_core::ErrorCode::BankBlocked, "no"),
        });
        let bytes = refused.to_bytes();
        assert_eq!(&bytes[..2], &[8, 0], "kind 8, little-endian");
        assert_eq!(&bytes[2..34], &[0xab; 32]);
        assert_eq!(Message::from_bytes(&bytes).unwrap(), refused);
        let tx = Transaction::new(dtenge_core::tx::TxBody {
            command: dtenge_core::tx::Command::Redeem,
            inputs: vec![],
            outputs: vec![],
            nonce: 7,
        });
        let request = Message::RedeemRequest(RedeemRequest { tx });
        let bytes = request.to_bytes();
        assert_eq!(&bytes[..2], &[7, 0]);
        assert_eq!(Message::from_bytes(&bytes).unwrap(), request);
        for cut in 0..bytes.len() {
            assert!(Message::from_bytes(&bytes[..cut]).is_err(), "a prefix of {cut} bytes decodes");
        }
    }
}
