//! The NBK's operational calendar at central: emission and redemption run on operational days
//! only (Monday to Friday minus Kazakhstan's public holidays, Astana time, with the operator's
//! overrides, kept in central's store).

mod cluster;

use cluster::{key, tiyn, Cluster, STEPPE, STEPPE_OWN};
use dtenge_core::calendar::Date;
use dtenge_core::tx::{Command, Transaction, TxBody};
use dtenge_core::{ErrorCode, Result};
use dtenge_node::OWN_ACCOUNT;
use dtenge_transport::Transport;
use dtenge_wire::{Envelope, Message, RedeemRequest, RoleId};

fn date(text: &str) -> Date {
    text.parse().unwrap()
}

/// What central's state shows of conversions: registry entries, the bank's correspondent
/// account, the DT liability, the work outstanding.
fn snapshot(c: &Cluster) -> (usize, i64, u64, (usize, usize)) {
    let central = c.central();
    (central.registry().len(), central.abs_balance("corr:steppe"), central.dt_liability().tiyn(), central.outstanding())
}

fn emit(c: &mut Cluster, amount: u64) -> Result<()> {
    let answer = c.central().emit("steppe", tiyn(amount), None, c.now_ms);
    c.run(10_000);
    answer.try_recv().unwrap().map(|_| ())
}

fn redeem(c: &mut Cluster, amount: u64) -> Result<()> {
    let answer = c.bank().redeem(tiyn(amount), None, c.now_ms);
    c.run(10_000);
    answer.try_recv().unwrap().map(|_| ())
}

/// Both conversions refused with `NonWorkingDay`, central's state and the bank's DT unchanged,
/// the redemption's inputs released.
fn assert_refused(c: &mut Cluster) {
    let (before, own) = (snapshot(c), c.bank_own_tiyn());
    assert_eq!(emit(c, 1_000).unwrap_err().code, ErrorCode::NonWorkingDay);
    let refused = redeem(c, 1_000).unwrap_err();
    assert_eq!(refused.code, ErrorCode::NonWorkingDay, "{}", refused.message);
    assert_eq!((snapshot(c), c.bank_own_tiyn()), (before, own), "a refusal changes nothing");
    assert_eq!((c.bank_reserved_tiyn(), c.bank().redemptions_pending()), (0, 0));
}

/// Both conversions go through.
fn assert_allowed(c: &mut Cluster) {
    let (entries, own) = (c.central().registry().len(), c.bank_own_tiyn());
    emit(c, 1_000).unwrap();
    redeem(c, 1_000).unwrap();
    assert_eq!(c.central().registry().len(), entries + 2);
    assert_eq!(c.bank_own_tiyn(), own);
}

#[test]
fn conversions_run_on_operational_days_and_the_operator_overrides_single_days() {
    let mut c = Cluster::new(0);
    // Wednesday 2026-12-02: a weekday.
    assert!(c.central().is_operational_day(c.now_ms));
    c.fund(1_000_000, 200_000);
    assert_allowed(&mut c);

    // Saturday.
    c.go_to("2026-12-05");
    assert_eq!(c.central().today(c.now_ms).date, date("2026-12-05"));
    assert!(!c.central().is_operational_day(c.now_ms));
    assert_refused(&mut c);

    // The operator opens Sunday and closes Monday.
    let sunday = c.central().set_day(date("2026-12-06"), true, c.now_ms).unwrap();
    assert!(sunday.working && sunday.overridden);
    let monday = c.central().set_day(date("2026-12-07"), false, c.now_ms).unwrap();
    assert!(!monday.working && monday.overridden);
    c.go_to("2026-12-06");
    assert_allowed(&mut c);
    c.go_to("2026-12-07");
    assert_refused(&mut c);
    c.go_to("2026-12-08");
    assert_allowed(&mut c);

    // Independence Day (Wednesday 2026-12-16), a public holiday; the next day is a working day.
    c.go_to("2026-12-16");
    assert!(!c.central().today(c.now_ms).overridden);
    assert_refused(&mut c);
    c.go_to("2026-12-17");
    assert_allowed(&mut c);
    c.assert_invariants();
}

