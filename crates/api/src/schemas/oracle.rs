//! Descriptions of the oracle's records the API shows (`dtenge_oracle`): providers, events,
//! markings, contracts, invoices.
use super::*;
use serde::Serialize;
use utoipa::ToSchema;

/// What kind of outside system a provider is.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// The vehicle registry: `OwnershipTransferred` and rejections.
    VehicleRegistry,
    /// The farm-animal registry (IFA): re-registration of animals.
    AnimalRegistry,
    /// The state subsidy system (SSIS).
    SubsidySystem,
    /// Transit-card validators ("Onay").
    TransitValidators,
    /// The smart-contract portal (public procurement, vehicle-sale contracts).
    ContractPortal,
    /// The tax authority's e-invoice system (ESF).
    TaxAuthority,
}

/// A provider as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct ProviderView {
    pub id: String,
    pub name: String,
    pub kind: ProviderKind,
    pub registered_at_unix_ms: u64,
}

/// Single: one hold, one release (a partial release returns the rest). Infinite: every
/// occurrence releases again until the held amount or the validity runs out.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Single,
    Infinite,
}

/// One payee of an event and what it receives on a (full) occurrence.
#[derive(Serialize, ToSchema)]
pub struct Share {
    pub party: Party,
    pub amount_tiyn: Amount,
}

/// What an event is: fixed at registration, covered by every record's signature.
#[derive(Serialize, ToSchema)]
pub struct EventTerms {
    /// The provider that registered the event.
    pub provider: String,
    /// The provider whose occurrences release or reject it (the vehicle registry for a sale
    /// the contract portal registered).
    pub confirmed_by: String,
    /// The provider's own reference (contract number, VIN, loan id).
    pub reference: String,
    pub kind: EventKind,
    pub sender: Party,
    pub payees: Vec<Share>,
    pub registered_at_unix_ms: u64,
    /// After this instant the event can no longer be held or released; held funds return to
    /// the sender.
    pub valid_until_unix_ms: u64,
}

/// Where an event stands.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// Registered; the sender has not held funds yet.
    Registered,
    /// Funds are held.
    Held,
    /// Released (and any remainder returned); nothing is held any more.
    Completed,
    /// A rejection event came; held funds went back to the sender.
    Rejected,
    /// The validity ran out; held funds went back to the sender.
    Expired,
}

/// What a record says happened.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Registered,
    Held,
    Released,
    Returned,
    Rejected,
    Expired,
}

/// The signed part of a record.
#[derive(Serialize, ToSchema)]
pub struct RecordBody {
    pub event_id: String,
    pub seq: u32,
    pub at_unix_ms: u64,
    pub action: Action,
    /// Held, released or returned by this step.
    pub amount_tiyn: Amount,
    /// Who was paid (releases).
    pub payouts: Vec<Share>,
    /// The ledger transaction that did it, if any.
    pub tx_id: Option<TxId>,
    /// The provider's id of the occurrence that caused it.
    pub occurrence_id: Option<String>,
    pub reason: Option<String>,
    /// A provider id, a node id, or `oracle` for its own decisions (expiry).
    pub by: String,
    /// Hash of the event's terms: every record is bound to what the event is.
    pub terms_hash: Hash32,
}

/// One entry of an event's history, signed by the oracle.
#[derive(Serialize, ToSchema)]
pub struct Record {
    pub body: RecordBody,
    /// Ed25519 signature of the oracle over [`RecordBody::digest`].
    pub oracle_signature: Signature,
}

/// An event with its state and signed history.
#[derive(Serialize, ToSchema)]
pub struct Event {
    pub id: String,
    /// What held tokens name ([`event_hash`] of the id).
    pub hash: Hash32,
    pub terms: EventTerms,
    pub status: EventStatus,
    /// Held now.
    pub held_tiyn: Amount,
    pub released_tiyn: Amount,
    pub returned_tiyn: Amount,
    /// Occurrences processed (releases and rejections).
    pub occurrences: u32,
    /// Why it was rejected or expired.
    pub reason: Option<String>,
}

