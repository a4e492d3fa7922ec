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
    fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            c.copy_from_slice(&self.next().to_le_bytes()[..c.len()]);
        }
    }
    fn key(&mut self) -> Key {
        let mut k = [0; 32];
        self.fill(&mut k);
        k
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        self.fill(&mut v);
        v
    }
}

/// Allocated bytes (st_blocks * 512) of all files under `dir`, like `du`.
fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir).unwrap().map(|e| {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        if m.is_dir() { disk_bytes(&e.path()) } else { m.blocks() * 512 }
    }).sum()
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

struct Report {
    engine: &'static str,
    phases: Vec<(usize, f64, f64, f64)>, // batch, payments/s, p50 ms, p99 ms
    seed_s: f64,
    seed_bytes: u64,
    end_bytes: u64,
    open_s: f64,
    scan_s: f64,
    cold: bool,
}

fn run(engine: &'static str) -> Report {
    let dir = PathBuf::from(format!("/tmp/storage-choice-data/{engine}"));
    let _ = std::fs::remove_dir_all(&dir);
    let mut rng = Rng(42);
    let mut live: Vec<Key> = Vec::with_capacity(SEED_TOKENS);

    // 1. Seed 1M tokens in large durable batches.
    let t0 = Instant::now();
    let mut db = open(engine, &dir);
    while live.len() < SEED_TOKENS {
        let mut b = Batch::default();
        for _ in 0..SEED_BATCH {
            let k = rng.key();
            b.tokens.push((k, rng.bytes(TOKEN_VAL)));
            live.push(k);
        }
        db.commit(&b);
    }
    drop(db);
    let seed_s = t0.elapsed().as_secs_f64();
    let seed_bytes = disk_bytes(&dir);
    eprintln!("[{engine}] seeded {SEED_TOKENS} tokens in {seed_s:.1}s, {seed_bytes} B on disk");

    // 2. Payments: each spends 2 random live tokens, creates 2 tokens and 1 tx record.
    let mut db = open(engine, &dir);
    let mut phases = Vec::new();
    for (batch, total) in PHASES {
        let mut lat = Vec::with_capacity(total / batch + 1);
        let mut done = 0;
        while done < total {
            let n = batch.min(total - done);
            let mut b = Batch::default();
            for _ in 0..n {
                for _ in 0..2 {
                    let i = (rng.next() % live.len() as u64) as usize;
                    b.spent.push(live.swap_remove(i));
                    b.tokens.push((rng.key(), rng.bytes(TOKEN_VAL)));
                }
                b.txs.push((rng.key(), rng.bytes(TX_VAL)));
            }
            let t = Instant::now();
            db.commit(&b);
            lat.push(t.elapsed());
            live.extend(b.tokens.iter().map(|(k, _)| *k));
            done += n;
        }
        let busy: Duration = lat.iter().sum();
        lat.sort();
        let row = (batch, total as f64 / busy.as_secs_f64(), pct(&lat, 0.5), pct(&lat, 0.99));
        eprintln!("[{engine}] batch {batch}: {:.0} payments/s, p50 {:.2} ms, p99 {:.2} ms", row.1, row.2, row.3);
        phases.push(row);
    }
    drop(db);
    let end_bytes = disk_bytes(&dir);

    // 3. Startup: reopen and iterate every token (cold page cache if we may drop it).
    let cold = drop_caches();
    let t = Instant::now();
    let db = open(engine, &dir);
    let open_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (n, by) = db.scan();
    let scan_s = t.elapsed().as_secs_f64();
    assert_eq!(n as usize, SEED_TOKENS, "{engine}: wrong token count after payments");
    assert_eq!(by as usize, SEED_TOKENS * (32 + TOKEN_VAL));
    eprintln!("[{engine}] open {open_s:.3}s, scan {scan_s:.3}s (cold cache: {cold})");
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
    Report { engine, phases, seed_s, seed_bytes, end_bytes, open_s, scan_s, cold }
}

fn main() {
    let only: Vec<String> = std::env::args().skip(1).collect();
    let reports: Vec<Report> =
        ENGINES.iter().filter(|e| only.is_empty() || only.iter().any(|o| o == *e)).map(|e| run(e)).collect();

    println!("\n| engine | payments/commit | payments/s | commit p50 (ms) | commit p99 (ms) |");
    println!("|---|---:|---:|---:|---:|");
    for r in &reports {
        for (b, tput, p50, p99) in &r.phases {
            println!("| {} | {b} | {tput:.0} | {p50:.2} | {p99:.2} |", r.engine);
        }
    }
    println!("\n| engine | seed 1M tokens (s) | startup open (s) | full scan 1M tokens (s) | cache | bytes/token on disk (seeded) | disk after run (MB) |");
    println!("|---|---:|---:|---:|---|---:|---:|");
    for r in &reports {
        println!(
            "| {} | {:.1} | {:.3} | {:.3} | {} | {:.0} | {:.1} |",
            r.engine, r.seed_s, r.open_s, r.scan_s, if r.cold { "cold" } else { "warm" },
            r.seed_bytes as f64 / SEED_TOKENS as f64, r.end_bytes as f64 / 1e6
        );
    }
}
