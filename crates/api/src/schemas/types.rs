//! Descriptions of [`crate::types`]: the requests and answers of the platform's
//! operations.
use super::*;
use serde::Serialize;
use utoipa::ToSchema;

/// Open a digital account.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenAccount {
    pub kind: ClientKind,
    /// IIN (individual) or BIN (legal entity, government agency): 12 digits with check digit.
    pub client_id: String,
    pub name: String,
    /// Phone number for transfers by phone (individuals): `+7XXXXXXXXXX`.
    #[serde(default)]
    pub phone: Option<String>,
    /// Leave empty for a custodial account (the bank generates and keeps the key). Give a
    /// public key when the client keeps its own key and signs its own transactions.
    #[serde(default)]
    pub public_key: Option<PublicKey>,
}

/// An account with its balances.
#[derive(Serialize, ToSchema)]
pub struct AccountView {
    pub account: Account,
    pub balance: Balance,
    /// Linked cards, masked.
    pub cards: Vec<String>,
    pub bank_name: String,
}

/// Who receives a payment. Give exactly one of: `phone`, `client_id` (with `bank`), `address`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Payee {
    /// Phone number registered at the ID center.
    #[serde(default)]
    pub phone: Option<String>,
    /// IIN/BIN of the recipient.
    #[serde(default)]
    pub client_id: Option<String>,
    /// The recipient's bank node id. Needed with `client_id`; optional with `phone` (the ID
    /// center picks the first account registered with that phone).
    #[serde(default)]
    pub bank: Option<String>,
    /// A DT address.
    #[serde(default)]
    pub address: Option<Address>,
}

/// Pay from a client's digital account.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    /// IIN/BIN of the payer at this bank.
    pub from: String,
    pub to: Payee,
    pub amount_tiyn: Amount,
    #[serde(default)]
    pub reference: Option<String>,
}

/// What a committed DT transaction did.
#[derive(Serialize, ToSchema)]
pub struct Receipt {
    pub tx_id: TxId,
    pub purpose: Purpose,
    pub amount_tiyn: Amount,
    pub from: Option<Party>,
    pub to: Option<Party>,
    pub at_unix_ms: u64,
    /// The ABS posting that moved bank money alongside, if any.
    pub abs_posting: Option<Posting>,
}

/// An amount, for conversions, deposits, emission and redemption.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AmountRequest {
    pub amount_tiyn: Amount,
}

/// A consolidation's request (issue 19): an empty object, the client being in the path.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsolidationRequest {}

/// A consolidation's answer: the transfer that merged the client's smallest spendable tokens
/// (at most 1,024) into one, its balance and history unchanged.
#[derive(Serialize, ToSchema)]
pub struct Consolidation {
    pub tx_id: TxId,
    /// Standard tokens the client may spend once it is applied. More than
    /// `inputs_per_payment_max` and the balance still cannot be paid whole: consolidate again.
    pub spendable_tokens: u64,
    /// Most tokens one transaction spends (1,024).
    pub inputs_per_payment_max: u64,
}

/// One history line, as the client's own bank shows it.
#[derive(Serialize, ToSchema)]
pub struct HistoryLine {
    pub tx_id: TxId,
    pub at_unix_ms: u64,
    pub purpose: Purpose,
    pub direction: Direction,
    pub amount_tiyn: Amount,
    pub counterparty_address: Option<Address>,
    /// The counterparty's bank (node name), when known.
    pub counterparty_bank: Option<String>,
    /// The counterparty's name: shown only when the counterparty is a client of the same
    /// bank (names are personal data kept at the servicing bank).
    pub counterparty_name: Option<String>,
    pub reference: Option<String>,
}

/// A page of a node's accounts, in client id order.
#[derive(Serialize, ToSchema)]
pub struct AccountPage {
    pub accounts: Vec<AccountView>,
    /// The last client id of this page when more follow: ask again with `after` set to it.
    pub next_after: Option<String>,
}

/// A page of history, newest first.
#[derive(Serialize, ToSchema)]
pub struct HistoryPage {
    pub lines: Vec<HistoryLine>,
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
}

