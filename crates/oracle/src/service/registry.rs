//! The oracle role's registry of programmed money (providers, markings, e-invoices and VAT,
//! contracts): the pure [`Oracle`]'s state, kept in the role's own tables in the wire
//! encoding (never bincode or serde), read back into an [`Oracle`] at the start.
//!
//! | table | key | value |
//! |---|---|---|
//! | `oracle_role_providers` | provider id | a [`Provider`] (its token's hash, never the token) |
//! | `oracle_role_markings` | marking id | a [`Marking`] without its moves |
//! | `oracle_role_marking_moves` | marking id, 0, seq (u32 BE) | a [`Move`] |
//! | `oracle_role_invoices` | invoice id | an [`Invoice`] |
//! | `oracle_role_vat` | `payer\0` address | a VAT payer (a `Party`) |
//! | `oracle_role_vat` | `tax-account` | the tax authority's account (a `Party`) |
//! | `oracle_role_vat` | `payment\0` seq (u64 BE) | a [`VatPayment`] |
//! | `oracle_role_contracts` | contract number | a [`Contract`] without its uses |
//! | `oracle_role_contract_uses` | number, 0, seq (u32 BE) | a [`ContractUse`] |
//!
//! Keys with a big-endian sequence number come back from a scan in order, so moves, uses and
//! payments are read in the order they were made.

use super::rows::stored;
use crate::contract::{ContractChange, ContractUseBody};
use crate::marking::MarkingChange;
use crate::vat::{VatPayment, VatUpdate};
use crate::{Contract, ContractUse, Invoice, InvoiceStatus, Level, Marking, Move, MoveBody, Oracle, Provider};
#[cfg(test)]
use crate::{ContractSpec, MarkingSpec, SpendPlan};
use crate::{ProviderKind, UseKind};
use dtenge_core::crypto::NodeKey;
#[cfg(test)]
use dtenge_core::tx::Transaction;
use dtenge_core::{Error, Result};
use dtenge_store::{Store, Table, WriteBatch};
use dtenge_wire::{Decode, DecodeError, Encode, Reader, Writer};

pub const ROLE_PROVIDERS_TABLE: Table = Table("oracle_role_providers");
pub const ROLE_MARKINGS_TABLE: Table = Table("oracle_role_markings");
pub const ROLE_MOVES_TABLE: Table = Table("oracle_role_marking_moves");
pub const ROLE_INVOICES_TABLE: Table = Table("oracle_role_invoices");
pub const ROLE_VAT_TABLE: Table = Table("oracle_role_vat");
pub const ROLE_CONTRACTS_TABLE: Table = Table("oracle_role_contracts");
pub const ROLE_USES_TABLE: Table = Table("oracle_role_contract_uses");

/// The registry's tables.
pub const REGISTRY_TABLES: [Table; 7] = [
    ROLE_PROVIDERS_TABLE,
    ROLE_MARKINGS_TABLE,
    ROLE_MOVES_TABLE,
    ROLE_INVOICES_TABLE,
    ROLE_VAT_TABLE,
    ROLE_CONTRACTS_TABLE,
    ROLE_USES_TABLE,
];

const TAX_ACCOUNT_KEY: &[u8] = b"tax-account";
const PAYER_PREFIX: &[u8] = b"payer\0";
const PAYMENT_PREFIX: &[u8] = b"payment\0";
/// Most recipients of one level, and most levels, as a stored row may hold them.
const LIST_MAX: usize = 1_024;

