//! Checking a certificate the way TLS does, for the places that receive one outside a TLS
//! handshake: an OAuth client assertion carries its signer's certificate (`dtenge-auth`).

use crate::{read_certificate, read_revocation_list, Certified, PkiError, Result, RevocationList};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use std::sync::Arc;
use std::time::Duration;

/// The cryptography every TLS end of the network uses: ring's (no C++ build, no second provider).
pub fn tls_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A store that trusts the root `ca_der` and nothing else.
pub fn roots(ca_der: &[u8]) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca_der.to_vec())).map_err(|e| PkiError::Certificate(format!("the root: {e}")))?;
    Ok(Arc::new(roots))
}

/// What a TLS server checks a client's certificate with: issued by the root `ca_der`, not named
/// by the revocation list `crl_der` (the end entity's: there are no intermediates). With
/// `required` false, a client may present none (it authenticates otherwise, by a token).
pub fn client_verifier(ca_der: &[u8], crl_der: &[u8], required: bool) -> Result<Arc<dyn ClientCertVerifier>> {
    let builder = WebPkiClientVerifier::builder_with_provider(roots(ca_der)?, tls_provider())
        .with_crls(vec![CertificateRevocationListDer::from(crl_der.to_vec())])
        .only_check_end_entity_revocation();
    let builder = if required { builder } else { builder.allow_unauthenticated() };
    builder.build().map_err(|e| PkiError::RevocationList(e.to_string()))
}

/// The root and the revocation list in force.
pub struct Trust {
    verifier: Arc<dyn ClientCertVerifier>,
    revocations: RevocationList,
}

impl Trust {
    pub fn new(ca_der: &[u8], crl_der: &[u8]) -> Result<Trust> {
        let revocations = read_revocation_list(crl_der)?;
        Ok(Trust { verifier: client_verifier(ca_der, crl_der, true)?, revocations })
    }

    /// The number of the revocation list in force.
    pub fn revocation_list_number(&self) -> u64 {
        self.revocations.number
    }

    /// Whether the list in force names the certificate `serial`.
    pub fn is_revoked(&self, serial: u64) -> bool {
        self.revocations.is_revoked(serial)
    }

    /// What `cert_der` certifies, once it is shown to be issued by the root for client
    /// authentication, valid at `now_s` and not revoked.
    pub fn verify_client(&self, cert_der: &[u8], now_s: i64) -> Result<Certified> {
        let now = UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(now_s).unwrap_or(0)));
        self.verifier
            .verify_client_cert(&CertificateDer::from(cert_der.to_vec()), &[], now)
            .map_err(|e| PkiError::Certificate(format!("not trusted: {e}")))?;
        read_certificate(cert_der)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ApiClient, Authority, Issue, Reason, Revocation, Subject};
    use dtenge_core::crypto::SecretKey;

    const NOW_S: i64 = 1_796_000_000;

    #[test]
    fn a_certificate_of_the_root_is_trusted_until_revoked_or_expired_and_a_strangers_never() {
        let root = Authority::create(SecretKey::from_seed([1; 32]), NOW_S).unwrap();
        let stranger = Authority::create(SecretKey::from_seed([2; 32]), NOW_S).unwrap();
        let subject = Subject::Api(ApiClient::Bank("steppe".into()));
        let issue = |ca: &Authority, serial| {
            ca.issue(&Issue {
                subject: &subject,
                key: SecretKey::from_seed([3; 32]).public_key(),
                dns_names: &[],
                serial,
                now_s: NOW_S,
                validity_days: 1,
            })
            .unwrap()
        };
        let ours = issue(&root, 2);
        let theirs = issue(&stranger, 2);
        let trust = Trust::new(root.cert_der(), &root.revocation_list(1, &[], NOW_S).unwrap()).unwrap();
        assert_eq!(trust.verify_client(&ours, NOW_S + 60).unwrap().subject, subject);
        assert!(trust.verify_client(&theirs, NOW_S + 60).is_err(), "another root");
        assert!(trust.verify_client(&ours, NOW_S + 2 * 86_400).is_err(), "expired");
        assert!(trust.verify_client(&ours, NOW_S - 60).is_err(), "not yet valid");

        let revoked = [Revocation { serial: 2, at_s: NOW_S, reason: Reason::KeyCompromise }];
        let trust = Trust::new(root.cert_der(), &root.revocation_list(2, &revoked, NOW_S).unwrap()).unwrap();
        assert_eq!(trust.revocation_list_number(), 2);
        assert!(trust.verify_client(&ours, NOW_S + 60).is_err(), "revoked");
    }
}
