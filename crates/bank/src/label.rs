//! What a custodial payment is called in the history: its purpose (a transfer by phone, a
//! registry line, a payment) and the payer's reference ("rent for May", "payroll 2026-11").
//!
//! The label rides with the payment in the outbox, so that the history written when the
//! notary answers (after a restart, perhaps) says what the client asked. It is written at this
//! bank only: its payer's line, and its payees' lines when they are this bank's clients. A
//! payee at another bank sees a payment without the reference (the delivery carries the
//! certified transaction alone; carrying labels is a change of the protocol).

use crate::{Answer, BankService, IdemKey, Request};
use dtenge_core::{Error, Result};
use dtenge_node::Purpose;
use dtenge_wire::{Decode, DecodeError, Encode, Reader, Writer};

/// Longest reference a payment carries, in characters (the network's limit).
pub const REFERENCE_CHARS_MAX: usize = 140;
/// Longest reference in bytes: [`REFERENCE_CHARS_MAX`] characters of at most 4 bytes each.
const REFERENCE_BYTES_MAX: usize = 4 * REFERENCE_CHARS_MAX;

/// A custodial payment's purpose and reference, as its history shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    /// [`Purpose::Payment`], [`Purpose::PhoneTransfer`], [`Purpose::RegistryDistribution`] or
    /// [`Purpose::SplitPayment`]: what a plain transfer may be.
    pub purpose: Purpose,
    pub reference: Option<String>,
}

impl Label {
    /// A label the bank takes: a plain transfer's purpose, a reference of at most
    /// [`REFERENCE_CHARS_MAX`] characters.
    pub fn check(&self) -> Result<()> {
        if tag_of(self.purpose).is_none() {
            return Err(Error::malformed(format!("a payment cannot be labelled {:?}", self.purpose)));
        }
        if let Some(reference) = &self.reference {
            if reference.chars().count() > REFERENCE_CHARS_MAX {
                return Err(Error::malformed(format!("a reference has at most {REFERENCE_CHARS_MAX} characters")));
            }
        }
        Ok(())
    }

    /// The label of a request that was submitted without one.
    pub(crate) fn default_of(request: &Request) -> Option<Label> {
        match request {
            Request::PayPhone { .. } => Some(Label { purpose: Purpose::PhoneTransfer, reference: None }),
            Request::Pay { .. }
            | Request::Signed(_)
            | Request::Convert { .. }
            | Request::Card(_)
            | Request::Voucher(_)
            | Request::Consolidate { .. } => None,
        }
    }
}

fn tag_of(purpose: Purpose) -> Option<u8> {
    match purpose {
        Purpose::Payment => Some(1),
        Purpose::PhoneTransfer => Some(2),
        Purpose::RegistryDistribution => Some(3),
        Purpose::SplitPayment => Some(4),
        _ => None,
    }
}

impl Encode for Label {
    fn encode(&self, w: &mut Writer) {
        w.u8(tag_of(self.purpose).expect("a label is checked before it is kept"));
        w.put(&self.reference);
    }
}

impl Decode for Label {
    const ENCODED_BYTES_MIN: usize = 1 + 1;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        let purpose = match r.u8("payment purpose")? {
            1 => Purpose::Payment,
            2 => Purpose::PhoneTransfer,
            3 => Purpose::RegistryDistribution,
            4 => Purpose::SplitPayment,
            tag => return Err(DecodeError::UnknownTag { what: "payment purpose", tag: u64::from(tag) }),
        };
        let reference: Option<String> = r.get()?;
        if reference.as_ref().is_some_and(|text| text.len() > REFERENCE_BYTES_MAX) {
            return Err(DecodeError::Invalid { what: "payment reference", reason: "too long".into() });
        }
        Ok(Label { purpose, reference })
    }
}

impl BankService {
    /// [`BankService::submit`] with the payment's purpose and reference for the history. Only
    /// custodial payments (`Pay`, `PayPhone`) are labelled; a bad label is refused
    /// `MALFORMED_INPUT` at once.
    pub fn submit_labelled(&self, request: Request, label: Label, idem: Option<IdemKey>) -> Answer {
        let checked = label.check().and_then(|()| match request {
            Request::Pay { .. } | Request::PayPhone { .. } => Ok(()),
            Request::Signed(_)
            | Request::Convert { .. }
            | Request::Card(_)
            | Request::Voucher(_)
            | Request::Consolidate { .. } => Err(Error::malformed("only a custodial payment carries a label")),
        });
        let (answer, receiver) = dtenge_sync::oneshot::channel();
        match checked {
            Ok(()) => self.submit_to(request, Some(label), idem, crate::Reply::Own(answer)),
            Err(e) => {
                let _ = answer.send(Err(e));
            }
        }
        receiver
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_decodes_to_what_was_written_and_garbage_is_refused() {
        for label in [
            Label { purpose: Purpose::Payment, reference: None },
            Label { purpose: Purpose::PhoneTransfer, reference: Some("rent for May".into()) },
            Label { purpose: Purpose::RegistryDistribution, reference: Some("ä".repeat(REFERENCE_CHARS_MAX)) },
            Label { purpose: Purpose::SplitPayment, reference: Some(String::new()) },
        ] {
            label.check().unwrap();
            assert_eq!(Label::from_bytes(&label.to_bytes()).unwrap(), label);
        }
        let mut bytes = Label { purpose: Purpose::Payment, reference: None }.to_bytes();
        bytes[0] = 9;
        assert!(Label::from_bytes(&bytes).is_err());
        let long = Label { purpose: Purpose::Payment, reference: Some("x".repeat(REFERENCE_BYTES_MAX + 1)) };
        let mut w = Writer::new();
        w.u8(1);
        w.put(&long.reference);
        assert!(Label::from_bytes(&w.into_bytes()).is_err(), "a reference longer than any checked one");
    }

    #[test]
    fn only_a_plain_transfers_purpose_and_a_short_reference_are_taken() {
        assert!(Label { purpose: Purpose::Emission, reference: None }.check().is_err());
        assert!(Label { purpose: Purpose::ConversionToDt, reference: None }.check().is_err());
        let long = Label { purpose: Purpose::Payment, reference: Some("x".repeat(REFERENCE_CHARS_MAX + 1)) };
        assert_eq!(long.check().unwrap_err().code, dtenge_core::ErrorCode::MalformedInput);
    }
}
