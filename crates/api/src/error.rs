//! Errors on the wire: `{"error": {"code": "INSUFFICIENT_FUNDS", "message": "..."}}` with an
//! HTTP status that follows from the code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use dtenge_core::{Error, ErrorCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The error body of every failed call.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiError {
    pub error: ErrorBody,
}

/// A stable code and a message for people.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    #[schema(value_type = crate::schemas::ErrorCode)]
    pub code: Code,
    pub message: String,
}

/// An error code on the wire: the domain's, or one only HTTP has. Both are plain
/// `SCREAMING_SNAKE_CASE` strings; the OpenAPI document lists them together as `ErrorCode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Code {
    Domain(ErrorCode),
    Http(HttpCode),
}

/// Codes of the HTTP layer, which no domain operation can give.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HttpCode {
    /// The route exists but not with this HTTP method (405).
    MethodNotAllowed,
    /// The request names a Host this server does not serve (421): a page whose DNS name was
    /// rebound to the server's address, or a client pointed at the wrong server.
    MisdirectedRequest,
}

impl HttpCode {
    pub fn status(self) -> StatusCode {
        match self {
            HttpCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            HttpCode::MisdirectedRequest => StatusCode::MISDIRECTED_REQUEST,
        }
    }

    /// The error response with this code and `message`.
    pub fn response(self, message: impl Into<String>) -> Response {
        let body = ApiError { error: ErrorBody { code: Code::Http(self), message: message.into() } };
        (self.status(), Json(body)).into_response()
    }
}

/// The HTTP status of an error code: the one map, for the REST API and the consoles alike
/// (they answer through [`Failure`]), so a client sees the same status for the same code
/// whichever face it calls. It lives in the gateway because statuses are HTTP's business, not
/// the domain's.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::MalformedInput | ErrorCode::InvalidSignature => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden
        | ErrorCode::OracleConfirmationRequired
        | ErrorCode::RecipientNotAllowed
        | ErrorCode::WrongLevel => StatusCode::FORBIDDEN,
        ErrorCode::UnknownAccount | ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::DoubleSpend
        | ErrorCode::DuplicateAccount
        | ErrorCode::RequestInProgress
        | ErrorCode::FundsInFlight
        | ErrorCode::Conflict
        | ErrorCode::FundsHeld
        | ErrorCode::FundsMarked
        | ErrorCode::EventExpired
        | ErrorCode::ContractExpired
        | ErrorCode::NonWorkingDay => StatusCode::CONFLICT,
        ErrorCode::BankBlocked => StatusCode::LOCKED,
        ErrorCode::InsufficientFunds
        | ErrorCode::LimitExceeded
        | ErrorCode::InvoiceMismatch
        | ErrorCode::ConservationViolated
        | ErrorCode::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::StorageFailure => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
    }
}

/// An [`Error`] as a response: [`ApiError`] with the status [`status_of`] its code.
pub struct Failure(pub Error);

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure(e)
    }
}

impl Failure {
    /// The error with another HTTP status than its code's (e.g. 413 for an oversized body).
    pub fn with_status(self, status: StatusCode) -> Response {
        let body = ApiError { error: ErrorBody { code: Code::Domain(self.0.code), message: self.0.message } };
        (status, Json(body)).into_response()
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = status_of(self.0.code);
        self.with_status(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_and_http_codes_share_the_wire_and_read_back_as_what_they_are() {
        for (code, text) in [
            (Code::Domain(ErrorCode::InsufficientFunds), "\"INSUFFICIENT_FUNDS\""),
            (Code::Http(HttpCode::MethodNotAllowed), "\"METHOD_NOT_ALLOWED\""),
        ] {
            assert_eq!(serde_json::to_string(&code).unwrap(), text);
            assert_eq!(serde_json::from_str::<Code>(text).unwrap(), code);
        }
        assert!(serde_json::from_str::<Code>("\"NO_SUCH_CODE\"").is_err());
        assert_eq!(HttpCode::MethodNotAllowed.response("no").status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}