/// One level of a marking: who may receive at it, and how much in all.
#[derive(Serialize, ToSchema)]
pub struct Level {
    pub recipients: Vec<Party>,
    /// The most that may reach this level's recipients, in all.
    pub limit_tiyn: Amount,
}

/// A registered marking.
#[derive(Serialize, ToSchema)]
pub struct Marking {
    pub id: String,
    /// What marked tokens name ([`marking_hash`] of the id).
    pub hash: Hash32,
    pub initiator: Party,
    pub reference: String,
    /// Level 1 first; the last level receives standard DT (the marking is removed).
    pub levels: Vec<Level>,
    pub created_at_unix_ms: u64,
    /// The node that registered it.
    pub registered_by: String,
    /// Per level (level 1 first): what reached it so far.
    pub moved_tiyn: Vec<Amount>,
    /// The oracle's signature over the marking's terms ([`Marking::terms_digest`]).
    pub oracle_signature: Signature,
}

/// The signed part of a move.
#[derive(Serialize, ToSchema)]
pub struct MoveBody {
    pub marking_id: String,
    pub seq: u32,
    pub at_unix_ms: u64,
    pub tx_id: TxId,
    pub from: Party,
    pub to: Party,
    /// 0 for the initiator.
    pub from_level: u8,
    pub to_level: u8,
    pub amount_tiyn: Amount,
    /// True at the last level: the recipient got standard DT.
    pub unmarked: bool,
}

/// One move of marked funds, signed by the oracle.
#[derive(Serialize, ToSchema)]
pub struct Move {
    pub body: MoveBody,
    pub oracle_signature: Signature,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    Registered,
    Paid,
}

/// A registered e-invoice.
#[derive(Serialize, ToSchema)]
pub struct Invoice {
    /// The e-invoice number (ESF).
    pub id: String,
    pub seller: Party,
    pub buyer: Party,
    /// Amount without VAT.
    pub net_tiyn: Amount,
    pub vat_tiyn: Amount,
    pub registered_by: String,
    pub registered_at_unix_ms: u64,
    pub status: InvoiceStatus,
    pub paid_tx: Option<TxId>,
    pub paid_at_unix_ms: Option<u64>,
    /// The oracle's signature over the registration ([`Invoice::terms_digest`]).
    pub oracle_signature: Signature,
    /// The oracle's signature over (id, paid_tx, paid_at), once paid.
    pub payment_signature: Option<Signature>,
}

/// VAT paid to the tax account, as the tax authority learns it.
#[derive(Serialize, ToSchema)]
pub struct VatPayment {
    pub seq: u64,
    pub payer: Party,
    pub amount_tiyn: Amount,
    pub tx_id: TxId,
    pub at_unix_ms: u64,
    pub oracle_signature: Signature,
}

/// A registered contract with its consumed limits.
#[derive(Serialize, ToSchema)]
pub struct Contract {
    pub number: String,
    /// What DT paid under this contract names ([`marking_hash`] of `contract/<number>`).
    pub hash: Hash32,
    pub registered_by: String,
    pub sender: Party,
    pub recipient: Party,
    pub max_transfer_tiyn: Amount,
    pub max_fiat_tiyn: Amount,
    pub registered_at_unix_ms: u64,
    pub valid_until_unix_ms: u64,
    pub funded_by: Option<String>,
    /// The sender of the first contract of the chain: whom every use is reported to.
    pub initiator: Party,
    pub transferred_tiyn: Amount,
    pub withdrawn_tiyn: Amount,
    /// The oracle's signature over the registration.
    pub oracle_signature: Signature,
}

/// What a use of a contract did.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UseKind {
    /// Marked DT paid to the recipient under the contract.
    Transfer,
    /// Marked DT of the contract converted to bank money for the recipient.
    Withdrawal,
}

/// The signed part of a use.
#[derive(Serialize, ToSchema)]
pub struct ContractUseBody {
    pub contract: String,
    pub seq: u32,
    pub at_unix_ms: u64,
    pub kind: UseKind,
    pub amount_tiyn: Amount,
    pub tx_id: TxId,
}

/// One use of a contract, signed by the oracle.
#[derive(Serialize, ToSchema)]
pub struct ContractUse {
    pub body: ContractUseBody,
    pub oracle_signature: Signature,
}
