//! Cards and vouchers in the roles' simulation: a merchant (a legal entity) at every bank,
//! custodial individuals with cards, a school at Steppe paying a canteen at Tulpar per
//! transit-card tap. Clients buy with their cards in DT and converted to bank money, merchants
//! refund part of what is left (asked again under their key when the bank died with the
//! answer), clients take cash at any bank's ATM, and the validators send taps, often the same
//! tap again. What must hold once quiet:
//! - each merchant's bank money = its committed converted purchases minus their refunds;
//! - each correspondent account moved by exactly the card settlements those answers imply (the
//!   registry check adds them), so the correspondents conserve;
//! - what is left of each purchase at its acquirer = paid minus refunded as answered;
//! - each tap is paid once: every answer for it names the same transaction, and the canteen
//!   holds the programme's amount times the taps paid;
//! - no refund owed, card claim or settlement is left waiting.

use super::{key, Sim, Waiting, BANKS};
use dtenge_bank::{CardMode, CardRequest, IdemKey, Refunding, Request, VoucherEvent, VoucherProgramRequest};
use dtenge_core::crypto::hash_parts;
use dtenge_core::token::TxId;
use dtenge_core::{Amount, ErrorCode};
use dtenge_node::{Account, ClientKind, OWN_ACCOUNT};
use rand::Rng;
use std::collections::BTreeMap;

/// The school and the canteen of the voucher programme.
const SCHOOL: &str = "100140000045";
const CANTEEN: &str = "100140000046";
const SCHOOL_BANK: &str = "steppe";
const CANTEEN_BANK: &str = "tulpar";
const MEAL_TIYN: u64 = 1_200_00;
/// Distinct taps the validators send: fewer than they send, so taps repeat.
const TAPS: u64 = 12;

fn merchant_id(bank: &str) -> String {
    let n = BANKS.iter().position(|b| *b == bank).expect("a simulated bank");
    format!("1001400000{n:02}")
}

fn pan(n: usize) -> String {
    dtenge_node::ids::complete_pan(&format!("440000{n:09}")).expect("a prefix of 15 digits")
}

/// A purchase answered committed.
struct Bought {
    id: String,
    buyer_bank: &'static str,
    merchant_bank: &'static str,
    mode: CardMode,
    left: u64,
}

/// A refund waiting for its answer (`None`: to be asked, again, under its key).
struct RefundWaiting {
    purchase: usize,
    amount: u64,
    idem: IdemKey,
    answer: Option<dtenge_bank::Answer>,
}

/// What the simulation expects of the card and voucher flows.
#[derive(Default)]
pub(super) struct CardSim {
    /// Custodial individuals with a card: (client index, card number).
    cards: Vec<(usize, String)>,
    program: Option<String>,
    bought: Vec<Bought>,
    refunds: Vec<RefundWaiting>,
    refunds_asked: u64,
    /// Taps waiting for their answer.
    taps: Vec<(String, dtenge_bank::Answer)>,
    /// Each tap paid, by the transaction every answer named.
    paid_taps: BTreeMap<String, TxId>,
    /// Each merchant's bank money, as the answers say.
    merchant_fiat: BTreeMap<&'static str, i64>,
    /// Each correspondent account's moves by card settlements, as the answers say.
    pub(super) corr_moved: BTreeMap<&'static str, i64>,
    /// A tap answered by two different payments.
    violation: Option<String>,
    /// Emissions the NBK made at the end for refunds a bank owed beyond its own DT: how many
    /// so far, and when each bank was last topped up.
    top_ups: u64,
    topped_up_at_ms: BTreeMap<&'static str, u64>,
}

impl CardSim {
    pub(super) fn purchases(&self) -> usize {
        self.bought.len()
    }

    pub(super) fn taps_paid(&self) -> usize {
        self.paid_taps.len()
    }

    pub(super) fn quiet(&self) -> bool {
        self.refunds.is_empty() && self.taps.is_empty()
    }

    fn settle(&mut self, from: &'static str, to: &'static str, amount: u64) {
        if from != to {
            *self.corr_moved.entry(from).or_insert(0) -= amount as i64;
            *self.corr_moved.entry(to).or_insert(0) += amount as i64;
        }
    }
}

fn bank_of(bank: &str) -> &'static str {
    BANKS.iter().find(|b| **b == bank).copied().expect("a simulated bank")
}

