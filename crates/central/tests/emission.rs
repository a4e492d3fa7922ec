//! Emission across roles: central, the notary and a bank, each on its own simulated disk, on a
//! network that loses, duplicates and delays, each restarted on its own.

mod cluster;

use cluster::{key, tiyn, Cluster, STEPPE_OWN};
use dtenge_central::IdemKey;
use dtenge_core::crypto::Hash32;
use dtenge_core::{Amount, ErrorCode};
use dtenge_store::CrashMode;
use dtenge_wire::RoleId;

#[test]
fn an_emission_posts_in_the_abs_enters_the_registry_and_reaches_the_bank() {
    let mut c = Cluster::new(0);
    c.credit(1_000_000);
    let answer = c.central().emit("steppe", tiyn(250_000), None, c.now_ms);
    c.run(10_000);
    let emission = answer.try_recv().unwrap().unwrap();
    assert_eq!((emission.bank.as_str(), emission.amount, emission.number), ("steppe", tiyn(250_000), 0));
    assert_eq!(c.bank_own_tiyn(), 250_000);
    assert_eq!(c.central().abs_balance("corr:steppe"), 750_000);
    c.assert_invariants();
}

#[test]
fn emissions_beyond_the_correspondent_account_are_refused_also_while_others_are_in_flight() {
    let mut c = Cluster::new(0);
    c.credit(1_000);
    let first = c.central().emit("steppe", tiyn(600), None, c.now_ms);
    // Not posted yet, but reserved: a second emission cannot take the same money.
    let second = c.central().emit("steppe", tiyn(600), None, c.now_ms);
    assert_eq!(second.try_recv().unwrap().unwrap_err().code, ErrorCode::InsufficientFunds);
    let unknown = c.central().emit("nowhere", tiyn(1), None, c.now_ms);
    assert_eq!(unknown.try_recv().unwrap().unwrap_err().code, ErrorCode::UnknownAccount);
    c.run(10_000);
    assert!(first.try_recv().unwrap().is_ok());
    assert_eq!(c.bank_own_tiyn(), 600);
    c.assert_invariants();
}

#[test]
fn an_idempotency_key_emits_once_and_another_request_under_it_is_refused() {
    let mut c = Cluster::new(0);
    c.credit(10_000);
    let idem = |f: u8| Some(IdemKey { key: "emit-1".into(), fingerprint: Hash32([f; 32]) });
    let first = c.central().emit("steppe", tiyn(4_000), idem(1), c.now_ms);
    let again = c.central().emit("steppe", tiyn(4_000), idem(1), c.now_ms);
    c.run(10_000);
    let emission = first.try_recv().unwrap().unwrap();
    assert_eq!(again.try_recv().unwrap().unwrap(), emission);
    let after = c.central().emit("steppe", tiyn(4_000), idem(1), c.now_ms);
    assert_eq!(after.try_recv().unwrap().unwrap(), emission);
    let other = c.central().emit("steppe", tiyn(5_000), idem(2), c.now_ms);
    assert_eq!(other.try_recv().unwrap().unwrap_err().code, ErrorCode::IdempotencyKeyReused);
    assert_eq!(c.bank_own_tiyn(), 4_000);
    c.assert_invariants();
}

#[test]
fn a_credit_under_an_idempotency_key_posts_once_and_answers_its_posting_again_after_a_restart() {
    let mut c = Cluster::new(0);
    let idem = |f: u8| Some(IdemKey { key: "rtgs-1".into(), fingerprint: Hash32([f; 32]) });
    let posting = c.central().credit_correspondent_once("steppe", tiyn(7_000), idem(1), c.now_ms).unwrap();
    c.credited_tiyn += 7_000;
    assert_eq!((posting.credit.as_str(), posting.amount_tiyn), ("corr:steppe", tiyn(7_000)));
    assert_eq!(c.central().posting(posting.seq).unwrap(), Some(posting.clone()));
    c.restart("central");
    let again = c.central().credit_correspondent_once("steppe", tiyn(7_000), idem(1), c.now_ms).unwrap();
    assert_eq!(again, posting);
    let other = c.central().credit_correspondent_once("steppe", tiyn(1), idem(2), c.now_ms).unwrap_err();
    assert_eq!(other.code, ErrorCode::IdempotencyKeyReused);
    let unknown = c.central().credit_correspondent_once("nowhere", tiyn(1), None, c.now_ms).unwrap_err();
    assert_eq!(unknown.code, ErrorCode::UnknownAccount);
    assert_eq!(c.central().abs_balances().get("corr:steppe"), Some(&7_000));
    assert_eq!(c.central().abs_balances().get("rtgs_external"), Some(&-7_000));
    assert_eq!(c.central().posting(posting.seq + 1).unwrap(), None);
    // An emission's posting is read back by the registry entry's number.
    let emission = c.central().emit("steppe", tiyn(2_000), None, c.now_ms);
    c.run(10_000);
    let emission = emission.try_recv().unwrap().unwrap();
    let posted = c.central().posting(emission.abs_seq).unwrap().unwrap();
    assert_eq!((posted.debit.as_str(), posted.credit.as_str()), ("corr:steppe", "dt_liability"));
    assert_eq!((posted.amount_tiyn, posted.reference), (tiyn(2_000), emission.tx_id.to_string()));
    c.assert_invariants();
}

