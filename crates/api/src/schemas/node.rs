//! Descriptions of a participant node's records the API shows (`dtenge_node`): accounts,
//! balances, kinds.
use super::*;
use serde::Serialize;
use utoipa::ToSchema;

/// What kind of participant a node is.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    CentralBank,
    Bank,
    Treasury,
}

/// What kind of client an account belongs to.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    /// A person, identified by IIN.
    Individual,
    /// A company, identified by BIN.
    LegalEntity,
    /// A government agency or territorial body (Treasury node only), identified by BIN.
    GovernmentAgency,
    /// The node's own account (its DT liquidity).
    Institution,
}

/// A digital account: one per client per node.
#[derive(Serialize, ToSchema)]
pub struct Account {
    /// IIN for individuals, BIN for legal entities and agencies, `own` for the node itself.
    pub client_id: String,
    pub node_id: String,
    pub kind: ClientKind,
    pub name: String,
    /// `+7XXXXXXXXXX`, for transfers by phone number.
    pub phone: Option<String>,
    pub address: Address,
    pub opened_at_unix_ms: u64,
}

/// Why a transaction happened, as history shows it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    Payment,
    PhoneTransfer,
    Emission,
    Redemption,
    ConversionToDt,
    ConversionFromDt,
    RegistryDistribution,
    Voucher,
    CardPurchase,
    CardRefund,
    CashWithdrawal,
    /// Funds held for an oracle event (they stay on the account, not spendable).
    Hold,
    /// Held funds released to the event's payees.
    HoldRelease,
    /// Held funds returned to the sender (rejection or expiry).
    HoldReturn,
    /// Marked DT moved one level down a marking.
    MarkedTransfer,
    /// An e-invoice paid: net standard, VAT VAT-marked.
    InvoicePayment,
    /// VAT paid to the tax authority's account.
    VatPayment,
    /// One payment to several recipients.
    SplitPayment,
    /// Marked DT paid under a contract registered on the oracle.
    ContractPayment,
}

/// Debit or credit, from the account's side.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Debit,
    Credit,
    /// Spendable DT became held; the account's DT total is unchanged.
    Held,
    /// Held DT became spendable again; the account's DT total is unchanged.
    Unheld,
}

/// Balances of one account.
#[derive(Serialize, ToSchema)]
pub struct Balance {
    /// All DT the account owns.
    pub dt_tiyn: Amount,
    /// Part of `dt_tiyn` reserved by payments in flight.
    pub dt_reserved_tiyn: Amount,
    /// Part of `dt_tiyn` held for oracle events: the account's, but not spendable.
    pub dt_held_tiyn: Amount,
    /// Part of `dt_tiyn` marked for targeted use (by addresses or by contract).
    pub dt_marked_tiyn: Amount,
    /// Part of `dt_tiyn` that is VAT-marked.
    pub dt_vat_tiyn: Amount,
    /// What the account can pay now: neither held nor reserved.
    pub dt_spendable_tiyn: Amount,
    /// Bank money (non-cash) at the node.
    pub fiat_tiyn: Amount,
    /// Number of tokens the DT balance is made of.
    pub tokens: usize,
}
