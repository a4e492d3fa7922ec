//! Idempotency keys as every HTTP face takes them: the key from its header, and the
//! fingerprint of the request it came with. The REST API fingerprints the request as its route
//! decodes it ([`typed_request`]), the consoles the JSON they received
//! ([`request_fingerprint`]); both ignore spacing and key order and include the path. Keys
//! are scoped to their caller: a REST client's under its identity ([`scope_to_caller`]:
//! `bank:steppe/<key>`), a console user's under the user (`console:<user>:<key>`), so no
//! caller can take, or be refused, a key another caller used.

use axum::http::{HeaderMap, Method};
use dtenge_core::crypto::{hash_parts, Hash32};
use dtenge_core::Error;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The idempotency header.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// Keys beginning with this belong to the consoles, which scope each user's keys under it
/// (`console:<user>:<key>`); the REST API refuses them so the two namespaces never meet.
pub const CONSOLE_KEY_PREFIX: &str = "console:";

/// The longest idempotency key a REST client sends: stored under its caller's identity
/// ([`scope_to_caller`]), within the roles' 120 bytes for a batch's key.
pub const CLIENT_KEY_LEN_MAX: usize = 64;
/// The longest caller identity a key is scoped under (`bank:<id>`, `operator:<name>`, ...).
const CALLER_LEN_MAX: usize = 55;

/// Scope the request's `Idempotency-Key` to `caller`, who the gateway authenticated: the key
/// becomes `<caller>/<key>` before any route reads it, so one client's keys are its own, and
/// another client using the same key neither gets its answer nor is refused
/// `IDEMPOTENCY_KEY_REUSED` for it. A key that is not 1 to [`CLIENT_KEY_LEN_MAX`] visible
/// ASCII characters is refused. Without the header nothing changes (the route requires it).
pub fn scope_to_caller(headers: &mut HeaderMap, caller: &dtenge_pki::ApiClient) -> Result<(), Error> {
    scope(headers, &caller.to_string())
}

/// [`scope_to_caller`] for an oracle provider, which its routes authenticate by its bearer
/// token rather than the access layer: its keys are kept under a digest of the token
/// (`provider-token:<16 hex>/<key>`), the provider's one credential.
pub fn scope_to_provider_token(headers: &mut HeaderMap, token: &str) -> Result<(), Error> {
    let digest = hash_parts(b"dtenge/idempotency/provider-token/v1", &[token.as_bytes()]);
    scope(headers, &format!("provider-token:{}", &digest.to_hex()[..16]))
}

fn scope(headers: &mut HeaderMap, caller: &str) -> Result<(), Error> {
    let Some(value) = headers.get(IDEMPOTENCY_HEADER) else { return Ok(()) };
    let key = value.to_str().map_err(|_| Error::malformed("the Idempotency-Key header must be visible ASCII"))?;
    if key.is_empty() || key.len() > CLIENT_KEY_LEN_MAX {
        return Err(Error::malformed(format!("an idempotency key has 1 to {CLIENT_KEY_LEN_MAX} characters")));
    }
    // A long name (a certificate may name up to 64 characters) is scoped under its digest, so
    // that every scoped key stays within the roles' bounds.
    let digest;
    let caller = if caller.len() > CALLER_LEN_MAX {
        digest =
            format!("caller:{}", &hash_parts(b"dtenge/idempotency/caller/v1", &[caller.as_bytes()]).to_hex()[..32]);
        digest.as_str()
    } else {
        caller
    };
    let scoped = axum::http::HeaderValue::from_str(&format!("{caller}/{key}"))
        .map_err(|_| Error::malformed("the Idempotency-Key header must be visible ASCII"))?;
    headers.insert(IDEMPOTENCY_HEADER, scoped);
    Ok(())
}

