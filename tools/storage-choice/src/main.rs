//! storage-choice: compares redb, fjall and SQLite (rusqlite) on the dtenge payment
//! workload with durable (fsync-per-commit) group commits. See README.md.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SEED_TOKENS: usize = 1_000_000;
const SEED_BATCH: usize = 100_000;
const TOKEN_VAL: usize = 120;
const TX_VAL: usize = 400;
/// (payments per commit, payments in total)
const PHASES: [(usize, usize); 3] = [(1, 2_000), (64, 20_000), (1024, 100_000)];
const ENGINES: [&str; 3] = ["redb", "fjall", "sqlite"];

type Key = [u8; 32];

/// One atomic, durable commit: spent token keys to delete, new tokens, transaction records.
#[derive(Default)]
struct Batch {
    spent: Vec<Key>,
    tokens: Vec<(Key, Vec<u8>)>,
    txs: Vec<(Key, Vec<u8>)>,
}

trait Engine {
    fn commit(&mut self, b: &Batch);
    /// Iterates every token; returns (entries, key+value bytes read).
    fn scan(&self) -> (u64, u64);
}

// ---------------------------------------------------------------- redb
const R_TOK: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("tokens");
const R_TXS: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("txs");
struct Redb(redb::Database);
impl Engine for Redb {
    fn commit(&mut self, b: &Batch) {
        let w = self.0.begin_write().unwrap(); // default durability: Immediate (fsync)
        {
            let mut t = w.open_table(R_TOK).unwrap();
            for k in &b.spent {
                assert!(t.remove(&k[..]).unwrap().is_some(), "spent token missing");
            }
            for (k, v) in &b.tokens {
                t.insert(&k[..], &v[..]).unwrap();
            }
            let mut x = w.open_table(R_TXS).unwrap();
            for (k, v) in &b.txs {
                x.insert(&k[..], &v[..]).unwrap();
            }
        }
        w.commit().unwrap();
    }
    fn scan(&self) -> (u64, u64) {
        use redb::{ReadableDatabase, ReadableTable};
        let r = self.0.begin_read().unwrap();
        let t = r.open_table(R_TOK).unwrap();
        t.iter().unwrap().fold((0, 0), |(n, by), e| {
            let (k, v) = e.unwrap();
            (n + 1, by + (k.value().len() + v.value().len()) as u64)
        })
    }
}