impl Sim {
    /// Merchants, the school and the canteen opened (claimed over the network); every
    /// custodial individual's card linked at the directory; the programme registered.
    pub(super) fn open_shops(&mut self) -> Result<(), String> {
        let mut openings = Vec::new();
        let mut parties: Vec<(&'static str, String)> = BANKS.iter().map(|b| (*b, merchant_id(b))).collect();
        parties.push((SCHOOL_BANK, SCHOOL.into()));
        parties.push((CANTEEN_BANK, CANTEEN.into()));
        for (n, (bank, id)) in parties.into_iter().enumerate() {
            let secret = key("legal entity", n as u64);
            let account = Account {
                client_id: id.clone(),
                node_id: bank.into(),
                kind: ClientKind::LegalEntity,
                name: format!("Legal entity {n}"),
                phone: None,
                address: secret.address(),
                opened_at_unix_ms: 0,
            };
            openings.push((
                id,
                self.banks[bank].claim_account(account, dtenge_bank::AccountKey::Custodial(secret), self.now_ms),
            ));
        }
        let mut links = Vec::new();
        for (n, client) in self.clients.iter().enumerate().filter(|(_, c)| c.custodial) {
            let card = pan(n);
            links.push((n, card.clone(), self.banks[client.bank].link_card(&client.id, &card, self.now_ms)));
        }
        self.run_for(10_000);
        for (id, opening) in openings {
            opening.try_recv().map_err(|_| format!("{id} not opened in 10 s"))?.map_err(|e| format!("{id}: {e}"))?;
        }
        for (n, card, link) in links {
            link.try_recv().map_err(|_| format!("card of client {n} not linked"))?.map_err(|e| e.to_string())?;
            self.cards.cards.push((n, card));
        }
        let request = VoucherProgramRequest {
            integrator: "onay".into(),
            payer_id: SCHOOL.into(),
            payee_bank: CANTEEN_BANK.into(),
            payee_id: CANTEEN.into(),
            amount_per_event: Amount::from_tiyn(MEAL_TIYN).expect("fits"),
        };
        let program = self.banks[SCHOOL_BANK]
            .create_voucher_program(&request, None, self.now_ms)
            .map_err(|e| format!("voucher programme: {e}"))?;
        self.trace(format!("programme {} registered; {} cards linked", program.id, self.cards.cards.len()));
        self.cards.program = Some(program.id);
        // The school's DT: paid out by its bank, as any payment (asked again if lost).
        let school = key("legal entity", BANKS.len() as u64).address();
        let amount = Amount::from_tiyn(TAPS * MEAL_TIYN * 2).expect("fits");
        let pay = Request::Pay { client_id: OWN_ACCOUNT.into(), payees: vec![(school, amount)] };
        self.submit(format!("{SCHOOL_BANK} pays the school {amount}"), SCHOOL_BANK, pay, true);
        Ok(())
    }

    /// One card or voucher step: a purchase, a refund, a withdrawal or a tap.
    pub(super) fn card_step(&mut self) {
        match self.rng.gen_range(0..10) {
            0..=3 => self.card_purchase(),
            4..=5 => self.card_refund(),
            6 => self.atm(),
            _ => self.tap(),
        }
    }

    fn card_purchase(&mut self) {
        if self.cards.cards.is_empty() {
            return;
        }
        let (client, card) = self.cards.cards[self.rng.gen_range(0..self.cards.cards.len())].clone();
        let merchant_bank = BANKS[self.rng.gen_range(0..BANKS.len())];
        let mode = if self.rng.gen_bool(0.5) { CardMode::Dt } else { CardMode::ConvertToFiat };
        let amount = Amount::from_tiyn(self.rng.gen_range(1_00..3_000_00)).expect("fits");
        let request = CardRequest::Purchase {
            pan: card,
            merchant_bank: merchant_bank.into(),
            merchant_id: merchant_id(merchant_bank),
            amount,
            mode,
        };
        let bank = self.clients[client].bank;
        let what = format!("{} buys {amount} at {merchant_bank} ({mode:?})", self.clients[client].id);
        self.submit(what, bank, Request::Card(request), true);
    }

    fn atm(&mut self) {
        if self.cards.cards.is_empty() {
            return;
        }
        let (client, card) = self.cards.cards[self.rng.gen_range(0..self.cards.cards.len())].clone();
        let atm_bank = BANKS[self.rng.gen_range(0..BANKS.len())];
        let amount = Amount::from_tiyn(self.rng.gen_range(1_00..2_000_00)).expect("fits");
        let request = CardRequest::Atm { pan: card, atm_bank: atm_bank.into(), amount };
        let bank = self.clients[client].bank;
        let what = format!("{} takes {amount} cash at {atm_bank}", self.clients[client].id);
        self.submit(what, bank, Request::Card(request), true);
    }

    /// A merchant refunds part of a purchase (sometimes more than is left).
    fn card_refund(&mut self) {
        let open: Vec<usize> = (0..self.cards.bought.len()).filter(|i| self.cards.bought[*i].left > 0).collect();
        if open.is_empty() {
            return;
        }
        let purchase = open[self.rng.gen_range(0..open.len())];
        let left = self.cards.bought[purchase].left;
        let amount = if self.rng.gen_bool(0.1) { left + 1 } else { self.rng.gen_range(1..=left) };
        let n = self.cards.refunds_asked;
        self.cards.refunds_asked += 1;
        let idem = IdemKey { key: format!("refund-{n}"), fingerprint: hash_parts(b"refund", &[&n.to_le_bytes()]) };
        self.trace(format!("refund {amount} of {} ({})", self.cards.bought[purchase].id, idem.key));
        self.cards.refunds.push(RefundWaiting { purchase, amount, idem, answer: None });
    }

    /// A validator's tap (often one sent before).
    fn tap(&mut self) {
        let Some(program_id) = self.cards.program.clone() else { return };
        let tap = format!("tap-{}", self.rng.gen_range(0..TAPS));
        self.trace(format!("validator sends {tap}"));
        self.send_tap(program_id, tap);
    }

    fn send_tap(&mut self, program_id: String, tap: String) {
        let answer = match self.banks.get(SCHOOL_BANK) {
            Some(bank) => {
                let event = VoucherEvent { program_id, integrator: "onay".into(), event_id: tap.clone(), card: None };
                let answer = bank.voucher_event(event);
                bank.flush(self.now_ms);
                answer
            }
            None => dtenge_sync::oneshot::channel().1,
        };
        self.cards.taps.push((tap, answer));
    }

    /// A committed purchase or withdrawal, as its answer says.
    pub(super) fn card_committed(&mut self, w: &Waiting, tx_id: &TxId) {
        let Request::Card(request) = &w.request else { return };
        match request {
            CardRequest::Purchase { merchant_bank, amount, mode, .. } => {
                let merchant_bank = bank_of(merchant_bank);
                if *mode == CardMode::ConvertToFiat {
                    *self.cards.merchant_fiat.entry(merchant_bank).or_insert(0) += amount.tiyn() as i64;
                    self.cards.settle(w.bank, merchant_bank, amount.tiyn());
                }
                let id = format!("P-{}", &tx_id.to_string()[..16]);
                let left = amount.tiyn();
                self.cards.bought.push(Bought { id, buyer_bank: w.bank, merchant_bank, mode: *mode, left });
            }
            CardRequest::Atm { atm_bank, amount, .. } => self.cards.settle(w.bank, bank_of(atm_bank), amount.tiyn()),
            CardRequest::Refund { .. } | CardRequest::Payout { .. } => {}
        }
    }

    /// Take the refunds' and taps' answers; ask again what died with its bank.
    pub(super) fn resolve_cards(&mut self) {
        for mut w in std::mem::take(&mut self.cards.refunds) {
            let outcome = match &w.answer {
                None => self.ask_refund(&mut w),
                Some(answer) => match answer.try_recv() {
                    Ok(Ok(_)) => Some(Ok(())),
                    Ok(Err(e)) if e.code != ErrorCode::StorageFailure => Some(Err(e)),
                    Err(crossbeam_channel::TryRecvError::Empty) => None,
                    // Died with the answer, or the outcome is unknown: asked again.
                    _ => {
                        w.answer = None;
                        None
                    }
                },
            };
            match outcome {
                None => self.cards.refunds.push(w),
                Some(Ok(())) => self.refunded(&w),
                Some(Err(e)) => self.trace(format!("{}: refused {}", w.idem.key, e.code)),
            }
        }
        for (tap, answer) in std::mem::take(&mut self.cards.taps) {
            match answer.try_recv() {
                Ok(Ok(committed)) => {
                    if let Some(first) = self.cards.paid_taps.get(&tap).filter(|first| **first != committed.tx_id) {
                        self.cards.violation = Some(format!("{tap} answered by {first} and {}", committed.tx_id));
                    }
                    self.trace(format!("{tap}: paid by {}", committed.tx_id));
                    self.cards.paid_taps.insert(tap, committed.tx_id);
                }
                Ok(Err(e)) if e.code != ErrorCode::StorageFailure => {
                    self.trace(format!("{tap}: refused {}", e.code));
                }
                Err(crossbeam_channel::TryRecvError::Empty) => self.cards.taps.push((tap, answer)),
                _ => {
                    let program = self.cards.program.clone().expect("taps follow the programme");
                    self.send_tap(program, tap);
                }
            }
        }
    }

    /// Ask the acquirer (again) for a refund: its outcome when decided now, `None` to wait.
    fn ask_refund(&mut self, w: &mut RefundWaiting) -> Option<Result<(), dtenge_core::Error>> {
        let bought = &self.cards.bought[w.purchase];
        let bank = self.banks.get(bought.merchant_bank)?;
        let amount = Amount::from_tiyn(w.amount).expect("fits");
        match bank.card_refund(&bought.id, amount, Some(w.idem.clone()), self.now_ms) {
            Ok(Refunding::Decided(_)) => Some(Ok(())),
            Ok(Refunding::Submitted { answer, .. }) => {
                bank.flush(self.now_ms);
                w.answer = Some(answer);
                None
            }
            Err(e) if e.code == ErrorCode::StorageFailure => None,
            Err(e) => Some(Err(e)),
        }
    }

    fn refunded(&mut self, w: &RefundWaiting) {
        let bought = &mut self.cards.bought[w.purchase];
        bought.left = bought.left.checked_sub(w.amount).expect("a refund answered done was within what was left");
        let (mode, merchant_bank, buyer_bank) = (bought.mode, bought.merchant_bank, bought.buyer_bank);
        let id = bought.id.clone();
        if mode == CardMode::ConvertToFiat {
            *self.cards.merchant_fiat.entry(merchant_bank).or_insert(0) -= w.amount as i64;
            self.cards.settle(merchant_bank, buyer_bank, w.amount);
        }
        self.trace(format!("{}: {} of {id} refunded", w.idem.key, w.amount));
    }

    /// Once traffic stopped: the NBK emits to each bank whatever the refunds it owes lack of
    /// its own DT (`BankService::card_payouts_short`), as that bank's treasury asks. A refund
    /// of a converted purchase is paid from the issuer's own DT, which the run's random
    /// payments, conversions and redemptions may have spent; no message of the protocol asks
    /// for an emission (the NBK's operator decides one), and the run's emissions are random
    /// and stop with the traffic, so without this a refund owed by a bank short of DT waits
    /// for ever (seed 31728: tulpar owed 2,164.80 KZT and had 521.24 KZT). The liveness check
    /// is unchanged: every refund owed must still be paid, and the emission goes through the
    /// registry and the correspondent account like any other.
    pub(super) fn top_up_payouts(&mut self) {
        for bank in BANKS {
            let Some(service) = self.banks.get(bank) else { continue };
            let short = service.card_payouts_short();
            let recent = self.cards.topped_up_at_ms.get(bank).is_some_and(|at| at + 5_000 > self.now_ms);
            let emitting = self.emissions_waiting.iter().any(|(to, ..)| *to == bank);
            if short.is_zero() || recent || emitting {
                continue;
            }
            let Some(central) = &self.central else { return };
            let n = self.cards.top_ups;
            let key = format!("payout-top-up-{n}");
            let idem = IdemKey { fingerprint: hash_parts(b"payout top-up", &[key.as_bytes()]), key };
            let answer = central.emit(bank, short, Some(super::to_central_idem(&idem)), self.now_ms);
            self.cards.top_ups += 1;
            self.cards.topped_up_at_ms.insert(bank, self.now_ms);
            self.trace(format!("emit {short} to {bank}: the refunds it owes lack that much of its DT ({})", idem.key));
            self.emissions_waiting.push((bank, short, idem, answer));
        }
    }

    /// Every bank reachable, nothing owed, claimed or waiting for funds.
    pub(super) fn cards_quiet(&self) -> bool {
        self.cards.quiet()
            && self.central.as_ref().is_some_and(|c| c.card_settlements_queued().is_empty())
            && self
                .banks
                .values()
                .all(|b| b.card_payouts_pending() == 0 && b.cards_waiting() == 0 && b.card_credits_pending() == 0)
    }

    /// What the cards wait for, for a run that did not become quiet.
    pub(super) fn cards_waiting(&self) -> String {
        format!(
            "; cards: {} refunds and {} taps unanswered, settlements queued {:?}, banks' payouts owed {:?}, cards being linked {:?}, outstanding {:?}",
            self.cards.refunds.len(),
            self.cards.taps.len(),
            self.central.as_ref().map(|c| c.card_settlements_queued().len()),
            self.banks.values().map(|b| b.card_payouts_pending()).collect::<Vec<_>>(),
            self.banks.values().map(|b| b.cards_waiting()).collect::<Vec<_>>(),
            self.banks.values().map(|b| (b.outstanding(), b.queued())).collect::<Vec<_>>(),
        )
    }

    /// The card and voucher invariants, once quiet.
    pub(super) fn check_cards(&self) -> Result<(), String> {
        if let Some(violation) = &self.cards.violation {
            return Err(violation.clone());
        }
        for bank in BANKS {
            let service = self.banks.get(bank).ok_or("a bank is down at the end")?;
            let id = merchant_id(bank);
            let fiat = service.read(|n| n.balance(&id).map(|b| b.fiat_tiyn.tiyn())).map_err(|e| e.to_string())?;
            let expected = self.cards.merchant_fiat.get(bank).copied().unwrap_or(0);
            if fiat as i64 != expected {
                return Err(format!(
                    "merchant at {bank} holds {fiat} tiyn of bank money, its purchases say {expected}"
                ));
            }
            if service.card_notices_rejected() != 0 {
                return Err(format!("{bank} refused {} card notices", service.card_notices_rejected()));
            }
        }
        for bought in &self.cards.bought {
            let acquirer = self.banks.get(bought.merchant_bank).ok_or("a bank is down at the end")?;
            let record = acquirer.purchase(&bought.id).map_err(|e| e.to_string())?;
            let left = record.as_ref().map(|r| r.left().tiyn());
            if left != Some(bought.left) {
                return Err(format!(
                    "{} has {left:?} left at its acquirer, the answers say {}",
                    bought.id, bought.left
                ));
            }
            let issuer = self.banks.get(bought.buyer_bank).ok_or("a bank is down at the end")?;
            let issued = issuer.purchase(&bought.id).map_err(|e| e.to_string())?.map(|r| r.left().tiyn());
            if issued != left {
                return Err(format!("{} has {issued:?} left at its issuer, {left:?} at its acquirer", bought.id));
            }
        }
        let canteen = self.banks.get(CANTEEN_BANK).ok_or("the canteen's bank is down at the end")?;
        let meals = canteen.read(|n| n.balance(CANTEEN).map(|b| b.dt_tiyn.tiyn())).map_err(|e| e.to_string())?;
        let paid = self.cards.paid_taps.len() as u64 * MEAL_TIYN;
        if meals != paid {
            return Err(format!("the canteen holds {meals} tiyn; {} taps were paid", self.cards.paid_taps.len()));
        }
        if let Some(program) = &self.cards.program {
            let school = self.banks.get(SCHOOL_BANK).ok_or("the school's bank is down at the end")?;
            let events = school.voucher_events(program).map_err(|e| e.to_string())?;
            let recorded: BTreeMap<String, TxId> = events.into_iter().map(|e| (e.event_id, e.tx_id)).collect();
            if recorded != self.cards.paid_taps {
                return Err(format!(
                    "the school's bank recorded {recorded:?}, the answers say {:?}",
                    self.cards.paid_taps
                ));
            }
        }
        if let Some(central) = &self.central {
            if central.card_notices_rejected() != 0 {
                return Err(format!("central refused {} card notices", central.card_notices_rejected()));
            }
        }
        Ok(())
    }
}
