//! Redemption across roles: the bank sends its `Redeem`, central validates, attests and
//! notarizes it, posts `dt_liability → corr:<bank>` and delivers the certificate back; under
//! lost, duplicated and delayed messages and crashes of each role.

mod cluster;

use cluster::{key, tiyn, Cluster, STEPPE, STEPPE_OWN};
use dtenge_central::EntryKind;
use dtenge_core::tx::{Command, Transaction, TxBody};
use dtenge_core::ErrorCode;
use dtenge_node::OWN_ACCOUNT;
use dtenge_store::CrashMode;
use dtenge_transport::Transport;
use dtenge_wire::{Envelope, Message, RedeemRequest, RoleId};

fn steppe() -> RoleId {
    RoleId::Bank("steppe".into())
}

/// Steppe's own DT, all of it in one redemption of `inputs` with no change, built and signed
/// as the bank would.
fn redeem_all(c: &Cluster, nonce: u64) -> Transaction {
    let inputs = c.bank().read(|n| n.spendable_inputs(OWN_ACCOUNT).unwrap());
    let mut tx = Transaction::new(TxBody { command: Command::Redeem, inputs, outputs: vec![], nonce });
    tx.sign_owner(&key(STEPPE_OWN));
    tx.attest(&key(STEPPE));
    tx
}

fn send_as_steppe(c: &Cluster, tx: Transaction) {
    let envelope =
        Envelope { from: steppe(), to: RoleId::Central, message: Message::RedeemRequest(RedeemRequest { tx }) };
    let _ = c.net.send(envelope);
}

#[test]
fn a_redemption_destroys_the_banks_dt_credits_its_correspondent_account_and_enters_the_registry() {
    let mut c = Cluster::new(0);
    c.fund(1_000_000, 250_000);
    let answer = c.bank().redeem(tiyn(100_000), None, c.now_ms);
    c.run(10_000);
    let committed = answer.try_recv().unwrap().unwrap();
    assert_eq!(c.bank_own_tiyn(), 150_000, "the change came back to the bank's own account");
    assert_eq!(c.central().abs_balance("corr:steppe"), 750_000 + 100_000);
    assert_eq!(c.central().dt_liability(), tiyn(150_000));
    let registry = c.central().registry();
    let last = registry.last().unwrap();
    assert_eq!(
        (last.kind, last.amount, last.tx_id, last.number),
        (EntryKind::Redemption, tiyn(100_000), committed.tx_id, 1)
    );
    assert_eq!(last.certificate_seq, committed.seq);
    assert!(c.notary().is_committed(&committed.tx_id).unwrap());
    assert_eq!(c.bank_reserved_tiyn(), 0);
    c.assert_invariants();
}

#[test]
fn more_than_the_banks_dt_is_refused_at_the_bank_and_a_blocked_bank_is_refused_by_central_for_good() {
    let mut c = Cluster::new(0);
    c.fund(1_000_000, 50_000);
    let too_much = c.bank().redeem(tiyn(50_001), None, c.now_ms);
    assert_eq!(too_much.try_recv().unwrap().unwrap_err().code, ErrorCode::InsufficientFunds);
    let zero = c.bank().redeem(tiyn(0), None, c.now_ms);
    assert_eq!(zero.try_recv().unwrap().unwrap_err().code, ErrorCode::MalformedInput);
    c.central().set_blocked("steppe", true, "licence suspended", c.now_ms).unwrap();
    c.run(10_000);
    let blocked = c.bank().redeem(tiyn(10_000), None, c.now_ms);
    c.run(10_000);
    assert_eq!(blocked.try_recv().unwrap().unwrap_err().code, ErrorCode::BankBlocked);
    assert_eq!(c.bank_reserved_tiyn(), 0, "the refusal released the reservation");
    assert_eq!(c.bank().redemptions_pending(), 0);
    assert_eq!(c.central().registry().len(), 1, "nothing redeemed");
    c.central().set_blocked("steppe", false, "", c.now_ms).unwrap();
    c.run(10_000);
    let again = c.bank().redeem(tiyn(10_000), None, c.now_ms);
    c.run(10_000);
    assert!(again.try_recv().unwrap().is_ok(), "a new redemption after the block is lifted goes through");
    assert_eq!(c.bank_own_tiyn(), 40_000);
    c.assert_invariants();
}