#[test]
fn the_operators_overrides_survive_a_restart_of_central() {
    let mut c = Cluster::new(0);
    c.fund(1_000_000, 200_000);
    c.central().set_day(date("2026-12-05"), true, c.now_ms).unwrap();
    c.central().set_day(date("2026-12-03"), false, c.now_ms).unwrap();
    // Set and set back: the override is gone.
    c.central().set_day(date("2026-12-04"), false, c.now_ms).unwrap();
    assert!(!c.central().set_day(date("2026-12-04"), true, c.now_ms).unwrap().overridden);
    c.crash_and_restart("central");
    assert!(c.central().day(date("2026-12-05")).working);
    assert!(!c.central().day(date("2026-12-03")).working);
    let friday = c.central().day(date("2026-12-04"));
    assert!(friday.working && !friday.overridden);

    c.go_to("2026-12-03");
    assert_refused(&mut c);
    c.go_to("2026-12-05");
    assert_allowed(&mut c);
    c.assert_invariants();
}

#[test]
fn a_bad_or_past_day_is_refused_and_changes_nothing() {
    let mut c = Cluster::new(0);
    c.go_to("2026-12-05");
    let past = c.central().set_day(date("2026-12-04"), false, c.now_ms).unwrap_err();
    assert_eq!(past.code, ErrorCode::MalformedInput);
    let no_such_day = Date { year: 2026, month: 2, day: 30 };
    assert_eq!(c.central().set_day(no_such_day, true, c.now_ms).unwrap_err().code, ErrorCode::MalformedInput);
    // Today may still be changed: the operator opens the Saturday.
    assert!(c.central().set_day(date("2026-12-05"), true, c.now_ms).unwrap().working);
    c.crash_and_restart("central");
    assert!(c.central().day(date("2026-12-04")).working, "the refused override was not kept");
    assert!(c.central().is_operational_day(c.now_ms));
}

/// The calendar's refusal is final for its transaction, like central's other refusals: the
/// bank released its inputs when it was refused, so the same request delivered again on a
/// working day (a late copy) is refused again; a new redemption goes through.
#[test]
fn a_redemption_refused_on_a_holiday_is_refused_for_good_and_a_new_one_goes_through_next_working_day() {
    let mut c = Cluster::new(0);
    c.fund(1_000_000, 200_000);
    c.go_to("2026-12-16");
    let inputs = c.bank().read(|n| n.spendable_inputs(OWN_ACCOUNT).unwrap());
    let mut tx = Transaction::new(TxBody { command: Command::Redeem, inputs, outputs: vec![], nonce: 9 });
    tx.sign_owner(&key(STEPPE_OWN));
    tx.attest(&key(STEPPE));
    let send = |c: &Cluster, tx: &Transaction| {
        let message = Message::RedeemRequest(RedeemRequest { tx: tx.clone() });
        let _ = c.net.send(Envelope { from: RoleId::Bank("steppe".into()), to: RoleId::Central, message });
    };
    send(&c, &tx);
    c.run(10_000);
    // (The cluster's network duplicates some envelopes: count the answers, not the copies.)
    let refused_on_the_holiday = c.redeem_refusals().len();
    assert!(refused_on_the_holiday >= 1);

    c.go_to("2026-12-17");
    send(&c, &tx);
    c.run(10_000);
    let refusals = c.redeem_refusals();
    assert!(refusals.len() > refused_on_the_holiday, "the copy was answered");
    assert!(refusals.iter().all(|r| (r.tx_id, r.refused.code) == (tx.id(), ErrorCode::NonWorkingDay)));
    assert_eq!(c.central().registry().len(), 1, "the late copy redeemed nothing");

    // The bank asks again (a new transaction): redeemed.
    redeem(&mut c, 50_000).unwrap();
    assert_eq!(c.bank_own_tiyn(), 150_000);
    assert_eq!(c.central().registry().len(), 2);
    c.assert_invariants();
}
