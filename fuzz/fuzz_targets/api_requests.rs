//! Bytes -> every REST API request type, the way the API gateway parses a body, plus the
//! string inputs the API takes from paths (dates, transaction ids, years) and the identifier
//! checks every request goes through (IIN/BIN, phone, card number).
//!
//! The gateway (`crates/api/src/routes.rs`, `mutate`) parses a body in two steps: into a
//! `serde_json::Value`, re-encoded canonically for the idempotency fingerprint, then
//! `serde_json::from_value` into the request type. Both that path and a direct `from_slice`
//! are exercised. Nothing may panic; what decodes must re-encode and decode again; what the
//! identifier checks accept must be in the shape they promise.
#![no_main]

use dtenge_api::types::{
    AmountRequest, AtmWithdrawal, BlockRequest, CardPurchaseRequest, ClockAdvance, ContractPaymentRequest,
    ContractRequest, ContractWithdrawalRequest, DayRequest, EventRequest, HoldRequest, InvoicePaymentRequest,
    InvoiceRequest, LinkCard, MarkedTransferRequest, MarkingRequest, OccurrenceRequest, OpenAccount, PartyRef,
    ProviderRequest, RegistryRequest, SplitPaymentRequest, TransferRequest, VatPaymentRequest, VoucherEvent,
    VoucherProgramRequest,
};
use dtenge_core::calendar::{Calendar, Date};
use dtenge_core::crypto::Hash32;
use dtenge_core::tx::Transaction;
use dtenge_node::ids::{check_iin_bin, check_pan, complete_iin_bin, complete_pan, mask_pan, normalize_phone};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Parse `data` as the gateway does and directly; both must agree on success.
fn parse<R: DeserializeOwned + Serialize>(data: &[u8], value: Option<&serde_json::Value>) {
    let direct = serde_json::from_slice::<R>(data);
    if let Some(value) = value {
        let via_value = serde_json::from_value::<R>(value.clone());
        // `from_value` may accept what `from_slice` refuses (e.g. a duplicate key that the
        // Value kept once), but never the other way round.
        if direct.is_ok() {
            assert!(via_value.is_ok(), "from_slice accepted what from_value refused");
        }
        if let Ok(r) = via_value {
            round_trip(&r);
        }
    }
    if let Ok(r) = direct {
        round_trip(&r);
    }
}

fn round_trip<R: DeserializeOwned + Serialize>(r: &R) {
    let json = serde_json::to_vec(r).expect("a decoded request encodes");
    let again: R = serde_json::from_slice(&json).expect("an encoded request decodes");
    let json_again = serde_json::to_vec(&again).expect("encodes again");
    assert_eq!(json, json_again, "request JSON is not stable across a round trip");
}

fn text_checks(text: &str) {
    // Dates in paths: PUT /v1/operator/calendar/days/{date}.
    if let Ok(date) = text.parse::<Date>() {
        let shown = date.to_string();
        assert_eq!(shown.parse::<Date>().expect("a shown date parses"), date);
        assert_eq!(Date::from_days(date.days()), date);
        assert!((1..=7).contains(&date.weekday()));
        let next = date.next();
        assert_eq!(next.days(), date.days() + 1);
        let calendar = Calendar::default();
        let _ = calendar.is_working_day(date);
        let _ = calendar.next_working_day(date);
        let json = serde_json::to_string(&date).expect("a date encodes");
        assert_eq!(serde_json::from_str::<Date>(&json).expect("an encoded date decodes"), date);
    }
    // Transaction ids in paths: GET /v1/transactions/{tx_id}.
    if let Ok(h) = Hash32::from_hex(text) {
        assert_eq!(h.to_hex(), text.to_ascii_lowercase());
    }
    // Years in paths: GET /v1/operator/calendar/{year} (the handler parses an i32).
    let _ = text.parse::<i32>();

    // Identifier checks.
    if check_iin_bin(text).is_ok() {
        assert!(text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(complete_iin_bin(&text[..11]).as_deref(), Some(text));
    }
    if let Ok(phone) = normalize_phone(text) {
        assert!(phone.len() == 12 && phone.starts_with("+7") && phone[2..].bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(normalize_phone(&phone).as_deref(), Ok(phone.as_str()), "normalizing is idempotent");
    }
    if check_pan(text).is_ok() {
        // Callers mask only numbers that passed `check_pan` (see the README on `mask_pan`).
        let masked = mask_pan(text);
        assert!(masked.starts_with(&text[..4]) && masked.ends_with(&text[12..]));
    }
    let _ = complete_iin_bin(text);
    if text.len() <= 64 {
        let _ = complete_pan(text);
    }
}

fuzz_target!(|data: &[u8]| {
    // The gateway reads an empty body as `null`.
    let raw: &[u8] = if data.is_empty() { b"null" } else { data };
    let value = serde_json::from_slice::<serde_json::Value>(raw).ok();
    if let Some(v) = &value {
        // The idempotency fingerprint's canonical form (the gateway answers INTERNAL if this
        // fails). Not compared after a round trip: serde_json's default float parsing is not
        // guaranteed to round-trip to the last bit, and the fingerprint does not need it to.
        let canonical = serde_json::to_vec(v).expect("a Value encodes");
        assert!(serde_json::from_slice::<serde_json::Value>(&canonical).is_ok(), "canonical JSON decodes");
    }
    let value = value.as_ref();
    parse::<OpenAccount>(raw, value);
    parse::<Vec<OpenAccount>>(raw, value);
    parse::<TransferRequest>(raw, value);
    parse::<RegistryRequest>(raw, value);
    parse::<AmountRequest>(raw, value);
    parse::<CardPurchaseRequest>(raw, value);
    parse::<VoucherEvent>(raw, value);
    parse::<VoucherProgramRequest>(raw, value);
    parse::<LinkCard>(raw, value);
    parse::<BlockRequest>(raw, value);
    parse::<DayRequest>(raw, value);
    parse::<AtmWithdrawal>(raw, value);
    parse::<Transaction>(raw, value);
    // Programmable money (issue 4).
    parse::<ProviderRequest>(raw, value);
    parse::<EventRequest>(raw, value);
    parse::<HoldRequest>(raw, value);
    parse::<OccurrenceRequest>(raw, value);
    parse::<MarkingRequest>(raw, value);
    parse::<MarkedTransferRequest>(raw, value);
    parse::<ContractRequest>(raw, value);
    parse::<ContractPaymentRequest>(raw, value);
    parse::<ContractWithdrawalRequest>(raw, value);
    parse::<InvoiceRequest>(raw, value);
    parse::<InvoicePaymentRequest>(raw, value);
    parse::<VatPaymentRequest>(raw, value);
    parse::<PartyRef>(raw, value);
    parse::<SplitPaymentRequest>(raw, value);
    parse::<ClockAdvance>(raw, value);

    if let Ok(text) = std::str::from_utf8(data) {
        text_checks(text);
        // The same checks on the strings inside a JSON request (the fields that carry them).
        if let Some(serde_json::Value::Object(map)) = value {
            for v in map.values() {
                if let serde_json::Value::String(s) = v {
                    text_checks(s);
                }
            }
        }
    }
});
