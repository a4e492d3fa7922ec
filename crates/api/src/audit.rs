//! The REST API's part of the audit trail (`dtenge-audit`): what every identified caller did.
//!
//! - A request that changes something (anything but `GET` and `HEAD`) is written as an intent
//!   before its handler runs, and refused (`STORAGE_FAILURE`, 503) if that cannot be written;
//!   its outcome follows with the HTTP status and, for a refusal, the error's code and message.
//! - A read (`GET`) is written once it is answered: most return personal data (accounts,
//!   histories, holds, lookups), and a trail that recorded only some would need a list to keep
//!   true. `GET /metrics` is not: monitoring scrapes it every few seconds and it names no one.
//! - A caller refused a route (403) is written as a failed entry.
//! - A request that identifies no one (no credentials, or ones that do not verify: 401) is
//!   not written: anyone can send those without limit, and the trail would grow at the rate of
//!   a flood. They are counted in `GET /metrics`.
//!
//! Only an intent is waited for, and in this task, which sleeps without holding a thread until
//! the trail's committer wakes it. An outcome and a read's entry are sealed onto the chain
//! before the answer leaves (so the trail's order is the answers' order) and made durable
//! behind it: the answer is decided, and a crash before the fsync leaves the intent, closed
//! `interrupted` at the next start. The build before hopped to a blocking thread and waited for
//! an fsync twice per write and once per read, which cut the API's throughput to 0.44.

use axum::body::Body;
use axum::extract::Request;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dtenge_audit::{AuditLog, Outcome, Record};
use dtenge_core::{Error, ErrorCode};
use std::sync::Arc;

/// Largest error body read to put its code and message in the outcome.
const ERROR_BODY_BYTES_MAX: usize = 16 * 1024;
/// What the entries name as the caller's channel.
pub const ROLE: &str = "api";

/// Is the request of `method` on `path` one the trail leaves out?
fn unaudited(method: &Method, path: &str) -> bool {
    *method == Method::GET && path == "/metrics"
}

/// The idempotency key the request carries (already scoped to its caller), for the entry's
/// detail: it ties the entry to the role's record of the same request.
fn key_of(request: &Request) -> String {
    request
        .headers()
        .get(crate::IDEMPOTENCY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|key| format!("key {key}"))
        .unwrap_or_default()
}

/// Run the request of `caller` (`bank:steppe`, `operator:nbk`) through the trail.
///
/// In a task of its own: a client that goes away (a dropped connection, an HTTP/2 stream
/// reset) drops the future that serves it, and a write begun here must still get its outcome;
/// the operation itself runs on a blocking thread and finishes either way.
pub async fn audited(log: Arc<AuditLog>, caller: String, request: Request, next: Next) -> Response {
    match tokio::spawn(audited_to_the_end(log, caller, request, next)).await {
        Ok(response) => response,
        Err(_) => crate::Failure(Error::internal("the request failed unexpectedly")).into_response(),
    }
}

async fn audited_to_the_end(log: Arc<AuditLog>, caller: String, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    if unaudited(&method, &path) {
        return next.run(request).await;
    }
    let record = Record::new(&caller, ROLE, method.as_str(), &path, &key_of(&request));
    if method == Method::GET || method == Method::HEAD {
        let response = next.run(request).await;
        let (response, outcome, detail) = outcome_of(response).await;
        let mut record = record;
        record.detail = detail;
        behind(log.record_staged(&record, outcome));
        return response;
    }
    let intent = match log.begin_durable(record).await {
        Ok(intent) => intent,
        Err(e) => return refused(e),
    };
    let response = next.run(request).await;
    let (response, outcome, detail) = outcome_of(response).await;
    behind(log.finish_staged(intent, outcome == Outcome::Ok, &detail));
    response
}

/// Write a refusal of `caller`: the route is not theirs.
pub async fn refusal(log: Arc<AuditLog>, caller: String, method: &Method, path: &str, why: &str) {
    let record = Record::new(&caller, ROLE, method.as_str(), path, why);
    behind(log.record_staged(&record, Outcome::Failed));
}

/// Make a staged entry durable behind the answer, in a task of its own that sleeps until the
/// fsync: the answer is already decided. A write that fails is logged (an outcome's intent
/// stays open and is closed at the next start).
fn behind(staged: dtenge_core::Result<dtenge_audit::Staged>) {
    match staged {
        Ok(staged) => {
            tokio::spawn(async move {
                if let Err(e) = staged.durable().await {
                    tracing::error!(error = %e, "audit: an entry was not written");
                }
            });
        }
        Err(e) => tracing::error!(error = %e, "audit: an entry was not written"),
    }
}

fn refused(error: Error) -> Response {
    tracing::error!(error = %error, "audit: an intent was not written; the request is refused");
    let error = Error::new(ErrorCode::StorageFailure, format!("the audit trail cannot be written: {}", error.message));
    crate::Failure(error).into_response()
}

/// How the answer went, for the entry: `Ok` for 2xx and 3xx, else `Failed` with the status and
/// the error's code and message (the body is read and put back).
pub async fn outcome_of(response: Response) -> (Response, Outcome, String) {
    let status = response.status();
    if status.is_success() || status.is_redirection() {
        return (response, Outcome::Ok, format!("HTTP {}", status.as_u16()));
    }
    // Only a body known to be small is read: one read in part could not be given back.
    let small =
        axum::body::HttpBody::size_hint(response.body()).upper().is_some_and(|b| b <= ERROR_BODY_BYTES_MAX as u64);
    if !small {
        return (response, Outcome::Failed, format!("HTTP {}", status.as_u16()));
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, ERROR_BODY_BYTES_MAX).await else {
        let detail = format!("HTTP {}", status.as_u16());
        return (Response::from_parts(parts, Body::empty()), Outcome::Failed, detail);
    };
    let detail = match serde_json::from_slice::<crate::ApiError>(&bytes) {
        Ok(body) => format!("HTTP {} {}: {}", status.as_u16(), code_text(&body), body.error.message),
        Err(_) => format!("HTTP {}", status.as_u16()),
    };
    (Response::from_parts(parts, Body::from(bytes)), Outcome::Failed, detail)
}

fn code_text(body: &crate::ApiError) -> String {
    serde_json::to_value(body.error.code).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}
