//! Descriptions of the core's types the API shows (`dtenge_core`): amounts, hashes, keys,
//! signatures, dates, tokens, transactions, error codes.
use serde::Serialize;
use utoipa::openapi::schema::{Schema, Type};
use utoipa::openapi::{KnownFormat, ObjectBuilder, RefOr, SchemaFormat};
use utoipa::{PartialSchema, ToSchema};

/// A string of `$len` bytes as lowercase hex, as the core's `hex_bytes!` types serialize in
/// JSON (binary formats get the raw bytes; JSON, the hex text).
macro_rules! hex_bytes {
    ($name:ident, $len:expr, $doc:expr) => {
        #[doc = $doc]
        #[derive(Serialize)]
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some($doc))
                    .min_length(Some($len * 2))
                    .max_length(Some($len * 2))
                    .pattern(Some("^[0-9a-f]*$"))
                    .into()
            }
        }
        impl ToSchema for $name {}
    };
}

hex_bytes!(Hash32, 32, "A SHA-256 hash, 64 lowercase hex characters.");
hex_bytes!(SignatureBytes, 64, "Signature bytes, 128 lowercase hex characters.");

/// A hash newtype of the core (`#[serde(transparent)]` over [`Hash32`]): described as a hash.
macro_rules! hash_newtype {
    ($name:ident, $doc:expr) => {
        #[doc = $doc]
        #[derive(Serialize)]
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                <Hash32 as PartialSchema>::schema()
            }
        }
        impl ToSchema for $name {}
    };
}

hash_newtype!(Address, "A public address: the hash of a public key. Tokens are owned by addresses.");
hash_newtype!(TxId, "Identifier of a transaction: hash of its canonical body.");

/// A civil date, `YYYY-MM-DD` on the wire.
#[derive(Serialize)]
pub struct Date;

impl PartialSchema for Date {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(KnownFormat::Date))).into()
    }
}
impl ToSchema for Date {}

/// Signature algorithms. The numeric id is part of the canonical encoding.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SigAlg {
    Ed25519,
}

/// A public key with its algorithm.
#[derive(Serialize, ToSchema)]
pub struct PublicKey {
    pub alg: SigAlg,
    pub key: Hash32,
}

/// A signature with its algorithm.
#[derive(Serialize, ToSchema)]
pub struct Signature {
    pub alg: SigAlg,
    pub sig: SignatureBytes,
}

/// Stable error codes. Their `SCREAMING_SNAKE_CASE` names are part of the public API.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The request is not well formed (bad JSON, bad field, out-of-range value).
    MalformedInput,
    /// The payer does not hold enough spendable DT (or bank money for a conversion).
    InsufficientFunds,
    /// An input token is not in the unspent set: spent already, or never existed.
    DoubleSpend,
    /// No such account, client, phone, card or node.
    UnknownAccount,
    /// The client already has a digital account at this bank.
    DuplicateAccount,
    /// The bank (or Treasury) node is blocked by the central-bank operator.
    BankBlocked,
    /// A signature or attestation does not verify, or a required one is missing.
    InvalidSignature,
    /// A size, count or amount limit was exceeded.
    LimitExceeded,
    /// Inputs and outputs do not balance, or a command is used where it may not be.
    ConservationViolated,
    /// The caller may not perform this operation.
    Forbidden,
    /// Bank <-> NBK conversion requested on a non-working day of the operational calendar.
    NonWorkingDay,
    /// The referenced object does not exist.
    NotFound,
    /// The route exists but not with this HTTP method. Given by the gateway (its
    /// `HttpCode`), not by the domain; listed here, at its old place, because clients see it
    /// among the others.
    MethodNotAllowed,
    /// The same idempotency key is being processed right now; retry later.
    RequestInProgress,
    /// The idempotency key was used before with a different request.
    IdempotencyKeyReused,
    /// The operation conflicts with the current state (e.g. refund above the purchase).
    Conflict,
    /// The durable store failed; nothing was acknowledged.
    StorageFailure,
    /// The tokens are held against an oracle event: only the oracle's release or return moves them.
    FundsHeld,
    /// The transaction creates or moves programmed tokens and lacks the oracle's confirmation.
    OracleConfirmationRequired,
    /// The tokens are marked (targeted use or VAT): they move only where their marking allows.
    FundsMarked,
    /// The recipient is allowed by the marking, but at another level than the next one.
    WrongLevel,
    /// The payment does not match the registered e-invoice (payer, amount).
    InvoiceMismatch,
    /// The oracle event has expired: it can no longer be held or released.
    EventExpired,
    /// The contract's duration has ended: nothing moves under it any more.
    ContractExpired,
    /// The recipient is not one the event, marking or contract allows.
    RecipientNotAllowed,
    /// The caller did not authenticate (e.g. an oracle provider without a valid token).
    Unauthorized,
    /// An internal invariant failed. Never expected; reported instead of crashing.
    Internal,
    /// A request body not declared as JSON (`Content-Type: application/json`): refused before
    /// it is read.
    UnsupportedMediaType,
    /// Too many attempts (a sign-in guessed at, or the machine that checks passwords busy):
    /// retry after the wait the message names. Nothing was done.
    RateLimited,
    /// The payer's DT would suffice but part of it is reserved by its payments in flight:
    /// nothing was done; retry when they complete (a moment, as a rule).
    FundsInFlight,
    /// The request names a Host the server does not serve (421). Given by the gateway (its
    /// `HttpCode`), before any route.
    MisdirectedRequest,
}

