//! A small blocking client of the REST API, as a bank's integration would write it: every
//! mutating call carries a fresh idempotency key, and every call that needs it an access
//! token.
//!
//! The demo plays every party at once (each bank's systems, the NBK operator), so this client
//! holds the credentials of several API clients and picks, for each call, the one the
//! gateway's table says may make it ([`dtenge_api::access::access`]): `bank:steppe` for
//! `/v1/nodes/steppe/...`, the operator for `/v1/operator/...`. It trades each client's
//! signed assertion for an access token at `POST /v1/oauth/token` once and keeps the token
//! until shortly before it expires.

use dtenge_api::access::{caller_among, load_all_credentials, token_request_form, ISSUER, TOKEN_PATH};
use dtenge_auth::{ApiClient, Credentials};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A token is asked for again this long before it expires.
const TOKEN_RENEW_BEFORE: Duration = Duration::from_secs(60);

/// A failed call: the HTTP status and the error body's code and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiFailure {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {} {}: {}", self.status, self.code, self.message)
    }
}

pub type CallResult = Result<Value, ApiFailure>;

/// The client.
pub struct Client {
    base: String,
    agent: ureq::Agent,
    prefix: String,
    counter: AtomicU64,
    /// The API clients this one speaks for, by name; none for an anonymous client.
    credentials: BTreeMap<ApiClient, Credentials>,
    /// Access tokens granted, with when to ask again.
    tokens: Mutex<BTreeMap<ApiClient, (String, Instant)>>,
}

impl Client {
    /// A client with no credentials: it reaches the public routes only.
    pub fn new(base_url: &str) -> Client {
        let agent = ureq::AgentBuilder::new().timeout(std::time::Duration::from_secs(60)).build();
        let prefix = format!(
            "{:x}",
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
        );
        Client {
            base: base_url.trim_end_matches('/').to_string(),
            agent,
            prefix,
            counter: AtomicU64::new(0),
            credentials: BTreeMap::new(),
            tokens: Mutex::new(BTreeMap::new()),
        }
    }

    /// A client speaking for every API client whose credential is in `dir` (a sandbox's
    /// `<data>/credentials`: `api-*.key.pem` beside `api-*.crt.pem`).
    ///
    /// Over HTTPS it trusts the sandbox's root beside them (`<data>/ca/ca.crt.pem`), which
    /// issued the gateway's certificate (`up --tls`).
    pub fn with_credentials(base_url: &str, dir: &Path) -> Result<Client, String> {
        let mut client = Client::new(base_url);
        if base_url.starts_with("https://") {
            let root = dir.parent().unwrap_or(dir).join(dtenge_api::access::CA_DIR).join(dtenge_pki::CA_CERT_FILE);
            let text = std::fs::read_to_string(&root).map_err(|e| format!("{}: {e}", root.display()))?;
            let der = dtenge_pki::pem_contents(&text, "CERTIFICATE")?;
            let roots = dtenge_pki::roots(&der).map_err(|e| e.to_string())?;
            let config = rustls::ClientConfig::builder_with_provider(dtenge_pki::tls_provider())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            client.agent = ureq::AgentBuilder::new()
                .timeout(std::time::Duration::from_secs(60))
                .tls_config(std::sync::Arc::new(config))
                .build();
        }
        client.credentials = load_all_credentials(dir).map_err(|e| e.to_string())?;
        if client.credentials.is_empty() {
            return Err(format!("{} holds no API credentials", dir.display()));
        }
        Ok(client)
    }

    /// A new idempotency key.
    pub fn key(&self) -> String {
        format!("{}-{}", self.prefix, self.counter.fetch_add(1, Ordering::SeqCst))
    }

    /// Who makes a call to `path`: the API client the gateway's table allows, if this client
    /// holds its credential.
    fn caller(&self, method: &str, path: &str) -> Option<&Credentials> {
        caller_among(&self.credentials, method, path)
    }

    /// `Authorization: Bearer <token>` for a call to `path`, asking for a token first if none
    /// is held or it is about to expire; `None` for a call that needs none.
    pub fn authorization(&self, method: &str, path: &str) -> Result<Option<String>, ApiFailure> {
        let Some(credentials) = self.caller(method, path) else {
            return Ok(None);
        };
        let client = credentials.client.clone();
        Ok(Some(format!("Bearer {}", self.token(&client)?)))
    }

    /// An access token for `client`, whose credential this client holds: the one held, or a
    /// new one if none is held or it is about to expire.
    pub fn token(&self, client: &ApiClient) -> Result<String, ApiFailure> {
        let credentials = self
            .credentials
            .get(client)
            .ok_or_else(|| transport(format!("no credential for {client} among this client's")))?;
        if let Some((token, renew_at)) = self.tokens.lock().get(client) {
            if Instant::now() < *renew_at {
                return Ok(token.clone());
            }
        }
        let now_s = dtenge_api::access::now_s();
        let assertion = credentials.assertion(ISSUER, now_s, &self.key());
        let granted = self
            .agent
            .post(&format!("{}{TOKEN_PATH}", self.base))
            .set("Content-Type", "application/x-www-form-urlencoded")
            .send_string(&token_request_form(&assertion));
        let body: Value = match granted {
            Ok(response) => response.into_json().map_err(|e| transport(e.to_string()))?,
            Err(ureq::Error::Status(status, response)) => {
                let body: Value = response.into_json().unwrap_or(Value::Null);
                return Err(ApiFailure {
                    status,
                    code: body["error"].as_str().unwrap_or("?").to_string(),
                    message: body["error_description"].as_str().unwrap_or("").to_string(),
                });
            }
            Err(e) => return Err(transport(e.to_string())),
        };
        let token = body["access_token"].as_str().ok_or_else(|| transport("no access_token".into()))?.to_string();
        let lifetime = Duration::from_secs(body["expires_in"].as_u64().unwrap_or(0));
        let renew_at = Instant::now() + lifetime.saturating_sub(TOKEN_RENEW_BEFORE);
        self.tokens.lock().insert(client.clone(), (token.clone(), renew_at));
        Ok(token)
    }

