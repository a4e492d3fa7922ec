//! The lifecycle sub-scenarios of SPEC §4, each driven end to end through the REST API.
//!
//! `dtenge demo` runs them all against a fresh network and prints the report; the integration
//! tests run each one on its own platform. Every scenario creates the clients it needs (with
//! its own range of IINs and phone numbers), so scenarios are independent and can run in any
//! order on one network.

pub mod client;
pub mod platform;
mod programmable;
mod scenarios;

pub use client::{ApiFailure, CallResult, Client};
pub use platform::Platform;
pub use scenarios::{Scenario, World, SCENARIOS};

use std::time::Instant;

/// The result of one scenario.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub id: &'static str,
    pub title: &'static str,
    pub passed: bool,
    pub elapsed_ms: f64,
    /// The readable story: who paid whom, balances.
    pub lines: Vec<String>,
    pub failure: Option<String>,
}

impl Outcome {
    /// Where the scenario is in the SPEC: `§4.8` for a lifecycle sub-scenario, `§5.1` for a
    /// programmable one, `§4.+` for the extra flows.
    pub fn section(&self) -> String {
        if self.id.contains('.') {
            format!("§{}", self.id)
        } else {
            format!("§4.{}", self.id)
        }
    }
}

/// Run one scenario and time it.
pub fn run(world: &World, scenario: &Scenario) -> Outcome {
    let started = Instant::now();
    let mut lines = Vec::new();
    let result = (scenario.run)(world, &mut lines);
    let reconciled = world.reconciled();
    let failure = match (result, reconciled) {
        (Ok(()), Ok(())) => None,
        (Err(e), _) => Some(e),
        (Ok(()), Err(e)) => Some(format!("reconciliation after the scenario failed: {e}")),
    };
    Outcome {
        id: scenario.id,
        title: scenario.title,
        passed: failure.is_none(),
        elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
        lines,
        failure,
    }
}

/// Run every scenario in order and return the outcomes.
pub fn run_all(world: &World, mut on_outcome: impl FnMut(&Outcome)) -> Vec<Outcome> {
    SCENARIOS
        .iter()
        .map(|s| {
            let outcome = run(world, s);
            on_outcome(&outcome);
            outcome
        })
        .collect()
}
