//! Monitoring on the roles reads the figures each role publishes after every step, never a
//! role's lock: the figures equal the locked reads once the roles are quiet, and a poll
//! answers while a bank's lock is held by someone else (as a batch's commit holds it).

use dtenge_api::platform::{Platform, ANSWER_WAIT};
use dtenge_api::types::{AmountRequest, OpenAccount, Payee, TransferRequest};
use dtenge_core::calendar::Date;
use dtenge_core::money::Amount;
use dtenge_env::{Entropy, ManualClock};
use dtenge_node::ids::complete_iin_bin;
use dtenge_node::ClientKind;
use std::sync::{Arc, Barrier};
use std::time::Duration;

const BANKS: [&str; 3] = ["steppe", "tulpar", "sapa"];

/// 2026-11-23 10:00 Astana time (+05:00), a Monday and an operational day.
fn monday_10am_ms() -> u64 {
    let days = Date::new(2026, 11, 23).unwrap().days();
    ((days * 86_400 + 5 * 3_600) * 1_000) as u64
}

fn req(tiyn: u64) -> AmountRequest {
    AmountRequest { amount_tiyn: Amount::from_tiyn(tiyn).unwrap() }
}

fn open_platform(dir: &std::path::Path) -> Platform {
    let platform = Platform::open(dir, Arc::new(ManualClock::new(monday_10am_ms())), Entropy::from_seed(5)).unwrap();
    for bank in BANKS {
        platform.credit_correspondent(None, bank, req(1_000_000_000)).unwrap();
        platform.emission(None, bank, req(500_000_000)).unwrap();
    }
    platform
}

/// A custodial client at `bank`, funded with `tiyn` of DT; its client id.
fn client(platform: &Platform, bank: &str, n: u32, tiyn: u64) -> String {
    let id = (0..).find_map(|k| complete_iin_bin(&format!("900101{:05}", 20_000 + 10 * n + k))).unwrap();
    let open = OpenAccount {
        kind: ClientKind::Individual,
        client_id: id.clone(),
        name: format!("Client{n} Testov"),
        phone: None,
        public_key: None,
    };
    platform.open_account(None, bank, open).unwrap();
    platform.deposit_fiat(None, bank, &id, req(tiyn)).unwrap();
    platform.convert_to_dt(None, bank, &id, req(tiyn)).unwrap();
    id
}

#[test]
fn published_figures_equal_the_locked_reads_once_the_roles_are_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let platform = open_platform(dir.path());
    let clients: Vec<(usize, String)> =
        (0..9).map(|n| (n % 3, client(&platform, BANKS[n % 3], n as u32, 100_000))).collect();
    // Payments within and across banks, a redemption and an emission among them.
    for round in 0..4u64 {
        for (i, (bank, id)) in clients.iter().enumerate() {
            let (to_bank, to_id) = &clients[(i + 1 + round as usize) % clients.len()];
            let request = TransferRequest {
                from: id.clone(),
                to: Payee { client_id: Some(to_id.clone()), bank: Some(BANKS[*to_bank].into()), ..Payee::default() },
                amount_tiyn: Amount::from_tiyn(1_000 + round * 10 + i as u64).unwrap(),
                reference: None,
            };
            platform.transfer(None, BANKS[*bank], request).unwrap();
        }
    }
    platform.redemption(None, "tulpar", req(7_000)).unwrap();
    platform.emission(None, "sapa", req(3_000)).unwrap();
    platform.assembly().settle(ANSWER_WAIT).unwrap();

    let mut dt_held = Amount::ZERO;
    for bank in platform.assembly().banks() {
        let locked = bank.service().read(|n| (n.total_dt().unwrap(), n.account_count(), n.token_ids().count()));
        let figures = bank.service().figures();
        assert_eq!((figures.dt_held, figures.accounts, figures.tokens), locked, "{}", bank.id());
        assert_eq!(bank.service().meta(), &bank.service().read(|n| n.meta().clone()));
        dt_held = dt_held.checked_add(locked.0).unwrap();
    }
    let central = platform.assembly().central();
    let figures = central.figures();
    let totals = dtenge_central::Totals::of(&central.registry(), None);
    assert_eq!(figures.totals, totals);
    assert_eq!(figures.dt_liability, central.dt_liability());
    assert_eq!(figures.blocked, central.blocked());
    for bank in BANKS {
        assert_eq!(figures.by_bank[bank], dtenge_central::Totals::of(&central.registry(), Some(bank)), "{bank}");
        assert_eq!(figures.correspondent_tiyn[bank], central.abs_balance(&dtenge_abs::correspondent(bank)), "{bank}");
    }
    let monitoring = platform.monitoring().unwrap();
    assert_eq!(monitoring.circulation_tiyn, dt_held, "the banks hold what is in circulation");
    assert_eq!(monitoring.dt_liability_tiyn, dt_held);
    assert_eq!(monitoring.unspent_tokens, platform.assembly().notary().notary().unspent_count());
    let running = platform.assembly().monitoring();
    assert_eq!(running.dt_in_wallets, dt_held);
    assert_eq!(running.notary_seq, platform.assembly().notary().seq());
    for view in &monitoring.nodes {
        let bank = platform.assembly().bank(&view.id).unwrap();
        assert_eq!(view.dt_held_tiyn, bank.service().read(|n| n.total_dt().unwrap()), "{}", view.id);
        assert_eq!(view.accounts, bank.service().read(|n| n.account_count()), "{}", view.id);
    }
}

#[test]
fn a_monitoring_poll_answers_while_a_bank_holds_its_lock() {
    let dir = tempfile::tempdir().unwrap();
    let platform = Arc::new(open_platform(dir.path()));
    let payer = client(&platform, "steppe", 1, 50_000);
    let payee = client(&platform, "tulpar", 2, 1_000);
    let expected = platform.monitoring().unwrap();
    let held = Arc::new(Barrier::new(2));
    let (release, released) = crossbeam_channel::bounded::<()>(1);
    let holder = {
        let (platform, held) = (platform.clone(), held.clone());
        // Holds steppe's lock, as a batch's commit does, until the test releases it.
        std::thread::spawn(move || {
            platform.assembly().bank("steppe").unwrap().service().read(|_| {
                held.wait();
                released.recv_timeout(Duration::from_secs(60)).unwrap();
            })
        })
    };
    held.wait();
    // A payment queued behind the held lock, and a poll from another thread: the poll answers
    // at once with the figures as of the last step.
    let payment = {
        let platform = platform.clone();
        let request = TransferRequest {
            from: payer,
            to: Payee { client_id: Some(payee), bank: Some("tulpar".into()), ..Payee::default() },
            amount_tiyn: Amount::from_tiyn(1_000).unwrap(),
            reference: None,
        };
        std::thread::spawn(move || platform.transfer(None, "steppe", request).map(|_| ()))
    };
    let (polled, poll) = crossbeam_channel::bounded(1);
    let poller = {
        let platform = platform.clone();
        std::thread::spawn(move || {
            let _ = polled.send(platform.monitoring());
        })
    };
    let monitoring = poll.recv_timeout(Duration::from_secs(5)).expect("monitoring waited for a bank's lock").unwrap();
    assert_eq!(monitoring.circulation_tiyn, expected.circulation_tiyn);
    assert_eq!(monitoring.nodes.len(), expected.nodes.len());
    release.send(()).unwrap();
    holder.join().unwrap();
    poller.join().unwrap();
    payment.join().unwrap().unwrap();
}