/// One line of a registry distribution.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryLine {
    #[serde(default)]
    pub phone: Option<String>,
    /// IIN of the recipient (with `bank`, or the ID center picks the first account).
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub bank: Option<String>,
    pub amount_tiyn: Amount,
}

/// A registry distribution: one legal entity pays many individuals.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryRequest {
    /// BIN of the paying legal entity at this bank.
    pub from: String,
    /// The payer's reference of this registry (e.g. "payroll 2026-11").
    #[serde(default)]
    pub reference: Option<String>,
    pub lines: Vec<RegistryLine>,
}

/// Transfers the clients signed themselves, posted together (1 to 512).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransactionBatch {
    pub transactions: Vec<Transaction>,
}

/// Each transaction of a batch answered by itself, in the batch's order.
#[derive(Serialize, ToSchema)]
pub struct TransactionBatchReport {
    pub results: Vec<BatchResult>,
}

/// One transaction of a batch: its receipt, or why it was not committed (the error a call of
/// its own would have answered).
#[derive(Serialize, ToSchema)]
pub struct BatchResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<Receipt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::error::ErrorBody>,
}

/// The outcome of one registry line.
#[derive(Serialize, ToSchema)]
pub struct RegistryLineResult {
    /// 1-based line number.
    pub line: usize,
    pub paid: bool,
    pub amount_tiyn: Amount,
    pub recipient: Option<Party>,
    pub error_code: Option<ErrorCode>,
    pub error: Option<String>,
}

/// The report of a registry distribution. Lines are checked one by one; every valid line is
/// paid in one atomic transaction; invalid lines are reported and not paid. If the payer
/// cannot cover the valid lines, nothing is paid and the request fails.
#[derive(Serialize, ToSchema)]
pub struct RegistryReport {
    pub tx_id: Option<TxId>,
    pub lines_total: usize,
    pub lines_paid: usize,
    pub lines_rejected: usize,
    pub amount_paid_tiyn: Amount,
    pub results: Vec<RegistryLineResult>,
}

/// Block or unblock a bank.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BlockRequest {
    pub reason: String,
}

/// A node as the operator sees it.
#[derive(Serialize, ToSchema)]
pub struct NodeView {
    pub id: String,
    pub name: String,
    pub kind: NodeKind,
    pub blocked: bool,
    pub block_reason: Option<String>,
    pub accounts: usize,
    /// DT owned by the node and its clients.
    pub dt_held_tiyn: Amount,
    /// DT the NBK emitted to this node.
    pub emitted_tiyn: Amount,
    /// DT this node redeemed.
    pub redeemed_tiyn: Amount,
    /// Balance of its correspondent account in the ABS (bank money), tiyn.
    pub correspondent_tiyn: i64,
}

/// One checkpoint written (see `POST /v1/operator/checkpoints`).
#[derive(Serialize, ToSchema)]
pub struct CheckpointPart {
    /// Checkpoints written so far, this one included.
    pub generation: u64,
    /// Tokens in it.
    pub tokens: u64,
    pub bytes: u64,
    /// Rows of the change log it made obsolete, deleted with it.
    pub log_rows_deleted: u64,
}

/// A checkpoint of the notary's unspent set and of the nodes' tokens.
#[derive(Serialize, ToSchema)]
pub struct CheckpointView {
    pub notary: CheckpointPart,
    pub nodes: CheckpointPart,
}

/// Monitoring totals.
#[derive(Serialize, ToSchema)]
pub struct Monitoring {
    pub emitted_tiyn: Amount,
    pub redeemed_tiyn: Amount,
    pub circulation_tiyn: Amount,
    pub dt_liability_tiyn: Amount,
    pub unspent_tokens: usize,
    pub nodes: Vec<NodeView>,
    pub at_unix_ms: u64,
}

/// Reconciliation of DT in circulation with the ABS liability account.
#[derive(Serialize, ToSchema)]
pub struct Reconciliation {
    /// True when every check holds.
    pub ok: bool,
    /// Emitted minus redeemed, by the NBK's registry.
    pub circulation_by_nbk_tiyn: Amount,
    /// Sum of every token every node holds.
    pub circulation_by_nodes_tiyn: Amount,
    /// Balance of the ABS DT liability account.
    pub dt_liability_tiyn: Amount,
    /// Tokens in the notary's unspent set.
    pub notary_unspent: usize,
    /// Tokens held by nodes.
    pub node_tokens: usize,
    /// Node tokens the notary does not know as unspent (must be 0).
    pub node_tokens_not_unspent: usize,
    pub problems: Vec<String>,
    pub at_unix_ms: u64,
}

