//! `dtenge-pki`: the network's certificate authority, with the NBK as its root.
//!
//! Every participant (central, the notary, the oracle, the directory, each bank and the
//! Treasury) holds one X.509 certificate issued by the NBK's root. The certificate names the
//! participant's role in a URI subject-alternative name (`urn:dtenge:role:bank:bank-a`) and
//! certifies its Ed25519 key, the same key the participant signs its messages with: so a
//! connection's TLS identity, a message's signature and the role the message claims to come
//! from are one fact, checked once (`dtenge-net`).
//!
//! The systems that call the REST API hold certificates of the same root, naming an API
//! client instead of a role ([`ApiClient`]: `urn:dtenge:api:bank:steppe` for a bank's
//! systems, `urn:dtenge:api:operator:<name>` for an NBK operator); the gateway authenticates
//! them by that certificate, over mutual TLS or in a signed OAuth client assertion
//! (`dtenge-auth`). [`Trust`] checks a certificate against the root and the revocation list.
//!
//! Revocation is an X.509 revocation list signed by the root, numbered, and the only record of
//! which certificates are revoked: the CA directory keeps no other register of it.
//!
//! The pure part ([`Authority`], [`read_certificate`], [`read_revocation_list`]) takes the time
//! and the keys from its caller; [`CaDir`] is the authority's directory on disk, which
//! `dtenge ca` drives.

#![forbid(unsafe_code)]

mod dir;

mod signer;
mod trust;

pub use dir::{write_atomically, CaDir, Listed, CA_CERT_FILE, CA_KEY_FILE, CRL_FILE, ISSUED_DIR};
pub use signer::certified_key;
pub use trust::{client_verifier, roots, tls_provider, Trust};

use dtenge_core::crypto::{Hash32, PublicKey, SecretKey, SigAlg};
use dtenge_wire::RoleId;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SanType,
    SerialNumber, PKCS_ED25519,
};
use std::collections::BTreeMap;
use thiserror::Error;
use time::OffsetDateTime;

/// How long the root certificate is valid.
pub const CA_VALIDITY_DAYS: u32 = 3_650;
/// How long a participant's certificate is valid unless the operator says otherwise.
pub const PARTICIPANT_VALIDITY_DAYS: u32 = 365;
/// How long a revocation list is current. Participants receive each new list as it is signed
/// (`dtenge-net`); this bound is for one that stopped receiving them.
pub const CRL_VALIDITY_S: i64 = 7 * 86_400;
/// The prefix of the URI that names a participant's role in its certificate.
pub const ROLE_URI_PREFIX: &str = "urn:dtenge:role:";
/// The prefix of the URI that names an API client in its certificate.
pub const API_URI_PREFIX: &str = "urn:dtenge:api:";
/// The prefix of the URI that names a REST gateway in its certificate.
pub const GATEWAY_URI_PREFIX: &str = "urn:dtenge:gateway:";
/// Most DNS names one participant's certificate lists.
pub const DNS_NAMES_MAX: usize = 16;

const SECONDS_PER_DAY: i64 = 86_400;

/// The root's subject: the NBK.
const CA_COMMON_NAME: &str = "National Bank of Kazakhstan dtenge root CA";
const ORGANIZATION: &str = "National Bank of Kazakhstan";

/// Why a certificate, a key or a revocation list was refused or could not be made.
#[derive(Debug, Error)]
pub enum PkiError {
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("key: {0}")]
    Key(String),
    #[error("revocation list: {0}")]
    RevocationList(String),
    #[error("certificate authority directory {path}: {reason}")]
    Directory { path: String, reason: String },
    #[error("no certificate with serial {0} was issued")]
    UnknownSerial(u64),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

pub type Result<T> = std::result::Result<T, PkiError>;

/// Who calls the REST API: a bank's systems (for that bank's clients and its own account), an
/// NBK operator, or an oracle provider (a ministry, a tax authority, a contract portal: the
/// events, invoices and contracts it registers at the oracle's node).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ApiClient {
    Bank(String),
    Operator(String),
    Provider(String),
}