// ---------------------------------------------------------------- fjall
struct Fjall {
    db: fjall::Database,
    tok: fjall::Keyspace,
    txs: fjall::Keyspace,
}
impl Engine for Fjall {
    fn commit(&mut self, b: &Batch) {
        let mut wb = self.db.batch();
        for k in &b.spent {
            wb.remove(&self.tok, &k[..]);
        }
        for (k, v) in &b.tokens {
            wb.insert(&self.tok, &k[..], &v[..]);
        }
        for (k, v) in &b.txs {
            wb.insert(&self.txs, &k[..], &v[..]);
        }
        wb.commit().unwrap();
        self.db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    fn scan(&self) -> (u64, u64) {
        self.tok.iter().fold((0, 0), |(n, by), g| {
            let (k, v) = g.into_inner().unwrap();
            (n + 1, by + (k.len() + v.len()) as u64)
        })
    }
}

// ---------------------------------------------------------------- SQLite
struct Sqlite(rusqlite::Connection);
impl Engine for Sqlite {
    fn commit(&mut self, b: &Batch) {
        let tx = self.0.transaction().unwrap();
        {
            let mut del = tx.prepare_cached("DELETE FROM tokens WHERE k = ?1").unwrap();
            for k in &b.spent {
                assert_eq!(del.execute([&k[..]]).unwrap(), 1, "spent token missing");
            }
            let mut ins = tx.prepare_cached("INSERT INTO tokens (k, v) VALUES (?1, ?2)").unwrap();
            for (k, v) in &b.tokens {
                ins.execute((&k[..], &v[..])).unwrap();
            }
            let mut itx = tx.prepare_cached("INSERT INTO txs (k, v) VALUES (?1, ?2)").unwrap();
            for (k, v) in &b.txs {
                itx.execute((&k[..], &v[..])).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    fn scan(&self) -> (u64, u64) {
        let mut st = self.0.prepare("SELECT k, v FROM tokens").unwrap();
        let mut rows = st.query([]).unwrap();
        let (mut n, mut by) = (0, 0);
        while let Some(r) = rows.next().unwrap() {
            let (k, v) = (r.get_ref(0).unwrap().as_blob().unwrap(), r.get_ref(1).unwrap().as_blob().unwrap());
            n += 1;
            by += (k.len() + v.len()) as u64;
        }
        (n, by)
    }
}

fn open(engine: &str, dir: &Path) -> Box<dyn Engine> {
    std::fs::create_dir_all(dir).unwrap();
    match engine {
        "redb" => Box::new(Redb(redb::Database::create(dir.join("db.redb")).unwrap())),
        "fjall" => {
            let db = fjall::Database::builder(dir).open().unwrap();
            let tok = db.keyspace("tokens", fjall::KeyspaceCreateOptions::default).unwrap();
            let txs = db.keyspace("txs", fjall::KeyspaceCreateOptions::default).unwrap();
            Box::new(Fjall { db, tok, txs })
        }
        _ => {
            let c = rusqlite::Connection::open(dir.join("db.sqlite")).unwrap();
            let mode: String = c.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).unwrap();
            assert_eq!(mode, "wal");
            c.execute_batch(
                "PRAGMA synchronous=FULL;
                 CREATE TABLE IF NOT EXISTS tokens (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;
                 CREATE TABLE IF NOT EXISTS txs (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;",
            )
            .unwrap();
            Box::new(Sqlite(c))
        }
    }
}

/// splitmix64: deterministic, incompressible keys and values without extra crates.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n.div_ceil(8)).flat_map(|_| self.next().to_le_bytes()).take(n).collect()
    }
    fn key(&mut self) -> Key {
        self.bytes(32).try_into().unwrap()
    }
}

/// Allocated bytes (st_blocks * 512) of all files under `dir`, like `du`.
fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                disk_bytes(&e.path())
            } else {
                m.blocks() * 512
            }
        })
        .sum()
}

