//! A digital account as other participants name it: the node that services it, the client's
//! id there, and its DT address.

use crate::crypto::Address;
use serde::{Deserialize, Serialize};

/// A party of a payment, an event or a receipt.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Party {
    /// The servicing node: a bank id or `treasury`.
    pub bank: String,
    /// IIN/BIN of the client at that node (`own` for the node itself).
    pub client_id: String,
    pub address: Address,
}