impl std::fmt::Display for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiClient::Bank(id) => write!(f, "bank:{id}"),
            ApiClient::Operator(name) => write!(f, "operator:{name}"),
            ApiClient::Provider(id) => write!(f, "provider:{id}"),
        }
    }
}

impl std::str::FromStr for ApiClient {
    type Err = PkiError;
    fn from_str(text: &str) -> Result<ApiClient> {
        let client = match text.split_once(':') {
            Some(("bank", id)) => ApiClient::Bank(id.to_string()),
            Some(("operator", name)) => ApiClient::Operator(name.to_string()),
            Some(("provider", id)) => ApiClient::Provider(id.to_string()),
            _ => {
                return Err(PkiError::Certificate(format!(
                    "API client {text:?} is none of bank:<id>, operator:<name>, provider:<id>"
                )))
            }
        };
        check_name(match &client {
            ApiClient::Bank(id) | ApiClient::Operator(id) | ApiClient::Provider(id) => id,
        })?;
        Ok(client)
    }
}

/// What a certificate certifies: a participant of the network, a client of the REST API, or a
/// REST gateway serving TLS.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    Role(RoleId),
    Api(ApiClient),
    /// A REST gateway, by name: the server side of its TLS connections.
    Gateway(String),
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::Role(role) => write!(f, "{role}"),
            Subject::Api(client) => write!(f, "api:{client}"),
            Subject::Gateway(name) => write!(f, "gateway:{name}"),
        }
    }
}

/// The URI that names `subject` in its certificate.
pub fn subject_uri(subject: &Subject) -> String {
    match subject {
        Subject::Role(role) => format!("{ROLE_URI_PREFIX}{role}"),
        Subject::Api(client) => format!("{API_URI_PREFIX}{client}"),
        Subject::Gateway(name) => format!("{GATEWAY_URI_PREFIX}{name}"),
    }
}

/// The subject a certificate's URI names, if it is one of ours.
pub fn subject_from_uri(uri: &str) -> Option<Subject> {
    if let Some(role) = uri.strip_prefix(ROLE_URI_PREFIX) {
        return role.parse().ok().map(Subject::Role);
    }
    if let Some(name) = uri.strip_prefix(GATEWAY_URI_PREFIX) {
        return check_name(name).ok().map(|()| Subject::Gateway(name.to_string()));
    }
    uri.strip_prefix(API_URI_PREFIX)?.parse().ok().map(Subject::Api)
}

/// A name goes into a URI and a file name: letters, digits, `-`, `_` and `.` only.
fn check_name(name: &str) -> Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > 64 || !name.chars().all(allowed) || name.starts_with('.') {
        return Err(PkiError::Certificate(format!(
            "name {name:?}: 1 to 64 letters, digits, '-', '_' and '.', not starting with '.'"
        )));
    }
    Ok(())
}

fn check_subject(subject: &Subject) -> Result<()> {
    match subject {
        Subject::Role(RoleId::Bank(id))
        | Subject::Api(ApiClient::Bank(id) | ApiClient::Operator(id) | ApiClient::Provider(id))
        | Subject::Gateway(id) => check_name(id),
        Subject::Role(_) => Ok(()),
    }
}

// ---- keys -------------------------------------------------------------------------------