/// Best effort: make the startup scan cold. Needs root; silently skipped otherwise.
fn drop_caches() -> bool {
    std::process::Command::new("sync").status().ok();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// Disk reference: p50/p99 (ms) of appending 4 KiB + fdatasync, 200 times.
fn fsync_probe() -> (f64, f64) {
    use std::io::Write;
    std::fs::create_dir_all("/tmp/storage-choice-data").unwrap();
    let path = "/tmp/storage-choice-data/fsync-probe";
    let mut f = std::fs::File::create(path).unwrap();
    let mut lat: Vec<Duration> = (0..200)
        .map(|_| {
            let t = Instant::now();
            f.write_all(&[7u8; 4096]).unwrap();
            f.sync_data().unwrap();
            t.elapsed()
        })
        .collect();
    let _ = std::fs::remove_file(path);
    lat.sort();
    (pct(&lat, 0.5), pct(&lat, 0.99))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let names: Vec<&str> =
        ENGINES.iter().copied().filter(|e| args.is_empty() || args.iter().any(|a| a == e)).collect();
    let dirs: Vec<PathBuf> =
        names.iter().map(|e| PathBuf::from(format!("/tmp/storage-choice-data/{e}"))).collect();
    for d in &dirs {
        let _ = std::fs::remove_dir_all(d);
    }
    let probe0 = fsync_probe();
    // Every batch is applied to every engine in turn (rotating the order), so all
    // engines see the same disk conditions; noisy shared disks otherwise skew results.
    let mut dbs: Vec<Box<dyn Engine>> = names.iter().zip(&dirs).map(|(e, d)| open(e, d)).collect();
    let mut rng = Rng(42);
    let mut live: Vec<Key> = Vec::with_capacity(SEED_TOKENS);
    let apply = |dbs: &mut Vec<Box<dyn Engine>>, b: &Batch, turn: usize, out: &mut Vec<Vec<Duration>>| {
        for j in 0..dbs.len() {
            let i = (turn + j) % dbs.len();
            let t = Instant::now();
            dbs[i].commit(b);
            out[i].push(t.elapsed());
        }
    };

    // 1. Seed 1M tokens in large durable batches; measure at-rest size after close.
    let mut seed = vec![Vec::new(); names.len()];
    for turn in 0..SEED_TOKENS / SEED_BATCH {
        let mut b = Batch::default();
        for _ in 0..SEED_BATCH {
            b.tokens.push((rng.key(), rng.bytes(TOKEN_VAL)));
        }
        live.extend(b.tokens.iter().map(|(k, _)| *k));
        apply(&mut dbs, &b, turn, &mut seed);
    }
    drop(dbs);
    let seed_bytes: Vec<u64> = dirs.iter().map(|d| disk_bytes(d)).collect();
    eprintln!("seeded {SEED_TOKENS} tokens");

    // 2. Payments: each spends 2 random live tokens, creates 2 tokens and 1 tx record.
    let mut dbs: Vec<Box<dyn Engine>> = names.iter().zip(&dirs).map(|(e, d)| open(e, d)).collect();
    let mut rows = Vec::new(); // (engine, batch, payments/s, p50, p99)
    for (batch, total) in PHASES {
        let mut lat = vec![Vec::new(); names.len()];
        for turn in 0..total.div_ceil(batch) {
            let mut b = Batch::default();
            for _ in 0..batch.min(total - turn * batch) {
                for _ in 0..2 {
                    let i = (rng.next() % live.len() as u64) as usize;
                    b.spent.push(live.swap_remove(i));
                    b.tokens.push((rng.key(), rng.bytes(TOKEN_VAL)));
                }
                b.txs.push((rng.key(), rng.bytes(TX_VAL)));
            }
            live.extend(b.tokens.iter().map(|(k, _)| *k));
            apply(&mut dbs, &b, turn, &mut lat);
        }
        for (i, l) in lat.iter_mut().enumerate() {
            let busy: Duration = l.iter().sum();
            l.sort();
            rows.push((names[i], batch, total as f64 / busy.as_secs_f64(), pct(l, 0.5), pct(l, 0.99)));
        }
        eprintln!("batch {batch} done");
    }
    drop(dbs);
    let end_bytes: Vec<u64> = dirs.iter().map(|d| disk_bytes(d)).collect();

    // 3. Startup: reopen and iterate all 1M tokens, page cache dropped first if allowed.
    let mut startup = Vec::new();
    for (e, d) in names.iter().zip(&dirs) {
        let cold = drop_caches();
        let t = Instant::now();
        let db = open(e, d);
        let open_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let (n, by) = db.scan();
        let scan_s = t.elapsed().as_secs_f64();
        assert_eq!(
            (n as usize, by as usize),
            (SEED_TOKENS, SEED_TOKENS * (32 + TOKEN_VAL)),
            "{e}: bad token set"
        );
        startup.push((open_s, scan_s, cold));
    }
    let probe1 = fsync_probe();
    for d in &dirs {
        let _ = std::fs::remove_dir_all(d);
    }

    println!("\n| engine | payments/commit | payments/s | commit p50 (ms) | commit p99 (ms) |");
    println!("|---|---:|---:|---:|---:|");
    for (e, b, tput, p50, p99) in &rows {
        println!("| {e} | {b} | {tput:.0} | {p50:.2} | {p99:.2} |");
    }
    println!("\n| engine | seed 1M tokens, sum of commits (s) | startup open (s) | full scan 1M tokens (s) | page cache | bytes/token on disk (seeded) | disk after run (MB) |");
    println!("|---|---:|---:|---:|---|---:|---:|");
    for (i, e) in names.iter().enumerate() {
        let (open_s, scan_s, cold) = startup[i];
        let seed_s: f64 = seed[i].iter().map(|d| d.as_secs_f64()).sum();
        println!(
            "| {e} | {seed_s:.1} | {open_s:.3} | {scan_s:.3} | {} | {:.0} | {:.1} |",
            if cold { "cold" } else { "warm" },
            seed_bytes[i] as f64 / SEED_TOKENS as f64,
            end_bytes[i] as f64 / 1e6
        );
    }
    println!(
        "\nDisk reference, 4 KiB append + fdatasync p50/p99 (ms): {:.2}/{:.2} before, {:.2}/{:.2} after.",
        probe0.0, probe0.1, probe1.0, probe1.1
    );
}
