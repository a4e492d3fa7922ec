//! Who may call what.
//!
//! Every route but a few public ones needs an authenticated [`ApiClient`]: a bank's systems
//! (`bank:<node>`) or an NBK operator (`operator:<name>`), known by a certificate of the NBK's
//! root, either presented over mutual TLS or traded for an access token at
//! `POST /v1/oauth/token` (OAuth 2.0 client credentials with a signed JWT client assertion,
//! RFC 7523; `dtenge-auth`). Then [`access`] decides from the method and the path alone:
//!
//! | routes | who |
//! |---|---|
//! | `GET /health`, `GET /v1/oracle/key`, `GET /v1/clock`, `POST /v1/oauth/token` | anyone |
//! | the oracle providers' routes (events, occurrences, VAT payers, tax account, invoices, contracts) | the provider, by its own bearer token (checked by the route) |
//! | `/v1/nodes/{node}/...` | that node's systems only: `bank:{node}` |
//! | `/v1/operator/...`, `/v1/abs/...`, the oracle's provider registry, the sandbox clock's advance, `GET /metrics` | an NBK operator |
//! | card purchases, refunds, ATM withdrawals, voucher programmes | a bank's systems |
//! | lookups (phones, transactions, the oracle's events, markings, invoices, contracts) | any authenticated client |
//!
//! A route the table does not name is refused to everyone (`Deny`): a new route is closed
//! until it is given a line here (a test checks every route in the OpenAPI description).
//!
//! The sandbox (`dtenge up`, the demo, the tests) is its own NBK: on first start it makes a
//! root under `<data>/ca` and a credential for each node's systems and for the operator
//! `operator:nbk` under `<data>/credentials` ([`open_sandbox`]); a deployment gets its
//! credentials from the NBK's CA (`dtenge ca issue --api-client ...`) instead.

use crate::error::Failure;
use crate::routes::App;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dtenge_auth::{AuthError, Authenticator, Credentials, CLIENT_ASSERTION_TYPE, GRANT_TYPE};
use dtenge_core::crypto::SecretKey;
use dtenge_core::{Error, ErrorCode, Result};
use dtenge_env::Entropy;
use dtenge_pki::{
    certificate_pem, key_from_pem, key_to_pem, pem_contents, write_atomically, ApiClient, CaDir, Subject, Trust,
};
use std::path::Path;

pub use dtenge_auth::ApiClient as Client;

/// This gateway's name: the audience of client assertions and the issuer of access tokens.
pub const ISSUER: &str = "urn:dtenge:api";
/// The token endpoint.
pub const TOKEN_PATH: &str = "/v1/oauth/token";
/// Under the data directory: the sandbox's root.
pub const CA_DIR: &str = "ca";
/// Under the data directory: the sandbox's API credentials, a key and a certificate per client.
pub const CREDENTIALS_DIR: &str = "credentials";
/// The sandbox's NBK operator.
pub const SANDBOX_OPERATOR: &str = "nbk";

/// Who may call a route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    Public,
    /// An oracle provider, authenticated by the route with its own token.
    Provider,
    /// The systems of this node.
    Bank(String),
    /// The systems of any bank.
    AnyBank,
    /// Any authenticated client.
    AnyClient,
    Operator,
    /// Nobody: a route without a line in [`access`].
    Deny,
}

