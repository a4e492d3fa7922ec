//! `dtenge-auth`: who calls the REST API, and what each caller may do is decided from that.
//!
//! A caller is an [`ApiClient`]: a bank's systems (`bank:<id>`) or an NBK operator
//! (`operator:<name>`), each holding a key and a certificate issued by the NBK's root
//! (`dtenge ca issue --api-client ...`). It proves who it is in one of two ways:
//!
//! - **mutual TLS**: it presents its certificate in the TLS handshake
//!   ([`Authenticator::client_of_certificate`]);
//! - **OAuth 2.0 client credentials with a signed JWT** (RFC 6749 §4.4, RFC 7523 §2.2), as the
//!   NBK's Open API platform does: it signs a short-lived *client assertion* with its key,
//!   carrying its certificate in the `x5c` header, and trades it at `POST /v1/oauth/token`
//!   for an *access token* ([`Authenticator::grant`]); it then sends
//!   `Authorization: Bearer <access token>` with each request
//!   ([`Authenticator::authenticate`]).
//!
//! Access tokens are JWTs signed by the gateway's own key (EdDSA), valid for
//! [`ACCESS_TOKEN_LIFETIME_S`], bound to the serial of the certificate they were granted on:
//! once a revocation list names that certificate, its tokens stop working at once. A token
//! verified once is remembered until it expires, so the signature is checked once per token,
//! not once per request.
//!
//! Pure: the time comes from the caller; the trust (root and revocation list) is handed in.

#![forbid(unsafe_code)]

pub mod jwt;

pub use dtenge_pki::ApiClient;

use dtenge_core::crypto::{PublicKey, SecretKey};
use dtenge_pki::{Subject, Trust};
use jwt::{Header, JwtError};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use thiserror::Error;

/// How long an access token is valid.
pub const ACCESS_TOKEN_LIFETIME_S: i64 = 600;
/// The longest a client assertion may be valid (its `exp` less its `iat`).
pub const ASSERTION_LIFETIME_S_MAX: i64 = 300;
/// How far apart the clocks of a client and the gateway may be.
pub const CLOCK_SKEW_S: i64 = 60;
/// Client assertions remembered until they expire, so that none is used twice.
pub const ASSERTIONS_REMEMBERED_MAX: usize = 100_000;
/// Access tokens remembered as verified until they expire.
pub const TOKENS_CACHED_MAX: usize = 100_000;
/// The OAuth grant this gateway serves.
pub const GRANT_TYPE: &str = "client_credentials";
/// The client authentication it accepts (RFC 7523 §2.2).
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The claims of both an assertion and an access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    /// An access token's: the serial of the certificate it was granted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_serial: Option<u64>,
}

/// Why a caller was not authenticated.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum AuthError {
    #[error("{0}")]
    Token(#[from] JwtError),
    #[error("the client's certificate: {0}")]
    Certificate(String),
    #[error("the assertion carries no certificate in its x5c header")]
    NoCertificate,
    #[error("the certificate names {0}, not an API client")]
    NotAnApiClient(String),
    #[error("iss and sub must both be the certified client {certified}")]
    WrongClient { certified: String },
    #[error("the audience is {found:?}; this gateway is {expected:?}")]
    Audience { found: String, expected: String },
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("an assertion valid for {0} s; at most {ASSERTION_LIFETIME_S_MAX}")]
    AssertionTooLong(i64),
    #[error("this assertion was used already")]
    Replayed,
    #[error("the certificate this token was granted on is revoked")]
    Revoked,
    #[error("the token names no API client: {0:?}")]
    UnknownClient(String),
    #[error("too many assertions at once; retry shortly")]
    Busy,
}

/// An access token granted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessToken {
    pub token: String,
    pub client: ApiClient,
    pub expires_in_s: i64,
}

/// A remembered verified token.
struct Cached {
    client: ApiClient,
    exp: i64,
    cert_serial: u64,
}