fn seq_key(id: &str, seq: u32) -> Vec<u8> {
    let mut key = id.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

pub(crate) fn provider_writes(provider: &Provider, batch: &mut WriteBatch) {
    batch.put(ROLE_PROVIDERS_TABLE, provider.id.as_bytes().to_vec(), provider.to_bytes());
}

pub(crate) fn marking_writes(change: &MarkingChange, batch: &mut WriteBatch) {
    batch.put(ROLE_MARKINGS_TABLE, change.marking.id.as_bytes().to_vec(), change.marking.to_bytes());
    for m in &change.moves {
        assert_eq!(m.body.marking_id, change.marking.id, "a marking's change moves that marking only");
        batch.put(ROLE_MOVES_TABLE, seq_key(&m.body.marking_id, m.body.seq), m.to_bytes());
    }
}

pub(crate) fn invoice_writes(invoice: &Invoice, batch: &mut WriteBatch) {
    batch.put(ROLE_INVOICES_TABLE, invoice.id.as_bytes().to_vec(), invoice.to_bytes());
}

pub(crate) fn vat_update_writes(update: &VatUpdate, batch: &mut WriteBatch) {
    match update {
        VatUpdate::Payer(party) => {
            let mut key = PAYER_PREFIX.to_vec();
            key.extend_from_slice(&party.address.0 .0);
            batch.put(ROLE_VAT_TABLE, key, party.to_bytes());
        }
        VatUpdate::TaxAccount(party) => batch.put(ROLE_VAT_TABLE, TAX_ACCOUNT_KEY.to_vec(), party.to_bytes()),
    }
}

pub(crate) fn vat_payment_writes(payment: &VatPayment, batch: &mut WriteBatch) {
    let mut key = PAYMENT_PREFIX.to_vec();
    key.extend_from_slice(&payment.seq.to_be_bytes());
    batch.put(ROLE_VAT_TABLE, key, payment.to_bytes());
}

pub(crate) fn contract_writes(change: &ContractChange, batch: &mut WriteBatch) {
    batch.put(ROLE_CONTRACTS_TABLE, change.contract.number.as_bytes().to_vec(), change.contract.to_bytes());
    for u in &change.uses {
        assert_eq!(u.body.contract, change.contract.number, "a contract's change uses that contract only");
        batch.put(ROLE_USES_TABLE, seq_key(&u.body.contract, u.body.seq), u.to_bytes());
    }
}

/// The registry stored in `store`, signing with `key`.
pub(crate) fn load(store: &Store, key: NodeKey) -> Result<Oracle> {
    let mut oracle = Oracle::new(key);
    for (_, value) in store.scan(ROLE_PROVIDERS_TABLE)? {
        oracle.apply_provider(stored(&value, "a provider")?);
    }
    for (_, value) in store.scan(ROLE_MARKINGS_TABLE)? {
        let marking: Marking = stored(&value, "a marking")?;
        oracle.apply_marking(MarkingChange { marking, moves: Vec::new() });
    }
    for (_, value) in store.scan(ROLE_MOVES_TABLE)? {
        let m: Move = stored(&value, "a marking's move")?;
        let marking = oracle.marking(&m.body.marking_id).map_err(|_| unknown("marking", &m.body.marking_id))?;
        assert_eq!(marking.moves.len() as u32, m.body.seq, "moves are read in their order");
        let change = MarkingChange { marking: marking.summary(), moves: vec![m] };
        oracle.apply_marking(change);
    }
    for (_, value) in store.scan(ROLE_INVOICES_TABLE)? {
        oracle.apply_invoice(stored(&value, "an e-invoice")?);
    }
    for (key, value) in store.scan(ROLE_VAT_TABLE)? {
        if key == TAX_ACCOUNT_KEY {
            oracle.apply_vat_update(VatUpdate::TaxAccount(stored(&value, "the tax account")?));
        } else if key.starts_with(PAYER_PREFIX) {
            oracle.apply_vat_update(VatUpdate::Payer(stored(&value, "a VAT payer")?));
        } else if key.starts_with(PAYMENT_PREFIX) {
            let payment: VatPayment = stored(&value, "a VAT payment")?;
            assert_eq!(oracle.vat_payments().len() as u64, payment.seq, "VAT payments are read in their order");
            oracle.apply_vat_payment(payment);
        } else {
            return Err(Error::storage("oracle role: a VAT row of no known kind"));
        }
    }
    for (_, value) in store.scan(ROLE_CONTRACTS_TABLE)? {
        let contract: Contract = stored(&value, "a contract")?;
        oracle.apply_contract(ContractChange { contract, uses: Vec::new() });
    }
    for (_, value) in store.scan(ROLE_USES_TABLE)? {
        let u: ContractUse = stored(&value, "a contract's use")?;
        let contract = oracle.contract(&u.body.contract).map_err(|_| unknown("contract", &u.body.contract))?;
        assert_eq!(contract.uses.len() as u32, u.body.seq, "uses are read in their order");
        let change = ContractChange { contract: contract.summary(), uses: vec![u] };
        oracle.apply_contract(change);
    }
    Ok(oracle)
}

fn unknown(what: &str, id: &str) -> Error {
    Error::storage(format!("oracle role: a row of {what} {id}, which is not stored"))
}

impl Encode for ProviderKind {
    fn encode(&self, w: &mut Writer) {
        w.u8(match self {
            ProviderKind::VehicleRegistry => 1,
            ProviderKind::AnimalRegistry => 2,
            ProviderKind::SubsidySystem => 3,
            ProviderKind::TransitValidators => 4,
            ProviderKind::ContractPortal => 5,
            ProviderKind::TaxAuthority => 6,
        });
    }
}

impl Decode for ProviderKind {
    const ENCODED_BYTES_MIN: usize = 1;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(match r.u8("provider kind")? {
            1 => ProviderKind::VehicleRegistry,
            2 => ProviderKind::AnimalRegistry,
            3 => ProviderKind::SubsidySystem,
            4 => ProviderKind::TransitValidators,
            5 => ProviderKind::ContractPortal,
            6 => ProviderKind::TaxAuthority,
            tag => return Err(DecodeError::UnknownTag { what: "provider kind", tag: u64::from(tag) }),
        })
    }
}