/// Who may call `method` (`GET`, `POST`, ...) on `path` (a concrete path, as sent, without
/// its query).
pub fn access(method: &str, path: &str) -> Access {
    // Every route has at most seven segments: eight slots, no allocation per request; a
    // longer path matches no line.
    const SEGMENTS_MAX: usize = 8;
    let mut slots = [""; SEGMENTS_MAX];
    let mut count = 0;
    for segment in path.trim_start_matches('/').split('/') {
        if count == SEGMENTS_MAX {
            return Access::Deny;
        }
        slots[count] = segment;
        count += 1;
    }
    let get = method == "GET";
    match &slots[..count] {
        ["health"] => Access::Public,
        ["metrics"] => Access::Operator,
        ["v1", "oauth", "token"] => Access::Public,
        ["v1", "clock"] if get => Access::Public,
        ["v1", "clock", "advance"] => Access::Operator,
        ["v1", "nodes", node, ..] => Access::Bank((*node).to_string()),
        ["v1", "operator", ..] | ["v1", "abs", ..] => Access::Operator,
        ["v1", "oracle", "key"] => Access::Public,
        ["v1", "oracle", "providers"] => Access::Operator,
        ["v1", "oracle", "events"] | ["v1", "oracle", "events", _, "occurrences"] if !get => Access::Provider,
        ["v1", "oracle", "vat-payers"] | ["v1", "oracle", "invoices"] | ["v1", "oracle", "contracts"] if !get => {
            Access::Provider
        }
        ["v1", "oracle", "tax-account"] => Access::Provider,
        ["v1", "oracle", ..] if get => Access::AnyClient,
        ["v1", "card-purchases", ..] | ["v1", "atm-withdrawals"] | ["v1", "voucher-programs", ..] => Access::AnyBank,
        ["v1", "id-center", ..] | ["v1", "transactions", _] if get => Access::AnyClient,
        _ => Access::Deny,
    }
}

/// What a handler knows of its caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller(pub ApiClient);

/// The certificate a client presented in the TLS handshake, set by the TLS listener.
#[derive(Clone, Debug)]
pub struct TlsPeer(pub Vec<u8>);

/// The time for tokens and certificates: the system's, whatever the platform's clock (a
/// sandbox's manual clock moves by days; a token's ten minutes do not).
pub fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn unauthorized(message: String) -> Response {
    let mut response = Failure(Error::new(ErrorCode::Unauthorized, message)).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn who_may(access: &Access) -> String {
    match access {
        Access::Bank(node) => format!("the systems of node '{node}' (bank:{node})"),
        Access::AnyBank => "a bank's systems".into(),
        Access::Operator => "an NBK operator".into(),
        _ => "nobody".into(),
    }
}

fn forbidden(client: &ApiClient, access: &Access) -> Response {
    let who = who_may(access);
    Failure(Error::new(ErrorCode::Forbidden, format!("{client} may not call this route: it is for {who}")))
        .into_response()
}

/// The client of a request: its TLS certificate, else its bearer token.
fn client_of(app: &App, request: &Request) -> std::result::Result<ApiClient, String> {
    let authenticator = app.authenticator();
    if let Some(TlsPeer(cert)) = request.extensions().get::<TlsPeer>() {
        return authenticator.client_of_certificate(cert, now_s()).map_err(|e| e.to_string());
    }
    let token = bearer(request.headers())?;
    authenticator.authenticate(token, now_s()).map_err(|e| e.to_string())
}

fn bearer(headers: &HeaderMap) -> std::result::Result<&str, String> {
    let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
        format!("send 'Authorization: Bearer <access token>' (from POST {TOKEN_PATH}) or a client certificate")
    })?;
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "the Authorization header must be 'Bearer <access token>'".to_string())
}

/// The middleware: authenticate, then allow by [`access`], before any handler runs.
///
/// It also counts and times every answer for `GET /metrics`: one layer around every route
/// rather than two (each middleware layer costs a boxed future per request).
pub(crate) async fn authorize(State(app): State<App>, request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let response = decide(&app, request, next).await;
    let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    app.metrics().record(response.status(), latency_us);
    response
}

async fn decide(app: &App, mut request: Request, next: Next) -> Response {
    // Decided on the decoded path, as the routes read it (`ste%70pe` is `steppe`); a path
    // that does not decode is refused as the routes would refuse it.
    let raw = request.uri().path();
    let decoded;
    let path = if raw.contains('%') {
        let Some(path) = percent_decode(raw.as_bytes(), false) else {
            return Failure(Error::malformed("the path is not percent-encoded UTF-8")).into_response();
        };
        decoded = path;
        decoded.as_str()
    } else {
        raw
    };
    let access = access(request.method().as_str(), path);
    match access {
        Access::Public | Access::Provider => return next.run(request).await,
        Access::Deny => {
            return Failure(Error::new(ErrorCode::Forbidden, "this route is open to nobody")).into_response();
        }
        _ => {}
    }
    let client = match client_of(app, &request) {
        Ok(client) => client,
        Err(message) => return unauthorized(message),
    };
    let allowed = match (&access, &client) {
        (Access::Bank(node), ApiClient::Bank(bank)) => node == bank,
        (Access::AnyBank, ApiClient::Bank(_)) => true,
        (Access::Operator, ApiClient::Operator(_)) => true,
        (Access::AnyClient, _) => true,
        _ => false,
    };
    if !allowed {
        let response = forbidden(&client, &access);
        let why = format!("refused: the route is for {}", who_may(&access));
        crate::audit::refusal(app.audit().clone(), client.to_string(), request.method(), path, &why).await;
        return response;
    }
    if let Err(e) = crate::idempotency::scope_to_caller(request.headers_mut(), &client) {
        return Failure(e).into_response();
    }
    let caller = client.to_string();
    request.extensions_mut().insert(Caller(client));
    crate::audit::audited(app.audit().clone(), caller, request, next).await
}