#[test]
fn a_late_copy_of_a_refused_request_is_refused_again_after_the_block_is_lifted() {
    let mut c = Cluster::new(0);
    c.fund(1_000_000, 50_000);
    c.central().set_blocked("steppe", true, "licence suspended", c.now_ms).unwrap();
    c.run(10_000);
    let tx = redeem_all(&c, 900);
    send_as_steppe(&c, tx.clone());
    c.run(1_000);
    c.central().set_blocked("steppe", false, "", c.now_ms).unwrap();
    c.run(10_000);
    // The network delivers a copy of the old request now: the decision stands.
    send_as_steppe(&c, tx.clone());
    c.run(1_000);
    // (The network duplicates some messages: a refusal may arrive twice.)
    let refusals = c.redeem_refusals();
    assert!(refusals.len() >= 2, "each copy was answered");
    assert!(refusals.iter().all(|r| r.tx_id == tx.id() && r.refused.code == ErrorCode::BankBlocked));
    assert_eq!(c.central().dt_liability(), tiyn(50_000), "nothing redeemed");
    assert!(!c.notary().is_committed(&tx.id()).unwrap());
    c.assert_invariants();
}

#[test]
fn a_forged_signature_another_accounts_tokens_and_a_transfer_are_refused_and_change_nothing() {
    let mut c = Cluster::new(0);
    c.fund(1_000_000, 50_000);
    let unspent = c.notary().notary().unspent();
    // The owner's signature made over another transaction.
    let mut forged = redeem_all(&c, 1);
    forged.witnesses = redeem_all(&c, 2).witnesses;
    // Signed by a key that owns none of the inputs.
    let mut stranger = redeem_all(&c, 3);
    stranger.witnesses.clear();
    stranger.sign_owner(&key(77));
    // Attested by another key than the bank's node key.
    let mut foreign = redeem_all(&c, 4);
    foreign.attestations.clear();
    foreign.attest(&key(78));
    let mut transfer = redeem_all(&c, 5);
    transfer.body.command = Command::Transfer;
    for tx in [&forged, &stranger, &foreign, &transfer] {
        send_as_steppe(&c, tx.clone());
    }
    c.run(2_000);
    // (The network duplicates some messages: a refusal may arrive twice.)
    let code_of = |tx: &Transaction| {
        let mut codes: Vec<ErrorCode> =
            c.redeem_refusals().iter().filter(|r| r.tx_id == tx.id()).map(|r| r.refused.code).collect();
        codes.dedup();
        codes
    };
    assert_eq!(code_of(&forged), [ErrorCode::InvalidSignature]);
    assert_eq!(code_of(&stranger), [ErrorCode::InvalidSignature]);
    assert_eq!(code_of(&foreign), [ErrorCode::InvalidSignature]);
    assert_eq!(code_of(&transfer), [ErrorCode::MalformedInput]);
    let refusals = c.redeem_refusals().len();
    // From an unknown bank: dropped, not answered.
    let envelope = Envelope {
        from: RoleId::Bank("nowhere".into()),
        to: RoleId::Central,
        message: Message::RedeemRequest(RedeemRequest { tx: redeem_all(&c, 6) }),
    };
    let _ = c.net.send(envelope);
    c.run(2_000);
    assert_eq!(c.redeem_refusals().len(), refusals);
    assert_eq!(c.notary().notary().unspent(), unspent);
    assert_eq!(c.central().registry().len(), 1);
    c.assert_invariants();
}

#[test]
fn a_resent_request_for_a_redemption_done_already_posts_nothing_twice() {
    let mut c = Cluster::new(5);
    c.fund(1_000_000, 80_000);
    let tx = redeem_all(&c, 11);
    send_as_steppe(&c, tx.clone());
    send_as_steppe(&c, tx.clone());
    c.run(10_000);
    assert_eq!(c.central().dt_liability(), tiyn(0), "all of it redeemed");
    assert_eq!(c.bank_own_tiyn(), 0, "the delivery reached the bank and was applied");
    for _ in 0..3 {
        send_as_steppe(&c, tx.clone());
        c.run(2_000);
    }
    c.restart("central");
    send_as_steppe(&c, tx.clone());
    c.run(10_000);
    let redemptions = c.central().registry().iter().filter(|e| e.kind == EntryKind::Redemption).count();
    assert_eq!(redemptions, 1);
    assert_eq!(c.central().abs_balance("corr:steppe"), 1_000_000);
    assert!(c.redeem_refusals().is_empty());
    c.assert_invariants();
}