impl Encode for Provider {
    fn encode(&self, w: &mut Writer) {
        w.str(&self.id);
        w.str(&self.name);
        w.put(&self.kind);
        w.u64(self.registered_at_unix_ms);
        w.put(&self.token_hash);
    }
}

impl Decode for Provider {
    const ENCODED_BYTES_MIN: usize = 4 + 4 + 1 + 8 + 32;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(Provider {
            id: r.string("provider id")?,
            name: r.string("provider name")?,
            kind: r.get()?,
            registered_at_unix_ms: r.u64("registered at")?,
            token_hash: r.get()?,
        })
    }
}

impl Encode for Level {
    fn encode(&self, w: &mut Writer) {
        w.seq(&self.recipients);
        w.put(&self.limit_tiyn);
    }
}

impl Decode for Level {
    const ENCODED_BYTES_MIN: usize = 4 + 8;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(Level { recipients: r.seq("level recipients", LIST_MAX)?, limit_tiyn: r.get()? })
    }
}

/// A marking without its moves (they are rows of their own).
impl Encode for Marking {
    fn encode(&self, w: &mut Writer) {
        w.str(&self.id);
        w.put(&self.hash);
        w.put(&self.initiator);
        w.str(&self.reference);
        w.seq(&self.levels);
        w.u64(self.created_at_unix_ms);
        w.str(&self.registered_by);
        w.seq(&self.moved_tiyn);
        w.put(&self.oracle_signature);
    }
}

impl Decode for Marking {
    const ENCODED_BYTES_MIN: usize = 4 + 32 + 40 + 4 + 4 + 8 + 4 + 4 + 1;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(Marking {
            id: r.string("marking id")?,
            hash: r.get()?,
            initiator: r.get()?,
            reference: r.string("marking reference")?,
            levels: r.seq("marking levels", LIST_MAX)?,
            created_at_unix_ms: r.u64("created at")?,
            registered_by: r.string("registered by")?,
            moved_tiyn: r.seq("moved per level", LIST_MAX)?,
            oracle_signature: r.get()?,
            moves: Vec::new(),
        })
    }
}

impl Encode for Move {
    fn encode(&self, w: &mut Writer) {
        let b = &self.body;
        w.str(&b.marking_id);
        w.u32(b.seq);
        w.u64(b.at_unix_ms);
        w.put(&b.tx_id);
        w.put(&b.from);
        w.put(&b.to);
        w.u8(b.from_level);
        w.u8(b.to_level);
        w.put(&b.amount_tiyn);
        w.bool(b.unmarked);
        w.put(&self.oracle_signature);
    }
}

impl Decode for Move {
    const ENCODED_BYTES_MIN: usize = 4 + 4 + 8 + 32 + 40 + 40 + 1 + 1 + 8 + 1 + 1;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        let body = MoveBody {
            marking_id: r.string("marking id")?,
            seq: r.u32("move seq")?,
            at_unix_ms: r.u64("move at")?,
            tx_id: r.get()?,
            from: r.get()?,
            to: r.get()?,
            from_level: r.u8("from level")?,
            to_level: r.u8("to level")?,
            amount_tiyn: r.get()?,
            unmarked: r.bool("unmarked")?,
        };
        Ok(Move { body, oracle_signature: r.get()? })
    }
}

impl Encode for Invoice {
    fn encode(&self, w: &mut Writer) {
        w.str(&self.id);
        w.put(&self.seller);
        w.put(&self.buyer);
        w.put(&self.net_tiyn);
        w.put(&self.vat_tiyn);
        w.str(&self.registered_by);
        w.u64(self.registered_at_unix_ms);
        w.u8(match self.status {
            InvoiceStatus::Registered => 1,
            InvoiceStatus::Paid => 2,
        });
        w.put(&self.paid_tx);
        w.put(&self.paid_at_unix_ms);
        w.put(&self.oracle_signature);
        w.put(&self.payment_signature);
    }
}

