//! The bank's side of a redemption: its row written before central hears of it, its inputs
//! reserved until central answers (again after a restart), applied with central's delivery
//! once, released on central's refusal; idempotency keys shared with payments.
//!
//! The network (central, the notary and this bank on their own simulated disks) is central's
//! test cluster, included by its path so that both crates test against the same one.

#[path = "../../central/tests/cluster/mod.rs"]
mod cluster;

use cluster::{tiyn, Cluster};
use dtenge_bank::IdemKey;
use dtenge_core::crypto::Hash32;
use dtenge_core::ErrorCode;
use dtenge_node::{Direction, Purpose, OWN_ACCOUNT};
use dtenge_store::CrashMode;
use dtenge_transport::Transport;
use dtenge_wire::{Envelope, Message, RedeemRefused, RoleId};

fn key(name: &str, fingerprint: u8) -> Option<IdemKey> {
    Some(IdemKey { key: name.into(), fingerprint: Hash32([fingerprint; 32]) })
}

#[test]
fn a_redemption_is_a_debit_of_the_own_account_in_its_history_and_leaves_nothing_reserved() {
    let mut c = Cluster::new(0);
    c.fund(1_000_000, 70_000);
    let answer = c.bank().redeem(tiyn(20_000), None, c.now_ms);
    assert_eq!(c.bank().redemptions_pending(), 1);
    assert_eq!(c.bank_reserved_tiyn(), 70_000, "the one token it spends is reserved until central answers");
    c.run(10_000);
    let committed = answer.try_recv().unwrap().unwrap();
    let last = c.bank().read(|n| n.history(OWN_ACCOUNT).unwrap().back().cloned().unwrap());
    assert_eq!((last.tx_id, last.purpose, last.direction), (committed.tx_id, Purpose::Redemption, Direction::Debit));
    assert_eq!(last.amount_tiyn, tiyn(20_000));
    assert_eq!((c.bank().redemptions_pending(), c.bank_reserved_tiyn(), c.bank_own_tiyn()), (0, 0, 50_000));
    c.assert_invariants();
}

#[test]
fn a_bank_that_dies_after_writing_its_redemption_reserves_and_sends_it_again_and_redeems_once() {
    let mut c = Cluster::new(0);
    c.fund(1_000_000, 70_000);
    // The row is durable, the process dies before anyone hears of it.
    c.disks["steppe"].arm_crash(1, CrashMode::AfterWrite);
    let lost = c.bank().redeem(tiyn(30_000), key("r-1", 1), c.now_ms);
    assert_eq!(lost.try_recv().unwrap().unwrap_err().code, ErrorCode::StorageFailure);
    c.crash_and_restart("steppe");
    assert_eq!(c.bank().redemptions_pending(), 1, "read back from the bank's table");
    assert_eq!(c.bank_reserved_tiyn(), 70_000, "its inputs reserved again");
    // Asked again under its key while in flight: waits for the same answer.
    let again = c.bank().redeem(tiyn(30_000), key("r-1", 1), c.now_ms);
    c.run(10_000);
    let committed = again.try_recv().unwrap().unwrap();
    let after = c.bank().redeem(tiyn(30_000), key("r-1", 1), c.now_ms);
    assert_eq!(after.try_recv().unwrap().unwrap(), committed);
    assert_eq!(c.bank_own_tiyn(), 40_000);
    assert_eq!(c.central().registry().len(), 2, "one emission, one redemption");
    c.assert_invariants();
}

#[test]
fn a_bank_that_dies_inside_the_deliverys_commit_applies_it_once_when_central_resends_it() {
    for mode in [CrashMode::BeforeWrite, CrashMode::Torn { kept_bytes_permille: 500 }, CrashMode::AfterWrite] {
        let mut c = Cluster::new(0);
        c.fund(1_000_000, 70_000);
        drop(c.bank().redeem(tiyn(10_000), key("r-2", 2), c.now_ms));
        // The bank's next commit is the delivery's (inputs spent, change, row gone, key).
        c.disks["steppe"].arm_crash(1, mode);
        c.run_until(|c| c.disks["steppe"].crashed());
        c.crash_and_restart("steppe");
        c.run(10_000);
        assert!(c.quiet(), "{mode:?}: everything arrived");
        let answer = c.bank().redeem(tiyn(10_000), key("r-2", 2), c.now_ms);
        assert!(answer.try_recv().unwrap().is_ok(), "{mode:?}: answered under its key");
        assert_eq!(c.bank_own_tiyn(), 60_000, "{mode:?}");
        assert_eq!((c.bank().redemptions_pending(), c.bank_reserved_tiyn()), (0, 0), "{mode:?}");
        c.assert_invariants();
    }
}

#[test]
fn only_centrals_refusal_of_a_pending_redemption_releases_it() {
    let mut c = Cluster::new(0);
    c.fund(1_000_000, 70_000);
    c.net.down(RoleId::Central);
    let answer = c.bank().redeem(tiyn(10_000), None, c.now_ms);
    let refusal = |from: RoleId, tx_id| Envelope {
        from,
        to: RoleId::Bank("steppe".into()),
        message: Message::RedeemRefused(RedeemRefused {
            tx_id,
            refused: dtenge_core::Error::new(ErrorCode::BankBlocked, "says who"),
        }),
    };
    let [pending_id] = c.bank().redemptions_pending_ids()[..] else { panic!("one redemption pending") };
    let _ = c.net.send(refusal(RoleId::Bank("sapa".into()), pending_id));
    let _ = c.net.send(refusal(RoleId::Central, dtenge_core::token::TxId(Hash32([1; 32]))));
    c.run(300);
    assert_eq!(c.bank().redemptions_pending(), 1, "a refusal from another bank, or of another transaction, is ignored");
    assert!(answer.try_recv().is_err(), "not answered yet");
    let _ = c.net.send(refusal(RoleId::Central, pending_id));
    c.run(300);
    assert_eq!(answer.try_recv().unwrap().unwrap_err().code, ErrorCode::BankBlocked);
    assert_eq!((c.bank().redemptions_pending(), c.bank_reserved_tiyn()), (0, 0));
    c.net.up(&RoleId::Central);
    c.run(10_000);
    assert_eq!(c.bank_own_tiyn(), 70_000);
    c.assert_invariants();
}

#[test]
fn payments_and_redemptions_share_one_key_space_and_bad_keys_are_refused() {
    let mut c = Cluster::new(0);
    c.fund(1_000_000, 70_000);
    let empty = c.bank().redeem(tiyn(1_000), key("", 1), c.now_ms);
    assert_eq!(empty.try_recv().unwrap().unwrap_err().code, ErrorCode::MalformedInput);
    let to = cluster::key(cluster::STEPPE_OWN).address();
    let pay = dtenge_bank::Request::Pay { client_id: OWN_ACCOUNT.into(), payees: vec![(to, tiyn(1_000))] };
    let paid = c.bank().submit(pay, key("k", 1));
    c.bank().flush(c.now_ms);
    c.run(10_000);
    assert!(paid.try_recv().unwrap().is_ok());
    let reused = c.bank().redeem(tiyn(1_000), key("k", 2), c.now_ms);
    assert_eq!(reused.try_recv().unwrap().unwrap_err().code, ErrorCode::IdempotencyKeyReused);
    assert_eq!(c.bank().redemptions_pending(), 0, "nothing was built");
    c.assert_invariants();
}