/// PKCS#8 v2 (RFC 8410, with the public key) of an Ed25519 key: this prefix, the 32-byte seed,
/// `PUBLIC_KEY_TAG`, the 32-byte public key. The form ring writes and rustls reads.
const PKCS8_PREFIX: [u8; 16] =
    [0x30, 0x53, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
const PKCS8_PUBLIC_KEY_TAG: [u8; 5] = [0xa1, 0x23, 0x03, 0x21, 0x00];
const PKCS8_BYTES: usize = PKCS8_PREFIX.len() + 32 + PKCS8_PUBLIC_KEY_TAG.len() + 32;
/// PKCS#8 v1 (no public key), as `openssl genpkey -algorithm ed25519` writes it.
const PKCS8_V1_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

/// `key` as PKCS#8 DER.
pub fn key_to_pkcs8(key: &SecretKey) -> Vec<u8> {
    let mut der = Vec::with_capacity(PKCS8_BYTES);
    der.extend_from_slice(&PKCS8_PREFIX);
    der.extend_from_slice(&key.seed());
    der.extend_from_slice(&PKCS8_PUBLIC_KEY_TAG);
    der.extend_from_slice(&key.public_key().key.0);
    assert_eq!(der.len(), PKCS8_BYTES);
    der
}

/// An Ed25519 key from PKCS#8 DER, v1 or v2; a v2 key's public half must match its seed.
pub fn key_from_pkcs8(der: &[u8]) -> Result<SecretKey> {
    let seed_at = PKCS8_PREFIX.len();
    let seed = |der: &[u8]| -> [u8; 32] {
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&der[seed_at..seed_at + 32]);
        seed
    };
    if der.len() == seed_at + 32 && der[..seed_at] == PKCS8_V1_PREFIX {
        return Ok(SecretKey::from_seed(seed(der)));
    }
    if der.len() != PKCS8_BYTES
        || der[..seed_at] != PKCS8_PREFIX
        || der[seed_at + 32..seed_at + 37] != PKCS8_PUBLIC_KEY_TAG
    {
        return Err(PkiError::Key("not an Ed25519 key in PKCS#8".into()));
    }
    let key = SecretKey::from_seed(seed(der));
    if key.public_key().key.0[..] != der[seed_at + 37..] {
        return Err(PkiError::Key("the PKCS#8 public key does not belong to its seed".into()));
    }
    Ok(key)
}

/// `key` as a PEM `PRIVATE KEY`.
pub fn key_to_pem(key: &SecretKey) -> String {
    pem::encode(&pem::Pem::new("PRIVATE KEY", key_to_pkcs8(key)))
}

/// An Ed25519 key from a PEM `PRIVATE KEY`.
pub fn key_from_pem(text: &str) -> Result<SecretKey> {
    key_from_pkcs8(&pem_contents(text, "PRIVATE KEY").map_err(PkiError::Key)?)
}

/// The DER inside the first PEM block of `text`, which must carry `tag`.
pub fn pem_contents(text: &str, tag: &str) -> std::result::Result<Vec<u8>, String> {
    let block = pem::parse(text).map_err(|e| format!("not PEM: {e}"))?;
    if block.tag() != tag {
        return Err(format!("a PEM {:?} where {tag:?} was expected", block.tag()));
    }
    Ok(block.into_contents())
}

/// A certificate as PEM.
pub fn certificate_pem(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

/// A revocation list as PEM.
pub fn revocation_list_pem(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("X509 CRL", der.to_vec()))
}

fn rcgen_key(key: &SecretKey) -> Result<KeyPair> {
    let der = key_to_pkcs8(key);
    KeyPair::from_pkcs8_der_and_sign_algo(&der.as_slice().into(), &PKCS_ED25519)
        .map_err(|e| PkiError::Key(e.to_string()))
}

/// A participant's public key as rcgen signs it into a certificate.
struct CertifiedKey([u8; 32]);

impl rcgen::PublicKeyData for CertifiedKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &PKCS_ED25519
    }
}

fn time_at(unix_s: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(unix_s).map_err(|e| PkiError::Certificate(format!("time {unix_s}: {e}")))
}

fn serial_number(serial: u64) -> SerialNumber {
    SerialNumber::from_slice(&serial.to_be_bytes())
}

/// A serial as the DER integer's bytes hold it (a leading zero byte keeps it positive).
fn serial_from_bytes(bytes: &[u8]) -> Option<u64> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    let bytes = &bytes[start..];
    if bytes.len() > 8 {
        return None;
    }
    Some(bytes.iter().fold(0u64, |serial, b| (serial << 8) | u64::from(*b)))
}

// ---- the authority ------------------------------------------------------------------------

/// The root: its key and its self-signed certificate. Issues participants' certificates and
/// signs revocation lists.
pub struct Authority {
    key: SecretKey,
    cert_der: Vec<u8>,
    params: CertificateParams,
}

/// What one participant's (or API client's) certificate says.
pub struct Issue<'a> {
    pub subject: &'a Subject,
    /// The participant's own key; it keeps the secret half.
    pub key: PublicKey,
    /// The names it is reached at (checked by TLS clients), `localhost` on one machine.
    pub dns_names: &'a [String],
    pub serial: u64,
    pub now_s: i64,
    pub validity_days: u32,
}

