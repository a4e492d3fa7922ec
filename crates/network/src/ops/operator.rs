//! The NBK operator's controls: blocking a bank (15), the operational-day calendar (16),
//! monitoring (14) and reconciliation with the ABS.

use crate::types::{BlockRequest, DayView, Monitoring, NbkOperation, NodeView, Reconciliation};
use crate::{Idem, Network, NBK_ID};
use dtenge_abs::correspondent;
use dtenge_core::calendar::{Calendar, Date};
use dtenge_core::money::Amount;
use dtenge_core::{ensure, Result};
use dtenge_node::{NodeKind, Purpose};
use dtenge_store::{Store, Table, WriteBatch};
use std::collections::{BTreeMap, HashSet};

/// Operator decisions: `blocked/<node>` -> reason, `calendar` -> the calendar, `run` -> runs.
pub const OPERATOR_TABLE: Table = Table("operator");
const CALENDAR_KEY: &[u8] = b"calendar";
/// How many times the network was opened: mixed into the entropy stream of each run.
pub(crate) const RUN_KEY: &[u8] = b"run";
const BLOCKED_PREFIX: &str = "blocked/";
/// Longest block reason.
pub const REASON_LEN_MAX: usize = 500;

pub(crate) fn load(store: &Store) -> Result<(BTreeMap<String, String>, Calendar)> {
    let mut blocked = BTreeMap::new();
    let mut calendar = Calendar::default();
    for (key, value) in store.scan(OPERATOR_TABLE)? {
        if key == CALENDAR_KEY {
            calendar = dtenge_store::decode(&value)?;
        } else if key == RUN_KEY {
            continue;
        } else if let Some(node) = String::from_utf8_lossy(&key).strip_prefix(BLOCKED_PREFIX) {
            blocked.insert(node.to_string(), dtenge_store::decode(&value)?);
        }
    }
    Ok((blocked, calendar))
}

impl Network {
    /// Block a bank or the Treasury: its operations, and payments to its clients, fail with
    /// `BANK_BLOCKED` until unblocked. The block applies to operations that start after it is
    /// acknowledged; a payment already past its checks completes.
    pub fn block(&self, idem: Option<&Idem>, node_id: &str, request: BlockRequest) -> Result<NodeView> {
        let _gate = self.gate_shared();
        let reason = request.reason.trim().to_string();
        ensure!(
            !reason.is_empty() && reason.chars().count() <= REASON_LEN_MAX,
            MalformedInput,
            "give a reason of 1 to {REASON_LEN_MAX} characters"
        );
        self.slot(node_id)?;
        ensure!(node_id != NBK_ID, Forbidden, "the NBK node cannot be blocked");
        let mut batch = WriteBatch::new();
        batch.put_value(OPERATOR_TABLE, format!("{BLOCKED_PREFIX}{node_id}").into_bytes(), &reason)?;
        let mut view = self.node_view(node_id)?;
        view.blocked = true;
        view.block_reason = Some(reason.clone());
        let _operator = self.operator.lock();
        self.commit(idem, batch, &view)?;
        self.trust.write().blocked.insert(node_id.to_string(), reason);
        Ok(view)
    }

    pub fn unblock(&self, idem: Option<&Idem>, node_id: &str) -> Result<NodeView> {
        let _gate = self.gate_shared();
        self.slot(node_id)?;
        let mut batch = WriteBatch::new();
        batch.delete(OPERATOR_TABLE, format!("{BLOCKED_PREFIX}{node_id}").into_bytes());
        let mut view = self.node_view(node_id)?;
        view.blocked = false;
        view.block_reason = None;
        let _operator = self.operator.lock();
        self.commit(idem, batch, &view)?;
        self.trust.write().blocked.remove(node_id);
        Ok(view)
    }

    /// Every day of a year with its type.
    pub fn calendar_year(&self, year: i32) -> Result<Vec<DayView>> {
        let mut day = Date::new(year, 1, 1)?;
        let calendar = self.calendar.read();
        let mut days = Vec::with_capacity(366);
        while day.year == year {
            days.push(DayView {
                date: day,
                working: calendar.is_working_day(day),
                overridden: calendar.overrides.contains_key(&day),
            });
            day = day.next();
        }
        Ok(days)
    }

    /// Set one day working or not. Setting a day back to its default removes the override.
    pub fn set_day(&self, idem: Option<&Idem>, date: Date, working: bool) -> Result<DayView> {
        let _gate = self.gate_shared();
        let _operator = self.operator.lock();
        let mut next = self.calendar.read().clone();
        if Calendar::default_is_working(date) == working {
            next.overrides.remove(&date);
        } else {
            next.overrides.insert(date, working);
        }
        let view = DayView { date, working, overridden: next.overrides.contains_key(&date) };
        let mut batch = WriteBatch::new();
        batch.put_value(OPERATOR_TABLE, CALENDAR_KEY.to_vec(), &next)?;
        self.commit(idem, batch, &view)?;
        *self.calendar.write() = next;
        Ok(view)
    }

    /// The Astana-time date today and whether it is an operational day.
    pub fn today(&self) -> DayView {
        let date = Date::astana_of_unix_ms(self.now_ms());
        let calendar = self.calendar.read();
        DayView { date, working: calendar.is_working_day(date), overridden: calendar.overrides.contains_key(&date) }
    }