impl Decode for Invoice {
    const ENCODED_BYTES_MIN: usize = 4 + 40 + 40 + 8 + 8 + 4 + 8 + 1 + 1 + 1 + 1 + 1;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(Invoice {
            id: r.string("invoice id")?,
            seller: r.get()?,
            buyer: r.get()?,
            net_tiyn: r.get()?,
            vat_tiyn: r.get()?,
            registered_by: r.string("registered by")?,
            registered_at_unix_ms: r.u64("registered at")?,
            status: match r.u8("invoice status")? {
                1 => InvoiceStatus::Registered,
                2 => InvoiceStatus::Paid,
                tag => return Err(DecodeError::UnknownTag { what: "invoice status", tag: u64::from(tag) }),
            },
            paid_tx: r.get()?,
            paid_at_unix_ms: r.get()?,
            oracle_signature: r.get()?,
            payment_signature: r.get()?,
        })
    }
}

impl Encode for VatPayment {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.seq);
        w.put(&self.payer);
        w.put(&self.amount_tiyn);
        w.put(&self.tx_id);
        w.u64(self.at_unix_ms);
        w.put(&self.oracle_signature);
    }
}

impl Decode for VatPayment {
    const ENCODED_BYTES_MIN: usize = 8 + 40 + 8 + 32 + 8 + 1;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(VatPayment {
            seq: r.u64("VAT payment seq")?,
            payer: r.get()?,
            amount_tiyn: r.get()?,
            tx_id: r.get()?,
            at_unix_ms: r.u64("paid at")?,
            oracle_signature: r.get()?,
        })
    }
}

/// A contract without its uses (they are rows of their own).
impl Encode for Contract {
    fn encode(&self, w: &mut Writer) {
        w.str(&self.number);
        w.put(&self.hash);
        w.str(&self.registered_by);
        w.put(&self.sender);
        w.put(&self.recipient);
        w.put(&self.max_transfer_tiyn);
        w.put(&self.max_fiat_tiyn);
        w.u64(self.registered_at_unix_ms);
        w.u64(self.valid_until_unix_ms);
        w.put(&self.funded_by);
        w.put(&self.initiator);
        w.put(&self.transferred_tiyn);
        w.put(&self.withdrawn_tiyn);
        w.put(&self.oracle_signature);
    }
}

impl Decode for Contract {
    const ENCODED_BYTES_MIN: usize = 4 + 32 + 4 + 40 + 40 + 8 + 8 + 8 + 8 + 1 + 40 + 8 + 8 + 1;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(Contract {
            number: r.string("contract number")?,
            hash: r.get()?,
            registered_by: r.string("registered by")?,
            sender: r.get()?,
            recipient: r.get()?,
            max_transfer_tiyn: r.get()?,
            max_fiat_tiyn: r.get()?,
            registered_at_unix_ms: r.u64("registered at")?,
            valid_until_unix_ms: r.u64("valid until")?,
            funded_by: r.get()?,
            initiator: r.get()?,
            transferred_tiyn: r.get()?,
            withdrawn_tiyn: r.get()?,
            oracle_signature: r.get()?,
            uses: Vec::new(),
        })
    }
}

impl Encode for ContractUse {
    fn encode(&self, w: &mut Writer) {
        let b = &self.body;
        w.str(&b.contract);
        w.u32(b.seq);
        w.u64(b.at_unix_ms);
        w.u8(match b.kind {
            UseKind::Transfer => 1,
            UseKind::Withdrawal => 2,
        });
        w.put(&b.amount_tiyn);
        w.put(&b.tx_id);
        w.put(&self.oracle_signature);
    }
}