/// The `Idempotency-Key` header: required, visible ASCII. Its length is checked where it is
/// stored (`Platform::once`), since a face may prefix it.
pub fn idempotency_key(headers: &HeaderMap) -> Result<String, Error> {
    let key = headers
        .get(IDEMPOTENCY_HEADER)
        .ok_or_else(|| Error::malformed("the Idempotency-Key header is required on every POST and PUT"))?
        .to_str()
        .map_err(|_| Error::malformed("the Idempotency-Key header must be visible ASCII"))?;
    Ok(key.to_string())
}

/// The fingerprint of a request (method, path and JSON body) and the body parsed. An empty
/// body counts as `null`.
///
/// The fingerprint hashes the JSON with sorted keys and no spacing, so the same request sent
/// with other whitespace or key order is still the same request. The path is part of it: the
/// same key sent to another route is another request.
pub fn request_fingerprint(method: &Method, path: &str, body: &[u8]) -> Result<(Hash32, serde_json::Value), Error> {
    let raw: &[u8] = if body.is_empty() { b"null" } else { body };
    let value: serde_json::Value =
        serde_json::from_slice(raw).map_err(|e| Error::malformed(format!("request body: {e}")))?;
    let canonical = serde_json::to_vec(&value).map_err(|e| Error::internal(format!("canonical JSON: {e}")))?;
    let fingerprint =
        hash_parts(b"dtenge/idempotency/v1", &[method.as_str().as_bytes(), b" ", path.as_bytes(), b"\n", &canonical]);
    Ok((fingerprint, value))
}

