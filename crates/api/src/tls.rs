//! HTTPS for the gateway: TLS 1.3, the server's certificate issued by the NBK's root, and a
//! client certificate of the same root accepted as the caller's identity (mutual TLS) beside
//! access tokens.
//!
//! A client that presents a certificate is checked at the handshake against the root and the
//! revocation list of that moment, and again on each request against the list in force
//! ([`crate::access`]), since a connection outlives a revocation. A client may present none
//! and send an access token instead.

use crate::access::{now_s, CA_DIR};
use dtenge_core::crypto::{NodeKey, SecretKey};
use dtenge_core::{Error, ErrorCode, Result};
use dtenge_pki::{certificate_pem, pem_contents, write_atomically, CaDir, Subject};
use rustls::ServerConfig;
use std::path::Path;
use std::sync::Arc;

/// Under the data directory: the sandbox gateway's TLS certificate (its key is the vault's).
pub const TLS_DIR: &str = "tls";
/// The sandbox gateway's name in its certificate.
pub const GATEWAY_NAME: &str = "api";

fn storage(path: &Path) -> impl FnOnce(String) -> Error + '_ {
    move |e| Error::new(ErrorCode::StorageFailure, format!("{}: {e}", path.display()))
}

/// The sandbox gateway's TLS configuration for `key` (the vault's: [`crate::platform::Platform::tls_key`]):
/// its certificate from the sandbox's root under `<dir>/ca` (issued on first use for
/// `localhost`, `127.0.0.1` and `names`), client certificates of that root accepted and not
/// required.
pub fn sandbox_server_config(dir: &Path, key: SecretKey, names: &[String]) -> Result<Arc<ServerConfig>> {
    let ca_path = dir.join(CA_DIR);
    let ca = CaDir::open(&ca_path).map_err(|e| storage(&ca_path)(e.to_string()))?;
    let tls = dir.join(TLS_DIR);
    std::fs::create_dir_all(&tls).map_err(|e| storage(&tls)(e.to_string()))?;
    let cert_path = tls.join("gateway.crt.pem");
    let mut dns_names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    for name in names {
        if !dns_names.contains(name) {
            dns_names.push(name.clone());
        }
    }
    // The one issued before serves while it is valid for another day and names every DNS name
    // asked for (IP addresses are in its certificate too, not compared here).
    let serves = |cert: &[u8]| {
        dtenge_pki::read_certificate(cert).is_ok_and(|c| {
            c.not_after_s > now_s() + 86_400
                && dns_names
                    .iter()
                    .filter(|name| name.parse::<std::net::IpAddr>().is_err())
                    .all(|name| c.dns_names.contains(name))
        })
    };
    // The certificate issued before, if it certifies this key (the vault's) and still serves.
    let existing = std::fs::read_to_string(&cert_path).ok().and_then(|cert| {
        let cert = pem_contents(&cert, "CERTIFICATE").ok()?;
        let certified = dtenge_pki::read_certificate(&cert).ok()?;
        (certified.key == key.public_key() && serves(&cert)).then_some(cert)
    });
    let cert = match existing {
        Some(cert) => cert,
        None => {
            let cert = ca
                .issue(&Subject::Gateway(GATEWAY_NAME.into()), key.public_key(), &dns_names, now_s() - 60)
                .map_err(|e| storage(&ca_path)(e.to_string()))?;
            write_atomically(&cert_path, certificate_pem(&cert).as_bytes(), false)
                .map_err(|e| storage(&cert_path)(e.to_string()))?;
            cert
        }
    };
    let crl = ca.revocation_list_der().map_err(|e| storage(&ca_path)(e.to_string()))?;
    server_config(&key.into(), &cert, ca.cert_der(), &crl)
}

/// TLS 1.3 with `cert` for `key`; clients' certificates of the root `ca_der`, checked against
/// `crl_der`, accepted and not required.
pub fn server_config(key: &NodeKey, cert: &[u8], ca_der: &[u8], crl_der: &[u8]) -> Result<Arc<ServerConfig>> {
    let tls = |e: String| Error::new(ErrorCode::Internal, format!("TLS: {e}"));
    let verifier = dtenge_pki::client_verifier(ca_der, crl_der, false).map_err(|e| tls(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(dtenge_pki::tls_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        // The key signs where it lives: memory, or the node's HSM.
        .with_cert_resolver(dtenge_pki::certified_key(key, cert));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
