//! The cost of programmed payments next to a plain one, on the same roles after the main run,
//! through the platform facade as the REST API calls it: custodial payments one at a time (each its own durable commit), so the figures are
//! the latency and CPU time of one operation, not of a batch. The kinds are interleaved (a
//! plain payment, a hold, a release, a marked transfer, again), so background work of the
//! storage engine (flushes, compactions left by the main run) weighs on all of them alike.
//!
//! - **plain**: a custodial transfer (the bank selects, signs, attests; validation; notary;
//!   commit);
//! - **hold**: the sender's funds held against an oracle event (a transfer to itself into a
//!   held token, which the oracle checks and attests);
//! - **release**: the registry's occurrence releases the held funds to the payee (the oracle
//!   plans, the node builds, the oracle checks and attests);
//! - **marked**: a marked transfer one level down a marking (the oracle plans, checks the
//!   node's transaction and attests; the initiator's node is notified).

use crate::{amount, iin, Latency, LATENCY_US_MAX};
use dtenge_api::platform::{Platform, TREASURY_ID};
use dtenge_api::types::*;
use dtenge_node::ClientKind;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::time::Instant;

/// Clients paying in this phase (each is sender of its events).
const PAYERS: usize = 50;
/// First number of this phase's IINs: far from the main run's.
const IIN_BASE: usize = 900_000;

/// What one kind of operation cost.
#[derive(Clone, Debug, Serialize)]
pub struct OpCost {
    pub operations: usize,
    pub per_s: f64,
    /// CPU time of the whole process per operation (all threads), microseconds.
    pub cpu_us_per_op: f64,
    pub latency: Latency,
}

/// The programmed payments' costs next to a plain payment's.
#[derive(Clone, Debug, Serialize)]
pub struct ProgrammableReport {
    pub plain: OpCost,
    pub hold: OpCost,
    pub release: OpCost,
    /// A held payment end to end: hold + release (per payment).
    pub held_payment_cpu_us: f64,
    pub marked: OpCost,
}

/// CPU time this process (all its threads) has used, in microseconds.
pub(crate) fn cpu_us() -> f64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `clock_gettime` writes one `timespec` into the valid, exclusively borrowed `now`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    if rc != 0 {
        return 0.0;
    }
    now.tv_sec as f64 * 1e6 + now.tv_nsec as f64 / 1e3
}

/// Latency and CPU of one kind of operation, accumulated over interleaved runs.
struct Meter {
    histogram: Histogram<u64>,
    operations: usize,
    wall_us: f64,
    cpu_us: f64,
}

impl Meter {
    fn new() -> Result<Meter, String> {
        let histogram = Histogram::<u64>::new_with_bounds(1, LATENCY_US_MAX, 3).map_err(|e| e.to_string())?;
        Ok(Meter { histogram, operations: 0, wall_us: 0.0, cpu_us: 0.0 })
    }

    fn time(&mut self, op: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
        let cpu_before = cpu_us();
        let started = Instant::now();
        op()?;
        let wall_us = started.elapsed().as_secs_f64() * 1e6;
        self.cpu_us += cpu_us() - cpu_before;
        self.wall_us += wall_us;
        self.operations += 1;
        self.histogram.record((wall_us as u64).clamp(1, LATENCY_US_MAX)).map_err(|e| e.to_string())
    }

    fn cost(&self) -> OpCost {
        OpCost {
            operations: self.operations,
            per_s: self.operations as f64 / (self.wall_us / 1e6).max(1e-9),
            cpu_us_per_op: self.cpu_us / self.operations.max(1) as f64,
            latency: Latency {
                p50_us: self.histogram.value_at_quantile(0.5),
                p99_us: self.histogram.value_at_quantile(0.99),
                p999_us: self.histogram.value_at_quantile(0.999),
                max_us: self.histogram.max(),
            },
        }
    }
}

fn party(bank: &str, client: &str) -> PartyRef {
    PartyRef { bank: bank.into(), client_id: client.into() }
}

