//! The NBK operator's controls on the roles: blocking a bank (sub-scenario 15), the
//! operational calendar (16), monitoring (14), the NBK registry and reconciliation.
//!
//! Central decides (blocks, the calendar) and keeps the registry and the ABS; a block reaches
//! the notary and every bank on central's delivery streams, and the call answers once they
//! have all applied it, so that it holds for whatever starts after the answer (as the
//! network's block does). Monitoring reads the running figures the roles publish and never
//! pauses anyone; reconciliation compares the roles' reports as of one notary certificate
//! number while payments go on, and lists what does not hold.
//!
//! The notary's checkpoints, which the operator may also ask for, are in `checkpoint.rs`.

use super::{Idem, NBK_ID};
use super::{Platform, ANSWER_WAIT};
use crate::types::{BlockRequest, DayView, Monitoring, NbkOperation, NodeView, Reconciliation};
use dtenge_central::{CentralFigures, CentralService, EntryKind, RegistryEntry};
use dtenge_core::calendar::Date;
use dtenge_core::{ensure, Error, ErrorCode, Result};
use dtenge_node::Purpose;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Longest block reason, in characters (the network's bound; central keeps at most 256
/// bytes, so a longer reason in bytes is refused there, `MALFORMED_INPUT` too).
pub const REASON_LEN_MAX: usize = 500;
/// How often a call waiting for the roles looks again.
const POLL: Duration = Duration::from_millis(2);

impl Platform {
    /// Block a bank or the Treasury: its operations, and payments to its clients, fail with
    /// `BANK_BLOCKED` until unblocked. Answered once the notary and every bank applied the
    /// block, so it applies to operations that start after the answer; a payment already past
    /// its checks completes. Repeating it sets the same state (idempotent by its nature).
    pub fn block(&self, _idem: Option<&Idem>, node_id: &str, request: BlockRequest) -> Result<NodeView> {
        let reason = block_reason(&request)?;
        ensure!(node_id != NBK_ID, Forbidden, "the NBK node cannot be blocked");
        self.bank(node_id)?;
        self.assembly.central().set_blocked(node_id, true, &reason, self.now_ms())?;
        decision_applied(self.assembly.central())?;
        // As central has it now: an operator's concurrent decision on the same bank may follow.
        self.node_view(node_id, &self.assembly.central().figures())
    }

    /// Lift a block; answered once the notary and every bank applied it.
    pub fn unblock(&self, _idem: Option<&Idem>, node_id: &str) -> Result<NodeView> {
        ensure!(node_id != NBK_ID, Forbidden, "the NBK node cannot be blocked");
        self.bank(node_id)?;
        self.assembly.central().set_blocked(node_id, false, "", self.now_ms())?;
        decision_applied(self.assembly.central())?;
        // As central has it now: an operator's concurrent decision on the same bank may follow.
        self.node_view(node_id, &self.assembly.central().figures())
    }

    /// Every day of a year with its type.
    pub fn calendar_year(&self, year: i32) -> Result<Vec<DayView>> {
        calendar_year(self.assembly.central(), year)
    }

    /// Set one day working or not; setting a day back to its default removes the override.
    /// Central refuses a day already past (`MALFORMED_INPUT`): conversions were decided by it.
    /// Repeating it sets the same state (idempotent by its nature).
    pub fn set_day(&self, _idem: Option<&Idem>, date: Date, working: bool) -> Result<DayView> {
        let view = self.assembly.central().set_day(date, working, self.now_ms())?;
        assert_eq!(view.working, working, "the day is what the operator set");
        Ok(day_view(view))
    }

    /// The Astana-time date today and whether it is an operational day.
    pub fn today(&self) -> DayView {
        day_view(self.assembly.central().today(self.now_ms()))
    }

    /// A bank (or the Treasury) as the operator sees it, from the figures the bank and
    /// central publish after every step (neither role's lock is taken).
    fn node_view(&self, node_id: &str, central: &CentralFigures) -> Result<NodeView> {
        let bank = self.bank(node_id)?;
        let (meta, figures) = (bank.service().meta(), bank.service().figures());
        let totals = central.by_bank.get(node_id).copied().unwrap_or_default();
        let block_reason = central.blocked.get(node_id).cloned();
        Ok(NodeView {
            id: meta.id.clone(),
            name: meta.name.clone(),
            kind: meta.kind,
            blocked: block_reason.is_some(),
            block_reason,
            accounts: figures.accounts,
            dt_held_tiyn: figures.dt_held,
            emitted_tiyn: totals.issued,
            redeemed_tiyn: totals.redeemed,
            correspondent_tiyn: central.correspondent_tiyn.get(node_id).copied().unwrap_or(0),
        })
    }

    /// Monitoring totals: emitted, redeemed, in circulation, per bank. Read from the running
    /// figures each role publishes after every step, without any role's lock: a dashboard
    /// polling it never pauses payments and never waits behind a commit (the figures may be a
    /// few payments apart; reconciliation is the exact check). The banks and the Treasury are
    /// listed; the NBK is central, not a node.
    pub fn monitoring(&self) -> Result<Monitoring> {
        let running = self.assembly.monitoring();
        let central = self.assembly.central().figures();
        let totals = central.totals;
        let nodes = self.node_ids().iter().map(|id| self.node_view(id, &central)).collect::<Result<Vec<_>>>()?;
        Ok(Monitoring {
            emitted_tiyn: totals.issued,
            redeemed_tiyn: totals.redeemed,
            circulation_tiyn: totals.issued.checked_sub(totals.redeemed)?,
            dt_liability_tiyn: running.dt_liability,
            unspent_tokens: running.notary_unspent,
            nodes,
            at_unix_ms: self.now_ms(),
        })
    }

    /// The NBK's registry of emissions and redemptions, newest first.
    pub fn nbk_operations(&self, offset: usize, limit: usize) -> Vec<NbkOperation> {
        let registry = self.assembly.central().registry();
        registry.iter().rev().skip(offset).take(limit).map(nbk_operation).collect()
    }

    /// A page of emissions and redemptions, newest first (issue 19): `limit` (1 to
    /// [`super::LIST_PAGE_MAX`]) from the `offset`-th, with how many there are.
    pub fn nbk_operations_page(&self, offset: usize, limit: usize) -> Result<crate::types::OperationPage> {
        super::check_list_limit(limit)?;
        let (page, total) = self.assembly.central().registry_newest(offset, limit);
        Ok(crate::types::OperationPage { operations: page.iter().map(nbk_operation).collect(), total, offset, limit })
    }

    /// Reconciliation across the roles, while payments go on: at the notary's current
    /// certificate number `s`, the banks' DT = central's circulation by its registry = the ABS
    /// DT liability, and the banks' tokens = the notary's unspent tokens, each role's figures
    /// as of `s` ([`dtenge_assembly::Assembly::reconcile_at_seq`]: it waits, at most
    /// [`ANSWER_WAIT`], for the certificates up to `s` to reach the roles, and pauses no one).
    /// When they do not arrive in time the answer says so instead of comparing. The oracle's
    /// registries are compared with the held and marked DT
    /// ([`dtenge_assembly::Assembly::reconcile_oracle`]) as they are, and again once the roles
    /// settled (at most [`ANSWER_WAIT`]) when they differ: only a difference that stays is a
    /// problem (a release a blocked bank cannot make keeps its event waiting: no problem, its
    /// DT is still held). When the figures as of `s` differ, the roles are let settle and every
    /// bank token is looked up at the notary, for the detail.
    pub fn reconcile(&self) -> Reconciliation {
        let at = self.assembly.reconcile_at_seq(ANSWER_WAIT);
        let mut problems = self.assembly.reconcile_oracle();
        if !problems.is_empty() {
            let settled = self.assembly.settle(ANSWER_WAIT);
            problems = self.assembly.reconcile_oracle();
            if let (Err(e), false) = (settled, problems.is_empty()) {
                problems.insert(0, format!("{e}: the oracle's figures may differ by what was in flight"));
            }
        }
        let mut not_unspent = 0;
        let (by_nbk, by_banks, liability, unspent, node_tokens) = match at {
            Ok(at) => {
                if !at.problems.is_empty() {
                    problems.extend(at.problems);
                    let (missing, detail) = self.tokens_at_the_notary();
                    not_unspent = missing;
                    problems.extend(detail);
                }
                (at.circulation, at.banks_dt, at.dt_liability, at.notary_unspent, at.banks_tokens)
            }
            Err(e) => {
                // Not compared: the running figures are shown, a few payments apart.
                problems.insert(0, format!("not reconciled: {e}"));
                let central = self.assembly.central().figures();
                let running = self.assembly.monitoring();
                let tokens = self.assembly.banks().iter().map(|b| b.service().figures().tokens).sum();
                let circulation = central.totals.circulation();
                (circulation, running.dt_in_wallets, central.dt_liability, running.notary_unspent, tokens)
            }
        };
        Reconciliation {
            ok: problems.is_empty(),
            circulation_by_nbk_tiyn: by_nbk,
            circulation_by_nodes_tiyn: by_banks,
            dt_liability_tiyn: liability,
            notary_unspent: unspent,
            node_tokens,
            node_tokens_not_unspent: not_unspent,
            problems,
            at_unix_ms: self.now_ms(),
        }
    }

    /// Once the roles settled (at most [`ANSWER_WAIT`]): how many bank tokens are not unspent
    /// at the notary, and what is wrong with the banks' tokens token by token (a token two
    /// banks hold, DT that is not the tokens' sum). Reads every bank under its lock and the
    /// notary's whole set: run only when the figures as of one number already differ.
    fn tokens_at_the_notary(&self) -> (usize, Vec<String>) {
        let mut problems = Vec::new();
        if let Err(e) = self.assembly.settle(ANSWER_WAIT) {
            problems.push(format!("{e}: the token-by-token check may differ by what was in flight"));
        }
        let unspent = self.assembly.notary().notary().unspent();
        let (mut not_unspent, mut seen) = (0usize, HashSet::new());
        for bank in self.assembly.banks() {
            let (recount, total, missing, twice) = bank.service().read(|n| {
                let mut missing = 0usize;
                let mut twice = 0usize;
                for token in n.token_ids() {
                    missing += usize::from(!unspent.contains(token));
                    twice += usize::from(!seen.insert(*token));
                }
                (n.recount_dt(), n.total_dt(), missing, twice)
            });
            match (recount, total) {
                (Ok(recount), Ok(total)) if recount != total => problems
                    .push(format!("bank {}: its tokens sum to {recount}, its running total is {total}", bank.id())),
                (Err(e), _) | (_, Err(e)) => problems.push(format!("bank {}: {e}", bank.id())),
                _ => {}
            }
            not_unspent += missing;
            if twice > 0 {
                problems.push(format!("bank {} holds {twice} tokens another bank holds too", bank.id()));
            }
        }
        if not_unspent > 0 {
            problems.push(format!("{not_unspent} bank tokens are not unspent at the notary"));
        }
        (not_unspent, problems)
    }
}

/// The reason of a block, trimmed: 1 to [`REASON_LEN_MAX`] characters.
pub fn block_reason(request: &BlockRequest) -> Result<String> {
    let reason = request.reason.trim().to_string();
    ensure!(
        !reason.is_empty() && reason.chars().count() <= REASON_LEN_MAX,
        MalformedInput,
        "give a reason of 1 to {REASON_LEN_MAX} characters"
    );
    Ok(reason)
}

/// Wait until every delivery central has sent is acknowledged: the operator's decision it
/// just wrote has then been applied by the notary and every bank (each acknowledges a
/// delivery once it applied it, in order), in this process or across the network.
pub fn decision_applied(central: &CentralService) -> Result<()> {
    let deadline = Instant::now() + ANSWER_WAIT;
    while central.outstanding().1 > 0 {
        if Instant::now() > deadline {
            return Err(Error::new(
                ErrorCode::RequestInProgress,
                "central decided; the notary and the banks have not all applied it yet: ask again",
            ));
        }
        std::thread::sleep(POLL);
    }
    Ok(())
}

/// Every day of `year` with its type, as central's calendar has it.
pub fn calendar_year(central: &CentralService, year: i32) -> Result<Vec<DayView>> {
    let mut day = Date::new(year, 1, 1)?;
    let mut days = Vec::with_capacity(366);
    while day.year == year {
        days.push(day_view(central.day(day)));
        day = day.next();
    }
    assert!(days.len() == 365 || days.len() == 366, "a year has 365 or 366 days");
    Ok(days)
}

/// A day of central's calendar as the API shows it.
pub fn day_view(day: dtenge_central::DayView) -> DayView {
    DayView { date: day.date, working: day.working, overridden: day.overridden }
}

/// An emission or a redemption as the operator's list shows it.
pub fn nbk_operation(entry: &RegistryEntry) -> NbkOperation {
    NbkOperation {
        seq: entry.number,
        kind: match entry.kind {
            EntryKind::Emission => Purpose::Emission,
            EntryKind::Redemption => Purpose::Redemption,
        },
        node: entry.bank.clone(),
        amount_tiyn: entry.amount,
        tx_id: entry.tx_id,
        abs_seq: entry.abs_seq,
        at_unix_ms: entry.at_ms,
    }
}