#[test]
fn central_restarted_between_the_notary_and_its_posting_posts_the_redemption_exactly_once() {
    let mut c = Cluster::new(0);
    c.fund(1_000_000, 60_000);
    let _lost = c.bank().redeem(tiyn(25_000), None, c.now_ms);
    // Deliver the request, then let central's notarize request reach the notary and drop
    // central before the notary's answer comes back.
    c.run_until(|c| c.central().outstanding().0 == 1);
    c.net.down(RoleId::Central);
    c.run(200);
    assert_eq!(c.central().dt_liability(), tiyn(60_000), "not posted yet");
    c.restart("central");
    assert_eq!(c.central().outstanding().0, 1, "the redemption is still in central's outbox");
    c.run(10_000);
    assert_eq!(c.central().dt_liability(), tiyn(35_000));
    assert_eq!(c.bank_own_tiyn(), 35_000);
    assert_eq!(c.central().registry().len(), 2);
    c.assert_invariants();
}

#[test]
fn torn_commits_and_crashes_of_each_role_under_lost_and_duplicated_messages_redeem_each_once() {
    let mut c = Cluster::new(7);
    c.fund(10_000_000, 2_000_000);
    let mut answers = Vec::new();
    let mut restarts = 0;
    for round in 0..16u64 {
        if round % 3 == 0 {
            let _ = c.central().emit("steppe", tiyn(50_000 + round), None, c.now_ms);
        }
        answers.push(c.bank().redeem(tiyn(10_000 + round), None, c.now_ms));
        match round % 5 {
            0 => c.disks["central"].arm_crash(2, CrashMode::Torn { kept_bytes_permille: 400 }),
            1 => c.disks["steppe"].arm_crash(1, CrashMode::AfterWrite),
            2 => c.disks["notary"].arm_crash(1, CrashMode::BeforeWrite),
            3 => c.disks["steppe"].arm_crash(2, CrashMode::Torn { kept_bytes_permille: 700 }),
            _ => c.disks["central"].arm_crash(1, CrashMode::AfterWrite),
        }
        c.run(2_000);
        for role in ["central", "steppe", "notary"] {
            if c.disks[role].crashed() {
                c.crash_and_restart(role);
                restarts += 1;
            }
            c.disks[role].disarm();
        }
        c.run(20_000);
        assert!(c.quiet(), "round {round}: everything arrived");
        assert_eq!(c.bank_reserved_tiyn(), 0, "round {round}: nothing left reserved");
        c.assert_invariants();
    }
    assert!(restarts >= 8, "the crashes hit ({restarts} restarts)");
    let registry = c.central().registry();
    let redeemed: Vec<_> = registry.iter().filter(|e| e.kind == EntryKind::Redemption).map(|e| e.tx_id).collect();
    let unique: std::collections::BTreeSet<_> = redeemed.iter().collect();
    assert_eq!(unique.len(), redeemed.len(), "no redemption posted twice");
    assert!(redeemed.len() >= 8, "redemptions went through ({})", redeemed.len());
    for answer in &answers {
        if let Ok(Ok(committed)) = answer.try_recv() {
            assert!(redeemed.contains(&committed.tx_id), "an answered redemption is in the registry");
        }
    }
}

#[test]
fn a_redemption_with_an_idempotency_key_is_made_once_and_the_key_with_another_request_is_refused() {
    let mut c = Cluster::new(0);
    c.fund(1_000_000, 90_000);
    let idem = |f: u8| {
        Some(dtenge_bank::IdemKey { key: "redeem-1".into(), fingerprint: dtenge_core::crypto::Hash32([f; 32]) })
    };
    let first = c.bank().redeem(tiyn(30_000), idem(1), c.now_ms);
    let again = c.bank().redeem(tiyn(30_000), idem(1), c.now_ms);
    c.run(10_000);
    let committed = first.try_recv().unwrap().unwrap();
    assert_eq!(again.try_recv().unwrap().unwrap(), committed);
    c.restart("steppe");
    let after = c.bank().redeem(tiyn(30_000), idem(1), c.now_ms);
    assert_eq!(after.try_recv().unwrap().unwrap(), committed, "the stored answer, after a restart too");
    let other = c.bank().redeem(tiyn(20_000), idem(2), c.now_ms);
    assert_eq!(other.try_recv().unwrap().unwrap_err().code, ErrorCode::IdempotencyKeyReused);
    assert_eq!(c.bank_own_tiyn(), 60_000);
    c.assert_invariants();
}