/// An amount of money in tiyn. Always `<= Amount::MAX`, so that every amount is exactly
/// representable as a JSON number in every client (2^53 - 1 tiyn ≈ 90 trillion tenge, far above
/// the money supply). Arithmetic is checked: overflow is an error, never a wrap.
#[derive(Serialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = u64, example = 15000)]
pub struct Amount(u64);

/// A party of a payment, an event or a receipt.
#[derive(Serialize, ToSchema)]
pub struct Party {
    /// The servicing node: a bank id or `treasury`.
    pub bank: String,
    /// IIN/BIN of the client at that node (`own` for the node itself).
    pub client_id: String,
    pub address: Address,
}

/// The rule a token carries with it. Every validator enforces it from the token itself (an
/// encumbrance that travels with the money), so a node that ignores the rules cannot move
/// programmed money: any transaction that spends or creates a token with a policy other than
/// `Standard` commits only with the oracle's attestation (see `validate`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Plain DT, spendable by its owner's signature.
    Standard,
    /// Held (encumbered) against an oracle event: the token stays on its owner's account but
    /// moves only by the oracle's decision — released to the event's payees, or returned to
    /// the owner on expiry or rejection. The owner consented when it signed the hold.
    Held {
        /// [`event_hash`] of the oracle event the funds are held for.
        event: Hash32,
    },
    /// Marked for targeted use (marking by addresses, or by a contract registered on the
    /// oracle): spendable by its owner only towards what the marking allows, with the
    /// oracle's confirmation. At the last level the marking is removed.
    Marked {
        /// [`marking_hash`] of the marking (or contract) on the oracle.
        marking: Hash32,
        /// The level of the marking the owner is at (1 = the first recipients).
        level: u8,
    },
    /// VAT-marked DT (digital VAT): pays only the VAT part of an e-invoice to a registered VAT
    /// payer, or VAT to the tax authority's account, where it becomes standard.
    Vat,
}

/// An output of a transaction: value, owner, issuer, policy.
#[derive(Serialize, ToSchema)]
pub struct Output {
    pub amount_tiyn: Amount,
    pub owner: Address,
    /// The issuing central bank's address (the NBK node key). Room for several issuers
    /// (cross-border PvP) without a format change.
    pub issuer: Address,
    pub policy: Policy,
}

/// A reference to a token together with its full preimage: what a transaction spends.
#[derive(Serialize, ToSchema)]
pub struct Input {
    pub tx_id: TxId,
    pub index: u32,
    pub output: Output,
}

/// What a transaction does.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Emission: no inputs, new DT; only the NBK node may attest.
    Issue,
    /// Payment: inputs = outputs.
    Transfer,
    /// Redemption: inputs > outputs, the difference leaves circulation; only the NBK may attest.
    Redeem,
}

/// The signed part of a transaction.
#[derive(Serialize, ToSchema)]
pub struct TxBody {
    pub command: Command,
    pub inputs: Vec<Input>,
    pub outputs: Vec<Output>,
    /// Chosen by the creator so that two otherwise equal transactions (two equal emissions)
    /// have different ids.
    pub nonce: u64,
}

/// An owner's signature over the transaction id.
#[derive(Serialize, ToSchema)]
pub struct Witness {
    pub public_key: PublicKey,
    pub signature: Signature,
}

/// A validating node's signature over the transaction id: "I checked this and I answer for it".
/// With `batch`, the signature is over the root of a Merkle tree of a whole batch's
/// transaction ids ([`batch_message`]), and `batch` proves this transaction is in it: one
/// signature answers for many transactions.
#[derive(Serialize, ToSchema)]
pub struct Attestation {
    pub public_key: PublicKey,
    pub signature: Signature,
    /// Always written (`null` when absent): the store encodes transactions with bincode, which
    /// cannot read back a field left out, so `skip_serializing_if` made every archived
    /// transaction with an attestation of one undecodable. Readers may still omit it.
    #[serde(default)]
    pub batch: Option<BatchProof>,
}

/// Where a transaction sits in a batch attested with one signature.
#[derive(Serialize, ToSchema)]
pub struct BatchProof {
    pub root: Hash32,
    pub index: u32,
    pub size: u32,
    /// Sibling hashes from the leaf up ([`crate::merkle::path`]).
    pub path: Vec<Hash32>,
}

/// A complete transaction.
#[derive(Serialize, ToSchema)]
pub struct Transaction {
    pub body: TxBody,
    pub witnesses: Vec<Witness>,
    pub attestations: Vec<Attestation>,
}
