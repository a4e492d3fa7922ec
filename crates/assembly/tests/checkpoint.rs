//! The notary role checkpoints its unspent set while the roles pay each other: many payments,
//! checkpoints asked for meanwhile and after, then a restart keeps every token.

use dtenge_assembly::{Assembly, Config};
use dtenge_bank::{AccountKey, Request};
use dtenge_core::crypto::SecretKey;
use dtenge_core::token::TokenId;
use dtenge_core::Amount;
use dtenge_node::{Account, ClientKind, OWN_ACCOUNT};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);
const BANKS: [&str; 3] = ["steppe", "tulpar", "sapa"];
const CLIENTS_PER_BANK: u32 = 4;
const ROUNDS: u32 = 25;

fn tiyn(n: u64) -> Amount {
    Amount::from_tiyn(n).unwrap()
}

fn start(dir: &std::path::Path) -> Assembly {
    Assembly::start(dir, &Config::standard([9; 32]), Arc::new(|| 1_700_000_000_000)).unwrap()
}

fn client_key(bank: usize, n: u32) -> SecretKey {
    SecretKey::from_seed([u8::try_from(bank * 16).unwrap() + u8::try_from(n).unwrap() + 1; 32])
}

fn client_id(bank: usize, n: u32) -> String {
    format!("9001013{bank}{n:04}")
}

/// Every bank's token ids, and the notary's unspent set.
fn tokens(assembly: &Assembly) -> (BTreeMap<String, HashSet<TokenId>>, HashSet<TokenId>) {
    let banks = assembly
        .banks()
        .iter()
        .map(|b| (b.id().to_string(), b.service().read(|node| node.token_ids().copied().collect())))
        .collect();
    (banks, assembly.notary().notary().unspent())
}

#[test]
fn many_payments_checkpoints_meanwhile_and_after_then_a_restart_keep_every_token() {
    let dir = tempfile::tempdir().unwrap();
    let before;
    let changes_after_last;
    {
        let assembly = start(dir.path());
        for (b, bank) in BANKS.iter().enumerate() {
            let accounts = (0..CLIENTS_PER_BANK)
                .map(|n| {
                    let key = client_key(b, n);
                    let account = Account {
                        client_id: client_id(b, n),
                        node_id: (*bank).into(),
                        kind: ClientKind::Individual,
                        name: format!("Client {b}-{n}"),
                        phone: None,
                        address: key.address(),
                        opened_at_unix_ms: 0,
                    };
                    (account, AccountKey::Custodial(key))
                })
                .collect();
            assembly.migrate_accounts(bank, accounts).unwrap();
            assembly.fund(bank, tiyn(10_000_00), WAIT).unwrap();
            let payees = (0..CLIENTS_PER_BANK).map(|n| (client_key(b, n).address(), tiyn(1_000_00))).collect();
            let handle = assembly.bank(bank).unwrap();
            handle
                .submit(Request::Pay { client_id: OWN_ACCOUNT.into(), payees }, None)
                .recv_timeout(WAIT)
                .unwrap()
                .unwrap();
        }
        let first = assembly.notary().checkpoint().unwrap();
        assert_eq!(first.generation, 1, "the first checkpoint of a new notary");
        assert!(first.log_rows_deleted > 0, "the checkpoint deleted the log it covers: {first:?}");
        assert_eq!(assembly.notary().changes_since_checkpoint(), 0);

        // The operator asks for checkpoints over and over while the clients pay each other.
        let paying = AtomicBool::new(true);
        let checkpoints = std::thread::scope(|scope| {
            let operator = scope.spawn(|| {
                // At least one, even when a loaded machine runs every payment before this thread
                // is first scheduled.
                let mut written = 0u32;
                loop {
                    assembly.notary().checkpoint().unwrap();
                    written += 1;
                    if !paying.load(Ordering::Relaxed) {
                        break written;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            });
            for round in 0..ROUNDS {
                // Every client pays the next client (across banks), all in flight at once.
                let mut answers = Vec::new();
                for (b, bank) in BANKS.iter().enumerate() {
                    for n in 0..CLIENTS_PER_BANK {
                        let (to_bank, to_n) = ((b + 1) % BANKS.len(), (n + round) % CLIENTS_PER_BANK);
                        let payee = client_key(to_bank, to_n).address();
                        let amount = tiyn(1_00 + u64::from(round));
                        let pay = Request::Pay { client_id: client_id(b, n), payees: vec![(payee, amount)] };
                        answers.push(assembly.bank(bank).unwrap().submit(pay, None));
                    }
                }
                for answer in answers {
                    answer.recv_timeout(WAIT).unwrap().unwrap();
                }
            }
            paying.store(false, Ordering::Relaxed);
            operator.join().unwrap()
        });
        assert!(checkpoints > 0);
        assembly.settle(WAIT).unwrap();
        let last = assembly.notary().checkpoint().unwrap();
        assert_eq!(last.generation, 1 + u64::from(checkpoints) + 1, "none was due meanwhile: {last:?}");
        assert_eq!(assembly.notary().changes_since_checkpoint(), 0);
        // A few payments after the last checkpoint: replayed at the restart.
        let steppe = assembly.bank("steppe").unwrap();
        for n in 0..3 {
            let pay = Request::Pay { client_id: client_id(0, n), payees: vec![(client_key(2, n).address(), tiyn(7))] };
            steppe.submit(pay, None).recv_timeout(WAIT).unwrap().unwrap();
        }
        assembly.settle(WAIT).unwrap();
        assert_eq!(assembly.reconcile(), Vec::<String>::new());
        before = tokens(&assembly);
        changes_after_last = assembly.notary().changes_since_checkpoint();
        assert_eq!(changes_after_last, 3, "logged after the last checkpoint");
        assembly.shutdown();
    }
    let assembly = start(dir.path());
    let after = tokens(&assembly);
    assert_eq!(after.1, before.1, "the notary's unspent set, from its checkpoint and the log after it");
    assert_eq!(after.0, before.0, "every bank's tokens");
    let wallets: HashSet<TokenId> = after.0.values().flatten().copied().collect();
    assert_eq!(wallets, after.1, "the banks' tokens are the notary's unspent set");
    assert_eq!(assembly.notary().changes_since_checkpoint(), changes_after_last, "replayed: only what came after");
    assert_eq!(assembly.reconcile(), Vec::<String>::new());
    // And it goes on paying: a spend of a token from before the checkpoint.
    let tulpar = assembly.bank("tulpar").unwrap();
    let pay = Request::Pay { client_id: client_id(1, 0), payees: vec![(client_key(0, 0).address(), tiyn(5))] };
    tulpar.submit(pay, None).recv_timeout(WAIT).unwrap().unwrap();
    assembly.shutdown();
}
