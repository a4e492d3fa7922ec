//! What the replicas' and the shards' tests share: the keys of a small network, and the
//! in-process transport with a switch that cuts roles off.

use dtenge_core::certificate::{notarize_message, CompactTx};
use dtenge_core::crypto::{Hash32, SecretKey};
use dtenge_notary::service::Senders;
use dtenge_transport::{InProcess, SendError, Transport};
use dtenge_wire::NotarizeRequest;
use dtenge_wire::{Envelope, RoleId};
use parking_lot::RwLock;
use std::collections::{BTreeMap, BTreeSet};

pub fn key(byte: u8) -> SecretKey {
    SecretKey::from_seed([byte; 32])
}

/// The key the notary certifies with.
pub fn notary_key() -> SecretKey {
    key(9)
}

pub fn steppe() -> RoleId {
    RoleId::Bank("steppe".into())
}

/// The NBK signs with key 1, Steppe Bank with key 3.
pub fn senders() -> Senders {
    Senders {
        central_bank: key(1).public_key(),
        banks: BTreeMap::from([("steppe".to_string(), key(3).public_key())]),
        blocked: BTreeSet::new(),
    }
}

/// Request number `batch` of `txs` from `from` (the NBK or Steppe Bank), signed by it.
pub fn request(from: &RoleId, batch: u64, txs: Vec<CompactTx>) -> NotarizeRequest {
    let signer = if *from == RoleId::Central { key(1) } else { key(3) };
    let leaves: Vec<Hash32> = txs.iter().map(CompactTx::hash).collect();
    let signature = signer.sign(&notarize_message(batch, &dtenge_core::merkle::root(&leaves)).0);
    NotarizeRequest { batch, txs, signature }
}

/// The in-process transport, with roles that can be cut off: what they send and what is sent
/// to them is lost, as behind a partition.
#[derive(Default)]
pub struct Switch {
    pub inner: InProcess,
    pub cut: RwLock<BTreeSet<RoleId>>,
}

impl Transport for Switch {
    fn send(&self, envelope: Envelope) -> Result<(), SendError> {
        let cut = self.cut.read();
        if cut.contains(&envelope.from) || cut.contains(&envelope.to) {
            return Ok(());
        }
        self.inner.send(envelope)
    }
}

/// Stop `replica` once its inbox thread (whose inbox was just closed) has let go of it: a kill,
/// its store left as it is. Bounded.
pub fn stop(mut replica: std::sync::Arc<dtenge_notary_raft::Replica>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match std::sync::Arc::try_unwrap(replica) {
            Ok(replica) => return replica.stop(),
            Err(shared) => {
                assert!(std::time::Instant::now() < deadline, "replica {} did not stop", shared.id());
                std::thread::sleep(std::time::Duration::from_millis(10));
                replica = shared;
            }
        }
    }
}
