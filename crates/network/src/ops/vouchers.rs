//! Digital vouchers (sub-scenario 6): an event from a technology integrator (a pupil taps a
//! transit card on a validator) makes a school pay a canteen. The event id makes the payment
//! idempotent at the domain level: the same event twice pays once, whoever retries.

use crate::types::{Receipt, VoucherEvent, VoucherProgram, VoucherProgramRequest};
use crate::{Idem, Network, VOUCHER_EVENTS_TABLE, VOUCHER_PROGRAMS_TABLE};
use dtenge_core::{ensure, Error, ErrorCode, Result};
use dtenge_node::{ClientKind, Purpose};
use dtenge_store::WriteBatch;

/// Longest event id or integrator id.
pub const EVENT_ID_LEN_MAX: usize = 128;

impl Network {
    /// Register a voucher programme between a payer (school) and a payee (canteen).
    pub fn create_voucher_program(
        &self,
        idem: Option<&Idem>,
        request: VoucherProgramRequest,
    ) -> Result<VoucherProgram> {
        let _gate = self.gate_shared();
        let integrator = request.integrator.trim().to_string();
        ensure!(
            !integrator.is_empty() && integrator.len() <= EVENT_ID_LEN_MAX,
            MalformedInput,
            "integrator id has 1 to {EVENT_ID_LEN_MAX} characters"
        );
        ensure!(!request.amount_per_event_tiyn.is_zero(), MalformedInput, "the amount per event must be positive");
        self.active_participant(&request.payer_bank)?;
        self.active_participant(&request.payee_bank)?;
        let (payer, payer_kind) = self.party(&request.payer_bank, &request.payer_id)?;
        let (payee, payee_kind) = self.party(&request.payee_bank, &request.payee_id)?;
        ensure!(
            matches!(payer_kind, ClientKind::LegalEntity | ClientKind::GovernmentAgency)
                && payee_kind == ClientKind::LegalEntity,
            Forbidden,
            "voucher programmes are between legal entities (school and canteen)"
        );
        ensure!(payer.address != payee.address, MalformedInput, "payer and payee are the same account");
        let mut vouchers = self.vouchers.lock();
        let program = VoucherProgram {
            id: format!("V{:06}", vouchers.programs.len() + 1),
            integrator,
            payer,
            payee,
            amount_per_event_tiyn: request.amount_per_event_tiyn,
            created_at_unix_ms: self.now_ms(),
        };
        let mut batch = WriteBatch::new();
        batch.put_value(VOUCHER_PROGRAMS_TABLE, program.id.as_bytes(), &program)?;
        self.commit(idem, batch, &program)?;
        vouchers.programs.insert(program.id.clone(), program.clone());
        Ok(program)
    }

    pub fn voucher_programs(&self) -> Vec<VoucherProgram> {
        self.vouchers.lock().programs.values().cloned().collect()
    }

    /// An integrator's event: pay the programme's amount once per event id.
    pub fn voucher_event(&self, idem: Option<&Idem>, program_id: &str, event: VoucherEvent) -> Result<Receipt> {
        let _gate = self.gate_shared();
        let event_id = event.event_id.trim().to_string();
        ensure!(
            !event_id.is_empty() && event_id.len() <= EVENT_ID_LEN_MAX,
            MalformedInput,
            "event id has 1 to {EVENT_ID_LEN_MAX} characters"
        );
        // One lock for all programmes: events are few per second, and it makes "once per event
        // id" trivially true.
        let mut vouchers = self.vouchers.lock();
        let program = vouchers
            .programs
            .get(program_id)
            .cloned()
            .ok_or_else(|| Error::new(ErrorCode::NotFound, format!("no voucher programme {program_id}")))?;
        ensure!(
            event.integrator == program.integrator,
            Forbidden,
            "integrator '{}' does not run programme {program_id}",
            event.integrator
        );
        let key = (program_id.to_string(), event_id.clone());
        if let Some(receipt) = vouchers.events.get(&key) {
            return Ok(receipt.clone());
        }
        let reference = match &event.card {
            Some(card) => format!("event {event_id} card {card}"),
            None => format!("event {event_id}"),
        };
        crate::ops::payments::check_reference(Some(&reference))?;
        let slot = self.active_participant(&program.payer.bank)?;
        self.ensure_not_blocked(&program.payee.bank)?;
        let amount = program.amount_per_event_tiyn;
        let tx = slot.state.lock().prepare_payment(
            &program.payer.client_id,
            &[(program.payee.address, amount)],
            self.issuer(),
            self.nonce(),
        )?;
        let receipt = crate::ops::conversion::receipt(
            &tx,
            Purpose::Voucher,
            amount,
            Some(program.payer.clone()),
            Some(program.payee.clone()),
            self.now_ms(),
            None,
        );
        let mut extra = WriteBatch::new();
        let mut event_key = program_id.as_bytes().to_vec();
        event_key.push(0);
        event_key.extend_from_slice(event_id.as_bytes());
        extra
            .put_value(VOUCHER_EVENTS_TABLE, event_key, &(program_id, &event_id, &receipt))
            .inspect_err(|_| self.release(&tx))?;
        self.execute(idem, &tx, Purpose::Voucher, Some(&reference), &[], extra, &receipt)?;
        vouchers.events.insert(key, receipt.clone());
        Ok(receipt)
    }
}