/// Before: central took the emission, the notary issued it, and central's posting of it failed
/// its assertion (the DT liability past the largest amount), on every restart.
#[test]
fn an_emission_that_would_push_the_dt_liability_past_the_largest_amount_is_refused_before_it_is_issued() {
    let mut c = Cluster::new(0);
    let max = Amount::MAX.tiyn();
    c.fund(max, max);
    c.credit(5);
    let refused = c.central().emit("steppe", tiyn(5), None, c.now_ms);
    assert_eq!(refused.try_recv().unwrap().unwrap_err().code, ErrorCode::LimitExceeded);
    c.run(10_000);
    assert_eq!((c.central().dt_liability(), c.central().outstanding()), (Amount::MAX, (0, 0)));
    assert_eq!(c.central().abs_balance("corr:steppe"), 5);
    c.assert_invariants();
}

#[test]
fn central_restarted_between_the_notary_and_its_posting_posts_exactly_once() {
    let mut c = Cluster::new(0);
    c.credit(10_000);
    let _lost = c.central().emit("steppe", tiyn(3_000), None, c.now_ms);
    // Central dies before the notary's answer arrives: the issue is committed at the notary,
    // not yet posted.
    c.net.down(RoleId::Central);
    c.run(100);
    assert_eq!(c.central().dt_liability(), Amount::ZERO);
    c.restart("central");
    assert_eq!(c.central().outstanding().0, 1, "the emission is still in central's outbox");
    c.run(10_000);
    assert_eq!(c.central().dt_liability(), tiyn(3_000));
    assert_eq!(c.bank_own_tiyn(), 3_000);
    assert_eq!(c.central().registry().len(), 1);
    c.assert_invariants();
}

#[test]
fn a_torn_posting_and_crashes_of_each_role_under_lost_and_duplicated_messages_keep_circulation_equal_to_the_liability()
{
    let mut c = Cluster::new(7);
    c.credit(1_000_000);
    let mut answers = Vec::new();
    let mut restarts = 0;
    for round in 0..12u64 {
        answers.push(c.central().emit("steppe", tiyn(1_000 + round), None, c.now_ms));
        match round % 4 {
            0 => c.disks["central"].arm_crash(2, CrashMode::Torn { kept_bytes_permille: 300 }),
            1 => c.disks["steppe"].arm_crash(1, CrashMode::AfterWrite),
            2 => c.disks["notary"].arm_crash(1, CrashMode::BeforeWrite),
            _ => {}
        }
        c.run(2_000);
        for role in ["central", "steppe", "notary"] {
            if c.disks[role].crashed() {
                let role_id = match role {
                    "central" => RoleId::Central,
                    "notary" => RoleId::Notary,
                    _ => RoleId::Bank("steppe".into()),
                };
                c.net.down(role_id);
                c.restart(role);
                restarts += 1;
            }
            c.disks[role].disarm();
        }
        c.run(20_000);
        assert!(c.quiet(), "round {round}: everything arrived");
        c.assert_invariants();
    }
    assert!(restarts >= 6, "the crashes hit ({restarts} restarts)");
    let emitted: u64 = c.central().registry().iter().map(|e| e.amount.tiyn()).sum();
    assert!(emitted >= 1_000, "emissions went through");
    let answered = answers.iter().filter(|a| matches!(a.try_recv(), Ok(Ok(_)))).count();
    assert!(answered >= 6, "most callers were answered ({answered}); the rest died with central");
}

