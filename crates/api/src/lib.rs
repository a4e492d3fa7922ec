//! The REST API gateway: the one entry for banks, the Treasury, the NBK operator and
//! integrators. JSON over HTTP, described by OpenAPI at `/openapi.json` and browsable at
//! `/docs`.
//!
//! - Every mutating call (`POST`, `PUT`) requires an `Idempotency-Key` header. A retry with the
//!   same key and body returns the first answer without doing the work again; the same key
//!   with another body is refused with `IDEMPOTENCY_KEY_REUSED`.
//! - Every error is `{"error": {"code", "message"}}` with a stable code (see [`ErrorCode`]).
//! - A `POST`, `PUT` or `PATCH` with a body must declare it `Content-Type: application/json`;
//!   otherwise 415 `UNSUPPORTED_MEDIA_TYPE` before any handler runs ([`require_json`]).
//! - Handlers parse, then run the operation on a blocking thread (operations wait for a
//!   durable commit), then answer. Nothing here panics on input; a panic inside an operation
//!   would still be answered with `INTERNAL`.

pub mod access;
pub mod audit;
mod error;
mod holding;
mod idempotency;
mod media_type;
pub mod metrics;
pub mod platform;
mod routes;
pub mod schemas;
pub mod serving;
pub mod tls;
pub mod types;

pub use error::{status_of, ApiError, Code, ErrorBody, Failure, HttpCode};
pub use idempotency::{
    idempotency_key, request_fingerprint, scope_to_caller, typed_request, CLIENT_KEY_LEN_MAX, CONSOLE_KEY_PREFIX,
    IDEMPOTENCY_HEADER,
};
pub use media_type::{check_media_type, require_json, JSON_MEDIA_TYPE};
pub use routes::{router, AbsBalances, ApiDoc, Q};
