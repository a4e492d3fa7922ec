//! A node key as TLS's signing key: the handshake's signature is made by whatever holds the
//! key (`dtenge_core::crypto::Sign`: memory, or an HSM through PKCS#11), so a key that never
//! leaves its HSM still authenticates its participant's connections.

use dtenge_core::crypto::NodeKey;
use rustls::pki_types::CertificateDer;
use rustls::sign::{CertifiedKey, SigningKey, SingleCertAndKey};
use rustls::{SignatureAlgorithm, SignatureScheme};
use std::sync::Arc;

/// The certificate `cert_der` with `key`, for both ends' configurations
/// (`ServerConfig::with_cert_resolver`, `ClientConfig::with_client_cert_resolver`). The caller
/// has checked that the certificate certifies the key.
pub fn certified_key(key: &NodeKey, cert_der: &[u8]) -> Arc<SingleCertAndKey> {
    let signing: Arc<dyn SigningKey> = Arc::new(Ed25519(key.clone()));
    let certified = CertifiedKey::new(vec![CertificateDer::from(cert_der.to_vec())], signing);
    Arc::new(SingleCertAndKey::from(certified))
}

struct Ed25519(NodeKey);

impl std::fmt::Debug for Ed25519 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ed25519({:?})", self.0)
    }
}

impl SigningKey for Ed25519 {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
        offered
            .contains(&SignatureScheme::ED25519)
            .then(|| Box::new(Ed25519(self.0.clone())) as Box<dyn rustls::sign::Signer>)
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ED25519
    }
}

impl rustls::sign::Signer for Ed25519 {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        Ok(self.0.sign(message).sig.0.to_vec())
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ED25519
    }
}
