//! The oracle's checks of a transaction against its registry: pure functions of the event and
//! the transaction, so that every refusal is decided before anything is written.

use super::rows::{EventStatus, HoldEvent, Payee, Release};
use dtenge_core::crypto::Address;
use dtenge_core::token::{Output, Policy};
use dtenge_core::tx::{Command, Transaction};
use dtenge_core::{bail, ensure, Amount, Error, ErrorCode, Result};

/// A hold the oracle attests: from the event's sender's bank, before the validity ends, the
/// event not held (an infinite one: held or not, not releasing) nor a transaction of it in
/// flight, `payee` one of its payees; the transaction spends only the sender's standard DT and
/// holds exactly the event's amount (an infinite one: any amount) for it on the sender's
/// account, its change standard and the sender's. Answers the amount it holds.
pub(crate) fn check_hold(
    event: &HoldEvent,
    infinite: bool,
    bank: &str,
    payee: &Address,
    tx: &Transaction,
    now_ms: u64,
) -> Result<Amount> {
    ensure!(bank == event.sender_bank, Forbidden, "event {} is held by bank '{}' only", event.id, event.sender_bank);
    ensure!(now_ms < event.valid_until_ms, EventExpired, "event {} expired at {} ms", event.id, event.valid_until_ms);
    let holdable = event.status == EventStatus::Registered || (infinite && event.status == EventStatus::Held);
    ensure!(
        holdable && event.pending.is_none(),
        Conflict,
        "event {} is held already (or {:?}), or a transaction of it is in flight",
        event.id,
        event.status
    );
    ensure!(
        event.payees.iter().any(|p| p.address == *payee),
        RecipientNotAllowed,
        "{payee} is not a payee of event {}",
        event.id
    );
    ensure!(tx.body.command == Command::Transfer, Forbidden, "a hold is a transfer");
    ensure!(
        tx.body.inputs.iter().all(|i| i.output.policy.is_standard() && i.output.owner == event.sender),
        Forbidden,
        "a hold spends the sender's standard DT only"
    );
    let hash = event.hash();
    let mut held = Amount::ZERO;
    for output in &tx.body.outputs {
        ensure!(output.owner == event.sender, Forbidden, "a hold pays no one: every output is the sender's");
        match &output.policy {
            Policy::Held { event: named } if *named == hash => held = held.checked_add(output.amount_tiyn)?,
            Policy::Standard => {}
            _ => bail!(Forbidden, "the hold transaction creates tokens of another kind than held for {}", event.id),
        }
    }
    if infinite {
        ensure!(!held.is_zero(), MalformedInput, "the hold transaction holds nothing for event {}", event.id);
        event.held_tiyn.checked_add(held)?;
    } else {
        ensure!(
            held == event.amount_tiyn,
            MalformedInput,
            "the hold transaction holds {held}, event {} holds exactly {}",
            event.id,
            event.amount_tiyn
        );
    }
    Ok(held)
}

/// A release the oracle attests: from the sender's bank, for the release it ordered (its
/// attempt), spending tokens held for the event on the sender's account, exactly what is
/// held, into exactly the planned outputs.
pub(crate) fn check_release(event: &HoldEvent, bank: &str, tx: &Transaction) -> Result<()> {
    ensure!(
        bank == event.sender_bank,
        Forbidden,
        "event {} is released by bank '{}' only",
        event.id,
        event.sender_bank
    );
    let Some(release) = event.release.as_ref().filter(|_| event.status == EventStatus::Releasing) else {
        bail!(Conflict, "event {} has no release ordered", event.id);
    };
    ensure!(event.pending.is_none(), Conflict, "a release of event {} is in flight", event.id);
    ensure!(
        tx.body.nonce == release.attempt,
        Conflict,
        "the release of event {} is ordered as attempt {}, not {}",
        event.id,
        release.attempt,
        tx.body.nonce
    );
    ensure!(tx.body.command == Command::Transfer, Forbidden, "a release is a transfer");
    let hash = event.hash();
    let mut spent = Amount::ZERO;
    for input in &tx.body.inputs {
        ensure!(
            input.output.policy.held_for() == Some(&hash) && input.output.owner == event.sender,
            Forbidden,
            "the release spends a token not held for event {} on its sender's account",
            event.id
        );
        spent = spent.checked_add(input.output.amount_tiyn)?;
    }
    ensure!(
        spent == event.held_tiyn,
        Forbidden,
        "the release spends {spent}, event {} holds {}",
        event.id,
        event.held_tiyn
    );
    ensure!(tx.body.outputs == release.outputs, Forbidden, "the release's outputs differ from the oracle's decision");
    Ok(())
}

