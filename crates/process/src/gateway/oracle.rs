//! The oracle's node: what the NBK's operators and the oracle's providers call. The paths and
//! the JSON are `dtenge up`'s where the oracle alone answers them:
//!
//! - `GET /v1/oracle/key`: the key that verifies the oracle's attestations and records (any
//!   API client of the network);
//! - `GET /v1/oracle/providers` and `POST /v1/oracle/providers`: the providers the operator
//!   registered (NBK operators only). A provider calls the oracle's node with its own client
//!   certificate (`dtenge ca issue --api-client provider:<id>`), not with a token: the answer
//!   is the provider registered, without the token `up` issues.

use super::{answer, blocking, Keyed, Node};
use crate::Hosted;
use axum::extract::State;
use axum::response::Response;
use dtenge_api::types::ProviderRequest;
use dtenge_core::{Error, ErrorCode, Result};
use dtenge_oracle::service::OracleService;

/// The oracle this node runs; the caller was authorized for the route.
fn oracle(node: &Node) -> Result<&OracleService> {
    match &*node.hosted {
        Hosted::Oracle { oracle, .. } => Ok(oracle),
        _ => Err(Error::new(ErrorCode::NotFound, "this node is not the oracle")),
    }
}

/// The oracle's public key.
#[derive(serde::Serialize)]
struct OracleKey {
    public_key: dtenge_core::crypto::PublicKey,
}

pub(super) async fn key(State(node): State<Node>) -> Response {
    answer(blocking(move || Ok(OracleKey { public_key: oracle(&node)?.public_key() })).await)
}

pub(super) async fn providers(State(node): State<Node>) -> Response {
    answer(blocking(move || Ok(oracle(&node)?.providers())).await)
}

/// Register a provider: the same key and request again answer the same provider; another
/// request under the key is `IDEMPOTENCY_KEY_REUSED`; an id registered already, `CONFLICT`.
pub(super) async fn register_provider(
    State(node): State<Node>,
    Keyed(key, request): Keyed<ProviderRequest>,
) -> Response {
    answer(
        blocking(move || {
            let idem = (key.key.as_str(), key.fingerprint);
            let (provider, _token) = oracle(&node)?.register_provider_keyed(
                &request.id,
                &request.name,
                request.kind,
                idem,
                (node.clock)(),
            )?;
            Ok(provider)
        })
        .await,
    )
}