/// Why a certificate was revoked (RFC 5280's reason codes that apply here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Unspecified,
    KeyCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
}

impl Reason {
    fn to_rcgen(self) -> rcgen::RevocationReason {
        match self {
            Reason::Unspecified => rcgen::RevocationReason::Unspecified,
            Reason::KeyCompromise => rcgen::RevocationReason::KeyCompromise,
            Reason::AffiliationChanged => rcgen::RevocationReason::AffiliationChanged,
            Reason::Superseded => rcgen::RevocationReason::Superseded,
            Reason::CessationOfOperation => rcgen::RevocationReason::CessationOfOperation,
        }
    }

    fn from_code(code: u8) -> Reason {
        match code {
            1 => Reason::KeyCompromise,
            3 => Reason::AffiliationChanged,
            4 => Reason::Superseded,
            5 => Reason::CessationOfOperation,
            _ => Reason::Unspecified,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Reason::Unspecified => "unspecified",
            Reason::KeyCompromise => "key-compromise",
            Reason::AffiliationChanged => "affiliation-changed",
            Reason::Superseded => "superseded",
            Reason::CessationOfOperation => "cessation-of-operation",
        }
    }
}

impl std::str::FromStr for Reason {
    type Err = PkiError;
    fn from_str(text: &str) -> Result<Reason> {
        [Reason::Unspecified, Reason::KeyCompromise, Reason::AffiliationChanged, Reason::Superseded, Reason::CessationOfOperation]
            .into_iter()
            .find(|r| r.name() == text)
            .ok_or_else(|| {
                PkiError::RevocationList(format!(
                    "reason {text:?} is none of unspecified, key-compromise, affiliation-changed, superseded, cessation-of-operation"
                ))
            })
    }
}

/// One revoked certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Revocation {
    pub serial: u64,
    pub at_s: i64,
    pub reason: Reason,
}

impl Authority {
    /// A new root with `key`, valid from `now_s` for [`CA_VALIDITY_DAYS`].
    pub fn create(key: SecretKey, now_s: i64) -> Result<Authority> {
        let params = Authority::params(now_s)?;
        let cert = params.self_signed(&rcgen_key(&key)?).map_err(|e| PkiError::Certificate(e.to_string()))?;
        Ok(Authority { key, cert_der: cert.der().to_vec(), params })
    }

