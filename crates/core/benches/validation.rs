//! Micro-benchmarks of the core: validation of a 2-input 2-output transfer, batch signature
//! verification, hashing. Run: `cargo bench -p dtenge-core`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use dtenge_core::crypto::{
    hash_parts, verify_batch, verify_batch_cached, Address, KeyCache, PublicKey, SecretKey, Signature,
};
use dtenge_core::money::Amount;
use dtenge_core::token::{Output, TokenId};
use dtenge_core::tx::{Command, Transaction, TxBody};
use dtenge_core::validate::{check_structure, validate, Authorities, KeyStatus};

struct Net {
    nbk: SecretKey,
    bank: SecretKey,
}

impl Authorities for Net {
    fn issuer(&self) -> Address {
        self.nbk.address()
    }
    fn key_status(&self, key: &PublicKey) -> KeyStatus {
        if *key == self.nbk.public_key() {
            KeyStatus::CentralBank
        } else if *key == self.bank.public_key() {
            KeyStatus::ActiveNode
        } else {
            KeyStatus::Unknown
        }
    }
}

fn amount(tiyn: u64) -> Amount {
    Amount::from_tiyn(tiyn).expect("amount")
}

/// A signed 2-in-2-out transfer: the shape `dtenge bench` sends.
fn transfer(net: &Net, payer: &SecretKey, payee: Address) -> Transaction {
    let mut issue = Transaction::new(TxBody {
        command: Command::Issue,
        inputs: vec![],
        outputs: vec![
            Output::standard(amount(3_000), payer.address(), net.issuer()),
            Output::standard(amount(2_000), payer.address(), net.issuer()),
        ],
        nonce: 1,
    });
    issue.attest(&net.nbk);
    let body = TxBody {
        command: Command::Transfer,
        inputs: issue.outputs_as_inputs(),
        outputs: vec![
            Output::standard(amount(4_000), payee, net.issuer()),
            Output::standard(amount(1_000), payer.address(), net.issuer()),
        ],
        nonce: 2,
    };
    let mut tx = Transaction::new(body);
    tx.sign_owner(payer);
    tx.attest(&net.bank);
    tx
}

fn benches(c: &mut Criterion) {
    let net = Net { nbk: SecretKey::from_seed([1; 32]), bank: SecretKey::from_seed([2; 32]) };
    let payer = SecretKey::from_seed([3; 32]);
    let payee = SecretKey::from_seed([4; 32]).address();
    let tx = transfer(&net, &payer, payee);

    let mut group = c.benchmark_group("transfer_2in_2out");
    group.throughput(Throughput::Elements(1));
    group.bench_function("validate_full", |b| b.iter(|| validate(&tx, &net).expect("valid")));
    group.bench_function("structure_only", |b| b.iter(|| check_structure(&tx, &net).expect("valid")));
    group.bench_function("tx_id", |b| b.iter(|| tx.id()));
    group.bench_function("sign_owner", |b| {
        b.iter_batched(|| Transaction::new(tx.body.clone()), |mut t| t.sign_owner(&payer), BatchSize::SmallInput)
    });
    group.finish();

    let keys: Vec<SecretKey> = (0..64u8).map(|i| SecretKey::from_seed([i; 32])).collect();
    let message = [7u8; 32];
    let signatures: Vec<Signature> = keys.iter().map(|k| k.sign(&message)).collect();
    let items: Vec<(PublicKey, &[u8], Signature)> =
        keys.iter().zip(&signatures).map(|(k, s)| (k.public_key(), &message[..], *s)).collect();
    let mut group = c.benchmark_group("ed25519");
    group.throughput(Throughput::Elements(64));
    group.bench_function("verify_batch_64", |b| b.iter(|| verify_batch(&items).expect("valid")));
    group.bench_function("verify_one_by_one_64", |b| {
        b.iter(|| items.iter().for_each(|(k, m, s)| dtenge_core::crypto::verify(k, m, s).expect("valid")))
    });
    group.finish();

    // The pipeline's case: keys already decompressed (a warm cache), one batch per chunk. The
    // per-signature cost falls with the batch size; a chunk with a bad signature is verified
    // again one by one, which is what bounds the chunk size.
    let cache = KeyCache::default();
    verify_batch_cached(&items, Some(&cache)).expect("valid");
    let mut group = c.benchmark_group("ed25519_warm_keys");
    for size in [1usize, 8, 16, 32, 64] {
        group.throughput(Throughput::Elements(size as u64));
        group.bench_function(format!("verify_batch_{size}"), |b| {
            b.iter(|| verify_batch_cached(&items[..size], Some(&cache)).expect("valid"))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("hash");
    group.throughput(Throughput::Elements(1));
    group.bench_function("sha256_32_bytes", |b| b.iter(|| hash_parts(b"d", &[&message])));
    let output = Output::standard(amount(4_000), payee, net.issuer());
    group.bench_function("token_id", |b| b.iter(|| TokenId::of(&tx.id(), 0, &output)));
    group.finish();
}

criterion_group!(validation, benches);
criterion_main!(validation);