/// Run `operations` of each kind on the platform.
pub fn run(network: &Platform, operations: usize) -> Result<ProgrammableReport, String> {
    let e = |e: dtenge_core::Error| e.to_string();
    let open = |bank: &str, n: usize, kind: ClientKind| -> Result<String, String> {
        let request = OpenAccount {
            kind,
            client_id: iin(IIN_BASE + n)?,
            name: format!("Bench {n}"),
            phone: None,
            public_key: None,
        };
        Ok(network.open_account(None, bank, request).map_err(e)?.client_id)
    };
    let fund = |bank: &str, client: &str, tiyn: u64| -> Result<(), String> {
        let request = AmountRequest { amount_tiyn: amount(tiyn)? };
        network.credit_correspondent(None, bank, request).map_err(e)?;
        network.emission(None, bank, request).map_err(e)?;
        network.deposit_fiat(None, bank, client, request).map_err(e)?;
        network.convert_to_dt(None, bank, client, request).map_err(e)?;
        Ok(())
    };
    let banks = crate::BANKS;
    let per_payer = (operations / PAYERS + 1) as u64 * 300_00;
    let mut payers = Vec::with_capacity(PAYERS);
    for n in 0..PAYERS {
        let bank = banks[n % banks.len()];
        let client = open(bank, n, ClientKind::LegalEntity)?;
        fund(bank, &client, per_payer)?;
        payers.push((bank, client));
    }
    let payee = open("tulpar", PAYERS, ClientKind::LegalEntity)?;
    let agency = open(TREASURY_ID, PAYERS + 1, ClientKind::GovernmentAgency)?;
    fund(TREASURY_ID, &agency, operations as u64 * 100_00 + 100_00)?;
    let provider = |id: &str, kind| {
        network.register_provider(None, ProviderRequest { id: id.into(), name: id.into(), kind }).map(|c| c.token)
    };
    let portal = provider("bench-portal", ProviderKind::ContractPortal).map_err(e)?;

    let mut events = Vec::with_capacity(operations);
    for i in 0..operations {
        let (bank, sender) = &payers[i % PAYERS];
        let request = EventRequest {
            reference: format!("bench {i}"),
            kind: EventKind::Single,
            sender: party(bank, sender),
            payees: vec![ShareRequest {
                bank: "tulpar".into(),
                client_id: payee.clone(),
                amount_tiyn: amount(100_00)?,
            }],
            valid_for_ms: 86_400_000,
            confirmed_by: None,
        };
        events.push((bank, network.register_event(None, &portal, request).map_err(e)?.event.id));
    }

    let recipients: Vec<PartyRef> = payers.iter().map(|(b, c)| party(b, c)).collect();
    let limit = amount(operations as u64 * 100_00 + 100_00)?;
    let marking = network
        .create_marking(
            None,
            TREASURY_ID,
            MarkingRequest {
                initiator: agency.clone(),
                reference: "bench".into(),
                levels: vec![
                    LevelRequest { recipients, limit_tiyn: limit },
                    LevelRequest { recipients: vec![party("tulpar", &payee)], limit_tiyn: limit },
                ],
            },
        )
        .map_err(e)?
        .marking
        .id;
    let (mut plain, mut hold, mut release, mut marked) = (Meter::new()?, Meter::new()?, Meter::new()?, Meter::new()?);
    for (i, (event_bank, event)) in events.iter().enumerate() {
        let (bank, client) = &payers[i % PAYERS];
        plain.time(|| {
            let to = Payee { client_id: Some(payee.clone()), bank: Some("tulpar".into()), ..Payee::default() };
            let request = TransferRequest { from: client.clone(), to, amount_tiyn: amount(100_00)?, reference: None };
            network.transfer(None, bank, request).map(|_| ()).map_err(e)
        })?;
        hold.time(|| {
            let request = HoldRequest { event_id: event.clone(), amount_tiyn: None };
            network.hold(None, event_bank, request).map(|_| ()).map_err(e)
        })?;
        release.time(|| {
            let request = OccurrenceRequest {
                occurrence_id: "bench".into(),
                outcome: OccurrenceOutcome::Occurred,
                payouts: None,
                reason: None,
            };
            network.report_occurrence(None, &portal, event, request).map(|_| ()).map_err(e)
        })?;
        marked.time(|| {
            let request = MarkedTransferRequest {
                marking_id: marking.clone(),
                from: agency.clone(),
                to: party(bank, client),
                amount_tiyn: amount(100_00)?,
            };
            network.marked_transfer(None, TREASURY_ID, request).map(|_| ()).map_err(e)
        })?;
    }
    let (plain, hold, release, marked) = (plain.cost(), hold.cost(), release.cost(), marked.cost());
    Ok(ProgrammableReport {
        held_payment_cpu_us: hold.cpu_us_per_op + release.cpu_us_per_op,
        plain,
        hold,
        release,
        marked,
    })
}

pub fn render(report: &ProgrammableReport) -> String {
    let line = |name: &str, c: &OpCost| {
        format!(
            "{name:<19}{:.0}/s one at a time, {:.0} µs CPU each, p50 {:.2} ms, p99 {:.2} ms ({} ops)\n",
            c.per_s,
            c.cpu_us_per_op,
            c.latency.p50_us as f64 / 1000.0,
            c.latency.p99_us as f64 / 1000.0,
            c.operations
        )
    };
    let mut out = String::new();
    out.push_str(&line("plain custodial", &report.plain));
    out.push_str(&line("hold", &report.hold));
    out.push_str(&line("release", &report.release));
    out.push_str(&line("marked transfer", &report.marked));
    out.push_str(&format!(
        "programmed cost    held payment (hold + release) {:.0} µs CPU = {:.1}x a plain one; marked {:.1}x\n",
        report.held_payment_cpu_us,
        report.held_payment_cpu_us / report.plain.cpu_us_per_op.max(1e-9),
        report.marked.cpu_us_per_op / report.plain.cpu_us_per_op.max(1e-9)
    ));
    out
}
