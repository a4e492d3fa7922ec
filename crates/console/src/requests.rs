//! The Treasury's requests: opening a government agency's account, and transferring an
//! agency's budget money into DT under a state contract. A request is registered (pending),
//! then a Treasury officer approves it (it executes: done, or rejected with the platform's
//! error) or rejects it with a reason. Each request and decision is kept with its status.

use crate::Console;
use dtenge_api::platform::Idem;
use dtenge_core::money::Amount;
use dtenge_core::token::TxId;
use dtenge_core::{ensure, Error, ErrorCode, Result};
use dtenge_store::{Table, WriteBatch};
use serde::{Deserialize, Serialize};

pub const REQUESTS_TABLE: Table = Table("console_requests");
/// Requests kept in memory and listed; the console refuses new ones beyond it.
pub const REQUESTS_MAX: usize = 100_000;

/// What is asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// Open a digital account for a government agency at the Treasury.
    OpenAccount { client_id: String, name: String },
    /// Convert an agency's budget money into DT under a state contract.
    ToDt { client_id: String, contract: String, amount_tiyn: Amount },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Pending,
    Successful,
    Rejected,
}

/// A request with its status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreasuryRequest {
    pub id: u64,
    pub kind: RequestKind,
    pub status: RequestStatus,
    pub created_at_unix_ms: u64,
    pub created_by: String,
    pub decided_at_unix_ms: Option<u64>,
    pub decided_by: Option<String>,
    /// Why it was rejected (by the officer, or the platform's error).
    pub reason: Option<String>,
    pub tx_id: Option<TxId>,
}

impl Console {
    fn put_request(&self, request: &TreasuryRequest) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.put_value(REQUESTS_TABLE, request.id.to_be_bytes().to_vec(), request)?;
        self.store.commit(batch)
    }

    /// Register a request (pending).
    pub fn create_request(&self, by: &str, kind: RequestKind) -> Result<TreasuryRequest> {
        match &kind {
            RequestKind::OpenAccount { client_id, name } => {
                dtenge_node::ids::check_iin_bin(client_id)?;
                ensure!(
                    !name.trim().is_empty() && name.chars().count() <= 140,
                    MalformedInput,
                    "a name has 1 to 140 characters"
                );
            }
            RequestKind::ToDt { client_id, contract, amount_tiyn } => {
                self.platform.account_view(dtenge_api::platform::TREASURY_ID, client_id)?;
                ensure!(!contract.trim().is_empty() && contract.len() <= 64, MalformedInput, "name the state contract");
                ensure!(!amount_tiyn.is_zero(), MalformedInput, "the amount must be positive");
            }
        }
        let mut requests = self.requests.lock();
        ensure!(requests.len() < REQUESTS_MAX, LimitExceeded, "at most {REQUESTS_MAX} requests");
        let request = TreasuryRequest {
            id: requests.last().map_or(1, |r| r.id + 1),
            kind,
            status: RequestStatus::Pending,
            created_at_unix_ms: self.platform.now_ms(),
            created_by: by.to_string(),
            decided_at_unix_ms: None,
            decided_by: None,
            reason: None,
            tx_id: None,
        };
        self.put_request(&request)?;
        requests.push(request.clone());
        Ok(request)
    }

    /// Approve (execute) or reject a pending request. `idem`, the key of the decision, goes to
    /// the network operation an approval runs (see `execute_request`).
    pub fn decide_request(
        &self,
        by: &str,
        id: u64,
        approve: bool,
        reason: Option<String>,
        idem: Option<Idem>,
    ) -> Result<TreasuryRequest> {
        let mut requests = self.requests.lock();
        let index = requests
            .iter()
            .position(|r| r.id == id)
            .ok_or_else(|| Error::new(ErrorCode::NotFound, format!("no request {id}")))?;
        ensure!(requests[index].status == RequestStatus::Pending, Conflict, "request {id} is decided already");
        let mut request = requests[index].clone();
        request.decided_at_unix_ms = Some(self.platform.now_ms());
        request.decided_by = Some(by.to_string());
        if approve {
            match self.execute_request(&request.kind, idem) {
                Ok(tx_id) => {
                    request.status = RequestStatus::Successful;
                    request.tx_id = tx_id;
                }
                Err(e) => {
                    request.status = RequestStatus::Rejected;
                    request.reason = Some(e.to_string());
                }
            }
        } else {
            let reason = reason.map(|r| r.trim().to_string()).filter(|r| !r.is_empty());
            ensure!(reason.is_some(), MalformedInput, "a rejection needs a reason");
            request.status = RequestStatus::Rejected;
            request.reason = reason;
        }
        self.put_request(&request)?;
        requests[index] = request.clone();
        Ok(request)
    }

    /// Run an approved request through `Platform::once` with the decision's key: a request is
    /// decided once (the requests' lock is held throughout), but if the console stopped after
    /// the network committed and before the decision was recorded, the request is still
    /// pending, and the retry with the same key gets the first answer instead of converting
    /// twice.
    fn execute_request(&self, kind: &RequestKind, idem: Option<Idem>) -> Result<Option<TxId>> {
        let platform = &self.platform;
        match kind {
            RequestKind::OpenAccount { client_id, name } => {
                let open = dtenge_api::types::OpenAccount {
                    kind: dtenge_node::ClientKind::GovernmentAgency,
                    client_id: client_id.clone(),
                    name: name.clone(),
                    phone: None,
                    public_key: None,
                };
                platform
                    .once(idem, |idem| platform.open_account(idem, dtenge_api::platform::TREASURY_ID, open))
                    .map(|_| None)
            }
            RequestKind::ToDt { client_id, amount_tiyn, .. } => {
                let amount = dtenge_api::types::AmountRequest { amount_tiyn: *amount_tiyn };
                platform
                    .once(idem, |idem| {
                        platform.convert_to_dt(idem, dtenge_api::platform::TREASURY_ID, client_id, amount)
                    })
                    .map(|r| Some(r.tx_id))
            }
        }
    }

    /// Every request, newest first.
    pub fn requests(&self) -> Vec<TreasuryRequest> {
        self.requests.lock().iter().rev().cloned().collect()
    }
}