/// An emission or redemption in the NBK's registry.
#[derive(Serialize, ToSchema)]
pub struct NbkOperation {
    pub seq: u64,
    pub kind: Purpose,
    pub node: String,
    pub amount_tiyn: Amount,
    pub tx_id: TxId,
    pub abs_seq: u64,
    pub at_unix_ms: u64,
}

/// Set a day of the operational calendar.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DayRequest {
    pub working: bool,
}

/// One day of the operational calendar.
#[derive(Serialize, ToSchema)]
pub struct DayView {
    pub date: Date,
    pub working: bool,
    /// True when an operator decision overrides the default (weekends and public holidays).
    pub overridden: bool,
}

/// Link a card to a digital account.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkCard {
    pub client_id: String,
    /// 16-digit card number (Luhn-valid).
    pub pan: String,
}

/// How the merchant is paid in a card purchase.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CardMode {
    /// The merchant accepts DT and receives DT (sub-scenario 9).
    Dt,
    /// The buyer pays DT, converted instantly; the merchant receives bank money (10).
    ConvertToFiat,
}

/// A card purchase at a terminal.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CardPurchaseRequest {
    pub pan: String,
    /// The merchant's bank node id.
    pub merchant_bank: String,
    /// The merchant's BIN.
    pub merchant_id: String,
    pub amount_tiyn: Amount,
    pub mode: CardMode,
}

/// A card purchase and its refunds.
#[derive(Serialize, ToSchema)]
pub struct Purchase {
    pub id: String,
    pub card: String,
    pub buyer: Party,
    pub merchant: Party,
    pub amount_tiyn: Amount,
    pub refunded_tiyn: Amount,
    pub mode: CardMode,
    pub tx_id: TxId,
    pub refund_tx_ids: Vec<TxId>,
    pub at_unix_ms: u64,
}

/// A voucher programme: a school pays a canteen on each event from a technology integrator.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoucherProgramRequest {
    /// Identifier of the technology integrator (e.g. the transit-card validator operator).
    pub integrator: String,
    pub payer_bank: String,
    /// BIN of the school.
    pub payer_id: String,
    pub payee_bank: String,
    /// BIN of the canteen.
    pub payee_id: String,
    /// Amount paid per event (one meal).
    pub amount_per_event_tiyn: Amount,
}

/// A registered voucher programme.
#[derive(Serialize, ToSchema)]
pub struct VoucherProgram {
    pub id: String,
    pub integrator: String,
    pub payer: Party,
    pub payee: Party,
    pub amount_per_event_tiyn: Amount,
    pub created_at_unix_ms: u64,
}

/// An event from the integrator: a pupil tapped a card.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoucherEvent {
    /// Must match the programme's integrator.
    pub integrator: String,
    /// Unique per event: the same event twice pays once.
    pub event_id: String,
    /// The pupil's card or token, recorded as the reference.
    #[serde(default)]
    pub card: Option<String>,
}

/// What the ID center tells a bank about a phone number.
#[derive(Serialize, ToSchema)]
pub struct PhoneLookup {
    pub phone: String,
    /// Banks where this phone has a digital account.
    pub banks: Vec<String>,
    /// The name with the surname shortened ("Aigerim S."), to confirm the recipient.
    pub display_name: String,
}

/// Cash withdrawal at an ATM with a DT-linked card: the card's DT is converted and dispensed
/// as cash; an ATM of another bank is settled between the banks in the ABS.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AtmWithdrawal {
    pub pan: String,
    /// The bank that owns the ATM.
    pub atm_bank: String,
    pub amount_tiyn: Amount,
}

/// Register an oracle provider (an outside system that feeds the oracle).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderRequest {
    /// Letters, digits, `-` and `_` (e.g. `vehicle-registry`).
    pub id: String,
    pub name: String,
    pub kind: ProviderKind,
}