/// [`request_fingerprint`] for a route that decodes its body into a type `R`: one parse
/// instead of two. The fingerprint hashes `R` encoded again as JSON (its fields in their
/// declared order, no spacing), so the same request sent with other whitespace or key order is
/// still the same request, as with [`request_fingerprint`]; so is one with a field `R` does not
/// take, which the route ignores anyway. The path is part of it. The REST API's mutating
/// routes use it. Why: they parsed the body into JSON values, wrote them back sorted and
/// decoded the values again; for a signed transaction that took about a tenth of the gateway's
/// CPU under load. An empty body counts as `null`.
pub fn typed_request<R: DeserializeOwned + Serialize>(
    method: &Method,
    path: &str,
    body: &[u8],
) -> Result<(Hash32, R), Error> {
    let raw: &[u8] = if body.is_empty() { b"null" } else { body };
    let request: R = serde_json::from_slice(raw).map_err(|e| Error::malformed(format!("request body: {e}")))?;
    let canonical = serde_json::to_vec(&request).map_err(|e| Error::internal(format!("canonical JSON: {e}")))?;
    let fingerprint = hash_parts(
        b"dtenge/idempotency/typed/v1",
        &[method.as_str().as_bytes(), b" ", path.as_bytes(), b"\n", &canonical],
    );
    Ok((fingerprint, request))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_scoped_to_its_caller_and_bounded() {
        let steppe = dtenge_pki::ApiClient::Bank("steppe".into());
        let mut headers = HeaderMap::new();
        scope_to_caller(&mut headers, &steppe).unwrap();
        assert!(headers.get(IDEMPOTENCY_HEADER).is_none(), "no key, nothing added");
        headers.insert(IDEMPOTENCY_HEADER, "t-1".parse().unwrap());
        scope_to_caller(&mut headers, &steppe).unwrap();
        assert_eq!(idempotency_key(&headers).unwrap(), "bank:steppe/t-1");
        let operator = dtenge_pki::ApiClient::Operator("nbk".into());
        headers.insert(IDEMPOTENCY_HEADER, "t-1".parse().unwrap());
        scope_to_caller(&mut headers, &operator).unwrap();
        assert_eq!(idempotency_key(&headers).unwrap(), "operator:nbk/t-1");
        for refused in ["".to_string(), "k".repeat(CLIENT_KEY_LEN_MAX + 1)] {
            headers.insert(IDEMPOTENCY_HEADER, refused.parse().unwrap());
            let error = scope_to_caller(&mut headers, &steppe).unwrap_err();
            assert_eq!(error.code, dtenge_core::ErrorCode::MalformedInput, "{refused:?}");
        }
        // The longest key under the longest name scoped as it is, and under longer ones (scoped
        // to their digests): within a batch key's bound, no two names sharing a scope.
        let mut scoped = Vec::new();
        for name in ["o".repeat(CALLER_LEN_MAX - "operator:".len()), "o".repeat(64), "p".repeat(64)] {
            headers.insert(IDEMPOTENCY_HEADER, "k".repeat(CLIENT_KEY_LEN_MAX).parse().unwrap());
            scope_to_caller(&mut headers, &dtenge_pki::ApiClient::Operator(name)).unwrap();
            let key = idempotency_key(&headers).unwrap();
            assert!(key.len() <= crate::types::TransactionBatch::KEY_LEN_MAX, "{}", key.len());
            scoped.push(key);
        }
        assert!(scoped[0] != scoped[1] && scoped[1] != scoped[2], "{scoped:?}");
    }

    #[test]
    fn the_fingerprint_ignores_spacing_and_key_order_but_not_the_path_or_the_body() {
        let post = Method::POST;
        let (a, _) = request_fingerprint(&post, "/v1/x", br#"{"a":1,"b":2}"#).unwrap();
        let (b, _) = request_fingerprint(&post, "/v1/x", b"{ \"b\": 2,\n \"a\": 1 }").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, request_fingerprint(&post, "/v1/y", br#"{"a":1,"b":2}"#).unwrap().0);
        assert_ne!(a, request_fingerprint(&post, "/v1/x", br#"{"a":1,"b":3}"#).unwrap().0);
        assert_ne!(a, request_fingerprint(&Method::PUT, "/v1/x", br#"{"a":1,"b":2}"#).unwrap().0);
        assert_eq!(request_fingerprint(&post, "/v1/x", b"").unwrap().1, serde_json::Value::Null);
        assert_eq!(request_fingerprint(&post, "/v1/x", b"{").unwrap_err().code, dtenge_core::ErrorCode::MalformedInput);
    }

    #[test]
    fn the_typed_fingerprint_ignores_spacing_and_key_order_but_not_the_path_or_the_body() {
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        struct Body {
            a: u32,
            b: u32,
        }
        let post = Method::POST;
        let (a, body) = typed_request::<Body>(&post, "/v1/x", br#"{"a":1,"b":2}"#).unwrap();
        assert_eq!(body, Body { a: 1, b: 2 });
        let (b, _) = typed_request::<Body>(&post, "/v1/x", b"{ \"b\": 2,\n \"a\": 1 }").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, typed_request::<Body>(&post, "/v1/y", br#"{"a":1,"b":2}"#).unwrap().0);
        assert_ne!(a, typed_request::<Body>(&post, "/v1/x", br#"{"a":1,"b":3}"#).unwrap().0);
        assert_ne!(a, typed_request::<Body>(&Method::PUT, "/v1/x", br#"{"a":1,"b":2}"#).unwrap().0);
        for bad in [&b""[..], b"{", br#"{"a":1}"#, br#"{"a":"1","b":2}"#] {
            let refused = typed_request::<Body>(&post, "/v1/x", bad).unwrap_err();
            assert_eq!(refused.code, dtenge_core::ErrorCode::MalformedInput, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_missing_or_unreadable_key_is_malformed_input() {
        let mut headers = HeaderMap::new();
        assert_eq!(idempotency_key(&headers).unwrap_err().code, dtenge_core::ErrorCode::MalformedInput);
        headers.insert(IDEMPOTENCY_HEADER, axum::http::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
        assert_eq!(idempotency_key(&headers).unwrap_err().code, dtenge_core::ErrorCode::MalformedInput);
        headers.insert(IDEMPOTENCY_HEADER, axum::http::HeaderValue::from_static("k-1"));
        assert_eq!(idempotency_key(&headers).unwrap(), "k-1");
    }
}
