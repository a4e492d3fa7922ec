//! Descriptions of the ABS postings the API shows (`dtenge_abs`).
use super::*;
use serde::Serialize;
use utoipa::ToSchema;

/// Why money moved.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PostingKind {
    /// Bank -> NBK conversion: correspondent account -> DT liability, then DT is issued.
    Emission,
    /// NBK -> bank conversion: DT liability -> correspondent account, after DT is redeemed.
    Redemption,
    /// Money arriving from outside the DT platform.
    ExternalCredit,
    /// Interbank settlement of bank money (e.g. a card purchase converted to bank money).
    InterbankSettlement,
}

/// One journal entry.
#[derive(Serialize, ToSchema)]
pub struct Posting {
    pub seq: u64,
    pub kind: PostingKind,
    pub debit: String,
    pub credit: String,
    pub amount_tiyn: Amount,
    /// The DT transaction or request this posting belongs to.
    pub reference: String,
    pub at_unix_ms: u64,
}