/// A provider with its secret token. The token is shown in this answer only; the oracle
/// keeps its hash. The provider sends it as `Authorization: Bearer <token>`.
#[derive(Serialize, ToSchema)]
pub struct ProviderCredentials {
    pub provider: ProviderView,
    pub token: String,
}

/// An account named by its bank and client id.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartyRef {
    pub bank: String,
    pub client_id: String,
}

/// A payee and its amount.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShareRequest {
    pub bank: String,
    pub client_id: String,
    pub amount_tiyn: Amount,
}

/// Register an event on the oracle (holding, step 1).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventRequest {
    /// The provider's reference: contract number, VIN, loan id.
    pub reference: String,
    pub kind: EventKind,
    /// Whose funds are held.
    pub sender: PartyRef,
    /// Who is paid on the event, and how much each (a single event pays the sum once; an
    /// infinite one on every occurrence).
    pub payees: Vec<ShareRequest>,
    /// How long the event stays valid from now, in milliseconds (24 h = 86,400,000). When it
    /// ends, held funds return to the sender.
    pub valid_for_ms: u64,
    /// The provider whose occurrences release or reject the event; default: the caller.
    #[serde(default)]
    pub confirmed_by: Option<String>,
}

/// An event with its signed history.
#[derive(Serialize, ToSchema)]
pub struct EventView {
    #[serde(flatten)]
    pub event: Event,
    pub records: Vec<Record>,
}

/// Hold a client's funds against an oracle event (holding, step 2). The client is the
/// event's sender; its bank calls.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldRequest {
    pub event_id: String,
    /// For an infinite event: the total to hold (default: one occurrence). A single event
    /// holds exactly its amount.
    #[serde(default)]
    pub amount_tiyn: Option<Amount>,
}

/// A committed hold, release or return: the event as it is now and the records this step
/// added (the whole history: `GET /v1/oracle/events/{id}`).
#[derive(Serialize, ToSchema)]
pub struct HoldReceipt {
    pub event: Event,
    pub records: Vec<Record>,
    pub tx_id: Option<TxId>,
    /// True when this occurrence id had been processed before: nothing was done again.
    pub repeated: bool,
}

/// What a provider reports.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OccurrenceOutcome {
    /// The event happened (e.g. `OwnershipTransferred`): release.
    Occurred,
    /// The provider refuses (e.g. the registry rejects the transfer): return to the sender.
    Rejected,
}

/// An occurrence of an event (holding, step 3).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OccurrenceRequest {
    /// Unique per occurrence of this event: the same id again does nothing more.
    pub occurrence_id: String,
    pub outcome: OccurrenceOutcome,
    /// Pay only these payees, these amounts (each at most its share). Default: every payee
    /// its share. A single event paying less returns the rest to the sender.
    #[serde(default)]
    pub payouts: Option<Vec<ShareRequest>>,
    /// Why, for a rejection.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A page of oracle events (without their histories), newest first.
#[derive(Serialize, ToSchema)]
pub struct EventPage {
    pub events: Vec<Event>,
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
}

/// An event as one of its parties' banks sees it.
#[derive(Serialize, ToSchema)]
pub struct HoldView {
    /// `sender` (the account's funds are held) or `payee` (funds held for the account).
    pub role: String,
    pub event_id: String,
    pub reference: String,
    pub status: EventStatus,
    pub kind: EventKind,
    /// Held now for the whole event.
    pub held_tiyn: Amount,
    /// Released to the payees so far.
    pub released_tiyn: Amount,
    /// Returned to the sender so far.
    pub returned_tiyn: Amount,
    /// For a payee: its share per occurrence.
    pub share_tiyn: Amount,
    pub valid_until_unix_ms: u64,
    /// Milliseconds left until expiry (0 once expired).
    pub expires_in_ms: u64,
}

/// What a node is told.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    EventRegistered,
    FundsHeld,
    FundsReleased,
    FundsReturned,
    /// Marked funds moved (to the marking's initiator: traceability).
    MarkedTransfer,
    /// An e-invoice to or from a client was paid.
    InvoicePaid,
    /// A payment or withdrawal under a contract (to the contract chain's initiator).
    ContractUse,
}

