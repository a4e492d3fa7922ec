//! A small blocking client of the REST API, as a bank's integration would write it: every
//! mutating call carries a fresh idempotency key.

use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};

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
}

impl Client {
    pub fn new(base_url: &str) -> Client {
        let agent = ureq::AgentBuilder::new().timeout(std::time::Duration::from_secs(60)).build();
        let prefix = format!(
            "{:x}",
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
        );
        Client { base: base_url.trim_end_matches('/').to_string(), agent, prefix, counter: AtomicU64::new(0) }
    }

    /// A new idempotency key.
    pub fn key(&self) -> String {
        format!("{}-{}", self.prefix, self.counter.fetch_add(1, Ordering::SeqCst))
    }

    pub fn get(&self, path: &str) -> CallResult {
        answer(self.agent.get(&format!("{}{path}", self.base)).call())
    }

    /// POST with a fresh idempotency key.
    pub fn post(&self, path: &str, body: &Value) -> CallResult {
        self.post_with_key(path, body, &self.key())
    }

    pub fn post_with_key(&self, path: &str, body: &Value, key: &str) -> CallResult {
        answer(self.agent.post(&format!("{}{path}", self.base)).set("Idempotency-Key", key).send_json(body.clone()))
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
        answer(
            self.agent.put(&format!("{}{path}", self.base)).set("Idempotency-Key", &self.key()).send_json(body.clone()),
        )
    }

    /// A raw request, for tests of malformed input.
    pub fn raw(&self, method: &str, path: &str, key: Option<&str>, body: &str) -> CallResult {
        let mut request =
            self.agent.request(method, &format!("{}{path}", self.base)).set("Content-Type", "application/json");
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
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
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