    fn node_view(&self, node_id: &str) -> Result<NodeView> {
        let slot = self.slot(node_id)?;
        let (meta, accounts, dt_held) = {
            let state = slot.state.lock();
            (state.meta().clone(), state.account_count(), state.total_dt()?)
        };
        let (mut emitted, mut redeemed) = (Amount::ZERO, Amount::ZERO);
        for op in self.nbk_ops.lock().iter().filter(|op| op.node == node_id) {
            match op.kind {
                Purpose::Redemption => redeemed = redeemed.checked_add(op.amount_tiyn)?,
                _ => emitted = emitted.checked_add(op.amount_tiyn)?,
            }
        }
        let block_reason = self.trust.read().blocked.get(node_id).cloned();
        Ok(NodeView {
            id: meta.id,
            name: meta.name,
            kind: meta.kind,
            blocked: block_reason.is_some(),
            block_reason,
            accounts,
            dt_held_tiyn: dt_held,
            emitted_tiyn: emitted,
            redeemed_tiyn: redeemed,
            correspondent_tiyn: if meta.kind == NodeKind::CentralBank {
                0
            } else {
                self.abs.lock().balance(&correspondent(node_id))
            },
        })
    }

    /// Monitoring totals: emitted, redeemed, in circulation, per node. Read from running
    /// totals, node by node, without the gate: a dashboard polling it never pauses payments.
    /// The nodes' figures may therefore be a few payments apart (one read before a payment
    /// applied, the next after); reconciliation is the exact check.
    pub fn monitoring(&self) -> Result<Monitoring> {
        let nodes: Vec<NodeView> = self.nodes.keys().map(|id| self.node_view(id)).collect::<Result<_>>()?;
        let emitted = Amount::sum(nodes.iter().map(|n| n.emitted_tiyn))?;
        let redeemed = Amount::sum(nodes.iter().map(|n| n.redeemed_tiyn))?;
        Ok(Monitoring {
            emitted_tiyn: emitted,
            redeemed_tiyn: redeemed,
            circulation_tiyn: emitted.checked_sub(redeemed)?,
            dt_liability_tiyn: self.abs.lock().dt_liability(),
            unspent_tokens: self.notary.unspent_count(),
            nodes,
            at_unix_ms: self.now_ms(),
        })
    }

    /// The NBK's registry of emissions and redemptions, newest first.
    pub fn nbk_operations(&self, offset: usize, limit: usize) -> Vec<NbkOperation> {
        self.nbk_ops.lock().iter().rev().skip(offset).take(limit).cloned().collect()
    }

    /// Check, at one instant between operations, that DT in circulation (by the NBK's
    /// registry and by the sum of every node's tokens) equals the ABS DT liability balance,
    /// that every node token is unspent at the notary and that the notary knows no token
    /// that no node holds.
    pub fn reconcile(&self) -> Reconciliation {
        let _gate = self.gate_exclusive();
        let mut problems = Vec::new();
        let mut by_nbk: i128 = 0;
        for op in self.nbk_ops.lock().iter() {
            let amount = i128::from(op.amount_tiyn.tiyn());
            by_nbk += if op.kind == Purpose::Redemption { -amount } else { amount };
        }
        let unspent = self.notary.unspent();
        let mut by_nodes: u128 = 0;
        let mut node_tokens = 0usize;
        let mut not_unspent = 0usize;
        let mut seen = HashSet::new();
        for (id, slot) in &self.nodes {
            let state = slot.state.lock();
            match state.recount_dt() {
                Ok(total) => {
                    // Paired with where the running total is kept (`NodeState::hold`): a
                    // running total that drifted from the tokens is a bug, not a finding.
                    assert_eq!(state.total_dt().ok(), Some(total), "node {id}'s running DT total matches its tokens");
                    by_nodes += u128::from(total.tiyn())
                }
                Err(e) => problems.push(format!("node {id}: {e}")),
            }
            for token in state.token_ids() {
                node_tokens += 1;
                if !unspent.contains(token) {
                    not_unspent += 1;
                }
                if !seen.insert(*token) {
                    problems.push(format!("token {token} is held by two nodes"));
                }
            }
        }
        let abs = self.abs.lock();
        let liability = abs.dt_liability();
        // Not a finding but an assertion: every posting is applied under the same check
        // (`Abs::apply`), and the ledger on disk was checked when it was opened.
        abs.assert_invariant();
        if by_nbk != i128::from(liability.tiyn()) {
            problems
                .push(format!("NBK registry says {by_nbk} tiyn in circulation, ABS liability is {}", liability.tiyn()));
        }
        if by_nodes != u128::from(liability.tiyn()) {
            problems.push(format!("nodes hold {by_nodes} tiyn, ABS liability is {}", liability.tiyn()));
        }
        if not_unspent > 0 {
            problems.push(format!("{not_unspent} node tokens are not unspent at the notary"));
        }
        if unspent.len() != node_tokens {
            problems.push(format!("notary has {} unspent tokens, nodes hold {node_tokens}", unspent.len()));
        }
        self.reconcile_oracle(&mut problems);
        let clamp =
            |v: i128| Amount::from_tiyn(v.clamp(0, i128::from(Amount::MAX.tiyn())) as u64).unwrap_or(Amount::MAX);
        Reconciliation {
            ok: problems.is_empty(),
            circulation_by_nbk_tiyn: clamp(by_nbk),
            circulation_by_nodes_tiyn: clamp(by_nodes as i128),
            dt_liability_tiyn: liability,
            notary_unspent: unspent.len(),
            node_tokens,
            node_tokens_not_unspent: not_unspent,
            problems,
            at_unix_ms: self.now_ms(),
        }
    }
}
