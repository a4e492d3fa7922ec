//! A client of a node's own API (`crate::gateway`): HTTPS with the caller's certificate of the
//! NBK's root (mutual TLS), trusting that root only. What a bank's systems, an NBK operator's
//! tools, `dtenge` itself and the tests call a node with.

use dtenge_core::crypto::SecretKey;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How long one call may take.
const CALL_TIMEOUT_S: u64 = 30;

/// A refused or failed call: the HTTP status (0: no answer) and the body or the error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    pub status: u16,
    pub body: String,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}: {}", self.status, self.body)
    }
}

pub struct NodeClient {
    base: String,
    agent: ureq::Agent,
}

impl NodeClient {
    /// Call `base` (`https://host:port`) as the holder of `key` and its certificate `cert_der`,
    /// trusting the root `root_der` only.
    pub fn new(base: &str, key: &SecretKey, cert_der: Vec<u8>, root_der: &[u8]) -> Result<NodeClient, String> {
        let roots = dtenge_pki::roots(root_der).map_err(|e| e.to_string())?;
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
            dtenge_pki::key_to_pkcs8(key),
        ));
        let config = rustls::ClientConfig::builder_with_provider(dtenge_pki::tls_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![rustls::pki_types::CertificateDer::from(cert_der)], key)
            .map_err(|e| e.to_string())?;
        let agent =
            ureq::AgentBuilder::new().timeout(Duration::from_secs(CALL_TIMEOUT_S)).tls_config(Arc::new(config)).build();
        Ok(NodeClient { base: base.trim_end_matches('/').to_string(), agent })
    }

    /// [`NodeClient::new`] from PEM files: `<stem>.key.pem`, `<stem>.crt.pem` and the root.
    pub fn from_files(base: &str, stem: &Path, root: &Path) -> Result<NodeClient, String> {
        let read = |path: &Path| std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()));
        let with = |suffix: &str| {
            let mut name = stem.as_os_str().to_owned();
            name.push(suffix);
            std::path::PathBuf::from(name)
        };
        let key = dtenge_pki::key_from_pem(&read(&with(".key.pem"))?).map_err(|e| e.to_string())?;
        let cert = dtenge_pki::pem_contents(&read(&with(".crt.pem"))?, "CERTIFICATE")?;
        let root = dtenge_pki::pem_contents(&read(root)?, "CERTIFICATE")?;
        NodeClient::new(base, &key, cert, &root)
    }

    pub fn get<R: DeserializeOwned>(&self, path: &str) -> Result<R, CallError> {
        answer(self.agent.get(&format!("{}{path}", self.base)).call())
    }

    /// A `POST` with its idempotency key.
    pub fn post<T: Serialize, R: DeserializeOwned>(&self, path: &str, key: &str, body: &T) -> Result<R, CallError> {
        self.send("POST", path, key, body)
    }

    /// A `PUT` with its idempotency key.
    pub fn put<T: Serialize, R: DeserializeOwned>(&self, path: &str, key: &str, body: &T) -> Result<R, CallError> {
        self.send("PUT", path, key, body)
    }

    fn send<T: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        key: &str,
        body: &T,
    ) -> Result<R, CallError> {
        let request = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .set(dtenge_api::IDEMPOTENCY_HEADER, key)
            .set("Content-Type", "application/json");
        let body = serde_json::to_string(body).map_err(|e| CallError { status: 0, body: e.to_string() })?;
        answer(request.send_string(&body))
    }
}

fn answer<R: DeserializeOwned>(result: Result<ureq::Response, ureq::Error>) -> Result<R, CallError> {
    match result {
        Ok(response) => {
            let status = response.status();
            let text = response.into_string().map_err(|e| CallError { status, body: e.to_string() })?;
            serde_json::from_str(&text).map_err(|e| CallError { status, body: format!("{e}: {text}") })
        }
        Err(ureq::Error::Status(status, response)) => {
            Err(CallError { status, body: response.into_string().unwrap_or_default() })
        }
        Err(e) => Err(CallError { status: 0, body: e.to_string() }),
    }
}
