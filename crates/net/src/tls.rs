//! TLS 1.3 with mutual authentication under the network's root: both ends present a
//! certificate the root issued and the current revocation list does not name.

use crate::{Identity, NetError};
use dtenge_pki::{certified_key, client_verifier, read_revocation_list, roots, tls_provider, RevocationList};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::pki_types::CertificateRevocationListDer;
use rustls::server::NoServerSessionStorage;
use rustls::{ClientConfig, ServerConfig};
use std::sync::Arc;

/// HTTP/2, negotiated by ALPN.
const ALPN_H2: &[u8] = b"h2";

/// The configurations in force, rebuilt whole when a new revocation list arrives.
pub(crate) struct Tls {
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
    pub revocations: RevocationList,
}

fn tls_error(what: &str) -> impl FnOnce(rustls::Error) -> NetError + '_ {
    move |e| NetError::Tls(format!("{what}: {e}"))
}

/// Both ends' configurations for `identity` under the revocation list `crl_der`.
///
/// Why no session resumption: a resumed session skips the certificate check, so a
/// certificate revoked since would still get in. Connections between participants live for
/// hours; a full handshake per connection costs nothing that matters.
pub(crate) fn configs(identity: &Identity, crl_der: &[u8]) -> Result<Tls, NetError> {
    let revocations = read_revocation_list(crl_der).map_err(|e| NetError::Revocation(e.to_string()))?;
    let provider = tls_provider();
    let pki = |e: dtenge_pki::PkiError| NetError::Tls(e.to_string());
    let roots = roots(&identity.ca_der).map_err(pki)?;
    // The key signs where it lives (an HSM, or memory): both ends resolve to it.
    let certified = certified_key(&identity.key, &identity.cert_der);

    let client_verifier = client_verifier(&identity.ca_der, crl_der, true).map_err(pki)?;
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error("TLS 1.3"))?
        .with_client_cert_verifier(client_verifier)
        .with_cert_resolver(certified.clone());
    server.alpn_protocols = vec![ALPN_H2.to_vec()];
    server.session_storage = Arc::new(NoServerSessionStorage {});
    server.send_tls13_tickets = 0;

    let server_verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .with_crls(vec![CertificateRevocationListDer::from(crl_der.to_vec())])
        .only_check_end_entity_revocation()
        .build()
        .map_err(|e| NetError::Tls(format!("the server verifier: {e}")))?;
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error("TLS 1.3"))?
        .with_webpki_verifier(server_verifier)
        .with_client_cert_resolver(certified);
    client.alpn_protocols = vec![ALPN_H2.to_vec()];
    client.resumption = Resumption::disabled();

    Ok(Tls { server: Arc::new(server), client: Arc::new(client), revocations })
}