/// `POST /v1/oauth/token`: the client credentials grant, form-encoded as RFC 6749 asks, with a
/// JWT client assertion (RFC 7523). Answers as RFC 6749 §5.1 and §5.2 do.
pub(crate) async fn token(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    if form_type != Some("application/x-www-form-urlencoded") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "send Content-Type: application/x-www-form-urlencoded",
        );
    }
    let mut grant_type = None;
    let mut assertion_type = None;
    let mut assertion = None;
    for (name, value) in form_urlencoded_pairs(&body) {
        match name.as_str() {
            "grant_type" => grant_type = Some(value),
            "client_assertion_type" => assertion_type = Some(value),
            "client_assertion" => assertion = Some(value),
            _ => {}
        }
    }
    if grant_type.as_deref() != Some(GRANT_TYPE) {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "grant_type must be client_credentials");
    }
    if assertion_type.as_deref() != Some(CLIENT_ASSERTION_TYPE) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("client_assertion_type must be {CLIENT_ASSERTION_TYPE}"),
        );
    }
    let Some(assertion) = assertion else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "no client_assertion");
    };
    match app.authenticator().grant(&assertion, now_s()) {
        Ok(granted) => {
            let body = serde_json::json!({
                "access_token": granted.token,
                "token_type": "Bearer",
                "expires_in": granted.expires_in_s,
            });
            let mut response = (StatusCode::OK, axum::Json(body)).into_response();
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(AuthError::Busy) => {
            oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", "retry shortly")
        }
        Err(error) => oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", &error.to_string()),
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = serde_json::json!({ "error": error, "error_description": description });
    (status, axum::Json(body)).into_response()
}

/// `application/x-www-form-urlencoded` pairs, decoded; a pair that does not decode is skipped.
fn form_urlencoded_pairs(body: &[u8]) -> Vec<(String, String)> {
    // A form of three short fields and a JWT: a bound on the pairs read.
    const PAIRS_MAX: usize = 16;
    body.split(|b| *b == b'&')
        .take(PAIRS_MAX)
        .filter_map(|pair| {
            let mut parts = pair.splitn(2, |b| *b == b'=');
            let name = percent_decode(parts.next()?, true)?;
            let value = percent_decode(parts.next().unwrap_or_default(), true)?;
            Some((name, value))
        })
        .collect()
}

/// Percent-decoding; `+` is a space in a form (`plus_is_space`), itself in a path.
fn percent_decode(bytes: &[u8], plus_is_space: bool) -> Option<String> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The form a client posts to the token endpoint.
pub fn token_request_form(assertion: &str) -> String {
    // A JWT is base64url and dots: nothing in it needs escaping in a form.
    format!("grant_type={GRANT_TYPE}&client_assertion_type={CLIENT_ASSERTION_TYPE}&client_assertion={assertion}")
}

// ---- the sandbox's credentials --------------------------------------------------------------

fn storage(path: &Path) -> impl FnOnce(String) -> Error + '_ {
    move |e| Error::new(ErrorCode::StorageFailure, format!("{}: {e}", path.display()))
}

/// The file name, without extension, of `client`'s credential: `api-bank-steppe`.
pub fn credentials_stem(client: &ApiClient) -> String {
    format!("api-{client}").replace(':', "-")
}