/// A message to a node about one of its clients.
#[derive(Serialize, ToSchema)]
pub struct Notification {
    pub seq: u64,
    pub node: String,
    pub client_id: String,
    pub at_unix_ms: u64,
    pub kind: NotificationKind,
    /// The event, marking or e-invoice the notification is about.
    pub subject_id: String,
    pub amount_tiyn: Amount,
    pub text: String,
    pub tx_id: Option<TxId>,
}

/// A page of notifications, newest first.
#[derive(Serialize, ToSchema)]
pub struct NotificationPage {
    pub notifications: Vec<Notification>,
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
}

/// A page of a client's tokens with their preimages, in the bank's order (issue 19). `total` counts the whole list: ask
/// again with `offset` moved on by `limit` until it passes `total`.
#[derive(Serialize, ToSchema)]
pub struct TokenPage {
    pub tokens: Vec<Input>,
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
}

/// A page of the events a client is a party to, newest first (issue 19). `total` counts the whole list: ask
/// again with `offset` moved on by `limit` until it passes `total`.
#[derive(Serialize, ToSchema)]
pub struct HoldPage {
    pub holds: Vec<HoldView>,
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
}

/// A page of the NBK's emissions and redemptions, newest first (issue 19). `total` counts the whole list: ask
/// again with `offset` moved on by `limit` until it passes `total`.
#[derive(Serialize, ToSchema)]
pub struct OperationPage {
    pub operations: Vec<NbkOperation>,
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
}

/// A page of voucher programmes, in the banks' order (issue 19). `total` counts the whole list: ask
/// again with `offset` moved on by `limit` until it passes `total`.
#[derive(Serialize, ToSchema)]
pub struct VoucherProgramPage {
    pub programs: Vec<VoucherProgram>,
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
}

/// A page of the oracle's providers, in registration order (issue 19). `total` counts the whole list: ask
/// again with `offset` moved on by `limit` until it passes `total`.
#[derive(Serialize, ToSchema)]
pub struct ProviderPage {
    pub providers: Vec<ProviderView>,
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
}

/// A page of registered VAT payers, in registration order (issue 19). `total` counts the whole list: ask
/// again with `offset` moved on by `limit` until it passes `total`.
#[derive(Serialize, ToSchema)]
pub struct VatPayerPage {
    pub payers: Vec<Party>,
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
}

/// A page of VAT paid to the tax account, oldest first (issue 19). `total` counts the whole list: ask
/// again with `offset` moved on by `limit` until it passes `total`.
#[derive(Serialize, ToSchema)]
pub struct VatPaymentPage {
    pub payments: Vec<VatPayment>,
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
}

/// Advance a manual clock (demo and tests only).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClockAdvance {
    pub advance_ms: u64,
}

/// The platform's time and what advancing it did.
#[derive(Serialize, ToSchema)]
pub struct ClockView {
    pub now_unix_ms: u64,
    /// Events that expired (funds returned) as a result.
    pub expired_events: Vec<String>,
}

/// One level of a marking in a request.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LevelRequest {
    /// Who may receive marked DT at this level.
    pub recipients: Vec<PartyRef>,
    /// The most that may reach this level, in all.
    pub limit_tiyn: Amount,
}

/// Register a marking by addresses: its initiator is a client (or government agency) of the
/// calling node; level 1 receives from the initiator, level k+1 from level k; the last
/// level receives standard DT.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkingRequest {
    /// IIN/BIN of the initiator at this node.
    pub initiator: String,
    /// What the money is for: "National Fund tranche 2026-1".
    pub reference: String,
    pub levels: Vec<LevelRequest>,
}

/// A marking with its moves (the tree of where the marked funds went).
#[derive(Serialize, ToSchema)]
pub struct MarkingView {
    #[serde(flatten)]
    pub marking: Marking,
    pub moves: Vec<Move>,
}

/// Move marked DT (or, for the initiator, mark standard DT) to an allowed recipient of the
/// next level.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkedTransferRequest {
    pub marking_id: String,
    /// IIN/BIN of the payer at this node.
    pub from: String,
    pub to: PartyRef,
    pub amount_tiyn: Amount,
}

