//! JSON Web Tokens signed with EdDSA (Ed25519), compact serialization (RFC 7515, 7519, 8037).
//!
//! Why JSON here, where everything else dtenge signs is in its own binary encoding: a JWT is
//! what OAuth 2.0 clients and libraries speak, and the NBK's Open API platform uses it. The
//! bytes signed are the ones sent (base64url of the header and the claims as written), so
//! no re-encoding is ever verified.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use dtenge_core::crypto::{verify, PublicKey, SecretKey, SigAlg, Signature, SignatureBytes};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Longest token read: a header with one certificate, claims, a signature, with room.
pub const TOKEN_BYTES_MAX: usize = 8 * 1024;

/// Why a token does not read or verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("a token of {0} bytes, at most {TOKEN_BYTES_MAX}")]
    TooLong(usize),
    #[error("not a compact JWS: {0}")]
    Form(&'static str),
    #[error("the algorithm is {0:?}; only EdDSA is accepted")]
    Algorithm(String),
    #[error("the signature does not verify")]
    Signature,
}

/// The header fields read.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Header {
    pub alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    /// The signer's certificate chain, standard base64 DER, signer first (RFC 7515 §4.1.6).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub x5c: Vec<String>,
}

impl Header {
    pub fn eddsa(x5c: Vec<String>) -> Header {
        Header { alg: "EdDSA".into(), typ: Some("JWT".into()), x5c }
    }

    /// The signer's certificate, DER, if the header carries one.
    pub fn certificate(&self) -> Result<Option<Vec<u8>>, JwtError> {
        match self.x5c.first() {
            None => Ok(None),
            Some(text) => STANDARD.decode(text).map(Some).map_err(|_| JwtError::Form("x5c is not base64")),
        }
    }
}

/// A certificate as `x5c` carries it.
pub fn x5c_entry(cert_der: &[u8]) -> String {
    STANDARD.encode(cert_der)
}

/// `header.claims.signature`, signed with `key`.
pub fn sign<C: Serialize>(header: &Header, claims: &C, key: &SecretKey) -> String {
    let encode = |value: &dyn erased::Json| URL_SAFE_NO_PAD.encode(value.to_json());
    let mut token = format!("{}.{}", encode(header), encode(claims));
    let signature = key.sign(token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature.sig.0));
    token
}

/// A token read but not yet verified: what it says and what it claims to be signed with.
pub struct Unverified<'a, C> {
    pub header: Header,
    pub claims: C,
    signing_input: &'a str,
    signature: [u8; 64],
}

impl<C> Unverified<'_, C> {
    /// The claims, once the signature verifies under `key`.
    pub fn verify(self, key: &PublicKey) -> Result<C, JwtError> {
        let signature = Signature { alg: SigAlg::Ed25519, sig: SignatureBytes(self.signature) };
        verify(key, self.signing_input.as_bytes(), &signature).map_err(|_| JwtError::Signature)?;
        Ok(self.claims)
    }
}

/// Read a compact JWS: its three parts, its header (EdDSA only) and its claims.
pub fn read<C: DeserializeOwned>(token: &str) -> Result<Unverified<'_, C>, JwtError> {
    if token.len() > TOKEN_BYTES_MAX {
        return Err(JwtError::TooLong(token.len()));
    }
    let (signing_input, signature) = token.rsplit_once('.').ok_or(JwtError::Form("no signature part"))?;
    let (header, claims) = signing_input.split_once('.').ok_or(JwtError::Form("no claims part"))?;
    let decode = |part: &str, what: &'static str| URL_SAFE_NO_PAD.decode(part).map_err(|_| JwtError::Form(what));
    let header: Header = serde_json::from_slice(&decode(header, "the header is not base64url")?)
        .map_err(|_| JwtError::Form("the header"))?;
    if header.alg != "EdDSA" {
        return Err(JwtError::Algorithm(header.alg));
    }
    let claims: C = serde_json::from_slice(&decode(claims, "the claims are not base64url")?)
        .map_err(|_| JwtError::Form("the claims"))?;
    let signature: [u8; 64] = decode(signature, "the signature is not base64url")?
        .try_into()
        .map_err(|_| JwtError::Form("an EdDSA signature is 64 bytes"))?;
    Ok(Unverified { header, claims, signing_input, signature })
}

/// `serde_json::to_vec` behind a trait object, so `sign` encodes the header and the claims
/// through one closure.
mod erased {
    pub trait Json {
        fn to_json(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> Vec<u8> {
            // Serializing a struct of strings and integers cannot fail.
            serde_json::to_vec(self).expect("a JWT part serializes")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn a_signed_token_reads_back_and_verifies_only_under_its_key() {
        let key = SecretKey::from_seed([1; 32]);
        let token = sign(&Header::eddsa(vec![]), &json!({"sub": "bank:steppe", "exp": 10}), &key);
        assert_eq!(token.matches('.').count(), 2);
        let claims: Value = read(&token).unwrap().verify(&key.public_key()).unwrap();
        assert_eq!(claims["sub"], "bank:steppe");
        let other = SecretKey::from_seed([2; 32]).public_key();
        assert_eq!(read::<Value>(&token).unwrap().verify(&other).unwrap_err(), JwtError::Signature);
    }

    #[test]
    fn an_altered_or_malformed_token_is_refused() {
        let key = SecretKey::from_seed([1; 32]);
        let token = sign(&Header::eddsa(vec![]), &json!({"sub": "bank:steppe"}), &key);
        let (head, rest) = token.split_once('.').unwrap();
        let forged_claims = URL_SAFE_NO_PAD.encode(br#"{"sub":"operator:root"}"#);
        let signature = rest.rsplit_once('.').unwrap().1;
        let forged = format!("{head}.{forged_claims}.{signature}");
        assert_eq!(read::<Value>(&forged).unwrap().verify(&key.public_key()).unwrap_err(), JwtError::Signature);

        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let unsigned = format!("{none_header}.{}.", URL_SAFE_NO_PAD.encode(b"{}"));
        assert!(matches!(read::<Value>(&unsigned), Err(JwtError::Algorithm(_))), "alg none is refused");
        for bad in ["", "a.b", "a.b.c", "...", &"x".repeat(TOKEN_BYTES_MAX + 1)] {
            assert!(read::<Value>(bad).is_err(), "{bad:.20}");
        }
    }

    #[test]
    fn a_header_carries_its_signers_certificate() {
        let header = Header::eddsa(vec![x5c_entry(&[1, 2, 3])]);
        assert_eq!(header.certificate().unwrap(), Some(vec![1, 2, 3]));
        assert_eq!(Header::eddsa(vec![]).certificate().unwrap(), None);
    }
}