/// Every API client's credential in `dir`: each `<stem>.crt.pem` of an API client whose
/// stem is its own, with the key beside it. Other files are passed over.
pub fn load_all_credentials(dir: &Path) -> Result<std::collections::BTreeMap<ApiClient, Credentials>> {
    let entries = std::fs::read_dir(dir).map_err(|e| storage(dir)(e.to_string()))?;
    let mut held = std::collections::BTreeMap::new();
    for entry in entries {
        let path = entry.map_err(|e| storage(dir)(e.to_string()))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        let Some(stem) = name.strip_suffix(".crt.pem") else { continue };
        let text = std::fs::read_to_string(&path).map_err(|e| storage(&path)(e.to_string()))?;
        let der = pem_contents(&text, "CERTIFICATE").map_err(storage(&path))?;
        let certified = dtenge_pki::read_certificate(&der).map_err(|e| storage(&path)(e.to_string()))?;
        let Subject::Api(client) = certified.subject else { continue };
        if credentials_stem(&client) == stem {
            let credentials = load_credentials(dir, &client)?;
            held.insert(client, credentials);
        }
    }
    Ok(held)
}

/// Which of the `held` credentials makes a call to `method` `path` (its query ignored): the
/// API client the table allows; a call that may be any bank's goes as the first bank held;
/// a public one, a provider's or a refused one as nobody.
pub fn caller_among<'a>(
    held: &'a std::collections::BTreeMap<ApiClient, Credentials>,
    method: &str,
    path: &str,
) -> Option<&'a Credentials> {
    let path = path.split('?').next().unwrap_or(path);
    let first =
        |operator: bool| held.iter().find(|(c, _)| matches!(c, ApiClient::Operator(_)) == operator).map(|(_, c)| c);
    match access(method, path) {
        Access::Bank(node) => held.get(&ApiClient::Bank(node)),
        Access::Operator => first(true),
        Access::AnyBank | Access::AnyClient => first(false),
        Access::Public | Access::Provider | Access::Deny => None,
    }
}

/// `client`'s key and certificate from `dir` (`<stem>.key.pem`, `<stem>.crt.pem`).
pub fn load_credentials(dir: &Path, client: &ApiClient) -> Result<Credentials> {
    let stem = credentials_stem(client);
    let read = |name: String| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|e| storage(&path)(e.to_string()))
    };
    let key = key_from_pem(&read(format!("{stem}.key.pem"))?).map_err(|e| storage(dir)(e.to_string()))?;
    let cert_der = pem_contents(&read(format!("{stem}.crt.pem"))?, "CERTIFICATE").map_err(storage(dir))?;
    Ok(Credentials { client: client.clone(), key, cert_der })
}

/// The gateway's authenticator with the revocation list it follows: the file the CA writes
/// (`dtenge ca revoke` rewrites `crl.pem`). The file is looked at once a second at most, on a
/// request, so a revocation stops its client's calls within a second of being signed, and a
/// request pays one atomic load otherwise.
pub struct Gate {
    authenticator: Authenticator,
    ca_der: Vec<u8>,
    crl_path: std::path::PathBuf,
    /// The list in force: the file's modification time when it was read.
    crl_modified: parking_lot::Mutex<Option<std::time::SystemTime>>,
    checked_s: std::sync::atomic::AtomicI64,
}

impl Gate {
    /// The authenticator, with the newest revocation list put in force first if the file
    /// changed since it was last looked at (at most once a second).
    pub fn authenticator(&self) -> &Authenticator {
        use std::sync::atomic::Ordering;
        let now = now_s();
        if self.checked_s.swap(now, Ordering::Relaxed) != now {
            self.follow_revocations();
        }
        &self.authenticator
    }