    /// The root from its key and certificate, as `create` made them.
    pub fn from_parts(key: SecretKey, cert_der: Vec<u8>) -> Result<Authority> {
        let (_, cert) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| PkiError::Certificate(format!("the root certificate does not parse: {e}")))?;
        if ed25519_key(&cert)? != key.public_key() {
            return Err(PkiError::Key("the root key does not match the root certificate".into()));
        }
        if !cert.is_ca() {
            return Err(PkiError::Certificate("the root certificate is not a CA".into()));
        }
        let params = Authority::params(cert.validity().not_before.timestamp())?;
        Ok(Authority { key, cert_der, params })
    }

    fn params(not_before_s: i64) -> Result<CertificateParams> {
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, CA_COMMON_NAME);
        name.push(DnType::OrganizationName, ORGANIZATION);
        name.push(DnType::CountryName, "KZ");
        params.distinguished_name = name;
        // Participants' certificates are issued by the root itself: no intermediates.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        params.not_before = time_at(not_before_s)?;
        params.not_after = time_at(not_before_s + i64::from(CA_VALIDITY_DAYS) * SECONDS_PER_DAY)?;
        params.serial_number = Some(serial_number(1));
        params.key_identifier_method = KeyIdMethod::Sha256;
        Ok(params)
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    pub fn key(&self) -> &SecretKey {
        &self.key
    }

    fn issuer(&self) -> Result<Issuer<'_, KeyPair>> {
        Ok(Issuer::from_params(&self.params, rcgen_key(&self.key)?))
    }

    /// A participant's certificate, DER: its role URI and DNS names, its key, usable to
    /// authenticate both ends of a TLS connection.
    pub fn issue(&self, issue: &Issue<'_>) -> Result<Vec<u8>> {
        check_subject(issue.subject)?;
        assert!(issue.serial > 1, "serial 1 is the root's own");
        if issue.dns_names.len() > DNS_NAMES_MAX {
            return Err(PkiError::Certificate(format!("{} DNS names, at most {DNS_NAMES_MAX}", issue.dns_names.len())));
        }
        if issue.validity_days == 0 {
            return Err(PkiError::Certificate("a certificate valid for 0 days".into()));
        }
        let SigAlg::Ed25519 = issue.key.alg;
        let mut params =
            CertificateParams::new(issue.dns_names.to_vec()).map_err(|e| PkiError::Certificate(e.to_string()))?;
        let uri =
            subject_uri(issue.subject).try_into().map_err(|e: rcgen::Error| PkiError::Certificate(e.to_string()))?;
        params.subject_alt_names.push(SanType::URI(uri));
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, issue.subject.to_string());
        name.push(DnType::OrganizationName, ORGANIZATION);
        params.distinguished_name = name;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = time_at(issue.now_s)?;
        params.not_after = time_at(issue.now_s + i64::from(issue.validity_days) * SECONDS_PER_DAY)?;
        params.serial_number = Some(serial_number(issue.serial));
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&CertifiedKey(issue.key.key.0), &self.issuer()?)
            .map_err(|e| PkiError::Certificate(e.to_string()))?;
        Ok(cert.der().to_vec())
    }

    /// A revocation list numbered `number`, listing `revoked`, current for [`CRL_VALIDITY_S`].
    pub fn revocation_list(&self, number: u64, revoked: &[Revocation], now_s: i64) -> Result<Vec<u8>> {
        let revoked_certs = revoked
            .iter()
            .map(|r| {
                Ok(RevokedCertParams {
                    serial_number: serial_number(r.serial),
                    revocation_time: time_at(r.at_s)?,
                    reason_code: Some(r.reason.to_rcgen()),
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let params = CertificateRevocationListParams {
            this_update: time_at(now_s)?,
            next_update: time_at(now_s + CRL_VALIDITY_S)?,
            crl_number: serial_number(number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer()?).map_err(|e| PkiError::RevocationList(e.to_string()))?;
        Ok(crl.der().to_vec())
    }
}

// ---- reading what the authority wrote ------------------------------------------------------

/// What a participant's certificate certifies. Reading it checks its form only; whether the
/// root signed it, and whether it is revoked or expired, the TLS layer checks (`dtenge-net`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certified {
    pub subject: Subject,
    pub key: PublicKey,
    pub serial: u64,
    pub dns_names: Vec<String>,
    pub not_before_s: i64,
    pub not_after_s: i64,
}

fn ed25519_key(cert: &x509_parser::certificate::X509Certificate<'_>) -> Result<PublicKey> {
    let spki = cert.public_key();
    if spki.algorithm.algorithm != x509_parser::oid_registry::OID_SIG_ED25519 {
        return Err(PkiError::Certificate("the certified key is not Ed25519".into()));
    }
    let bytes: [u8; 32] = spki
        .subject_public_key
        .data
        .as_ref()
        .try_into()
        .map_err(|_| PkiError::Certificate("an Ed25519 key of the wrong length".into()))?;
    Ok(PublicKey { alg: SigAlg::Ed25519, key: Hash32(bytes) })
}

impl Certified {
    /// The participant's role, if the certificate is a participant's.
    pub fn role(&self) -> Option<&RoleId> {
        match &self.subject {
            Subject::Role(role) => Some(role),
            Subject::Api(_) | Subject::Gateway(_) => None,
        }
    }
}

/// The subject, key and serial a certificate carries.
pub fn read_certificate(der: &[u8]) -> Result<Certified> {
    use x509_parser::extensions::GeneralName;
    let (rest, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| PkiError::Certificate(format!("does not parse: {e}")))?;
    if !rest.is_empty() {
        return Err(PkiError::Certificate("bytes after the certificate".into()));
    }
    let names = cert
        .subject_alternative_name()
        .map_err(|e| PkiError::Certificate(format!("subject alternative names: {e}")))?
        .map(|ext| ext.value.general_names.clone())
        .unwrap_or_default();
    let mut subjects = names.iter().filter_map(|n| match n {
        GeneralName::URI(uri) => subject_from_uri(uri),
        _ => None,
    });
    let subject = subjects.next().ok_or_else(|| PkiError::Certificate("names no dtenge role or API client".into()))?;
    if subjects.next().is_some() {
        return Err(PkiError::Certificate("names more than one dtenge subject".into()));
    }
    let dns_names = names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(name) => Some(name.to_string()),
            _ => None,
        })
        .collect();
    let serial =
        serial_from_bytes(cert.raw_serial()).ok_or_else(|| PkiError::Certificate("a serial over 8 bytes".into()))?;
    Ok(Certified {
        subject,
        key: ed25519_key(&cert)?,
        serial,
        dns_names,
        not_before_s: cert.validity().not_before.timestamp(),
        not_after_s: cert.validity().not_after.timestamp(),
    })
}

/// What a revocation list says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationList {
    pub number: u64,
    pub this_update_s: i64,
    pub next_update_s: Option<i64>,
    /// By serial.
    pub revoked: BTreeMap<u64, Revocation>,
}

