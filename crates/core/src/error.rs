//! One error type for the whole platform: a stable machine-readable code plus a human message.
//!
//! The code is the contract with API clients; the message may change between versions.

use serde::{Deserialize, Serialize};

/// Stable error codes. Their `SCREAMING_SNAKE_CASE` names are part of the public API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// The platform cannot serve the request because of a failure it already knows of (a
    /// stopped payment pipeline, a network poisoned by a panic, an operation that failed on
    /// another thread). A broken invariant is not reported with this code: it stops the process
    /// (see `docs/ARCHITECTURE.md`, "Assertions").
    Internal,
    /// A request body not declared as JSON (`Content-Type: application/json`): refused before
    /// it is read. (Codes are stored and sent by name in JSON and by a fixed tag in
    /// `dtenge-wire`, never by their position here.)
    UnsupportedMediaType,
    /// Too many attempts (a sign-in guessed at, or the machine that checks passwords busy):
    /// retry after the wait the message names. Nothing was done.
    RateLimited,
    /// The payer's DT would suffice but part of it is reserved by its payments in flight:
    /// nothing was done; retry when they complete (a moment, as a rule).
    FundsInFlight,
}

impl ErrorCode {
    /// Every code, in declaration order (a test below keeps it complete): what encoders and
    /// the faces' tests iterate over instead of keeping lists of their own.
    pub const ALL: [ErrorCode; 29] = [
        ErrorCode::MalformedInput,
        ErrorCode::InsufficientFunds,
        ErrorCode::DoubleSpend,
        ErrorCode::UnknownAccount,
        ErrorCode::DuplicateAccount,
        ErrorCode::BankBlocked,
        ErrorCode::InvalidSignature,
        ErrorCode::LimitExceeded,
        ErrorCode::ConservationViolated,
        ErrorCode::Forbidden,
        ErrorCode::NonWorkingDay,
        ErrorCode::NotFound,
        ErrorCode::RequestInProgress,
        ErrorCode::IdempotencyKeyReused,
        ErrorCode::Conflict,
        ErrorCode::StorageFailure,
        ErrorCode::FundsHeld,
        ErrorCode::OracleConfirmationRequired,
        ErrorCode::FundsMarked,
        ErrorCode::WrongLevel,
        ErrorCode::InvoiceMismatch,
        ErrorCode::EventExpired,
        ErrorCode::ContractExpired,
        ErrorCode::RecipientNotAllowed,
        ErrorCode::Unauthorized,
        ErrorCode::Internal,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::RateLimited,
        ErrorCode::FundsInFlight,
    ];

    /// The stable text of the code, as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedInput => "MALFORMED_INPUT",
            ErrorCode::InsufficientFunds => "INSUFFICIENT_FUNDS",
            ErrorCode::DoubleSpend => "DOUBLE_SPEND",
            ErrorCode::UnknownAccount => "UNKNOWN_ACCOUNT",
            ErrorCode::DuplicateAccount => "DUPLICATE_ACCOUNT",
            ErrorCode::BankBlocked => "BANK_BLOCKED",
            ErrorCode::InvalidSignature => "INVALID_SIGNATURE",
            ErrorCode::LimitExceeded => "LIMIT_EXCEEDED",
            ErrorCode::ConservationViolated => "CONSERVATION_VIOLATED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NonWorkingDay => "NON_WORKING_DAY",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::RequestInProgress => "REQUEST_IN_PROGRESS",
            ErrorCode::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::StorageFailure => "STORAGE_FAILURE",
            ErrorCode::FundsHeld => "FUNDS_HELD",
            ErrorCode::OracleConfirmationRequired => "ORACLE_CONFIRMATION_REQUIRED",
            ErrorCode::FundsMarked => "FUNDS_MARKED",
            ErrorCode::WrongLevel => "WRONG_LEVEL",
            ErrorCode::InvoiceMismatch => "INVOICE_MISMATCH",
            ErrorCode::EventExpired => "EVENT_EXPIRED",
            ErrorCode::ContractExpired => "CONTRACT_EXPIRED",
            ErrorCode::RecipientNotAllowed => "RECIPIENT_NOT_ALLOWED",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::FundsInFlight => "FUNDS_IN_FLIGHT",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The platform's error: a stable code and a message for people.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{code}: {message}")]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error { code, message: message.into() }
    }
    pub fn malformed(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::MalformedInput, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::Internal, message)
    }
    /// What the store holds cannot be read back (a key or record that does not parse, a
    /// record naming what the store does not have): the process refuses to open it.
    pub fn storage(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::StorageFailure, message)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Return early with an [`Error`] of the given code.
#[macro_export]
macro_rules! bail {
    ($code:ident, $($arg:tt)+) => {
        return Err($crate::Error::new($crate::ErrorCode::$code, format!($($arg)+)))
    };
}

/// Check a condition, returning an [`Error`] of the given code when it fails.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $code:ident, $($arg:tt)+) => {
        if !($cond) {
            $crate::bail!($code, $($arg)+);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new code must be added to [`ErrorCode::ALL`]: this match has no wildcard, so it does
    /// not compile until the code is handled here, and the count below then fails until it is
    /// listed.
    #[test]
    fn every_code_is_listed_once_in_all() {
        let position = |code: ErrorCode| match code {
            ErrorCode::MalformedInput
            | ErrorCode::InsufficientFunds
            | ErrorCode::DoubleSpend
            | ErrorCode::UnknownAccount
            | ErrorCode::DuplicateAccount
            | ErrorCode::BankBlocked
            | ErrorCode::InvalidSignature
            | ErrorCode::LimitExceeded
            | ErrorCode::ConservationViolated
            | ErrorCode::Forbidden
            | ErrorCode::NonWorkingDay
            | ErrorCode::NotFound
            | ErrorCode::RequestInProgress
            | ErrorCode::IdempotencyKeyReused
            | ErrorCode::Conflict
            | ErrorCode::StorageFailure
            | ErrorCode::FundsHeld
            | ErrorCode::OracleConfirmationRequired
            | ErrorCode::FundsMarked
            | ErrorCode::WrongLevel
            | ErrorCode::InvoiceMismatch
            | ErrorCode::EventExpired
            | ErrorCode::ContractExpired
            | ErrorCode::RecipientNotAllowed
            | ErrorCode::Unauthorized
            | ErrorCode::Internal
            | ErrorCode::UnsupportedMediaType
            | ErrorCode::RateLimited
            | ErrorCode::FundsInFlight => ErrorCode::ALL.iter().position(|c| *c == code),
        };
        for code in ErrorCode::ALL {
            assert!(position(code).is_some());
        }
        let mut texts: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        texts.sort_unstable();
        texts.dedup();
        assert_eq!(texts.len(), ErrorCode::ALL.len(), "each code once");
    }
}