    fn follow_revocations(&self) {
        let Ok(modified) = std::fs::metadata(&self.crl_path).and_then(|m| m.modified()) else {
            return;
        };
        let mut in_force = self.crl_modified.lock();
        if *in_force == Some(modified) {
            return;
        }
        // A list that does not read or is older than the one in force is not put in force; the
        // one in force stays, and the file is looked at again next second.
        let read = std::fs::read_to_string(&self.crl_path)
            .map_err(|e| e.to_string())
            .and_then(|text| pem_contents(&text, "X509 CRL"))
            .and_then(|der| Trust::new(&self.ca_der, &der).map_err(|e| e.to_string()));
        match read {
            Ok(trust) if trust.revocation_list_number() >= self.authenticator.revocation_list_number() => {
                self.authenticator.set_trust(trust);
                *in_force = Some(modified);
            }
            Ok(_) => {
                tracing::warn!(path = %self.crl_path.display(), "an older revocation list than the one in force; ignored")
            }
            Err(error) => {
                tracing::warn!(path = %self.crl_path.display(), %error, "a revocation list that does not read; the one in force stays")
            }
        }
    }
}

/// The sandbox's gateway: its root under `<dir>/ca` (made on first start), a credential for
/// each of `nodes`' systems and for the operator under `<dir>/credentials`, and the
/// authenticator that trusts them, following the root's revocation list, signing access
/// tokens with `gateway_key` (the vault's: `dtenge-keys`).
pub fn open_sandbox(dir: &Path, entropy: &Entropy, nodes: &[String], gateway_key: SecretKey) -> Result<Gate> {
    let ca_path = dir.join(CA_DIR);
    let now = now_s();
    let ca = if ca_path.join(dtenge_pki::CA_KEY_FILE).exists() {
        CaDir::open(&ca_path)
    } else {
        CaDir::init(&ca_path, SecretKey::from_seed(entropy.seed32()), now - 60)
    }
    .map_err(|e| storage(&ca_path)(e.to_string()))?;
    let credentials = dir.join(CREDENTIALS_DIR);
    std::fs::create_dir_all(&credentials).map_err(|e| storage(&credentials)(e.to_string()))?;
    let clients = nodes
        .iter()
        .map(|node| ApiClient::Bank(node.clone()))
        .chain(std::iter::once(ApiClient::Operator(SANDBOX_OPERATOR.into())));
    for client in clients {
        let stem = credentials_stem(&client);
        let (key_path, cert_path) =
            (credentials.join(format!("{stem}.key.pem")), credentials.join(format!("{stem}.crt.pem")));
        if key_path.exists() && cert_path.exists() {
            continue;
        }
        let key = SecretKey::from_seed(entropy.seed32());
        let cert = ca
            .issue(&Subject::Api(client), key.public_key(), &[], now - 60)
            .map_err(|e| storage(&ca_path)(e.to_string()))?;
        write_atomically(&key_path, key_to_pem(&key).as_bytes(), true)
            .map_err(|e| storage(&key_path)(e.to_string()))?;
        write_atomically(&cert_path, certificate_pem(&cert).as_bytes(), false)
            .map_err(|e| storage(&cert_path)(e.to_string()))?;
    }
    let crl_path = ca_path.join(dtenge_pki::CRL_FILE);
    let crl_modified = std::fs::metadata(&crl_path).and_then(|m| m.modified()).ok();
    let crl = ca.revocation_list_der().map_err(|e| storage(&ca_path)(e.to_string()))?;
    let trust = Trust::new(ca.cert_der(), &crl).map_err(|e| storage(&ca_path)(e.to_string()))?;
    Ok(Gate {
        authenticator: Authenticator::new(ISSUER, gateway_key, trust),
        ca_der: ca.cert_der().to_vec(),
        crl_path,
        crl_modified: parking_lot::Mutex::new(crl_modified),
        checked_s: std::sync::atomic::AtomicI64::new(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn a_path_is_for_its_node_the_operator_or_everyone_as_the_table_says() {
        let bank = |n: &str| Access::Bank(n.into());
        for (method, path, expected) in [
            (Method::GET, "/health", Access::Public),
            (Method::POST, "/v1/oauth/token", Access::Public),
            (Method::POST, "/v1/nodes/steppe/transfers", bank("steppe")),
            (Method::GET, "/v1/nodes/sapa/accounts/c1/history", bank("sapa")),
            (Method::POST, "/v1/nodes/sapa/emissions", bank("sapa")),
            (Method::POST, "/v1/operator/nodes/tulpar/block", Access::Operator),
            (Method::POST, "/v1/abs/correspondent/sapa/credits", Access::Operator),
            (Method::POST, "/v1/oracle/providers", Access::Operator),
            (Method::POST, "/v1/clock/advance", Access::Operator),
            (Method::GET, "/v1/clock", Access::Public),
            (Method::POST, "/v1/oracle/events", Access::Provider),
            (Method::GET, "/v1/oracle/events", Access::AnyClient),
            (Method::POST, "/v1/oracle/events/EV1/occurrences", Access::Provider),
            (Method::PUT, "/v1/oracle/tax-account", Access::Provider),
            (Method::POST, "/v1/card-purchases", Access::AnyBank),
            (Method::GET, "/v1/transactions/ab", Access::AnyClient),
            (Method::POST, "/v1/transactions/ab", Access::Deny),
            (Method::GET, "/v1/secret", Access::Deny),
            (Method::GET, "/v1/nodes/steppe/a/b/c/d/e/f/g", Access::Deny),
        ] {
            assert_eq!(access(method.as_str(), path), expected, "{method} {path}");
        }
    }

    #[test]
    fn every_route_of_the_api_is_open_to_someone() {
        use utoipa::OpenApi;
        let doc = crate::ApiDoc::openapi();
        for (template, item) in doc.paths.paths {
            // A concrete path from the template: each `{param}` becomes a sample value.
            let path: String =
                template.split('/').map(|s| if s.starts_with('{') { "x" } else { s }).collect::<Vec<_>>().join("/");
            let methods = [
                (Method::GET, item.get.is_some()),
                (Method::POST, item.post.is_some()),
                (Method::PUT, item.put.is_some()),
            ];
            for (method, _) in methods.into_iter().filter(|(_, present)| *present) {
                assert_ne!(access(method.as_str(), &path), Access::Deny, "{method} {template} has no line in `access`");
            }
        }
    }

    #[test]
    fn a_form_decodes_with_its_escapes() {
        let pairs = form_urlencoded_pairs(b"grant_type=client_credentials&a=x%3Ay+z&broken=%zz");
        assert_eq!(pairs, vec![("grant_type".into(), "client_credentials".into()), ("a".into(), "x:y z".into())]);
    }

    #[test]
    fn the_sandbox_makes_its_credentials_once_and_they_get_a_token() {
        let dir = tempfile::tempdir().unwrap();
        let entropy = Entropy::from_seed(5);
        let gate = open_sandbox(dir.path(), &entropy, &["steppe".into()], SecretKey::from_seed([6; 32])).unwrap();
        let gateway = gate.authenticator();
        let steppe = ApiClient::Bank("steppe".into());
        let credentials = load_credentials(&dir.path().join(CREDENTIALS_DIR), &steppe).unwrap();
        let first_cert = credentials.cert_der.clone();
        let granted = gateway.grant(&credentials.assertion(ISSUER, now_s(), "j1"), now_s()).unwrap();
        assert_eq!(gateway.authenticate(&granted.token, now_s()).unwrap(), steppe);
        // Opened again: the same root, credentials and gateway key.
        let again = open_sandbox(dir.path(), &entropy, &["steppe".into()], SecretKey::from_seed([6; 32])).unwrap();
        let again = again.authenticator();
        assert_eq!(load_credentials(&dir.path().join(CREDENTIALS_DIR), &steppe).unwrap().cert_der, first_cert);
        assert_eq!(again.authenticate(&granted.token, now_s()).unwrap(), steppe, "tokens survive a restart");
        let operator = ApiClient::Operator(SANDBOX_OPERATOR.into());
        assert!(load_credentials(&dir.path().join(CREDENTIALS_DIR), &operator).is_ok());

        // The CA revokes Steppe's credential: the gateway follows within a second.
        let serial = dtenge_pki::read_certificate(&first_cert).unwrap().serial;
        CaDir::open(&dir.path().join(CA_DIR))
            .unwrap()
            .revoke(serial, dtenge_pki::Reason::KeyCompromise, now_s())
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while gate.authenticator().authenticate(&granted.token, now_s()).is_ok() {
            assert!(std::time::Instant::now() < deadline, "the revocation was not followed");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert_eq!(gate.authenticator().authenticate(&granted.token, now_s()), Err(AuthError::Revoked));
    }
}