impl Decode for ContractUse {
    const ENCODED_BYTES_MIN: usize = 4 + 4 + 8 + 1 + 8 + 32 + 1;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        let body = ContractUseBody {
            contract: r.string("contract number")?,
            seq: r.u32("use seq")?,
            at_unix_ms: r.u64("used at")?,
            kind: match r.u8("use kind")? {
                1 => UseKind::Transfer,
                2 => UseKind::Withdrawal,
                tag => return Err(DecodeError::UnknownTag { what: "use kind", tag: u64::from(tag) }),
            },
            amount_tiyn: r.get()?,
            tx_id: r.get()?,
        };
        Ok(ContractUse { body, oracle_signature: r.get()? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InvoiceSpec;
    use dtenge_core::crypto::SecretKey;
    use dtenge_core::party::Party;
    use dtenge_core::token::{Output, Policy, TxId};
    use dtenge_core::tx::{Command, TxBody};
    use dtenge_core::Amount;

    fn tiyn(t: u64) -> Amount {
        Amount::from_tiyn(t).unwrap()
    }

    fn party(n: u8) -> Party {
        Party {
            bank: "steppe".into(),
            client_id: format!("10014000000{n}"),
            address: SecretKey::from_seed([n; 32]).address(),
        }
    }

    /// Decodes, and encodes back to the same bytes; every cut of it is refused.
    fn round_trip<T: Encode + Decode>(value: &T) {
        let bytes = value.to_bytes();
        assert_eq!(T::from_bytes(&bytes).unwrap().to_bytes(), bytes);
        for cut in [0, bytes.len() / 2, bytes.len() - 1] {
            assert!(T::from_bytes(&bytes[..cut]).is_err(), "a row cut at {cut} decodes");
        }
    }

    #[test]
    fn registry_rows_decode_to_what_was_written_and_a_cut_row_is_refused() {
        let mut oracle = Oracle::new(SecretKey::from_seed([2; 32]));
        let token = "t".repeat(32);
        let tax = oracle.plan_provider("esf", "ESF", ProviderKind::TaxAuthority, &token, 1).unwrap();
        round_trip(&tax);
        oracle.apply_provider(tax.clone());
        let portal =
            oracle.plan_provider("portal", "Portal", ProviderKind::ContractPortal, &"p".repeat(32), 1).unwrap();
        oracle.apply_provider(portal.clone());
        let levels = vec![Level { recipients: vec![party(2), party(3)], limit_tiyn: tiyn(100) }];
        let spec = MarkingSpec { initiator: party(1), reference: "tranche".into(), levels };
        let change = oracle.plan_marking(spec, "steppe", 5).unwrap();
        round_trip(&change.marking);
        oracle.apply_marking(change);
        let id = oracle.markings().next().unwrap().id.clone();
        let plan = oracle.plan_marked_transfer(&id, &party(1), &party(2), tiyn(60), party(9).address).unwrap();
        let input = dtenge_core::token::Input {
            tx_id: TxId(dtenge_core::crypto::Hash32([4; 32])),
            index: 0,
            output: Output::standard(tiyn(60), party(1).address, party(9).address),
        };
        let body =
            TxBody { command: Command::Transfer, inputs: vec![input], outputs: plan.spend.outputs.clone(), nonce: 1 };
        let tx = Transaction::new(body);
        let (moved, _) = oracle.confirm_marked_transfer(&plan, &tx, 6).unwrap();
        round_trip(&moved.moves[0]);
        oracle.apply_vat_update(VatUpdate::Payer(party(2)));
        let spec = InvoiceSpec {
            id: "ESF-1".into(),
            seller: party(2),
            buyer: party(1),
            net_tiyn: tiyn(100),
            vat_tiyn: tiyn(12),
        };
        let invoice = oracle.plan_invoice(&tax, spec, 7).unwrap();
        round_trip(&invoice);
        let vat = SpendPlan {
            payer: party(1),
            parts: vec![(Policy::Vat, tiyn(60))],
            outputs: vec![Output::standard(tiyn(60), party(3).address, party(9).address)],
        };
        oracle.apply_vat_update(VatUpdate::TaxAccount(party(3)));
        let mut vat_tx = tx.clone();
        vat_tx.body.inputs[0].output.policy = Policy::Vat;
        vat_tx.body.outputs = vat.outputs.clone();
        let (payment, _) = oracle.confirm_vat_payment(&vat, &Transaction::new(vat_tx.body), 8).unwrap();
        round_trip(&payment);
        let spec = ContractSpec {
            number: "GZ-1".into(),
            sender: party(1),
            recipient: party(2),
            max_transfer_tiyn: tiyn(100),
            max_fiat_tiyn: tiyn(50),
            valid_until_unix_ms: 1_000,
            funded_by: None,
        };
        let change = oracle.plan_contract(&portal, spec, 9).unwrap();
        round_trip(&change.contract);
        oracle.apply_contract(change);
        let plan = oracle.plan_contract_payment("GZ-1", &party(1), tiyn(60), 10, party(9).address).unwrap();
        let paid = Transaction::new(TxBody { outputs: plan.outputs.clone(), ..tx.body.clone() });
        let (used, _) = oracle.confirm_contract_use("GZ-1", UseKind::Transfer, &plan, &paid, 11).unwrap();
        round_trip(&used.uses[0]);
    }
}
