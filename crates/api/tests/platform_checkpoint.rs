//! The operator's checkpoint on the roles (`Platform::checkpoint_now`): the notary's unspent set
//! and every bank's tokens written now; both survive a restart.

use dtenge_api::platform::Idem;
use dtenge_api::platform::Platform;
use dtenge_api::types::AmountRequest;
use dtenge_core::crypto::Hash32;
use dtenge_core::money::Amount;
use dtenge_core::ErrorCode;
use dtenge_env::{Entropy, ManualClock};
use std::path::Path;
use std::sync::Arc;

/// 2026-12-07, a Monday, 10:00 in Astana.
const MONDAY_MS: u64 = 1_796_619_600_000;

fn open(dir: &Path) -> Platform {
    Platform::open(dir, Arc::new(ManualClock::new(MONDAY_MS)), Entropy::from_seed(7)).unwrap()
}

fn amount(tiyn: u64) -> AmountRequest {
    AmountRequest { amount_tiyn: Amount::from_tiyn(tiyn).unwrap() }
}

#[test]
fn the_operators_checkpoint_writes_the_notarys_set_and_the_banks_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let unspent;
    let balances;
    {
        let platform = open(dir.path());
        let first = platform.checkpoint_now(None).unwrap();
        assert_eq!((first.notary.generation, first.notary.tokens), (1, 0));
        // Every bank (four: the Treasury too) writes its first checkpoint, of no tokens.
        assert_eq!((first.nodes.generation, first.nodes.tokens, first.nodes.bytes), (1, 0, 0), "{first:?}");
        for bank in ["steppe", "sapa"] {
            platform.credit_correspondent(None, bank, amount(1_000_00)).unwrap();
            platform.emission(None, bank, amount(600_00)).unwrap();
        }
        let idem = Idem { key: "checkpoint-1".into(), fingerprint: Hash32([1; 32]) };
        let second = platform.checkpoint_now(Some(&idem)).unwrap();
        assert_eq!(second.notary.generation, 2);
        assert_eq!(second.notary.tokens, 2, "one token per emission");
        assert_eq!(second.notary.bytes, 2 * (4 + 32), "framed token ids");
        assert!(second.notary.log_rows_deleted > 0, "{second:?}");
        assert_eq!((second.nodes.generation, second.nodes.tokens), (2, 2), "each bank holds its emission's token");
        // (Each bank's log keeps its last row, the emission's: a log's numbering goes on from it.)
        assert!(second.nodes.bytes > 2 * 32, "a token with its owner and amount: {second:?}");
        // The same key again: another checkpoint of the same set.
        let again = platform.checkpoint_now(Some(&idem)).unwrap();
        assert_eq!((again.notary.generation, again.notary.tokens), (3, 2));
        assert_eq!((again.nodes.generation, again.nodes.tokens), (3, 2));
        let long = Idem { key: "k".repeat(129), fingerprint: Hash32([1; 32]) };
        assert_eq!(platform.checkpoint_now(Some(&long)).unwrap_err().code, ErrorCode::MalformedInput);
        unspent = platform.assembly().notary().notary().unspent();
        balances = ["steppe", "sapa"]
            .map(|bank| platform.assembly().bank(bank).unwrap().service().read(|n| n.total_dt().unwrap()));
        platform.shutdown();
    }
    let platform = open(dir.path());
    assert_eq!(platform.assembly().notary().notary().unspent(), unspent);
    let reopened = ["steppe", "sapa"]
        .map(|bank| platform.assembly().bank(bank).unwrap().service().read(|n| n.total_dt().unwrap()));
    assert_eq!(reopened, balances, "each bank's tokens read back from its checkpoint");
    assert_eq!(platform.assembly().reconcile(), Vec::<String>::new());
    let after = platform.checkpoint_now(None).unwrap();
    assert_eq!((after.notary.generation, after.nodes.generation), (4, 4));
    platform.shutdown();
}