/// The gateway's side: grants access tokens and authenticates requests.
pub struct Authenticator {
    /// This gateway's name: the audience of assertions, the issuer of its tokens.
    issuer: String,
    key: SecretKey,
    public: PublicKey,
    trust: RwLock<Arc<Trust>>,
    /// Assertions used, by (client, jti), with their expiry.
    seen: Mutex<HashMap<(ApiClient, String), i64>>,
    /// Access tokens verified, with their client and expiry. Hashed with foldhash, as the
    /// nodes' maps are: a token is a few hundred bytes, looked up on every request.
    cache: Mutex<HashMap<String, Cached, foldhash::fast::RandomState>>,
    /// TLS client certificates verified, with their client, expiry and serial.
    certificates: Mutex<HashMap<Vec<u8>, Cached>>,
    tokens_granted: AtomicU64,
}

impl Authenticator {
    /// `issuer` names this gateway; `key` signs its access tokens; `trust` checks the
    /// clients' certificates.
    pub fn new(issuer: &str, key: SecretKey, trust: Trust) -> Authenticator {
        assert!(!issuer.is_empty(), "a gateway has a name");
        Authenticator {
            issuer: issuer.to_string(),
            public: key.public_key(),
            key,
            trust: RwLock::new(Arc::new(trust)),
            seen: Mutex::new(HashMap::new()),
            cache: Mutex::new(HashMap::default()),
            certificates: Mutex::new(HashMap::new()),
            tokens_granted: AtomicU64::new(0),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The number of the revocation list in force.
    pub fn revocation_list_number(&self) -> u64 {
        self.trust.read().revocation_list_number()
    }

    /// A newer root and revocation list: tokens granted on a certificate it revokes stop
    /// working at once.
    pub fn set_trust(&self, trust: Trust) {
        *self.trust.write() = Arc::new(trust);
    }

    /// The client credentials grant: an access token for the client whose signed assertion
    /// this is.
    pub fn grant(&self, assertion: &str, now_s: i64) -> Result<AccessToken, AuthError> {
        let unverified = jwt::read::<Claims>(assertion)?;
        let cert_der = unverified.header.certificate()?.ok_or(AuthError::NoCertificate)?;
        let trust = self.trust.read().clone();
        let certified = trust.verify_client(&cert_der, now_s).map_err(|e| AuthError::Certificate(e.to_string()))?;
        let client = match certified.subject {
            Subject::Api(client) => client,
            other => return Err(AuthError::NotAnApiClient(other.to_string())),
        };
        let claims = unverified.verify(&certified.key)?;
        let name = client.to_string();
        if claims.iss != name || claims.sub != name {
            return Err(AuthError::WrongClient { certified: name });
        }
        self.check_audience(&claims)?;
        check_time(&claims, now_s)?;
        if claims.exp - claims.iat > ASSERTION_LIFETIME_S_MAX {
            return Err(AuthError::AssertionTooLong(claims.exp - claims.iat));
        }
        self.remember_assertion(&client, &claims.jti, claims.exp, now_s)?;
        let number = self.tokens_granted.fetch_add(1, Ordering::Relaxed);
        let token = jwt::sign(
            &Header::eddsa(vec![]),
            &Claims {
                iss: self.issuer.clone(),
                sub: name,
                aud: self.issuer.clone(),
                iat: now_s,
                exp: now_s + ACCESS_TOKEN_LIFETIME_S,
                jti: format!("{now_s}-{number}"),
                cert_serial: Some(certified.serial),
            },
            &self.key,
        );
        Ok(AccessToken { token, client, expires_in_s: ACCESS_TOKEN_LIFETIME_S })
    }

    fn check_audience(&self, claims: &Claims) -> Result<(), AuthError> {
        if claims.aud != self.issuer {
            return Err(AuthError::Audience { found: claims.aud.clone(), expected: self.issuer.clone() });
        }
        Ok(())
    }

    fn remember_assertion(&self, client: &ApiClient, jti: &str, exp: i64, now_s: i64) -> Result<(), AuthError> {
        let mut seen = self.seen.lock();
        let key = (client.clone(), jti.to_string());
        if seen.contains_key(&key) {
            return Err(AuthError::Replayed);
        }
        if seen.len() >= ASSERTIONS_REMEMBERED_MAX {
            // An assertion that expired can no longer be replayed: it is refused as expired.
            seen.retain(|_, exp| *exp + CLOCK_SKEW_S >= now_s);
            if seen.len() >= ASSERTIONS_REMEMBERED_MAX {
                return Err(AuthError::Busy);
            }
        }
        seen.insert(key, exp);
        Ok(())
    }

    /// The client an access token was granted to, while it is valid and its certificate is
    /// not revoked.
    pub fn authenticate(&self, token: &str, now_s: i64) -> Result<ApiClient, AuthError> {
        let trust = self.trust.read().clone();
        if let Some(cached) = self.cache.lock().get(token) {
            if now_s >= cached.exp + CLOCK_SKEW_S {
                return Err(AuthError::Expired);
            }
            if trust.is_revoked(cached.cert_serial) {
                return Err(AuthError::Revoked);
            }
            return Ok(cached.client.clone());
        }
        let claims = jwt::read::<Claims>(token)?.verify(&self.public)?;
        if claims.iss != self.issuer {
            return Err(AuthError::Audience { found: claims.iss, expected: self.issuer.clone() });
        }
        self.check_audience(&claims)?;
        check_time(&claims, now_s)?;
        let client: ApiClient = claims.sub.parse().map_err(|_| AuthError::UnknownClient(claims.sub.clone()))?;
        // Every token this gateway signs carries its serial; one without is not its own.
        let cert_serial = claims.cert_serial.ok_or_else(|| AuthError::UnknownClient(claims.sub.clone()))?;
        if trust.is_revoked(cert_serial) {
            return Err(AuthError::Revoked);
        }
        let mut cache = self.cache.lock();
        if cache.len() >= TOKENS_CACHED_MAX {
            cache.retain(|_, cached| cached.exp + CLOCK_SKEW_S > now_s);
        }
        // Full of live tokens: verify this one again next time rather than grow.
        if cache.len() < TOKENS_CACHED_MAX {
            cache.insert(token.to_string(), Cached { client: client.clone(), exp: claims.exp, cert_serial });
        }
        Ok(client)
    }

    /// The client a certificate presented in a TLS handshake names, while it is valid and not
    /// revoked. TLS checked it at the handshake; a connection lives on, so each request checks
    /// it again against the list in force (the full check once per certificate, then its
    /// serial and expiry).
    pub fn client_of_certificate(&self, cert_der: &[u8], now_s: i64) -> Result<ApiClient, AuthError> {
        let trust = self.trust.read().clone();
        if let Some(known) = self.certificates.lock().get(cert_der) {
            if now_s >= known.exp {
                return Err(AuthError::Expired);
            }
            if trust.is_revoked(known.cert_serial) {
                return Err(AuthError::Revoked);
            }
            return Ok(known.client.clone());
        }
        let certified = trust.verify_client(cert_der, now_s).map_err(|e| AuthError::Certificate(e.to_string()))?;
        let client = match certified.subject {
            Subject::Api(client) => client,
            other => return Err(AuthError::NotAnApiClient(other.to_string())),
        };
        let mut certificates = self.certificates.lock();
        if certificates.len() >= TOKENS_CACHED_MAX {
            certificates.retain(|_, known| known.exp > now_s);
        }
        if certificates.len() < TOKENS_CACHED_MAX {
            let known = Cached { client: client.clone(), exp: certified.not_after_s, cert_serial: certified.serial };
            certificates.insert(cert_der.to_vec(), known);
        }
        Ok(client)
    }
}

fn check_time(claims: &Claims, now_s: i64) -> Result<(), AuthError> {
    if now_s >= claims.exp + CLOCK_SKEW_S {
        return Err(AuthError::Expired);
    }
    if claims.iat > now_s + CLOCK_SKEW_S {
        return Err(AuthError::NotYetValid);
    }
    Ok(())
}

/// A client's side: its key and certificate, and the assertions it signs with them.
#[derive(Clone)]
pub struct Credentials {
    pub client: ApiClient,
    pub key: SecretKey,
    pub cert_der: Vec<u8>,
}

impl Credentials {
    /// A client assertion for the gateway `audience`, valid from `now_s` for a minute,
    /// unique by `jti`.
    pub fn assertion(&self, audience: &str, now_s: i64, jti: &str) -> String {
        let name = self.client.to_string();
        jwt::sign(
            &Header::eddsa(vec![jwt::x5c_entry(&self.cert_der)]),
            &Claims {
                iss: name.clone(),
                sub: name,
                aud: audience.to_string(),
                iat: now_s,
                exp: now_s + 60,
                jti: jti.to_string(),
                cert_serial: None,
            },
            &self.key,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dtenge_pki::{Authority, Issue, Reason, Revocation};
    use dtenge_wire::RoleId;

    const NOW_S: i64 = 1_796_000_000;
    const GATEWAY: &str = "urn:dtenge:api";

    struct Setup {
        root: Authority,
        gateway: Authenticator,
    }

    fn setup() -> Setup {
        let root = Authority::create(SecretKey::from_seed([1; 32]), NOW_S - 3_600).unwrap();
        let trust = Trust::new(root.cert_der(), &root.revocation_list(1, &[], NOW_S).unwrap()).unwrap();
        let gateway = Authenticator::new(GATEWAY, SecretKey::from_seed([2; 32]), trust);
        Setup { root, gateway }
    }

    fn credentials(root: &Authority, subject: Subject, serial: u64) -> Credentials {
        let key = SecretKey::from_seed([serial as u8; 32]);
        let cert_der = root
            .issue(&Issue {
                subject: &subject,
                key: key.public_key(),
                dns_names: &[],
                serial,
                now_s: NOW_S - 3_600,
                validity_days: 1,
            })
            .unwrap();
        let client = match subject {
            Subject::Api(client) => client,
            Subject::Role(_) | Subject::Gateway(_) => ApiClient::Bank("not-an-api-client".into()),
        };
        Credentials { client, key, cert_der }
    }

    fn steppe() -> ApiClient {
        ApiClient::Bank("steppe".into())
    }

    #[test]
    fn a_certified_client_trades_its_assertion_for_a_token_that_names_it() {
        let Setup { root, gateway } = setup();
        let bank = credentials(&root, Subject::Api(steppe()), 10);
        let granted = gateway.grant(&bank.assertion(GATEWAY, NOW_S, "a1"), NOW_S).unwrap();
        assert_eq!(granted.client, steppe());
        assert_eq!(granted.expires_in_s, ACCESS_TOKEN_LIFETIME_S);
        assert_eq!(gateway.authenticate(&granted.token, NOW_S + 1).unwrap(), steppe());
        assert_eq!(gateway.authenticate(&granted.token, NOW_S + 2).unwrap(), steppe(), "from the cache");
        assert_eq!(
            gateway.authenticate(&granted.token, NOW_S + ACCESS_TOKEN_LIFETIME_S + CLOCK_SKEW_S),
            Err(AuthError::Expired)
        );
    }

    #[test]
    fn an_assertion_is_used_once_and_only_at_its_gateway_in_its_time() {
        let Setup { root, gateway } = setup();
        let bank = credentials(&root, Subject::Api(steppe()), 10);
        let assertion = bank.assertion(GATEWAY, NOW_S, "once");
        gateway.grant(&assertion, NOW_S).unwrap();
        assert_eq!(gateway.grant(&assertion, NOW_S), Err(AuthError::Replayed));
        assert!(matches!(
            gateway.grant(&bank.assertion("urn:other", NOW_S, "b"), NOW_S),
            Err(AuthError::Audience { .. })
        ));
        assert_eq!(gateway.grant(&bank.assertion(GATEWAY, NOW_S - 3_000, "c"), NOW_S), Err(AuthError::Expired));
        assert_eq!(gateway.grant(&bank.assertion(GATEWAY, NOW_S + 3_000, "d"), NOW_S), Err(AuthError::NotYetValid));
    }

    #[test]
    fn a_stranger_a_participant_or_a_forger_gets_no_token() {
        let Setup { root, gateway } = setup();
        let stranger_root = Authority::create(SecretKey::from_seed([9; 32]), NOW_S - 3_600).unwrap();
        let stranger = credentials(&stranger_root, Subject::Api(steppe()), 10);
        assert!(matches!(
            gateway.grant(&stranger.assertion(GATEWAY, NOW_S, "s"), NOW_S),
            Err(AuthError::Certificate(_))
        ));
        let participant = credentials(&root, Subject::Role(RoleId::Notary), 11);
        assert!(matches!(
            gateway.grant(&participant.assertion(GATEWAY, NOW_S, "p"), NOW_S),
            Err(AuthError::NotAnApiClient(_))
        ));
        // Sapa's systems sign with their own key but carry Steppe's certificate.
        let steppe_creds = credentials(&root, Subject::Api(steppe()), 12);
        let mut forger = credentials(&root, Subject::Api(ApiClient::Bank("sapa".into())), 13);
        forger.cert_der = steppe_creds.cert_der.clone();
        forger.client = steppe();
        assert_eq!(gateway.grant(&forger.assertion(GATEWAY, NOW_S, "f"), NOW_S), Err(JwtError::Signature.into()));
        // Sapa's own certificate, claiming to be Steppe.
        let mut claimant = credentials(&root, Subject::Api(ApiClient::Bank("sapa".into())), 14);
        claimant.client = steppe();
        assert!(matches!(
            gateway.grant(&claimant.assertion(GATEWAY, NOW_S, "c"), NOW_S),
            Err(AuthError::WrongClient { .. })
        ));
        // A token from another gateway's key.
        let elsewhere = Authenticator::new(
            GATEWAY,
            SecretKey::from_seed([7; 32]),
            Trust::new(root.cert_der(), &root.revocation_list(1, &[], NOW_S).unwrap()).unwrap(),
        );
        let bank = credentials(&root, Subject::Api(steppe()), 15);
        let foreign = elsewhere.grant(&bank.assertion(GATEWAY, NOW_S, "e"), NOW_S).unwrap();
        assert_eq!(gateway.authenticate(&foreign.token, NOW_S), Err(JwtError::Signature.into()));
    }

    #[test]
    fn a_revocation_stops_the_tokens_already_granted() {
        let Setup { root, gateway } = setup();
        let bank = credentials(&root, Subject::Api(steppe()), 10);
        let granted = gateway.grant(&bank.assertion(GATEWAY, NOW_S, "r"), NOW_S).unwrap();
        gateway.authenticate(&granted.token, NOW_S).unwrap();
        let revoked = [Revocation { serial: 10, at_s: NOW_S, reason: Reason::KeyCompromise }];
        gateway.set_trust(Trust::new(root.cert_der(), &root.revocation_list(2, &revoked, NOW_S).unwrap()).unwrap());
        assert_eq!(gateway.authenticate(&granted.token, NOW_S + 1), Err(AuthError::Revoked));
        assert!(matches!(gateway.grant(&bank.assertion(GATEWAY, NOW_S, "r2"), NOW_S), Err(AuthError::Certificate(_))));
    }

    #[test]
    fn a_tls_client_certificate_names_its_client_until_it_is_revoked() {
        let Setup { root, gateway } = setup();
        let bank = credentials(&root, Subject::Api(steppe()), 10);
        assert_eq!(gateway.client_of_certificate(&bank.cert_der, NOW_S).unwrap(), steppe());
        assert_eq!(gateway.client_of_certificate(&bank.cert_der, NOW_S).unwrap(), steppe(), "remembered");
        let participant = credentials(&root, Subject::Role(RoleId::Oracle), 11);
        assert!(matches!(
            gateway.client_of_certificate(&participant.cert_der, NOW_S),
            Err(AuthError::NotAnApiClient(_))
        ));
        let revoked = [Revocation { serial: 10, at_s: NOW_S, reason: Reason::KeyCompromise }];
        gateway.set_trust(Trust::new(root.cert_der(), &root.revocation_list(2, &revoked, NOW_S).unwrap()).unwrap());
        assert_eq!(gateway.client_of_certificate(&bank.cert_der, NOW_S), Err(AuthError::Revoked));
    }
}