/// A committed marked transfer: the marking as it is now and this move (the whole trace:
/// `GET /v1/oracle/markings/{id}`).
#[derive(Serialize, ToSchema)]
pub struct MarkedReceipt {
    pub tx_id: TxId,
    pub marking: Marking,
    #[serde(rename = "move")]
    pub moved: Move,
}

/// A page of markings (without their traces), newest first.
#[derive(Serialize, ToSchema)]
pub struct MarkingPage {
    pub markings: Vec<Marking>,
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
}

/// The tax authority registers an e-invoice.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvoiceRequest {
    /// The e-invoice number (ESF).
    pub id: String,
    pub seller: PartyRef,
    pub buyer: PartyRef,
    /// Amount without VAT.
    pub net_tiyn: Amount,
    pub vat_tiyn: Amount,
}

/// Pay an e-invoice from a client of this node.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvoicePaymentRequest {
    pub invoice_id: String,
    /// IIN/BIN of the buyer at this node.
    pub from: String,
    /// The invoice's total (net + VAT), as the payer understands it: a mismatch is refused.
    pub amount_tiyn: Amount,
}

/// A paid e-invoice.
#[derive(Serialize, ToSchema)]
pub struct InvoiceReceipt {
    pub tx_id: TxId,
    pub invoice: Invoice,
    /// Of the VAT part: paid with the payer's VAT-marked DT.
    pub vat_from_vat_tokens_tiyn: Amount,
    /// Of the VAT part: standard DT marked as VAT for the shortfall.
    pub vat_from_standard_tiyn: Amount,
}

/// Pay VAT to the tax authority's account with VAT-marked DT.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VatPaymentRequest {
    /// IIN/BIN of the payer at this node.
    pub from: String,
    pub amount_tiyn: Amount,
}

/// One recipient of a split payment.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitLine {
    pub to: Payee,
    pub amount_tiyn: Amount,
}

/// One payment to several recipients in one atomic transaction (taxi fare: driver, operator
/// commission, tax).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitPaymentRequest {
    /// IIN/BIN of the payer at this node.
    pub from: String,
    pub lines: Vec<SplitLine>,
    #[serde(default)]
    pub reference: Option<String>,
}

/// A committed split payment.
#[derive(Serialize, ToSchema)]
pub struct SplitReceipt {
    pub tx_id: TxId,
    pub from: Party,
    pub total_tiyn: Amount,
    pub lines: Vec<Share>,
    pub at_unix_ms: u64,
}

/// The smart-contract portal registers a contract (marking by parameter).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContractRequest {
    /// The contract number (public procurement).
    pub number: String,
    pub sender: PartyRef,
    pub recipient: PartyRef,
    /// The most marked DT that may be transferred under the contract.
    pub max_transfer_tiyn: Amount,
    /// The most of it the recipient may convert to bank money.
    pub max_fiat_tiyn: Amount,
    /// Duration from now, in milliseconds.
    pub valid_for_ms: u64,
    /// The contract whose marked DT pays this one (a subcontract); none: the sender pays
    /// standard DT.
    #[serde(default)]
    pub funded_by: Option<String>,
}

/// A contract with its uses.
#[derive(Serialize, ToSchema)]
pub struct ContractView {
    #[serde(flatten)]
    pub contract: Contract,
    pub uses: Vec<ContractUse>,
}

/// Pay under a contract from a client of this node (its sender).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContractPaymentRequest {
    pub contract: String,
    /// IIN/BIN of the payer at this node.
    pub from: String,
    pub amount_tiyn: Amount,
}

/// Convert DT received under a contract to bank money, within its withdrawal limit.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContractWithdrawalRequest {
    pub contract: String,
    /// IIN/BIN of the recipient at this node.
    pub client_id: String,
    pub amount_tiyn: Amount,
}

/// A committed payment or withdrawal under a contract: the contract as it is now and this use
/// (every use: `GET /v1/oracle/contracts/{number}`).
#[derive(Serialize, ToSchema)]
pub struct ContractReceipt {
    pub tx_id: TxId,
    pub contract: Contract,
    #[serde(rename = "use")]
    pub used: ContractUse,
}
