//! The peer baseline: the design a bank would otherwise build. Balances are rows in
//! PostgreSQL; a payment is one transaction that locks both rows with `SELECT … FOR UPDATE`
//! (in id order, so two payments never deadlock), checks funds, updates both and commits with
//! `synchronous_commit = on` (durable, like ours). Same accounts, payments, threads and
//! offered rate as the dtenge run; no signatures (the baseline does not verify any).

use crate::{Config, Latency, LATENCY_US_MAX};
use hdrhistogram::Histogram;
use postgres::{Client, NoTls};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Most connections the baseline opens (PostgreSQL's own limit is per server).
pub const CONNECTIONS_MAX: usize = 128;

/// What the baseline measured.
#[derive(Clone, Debug, Serialize)]
pub struct BaselineReport {
    pub connections: usize,
    pub run_seconds: f64,
    pub committed: usize,
    pub refused_insufficient: usize,
    pub achieved_per_s: f64,
    pub latency: Latency,
    /// The sum of all balances did not change.
    pub conserved: bool,
}

fn connect(url: &str) -> Result<Client, String> {
    Client::connect(url, NoTls).map_err(|e| format!("cannot connect to PostgreSQL at {url}: {e}"))
}

/// Create and fill the table: one row per account, each holding what its tokens hold in the
/// dtenge run.
fn seed(url: &str, config: &Config) -> Result<i64, String> {
    let mut client = connect(url)?;
    let balance = (config.tokens / config.accounts) as i64 * crate::TOKEN_TIYN as i64;
    client
        .batch_execute(
            "DROP TABLE IF EXISTS dtenge_baseline_accounts;
             CREATE TABLE dtenge_baseline_accounts (id BIGINT PRIMARY KEY, balance_tiyn BIGINT NOT NULL CHECK (balance_tiyn >= 0));",
        )
        .map_err(|e| e.to_string())?;
    client
        .execute(
            "INSERT INTO dtenge_baseline_accounts SELECT g, $1::BIGINT FROM generate_series(0::BIGINT, $2::BIGINT - 1) AS g",
            &[&balance, &(config.accounts as i64)],
        )
        .map_err(|e| e.to_string())?;
    client.batch_execute("VACUUM ANALYZE dtenge_baseline_accounts").map_err(|e| e.to_string())?;
    Ok(balance * config.accounts as i64)
}

fn total(url: &str) -> Result<i64, String> {
    let mut client = connect(url)?;
    let row = client
        .query_one("SELECT COALESCE(SUM(balance_tiyn), 0)::BIGINT FROM dtenge_baseline_accounts", &[])
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

/// One connection's count: committed, refused for lack of funds, latencies.
type Tally = (usize, usize, Histogram<u64>);

/// One payment: lock both rows in id order, check, move, commit.
fn pay(client: &mut Client, from: i64, to: i64, amount: i64) -> Result<bool, postgres::Error> {
    let mut tx = client.transaction()?;
    let rows = tx.query(
        "SELECT id, balance_tiyn FROM dtenge_baseline_accounts WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        &[&vec![from, to]],
    )?;
    let balance: i64 = rows.iter().find(|r| r.get::<_, i64>(0) == from).map(|r| r.get(1)).unwrap_or(0);
    if balance < amount {
        tx.rollback()?;
        return Ok(false);
    }
    tx.execute(
        "UPDATE dtenge_baseline_accounts SET balance_tiyn = balance_tiyn - $2 WHERE id = $1",
        &[&from, &amount],
    )?;
    tx.execute("UPDATE dtenge_baseline_accounts SET balance_tiyn = balance_tiyn + $2 WHERE id = $1", &[&to, &amount])?;
    tx.commit()?;
    Ok(true)
}

/// Run the baseline with the dtenge run's configuration.
pub fn run(url: &str, config: &Config) -> Result<BaselineReport, String> {
    let expected_total = seed(url, config)?;
    let connections = config.threads.clamp(1, CONNECTIONS_MAX);
    let next = AtomicUsize::new(0);
    let interval = config.rate_per_s.map(|r| Duration::from_secs_f64(1.0 / r.max(1) as f64));
    let accounts = config.accounts as i64;
    let started = Instant::now();
    let results: Vec<Result<Tally, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..connections)
            .map(|t| {
                let next = &next;
                scope.spawn(move || {
                    let mut client = connect(url)?;
                    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ (t as u64) << 32);
                    let mut histogram =
                        Histogram::<u64>::new_with_bounds(1, LATENCY_US_MAX, 3).map_err(|e| e.to_string())?;
                    let (mut committed, mut refused) = (0, 0);
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= config.payments {
                            break;
                        }
                        let due = crate::wait_until_due(started, interval, i);
                        let from = rng.gen_range(0..accounts);
                        let mut to = rng.gen_range(0..accounts);
                        while to == from {
                            to = rng.gen_range(0..accounts);
                        }
                        let amount = rng.gen_range(1..=crate::TOKEN_TIYN as i64);
                        match pay(&mut client, from, to, amount) {
                            Ok(true) => committed += 1,
                            Ok(false) => refused += 1,
                            Err(e) => return Err(format!("payment failed: {e}")),
                        }
                        let _ = histogram.record(due.elapsed().as_micros().clamp(1, u128::from(LATENCY_US_MAX)) as u64);
                    }
                    Ok((committed, refused, histogram))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("baseline thread panicked".into()))).collect()
    });
    let run_seconds = started.elapsed().as_secs_f64();
    let mut latency = Histogram::<u64>::new_with_bounds(1, LATENCY_US_MAX, 3).map_err(|e| e.to_string())?;
    let (mut committed, mut refused) = (0, 0);
    for result in results {
        let (c, r, h) = result?;
        committed += c;
        refused += r;
        latency.add(&h).map_err(|e| e.to_string())?;
    }
    Ok(BaselineReport {
        connections,
        run_seconds,
        committed,
        refused_insufficient: refused,
        achieved_per_s: committed as f64 / run_seconds.max(1e-9),
        latency: Latency {
            p50_us: latency.value_at_quantile(0.5),
            p99_us: latency.value_at_quantile(0.99),
            p999_us: latency.value_at_quantile(0.999),
            max_us: latency.max(),
        },
        conserved: total(url)? == expected_total,
    })
}