impl RevocationList {
    pub fn is_revoked(&self, serial: u64) -> bool {
        self.revoked.contains_key(&serial)
    }
}

/// The contents of a revocation list (its signature is checked by the TLS layer, which is given
/// the list with the root).
pub fn read_revocation_list(der: &[u8]) -> Result<RevocationList> {
    use x509_parser::prelude::FromDer;
    let (rest, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(der)
        .map_err(|e| PkiError::RevocationList(format!("does not parse: {e}")))?;
    if !rest.is_empty() {
        return Err(PkiError::RevocationList("bytes after the list".into()));
    }
    let number = crl
        .crl_number()
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| PkiError::RevocationList("no number".into()))?;
    let mut revoked = BTreeMap::new();
    for entry in crl.iter_revoked_certificates() {
        let serial = serial_from_bytes(entry.raw_serial())
            .ok_or_else(|| PkiError::RevocationList("a serial over 8 bytes".into()))?;
        let reason = entry.reason_code().map(|(_, code)| Reason::from_code(code.0)).unwrap_or(Reason::Unspecified);
        revoked.insert(serial, Revocation { serial, at_s: entry.revocation_date.timestamp(), reason });
    }
    Ok(RevocationList {
        number,
        this_update_s: crl.last_update().timestamp(),
        next_update_s: crl.next_update().map(|t| t.timestamp()),
        revoked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_S: i64 = 1_796_000_000;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_seed([byte; 32])
    }

    #[test]
    fn a_key_survives_pkcs8_and_pem_and_a_mismatched_public_half_is_refused() {
        let k = key(7);
        assert_eq!(key_from_pem(&key_to_pem(&k)).unwrap().seed(), k.seed());
        let mut v1 = PKCS8_V1_PREFIX.to_vec();
        v1.extend_from_slice(&k.seed());
        assert_eq!(key_from_pkcs8(&v1).unwrap().seed(), k.seed(), "openssl's v1 form");
        let mut tampered = key_to_pkcs8(&k);
        *tampered.last_mut().unwrap() ^= 1;
        assert!(matches!(key_from_pkcs8(&tampered), Err(PkiError::Key(_))));
        assert!(key_from_pkcs8(&[0u8; 10]).is_err());
        assert!(key_from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err());
    }

    #[test]
    fn an_issued_certificate_names_the_role_and_certifies_the_participants_key() {
        let ca = Authority::create(key(1), NOW_S).unwrap();
        let role = RoleId::Bank("bank-a".into());
        let der = ca
            .issue(&Issue {
                subject: &Subject::Role(role.clone()),
                key: key(2).public_key(),
                dns_names: &["localhost".into()],
                serial: 2,
                now_s: NOW_S,
                validity_days: 30,
            })
            .unwrap();
        let certified = read_certificate(&der).unwrap();
        assert_eq!(certified.role(), Some(&role));
        assert_eq!(certified.key, key(2).public_key());
        assert_eq!(certified.serial, 2);
        assert_eq!(certified.dns_names, vec!["localhost".to_string()]);
        assert_eq!(certified.not_after_s - certified.not_before_s, 30 * SECONDS_PER_DAY);
        // The root reads back from its parts; another key is not its key.
        assert!(Authority::from_parts(key(1), ca.cert_der().to_vec()).is_ok());
        assert!(Authority::from_parts(key(3), ca.cert_der().to_vec()).is_err());
        // The root certificate names no role: it is not a participant.
        assert!(read_certificate(ca.cert_der()).is_err());
    }

    #[test]
    fn a_bank_id_that_would_escape_a_uri_or_a_file_name_is_refused() {
        let ca = Authority::create(key(1), NOW_S).unwrap();
        for id in ["../x", "a b", ".hidden", "a/b"] {
            let subject = Subject::Role(RoleId::Bank(id.into()));
            let issue = Issue {
                subject: &subject,
                key: key(2).public_key(),
                dns_names: &[],
                serial: 2,
                now_s: NOW_S,
                validity_days: 1,
            };
            assert!(matches!(ca.issue(&issue), Err(PkiError::Certificate(_))), "{id}");
        }
    }

    #[test]
    fn a_revocation_list_reads_back_with_its_number_serials_and_reasons() {
        let ca = Authority::create(key(1), NOW_S).unwrap();
        let revoked = [
            Revocation { serial: 2, at_s: NOW_S, reason: Reason::KeyCompromise },
            Revocation { serial: 300, at_s: NOW_S + 5, reason: Reason::CessationOfOperation },
        ];
        let list = read_revocation_list(&ca.revocation_list(9, &revoked, NOW_S + 10).unwrap()).unwrap();
        assert_eq!(list.number, 9);
        assert_eq!(list.this_update_s, NOW_S + 10);
        assert_eq!(list.next_update_s, Some(NOW_S + 10 + CRL_VALIDITY_S));
        assert_eq!(list.revoked.values().copied().collect::<Vec<_>>(), revoked.to_vec());
        assert!(list.is_revoked(300) && !list.is_revoked(3));
        let empty = read_revocation_list(&ca.revocation_list(1, &[], NOW_S).unwrap()).unwrap();
        assert!(empty.revoked.is_empty());
    }

    #[test]
    fn an_api_client_certificate_names_the_client_and_reads_back() {
        let ca = Authority::create(key(1), NOW_S).unwrap();
        for text in ["bank:steppe", "operator:aigerim", "provider:ministry-of-labour"] {
            let client: ApiClient = text.parse().unwrap();
            assert_eq!(client.to_string(), text);
            let subject = Subject::Api(client);
            let der = ca
                .issue(&Issue {
                    subject: &subject,
                    key: key(5).public_key(),
                    dns_names: &[],
                    serial: 7,
                    now_s: NOW_S,
                    validity_days: 1,
                })
                .unwrap();
            let certified = read_certificate(&der).unwrap();
            assert_eq!(certified.subject, subject);
            assert_eq!(certified.role(), None, "an API client is not a participant");
        }
        for bad in ["teller:x", "bank:", "operator:../x", "bank", "provider:"] {
            assert!(bad.parse::<ApiClient>().is_err(), "{bad}");
        }
        assert_eq!(subject_from_uri("urn:dtenge:api:bank:sapa"), Some(Subject::Api(ApiClient::Bank("sapa".into()))));
        assert_eq!(subject_from_uri("urn:dtenge:role:notary"), Some(Subject::Role(RoleId::Notary)));
        assert_eq!(subject_from_uri("urn:other:role:notary"), None);
        assert_eq!(subject_from_uri("urn:dtenge:gateway:api"), Some(Subject::Gateway("api".into())));
        assert_eq!(subject_from_uri("urn:dtenge:gateway:../x"), None);
    }

    #[test]
    fn serials_round_trip_through_der_integer_bytes() {
        for serial in [2u64, 255, 256, u64::from(u32::MAX), u64::MAX] {
            let bytes = serial_number(serial).to_bytes();
            let mut positive = vec![0u8];
            positive.extend_from_slice(&bytes);
            assert_eq!(serial_from_bytes(&bytes), Some(serial));
            assert_eq!(serial_from_bytes(&positive), Some(serial));
        }
        assert_eq!(serial_from_bytes(&[1; 9]), None);
    }
}
