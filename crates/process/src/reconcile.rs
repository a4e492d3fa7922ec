//! The checks across the processes of a network, from each participant's `/metrics`: once
//! nothing is outstanding anywhere (no batch at the notary, no delivery unacknowledged) and two
//! looks a moment apart agree, the DT the banks hold = central's DT liability, and the tokens
//! the banks' accounts own = the notary's unspent tokens. A replicated notary counts as settled
//! once every replica has applied the same entries and reports the same figures. What `dtenge reconcile --cluster`,
//! `dtenge bench --cluster` and the failure tests check.

use crate::cluster::Laid;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long apart two looks are.
const LOOK_EVERY_MS: u64 = 300;

/// What the processes report once settled (or when the wait ran out: `settled` false).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Reconciliation {
    pub settled: bool,
    /// Sum of every bank's (the Treasury's too) `dtenge_bank_dt_held_tiyn`.
    pub banks_dt_tiyn: u64,
    pub central_liability_tiyn: u64,
    /// Sum of every bank's `dtenge_bank_tokens`.
    pub banks_tokens: u64,
    pub notary_unspent_tokens: u64,
    /// The notary's commit index at the last look.
    pub notary_commit_index: u64,
}

impl Reconciliation {
    /// Settled, and both equalities hold.
    pub fn holds(&self) -> bool {
        self.settled
            && self.banks_dt_tiyn == self.central_liability_tiyn
            && self.banks_tokens == self.notary_unspent_tokens
    }
}

/// A participant's `/metrics` at `ops`: each figure by name (labels dropped, negatives as 0).
pub fn metrics(agent: &ureq::Agent, ops: SocketAddr) -> Result<BTreeMap<String, u64>, String> {
    let url = format!("http://{ops}/metrics");
    let response = agent.get(&url).call().map_err(|e| format!("{url}: {e}"))?;
    let text = response.into_string().map_err(|e| format!("{url}: {e}"))?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.split_once(' ')?;
            let value = value.trim().parse::<f64>().ok()?;
            Some((name.split('{').next()?.to_string(), value.max(0.0) as u64))
        })
        .collect())
}

/// Look at every participant of `laid` until the network has settled, at most `wait`, then
/// report. An error when a participant does not answer.
pub fn reconcile(laid: &[Laid], wait: Duration) -> Result<Reconciliation, String> {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(5)).build();
    let of = |role: fn(&dtenge_wire::RoleId) -> bool| laid.iter().filter(move |l| role(&l.member.role));
    let started = Instant::now();
    let mut last: Option<Reconciliation> = None;
    loop {
        let mut look = Reconciliation {
            settled: false,
            banks_dt_tiyn: 0,
            central_liability_tiyn: 0,
            banks_tokens: 0,
            notary_unspent_tokens: 0,
            notary_commit_index: 0,
        };
        let mut outstanding = 0u64;
        let at = |m: &BTreeMap<String, u64>, name: &str| m.get(name).copied().unwrap_or(0);
        for bank in of(|r| matches!(r, dtenge_wire::RoleId::Bank(_))) {
            let m = metrics(&agent, bank.ports.ops)?;
            look.banks_dt_tiyn += at(&m, "dtenge_bank_dt_held_tiyn");
            look.banks_tokens += at(&m, "dtenge_bank_tokens");
            outstanding += at(&m, "dtenge_bank_batches_outstanding") + at(&m, "dtenge_bank_deliveries_outstanding");
        }
        for central in of(|r| *r == dtenge_wire::RoleId::Central) {
            let m = metrics(&agent, central.ports.ops)?;
            look.central_liability_tiyn = at(&m, "dtenge_central_dt_liability_tiyn");
            outstanding +=
                at(&m, "dtenge_central_batches_outstanding") + at(&m, "dtenge_central_deliveries_outstanding");
        }
        // Every replica of a group must report the same figures; the tokens are the notary's
        // own, or, for a sharded notary, the sum of its shards'.
        let mut replicas_agree = true;
        // Per group: (unspent tokens, certificate number, applied index).
        let mut groups: BTreeMap<u8, (u64, u64, u64)> = BTreeMap::new();
        let notary_roles = |r: &dtenge_wire::RoleId| {
            matches!(
                r,
                dtenge_wire::RoleId::Notary
                    | dtenge_wire::RoleId::NotaryReplica(_)
                    | dtenge_wire::RoleId::NotaryShard { .. }
            )
        };
        for notary in of(notary_roles) {
            let m = metrics(&agent, notary.ports.ops)?;
            // Group 0: the notary's own replicas; group s: shard s.
            let group = match notary.member.role {
                dtenge_wire::RoleId::NotaryShard { shard, .. } => shard,
                _ => 0,
            };
            let figures = (
                at(&m, "dtenge_notary_unspent_tokens"),
                at(&m, "dtenge_notary_commit_index"),
                at(&m, "dtenge_notary_raft_applied_index"),
            );
            if let Some(seen) = groups.insert(group, figures) {
                replicas_agree &= seen == figures;
            }
        }
        let sharded = groups.keys().any(|g| *g > 0);
        look.notary_commit_index = groups.get(&0).map_or(0, |(_, seq, _)| *seq);
        look.notary_unspent_tokens =
            groups.iter().filter(|(g, _)| **g > 0 || !sharded).map(|(_, (unspent, _, _))| unspent).sum();
        let settled = outstanding == 0 && replicas_agree && last.as_ref() == Some(&look);
        if settled || started.elapsed() > wait {
            look.settled = settled;
            return Ok(look);
        }
        last = Some(look);
        std::thread::sleep(Duration::from_millis(LOOK_EVERY_MS));
    }
}