#[test]
fn a_block_reaches_the_notary_and_the_bank_over_a_lossy_network_and_its_lift_too() {
    let mut c = Cluster::new(3);
    c.credit(100_000);
    let _ = c.central().emit("steppe", tiyn(50_000), None, c.now_ms);
    c.run(10_000);
    assert_eq!(c.bank_own_tiyn(), 50_000);
    c.central().set_blocked("steppe", true, "licence suspended", c.now_ms).unwrap();
    assert_eq!(c.central().blocked().get("steppe").map(String::as_str), Some("licence suspended"));
    c.run(10_000);
    assert!(c.quiet(), "the decision reached every role");
    let refused = c.central().emit("steppe", tiyn(1_000), None, c.now_ms);
    assert_eq!(refused.try_recv().unwrap().unwrap_err().code, ErrorCode::BankBlocked);
    // The bank pays one of its own accounts: the notary spends nothing a blocked bank sends.
    let pay = |c: &Cluster| {
        let to = key(STEPPE_OWN).address();
        let request =
            dtenge_bank::Request::Pay { client_id: dtenge_node::OWN_ACCOUNT.into(), payees: vec![(to, tiyn(1_000))] };
        let bank = c.bank.as_ref().unwrap();
        let answer = bank.submit(request, None);
        bank.flush(c.now_ms);
        answer
    };
    let answer = pay(&c);
    c.run(10_000);
    assert_eq!(answer.try_recv().unwrap().unwrap_err().code, ErrorCode::BankBlocked);
    // Restarts keep the decision.
    c.restart("notary");
    c.restart("steppe");
    c.restart("central");
    assert_eq!(c.central().blocked().get("steppe").map(String::as_str), Some("licence suspended"));
    let answer = pay(&c);
    c.run(10_000);
    assert_eq!(answer.try_recv().unwrap().unwrap_err().code, ErrorCode::BankBlocked);
    c.central().set_blocked("steppe", false, "", c.now_ms).unwrap();
    assert!(c.central().blocked().is_empty());
    c.run(10_000);
    let answer = pay(&c);
    c.run(10_000);
    assert!(answer.try_recv().unwrap().is_ok());
    assert_eq!(c.bank_own_tiyn(), 50_000, "paid to itself: nothing changed hands");
    c.assert_invariants();
}

const WINDOW_MS: u64 = dtenge_store::retention::IDEMPOTENCY_RETENTION_MS_DEFAULT;

#[test]
fn a_credit_key_is_kept_for_the_retention_window_then_swept_in_bounded_passes_and_runs_as_new() {
    let mut c = Cluster::new(0);
    let idem = |key: &str| Some(IdemKey { key: key.into(), fingerprint: Hash32([1; 32]) });
    let written_ms = c.now_ms;
    let posting = c.central().credit_correspondent_once("steppe", tiyn(7_000), idem("rtgs-1"), written_ms).unwrap();
    for key in ["rtgs-2", "rtgs-3"] {
        c.central().credit_correspondent_once("steppe", tiyn(1), idem(key), written_ms).unwrap();
    }
    c.credited_tiyn += 7_002;
    assert_eq!(c.central().sweep_idempotency(written_ms + WINDOW_MS - 1, 2).unwrap(), 0);
    let again = c.central().credit_correspondent_once("steppe", tiyn(7_000), idem("rtgs-1"), written_ms).unwrap();
    assert_eq!(again, posting, "a retry within the window: the first answer");
    assert_eq!(c.central().sweep_idempotency(written_ms + WINDOW_MS, 2).unwrap(), 2, "at most 2 a pass");
    assert_eq!(c.central().sweep_idempotency(written_ms + WINDOW_MS, 2).unwrap(), 1);
    let later_ms = written_ms + WINDOW_MS;
    let new = c.central().credit_correspondent_once("steppe", tiyn(7_000), idem("rtgs-1"), later_ms).unwrap();
    assert_ne!(new.seq, posting.seq, "past the window the key runs as new");
    c.credited_tiyn += 7_000;
    assert_eq!(c.central().abs_balances().get("corr:steppe"), Some(&14_002));
}

#[test]
fn an_emission_key_in_flight_is_not_swept_and_its_answer_expires_a_window_after_it() {
    let mut c = Cluster::new(0);
    c.credit(10_000);
    let idem = |f: u8| Some(IdemKey { key: "emit-1".into(), fingerprint: Hash32([f; 32]) });
    let emitted_ms = c.now_ms;
    let first = c.central().emit("steppe", tiyn(4_000), idem(1), emitted_ms);
    // At the notary still, a window later: kept.
    assert_eq!(c.central().sweep_idempotency(emitted_ms + WINDOW_MS, 256).unwrap(), 0);
    c.run(10_000);
    let emission = first.try_recv().unwrap().unwrap();
    let answered_ms = c.now_ms;
    // Answered (its record written again) at or after `emitted_ms`: kept a window from then.
    assert_eq!(c.central().sweep_idempotency(emitted_ms + WINDOW_MS - 1, 256).unwrap(), 0);
    let after = c.central().emit("steppe", tiyn(4_000), idem(1), c.now_ms);
    assert_eq!(after.try_recv().unwrap().unwrap(), emission);
    assert_eq!(c.central().sweep_idempotency(answered_ms + 2 * WINDOW_MS, 256).unwrap(), 1);
    // The key is free again: another request under it is not refused.
    let other = c.central().emit("steppe", tiyn(5_000), idem(2), c.now_ms);
    c.run(10_000);
    assert!(other.try_recv().unwrap().is_ok());
    assert_eq!(c.bank_own_tiyn(), 9_000);
    c.assert_invariants();
}