/// What a provider's confirmation pays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Confirmation {
    /// The event happened: pay `payouts` (address, amount), or every payee its share when
    /// `None`; what is not paid returns to the sender.
    Occurred { payouts: Option<Vec<(Address, Amount)>> },
    /// The provider refuses: everything held goes back to the sender.
    Rejected,
}

/// The release a confirmation of a held event calls for; `Rejected` also serves an expiry
/// (`expired`: the event ends `Expired`). An occurrence of an infinite event pays at most what
/// is held and keeps the rest held (the event stays `Held`, or is `Completed` when nothing is
/// left); of a single one, it returns the rest to the sender.
pub(crate) fn plan_release(
    event: &HoldEvent,
    infinite: bool,
    confirmation: &Confirmation,
    issuer: Address,
    expired: bool,
) -> Result<Release> {
    assert_eq!(event.status, EventStatus::Held, "a release is planned for a held event");
    assert!(!event.held_tiyn.is_zero(), "a held event holds something");
    let payouts: Vec<(Address, Amount)> = match confirmation {
        Confirmation::Rejected => Vec::new(),
        Confirmation::Occurred { payouts: None } => event.payees.iter().map(|p| (p.address, p.amount_tiyn)).collect(),
        Confirmation::Occurred { payouts: Some(payouts) } => check_payouts(&event.payees, payouts, &event.id)?,
    };
    let paid = Amount::sum(payouts.iter().map(|(_, a)| *a))?;
    let rest = event.held_tiyn.checked_sub(paid).map_err(|_| {
        Error::new(
            ErrorCode::LimitExceeded,
            format!("event {} holds {}, the payouts are {paid}", event.id, event.held_tiyn),
        )
    })?;
    let occurred = matches!(confirmation, Confirmation::Occurred { .. }) && !expired;
    let (returned, kept) = if infinite && occurred { (Amount::ZERO, rest) } else { (rest, Amount::ZERO) };
    let mut outputs: Vec<Output> = payouts.iter().map(|(to, amount)| Output::standard(*amount, *to, issuer)).collect();
    if !returned.is_zero() {
        outputs.push(Output::standard(returned, event.sender, issuer));
    }
    if !kept.is_zero() {
        outputs.push(Output::held(kept, event.sender, issuer, event.hash()));
    }
    assert!(!outputs.is_empty(), "a release of something held pays or returns it");
    Ok(Release {
        attempt: 1,
        outputs,
        paid_tiyn: paid,
        returned_tiyn: returned,
        ends_as: match confirmation {
            _ if expired => EventStatus::Expired,
            Confirmation::Rejected => EventStatus::Rejected,
            Confirmation::Occurred { .. } if !kept.is_zero() => EventStatus::Held,
            Confirmation::Occurred { .. } => EventStatus::Completed,
        },
    })
}

/// What a release keeps held: what its event holds less what it pays and returns.
pub(crate) fn kept_by(event: &HoldEvent, release: &Release) -> Amount {
    let spent = release.paid_tiyn.checked_add(release.returned_tiyn).expect("within what is held");
    event.held_tiyn.checked_sub(spent).expect("a release spends at most what its event holds")
}

/// A partial payout names payees of the event, once each, each at most its share.
fn check_payouts(payees: &[Payee], payouts: &[(Address, Amount)], event_id: &str) -> Result<Vec<(Address, Amount)>> {
    ensure!(!payouts.is_empty() && payouts.len() <= payees.len(), MalformedInput, "name 1 to {} payouts", payees.len());
    for (i, (address, amount)) in payouts.iter().enumerate() {
        let Some(payee) = payees.iter().find(|p| p.address == *address) else {
            bail!(RecipientNotAllowed, "{address} is not a payee of event {event_id}");
        };
        ensure!(!payouts[..i].iter().any(|(a, _)| a == address), MalformedInput, "payee {address} is named twice");
        ensure!(!amount.is_zero(), MalformedInput, "payout amounts must be positive");
        ensure!(
            *amount <= payee.amount_tiyn,
            LimitExceeded,
            "{address} may receive at most {} from event {event_id}",
            payee.amount_tiyn
        );
    }
    Ok(payouts.to_vec())
}