    /// A request to `path` with its access token, if the call needs one.
    fn request(&self, method: &str, path: &str) -> Result<ureq::Request, ApiFailure> {
        let request = self.agent.request(method, &format!("{}{path}", self.base));
        Ok(match self.authorization(method, path)? {
            Some(authorization) => request.set("Authorization", &authorization),
            None => request,
        })
    }

    pub fn get(&self, path: &str) -> CallResult {
        answer(self.request("GET", path)?.call())
    }

    /// POST with a fresh idempotency key.
    pub fn post(&self, path: &str, body: &Value) -> CallResult {
        self.post_with_key(path, body, &self.key())
    }

    pub fn post_with_key(&self, path: &str, body: &Value, key: &str) -> CallResult {
        answer(self.request("POST", path)?.set("Idempotency-Key", key).send_json(body.clone()))
    }

    /// POST as an oracle provider: `Authorization: Bearer <token>`, fresh idempotency key.
    pub fn post_bearer(&self, path: &str, body: &Value, token: &str) -> CallResult {
        answer(
            self.agent
                .post(&format!("{}{path}", self.base))
                .set("Idempotency-Key", &self.key())
                .set("Authorization", &format!("Bearer {token}"))
                .send_json(body.clone()),
        )
    }

    /// PUT as an oracle provider.
    pub fn put_bearer(&self, path: &str, body: &Value, token: &str) -> CallResult {
        answer(
            self.agent
                .put(&format!("{}{path}", self.base))
                .set("Idempotency-Key", &self.key())
                .set("Authorization", &format!("Bearer {token}"))
                .send_json(body.clone()),
        )
    }

    pub fn put(&self, path: &str, body: &Value) -> CallResult {
        answer(self.request("PUT", path)?.set("Idempotency-Key", &self.key()).send_json(body.clone()))
    }

    /// A raw request, for tests of malformed input.
    pub fn raw(&self, method: &str, path: &str, key: Option<&str>, body: &str) -> CallResult {
        let mut request = self.request(method, path)?.set("Content-Type", "application/json");
        if let Some(key) = key {
            request = request.set("Idempotency-Key", key);
        }
        answer(request.send_string(body))
    }

    /// POST announcing a body of `claimed_bytes` but sending only `sent_bytes` of it (just
    /// past the server's limit), then read the answer. The server refuses once it has read
    /// past its limit and closes; a client that kept writing the whole body could meet the
    /// closed connection instead of the answer, so this one stops writing and reads.
    pub fn post_oversized(&self, path: &str, key: &str, claimed_bytes: usize, sent_bytes: usize) -> CallResult {
        use std::io::{Read, Write};
        let transport = |e: std::io::Error| ApiFailure { status: 0, code: "TRANSPORT".into(), message: e.to_string() };
        let authority = self.base.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(authority).map_err(transport)?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).map_err(transport)?;
        let authorization =
            self.authorization("POST", path)?.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n{authorization}\
             Idempotency-Key: {key}\r\nContent-Length: {claimed_bytes}\r\nConnection: close\r\n\r\n{{"
        );
        stream.write_all(head.as_bytes()).map_err(transport)?;
        // The server may stop reading (and answer) as soon as it is past its limit: a failed
        // write here is expected, the answer is what counts.
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent < sent_bytes.min(claimed_bytes) {
            if stream.write_all(&chunk).is_err() {
                break;
            }
            sent += chunk.len();
        }
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).map_err(transport)?;
        let text = String::from_utf8_lossy(&answer);
        let status: u16 = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body: Value =
            text.split("\r\n\r\n").nth(1).and_then(|b| serde_json::from_str(b).ok()).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(body);
        }
        Err(ApiFailure {
            status,
            code: body["error"]["code"].as_str().unwrap_or("?").to_string(),
            message: body["error"]["message"].as_str().unwrap_or("").to_string(),
        })
    }

    /// GET and decode.
    pub fn get_as<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiFailure> {
        let value = self.get(path)?;
        serde_json::from_value(value).map_err(|e| ApiFailure {
            status: 0,
            code: "DECODE".into(),
            message: e.to_string(),
        })
    }
}

fn transport(message: String) -> ApiFailure {
    ApiFailure { status: 0, code: "TRANSPORT".into(), message }
}

fn answer(result: Result<ureq::Response, ureq::Error>) -> CallResult {
    match result {
        Ok(response) => response.into_json::<Value>().map_err(|e| ApiFailure {
            status: 0,
            code: "DECODE".into(),
            message: e.to_string(),
        }),
        Err(ureq::Error::Status(status, response)) => {
            let body: Value = response.into_json().unwrap_or(Value::Null);
            Err(ApiFailure {
                status,
                code: body["error"]["code"].as_str().unwrap_or("?").to_string(),
                message: body["error"]["message"].as_str().unwrap_or("").to_string(),
            })
        }
        Err(e) => Err(ApiFailure { status: 0, code: "TRANSPORT".into(), message: e.to_string() }),
    }
}
