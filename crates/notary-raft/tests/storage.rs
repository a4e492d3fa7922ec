//! openraft's own conformance suite for a replica's storage (its log and its state machine on
//! a real store in a fresh directory per case): what openraft requires of every storage it runs
//! on, checked by openraft.

use dtenge_core::crypto::SecretKey;
use dtenge_notary::service::Senders;
use dtenge_notary_raft::storage::{tables, LogStore, Machine};
use dtenge_notary_raft::NotaryRaft;
use dtenge_store::Store;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::StorageError;
use std::sync::Arc;

struct Fresh;

impl StoreBuilder<NotaryRaft, LogStore, Machine, tempfile::TempDir> for Fresh {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, Machine), StorageError<NotaryRaft>> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Arc::new(Store::open(dir.path(), &tables()).expect("a store"));
        let senders = Senders {
            central_bank: SecretKey::from_seed([1; 32]).public_key(),
            banks: Default::default(),
            blocked: Default::default(),
        };
        let log = LogStore::open(store.clone()).expect("the log opens");
        let kind = dtenge_notary_raft::state::Kind::Whole;
        let machine =
            Machine::open(store, SecretKey::from_seed([9; 32]).into(), senders, kind, dtenge_wire::RoleId::Notary)
                .expect("the state machine opens");
        Ok((dir, log, machine))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicas_storage_passes_openraft_s_suite() {
    Suite::test_all(Fresh).await.expect("the storage suite passes");
}
