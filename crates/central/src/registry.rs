//! The NBK registry of emissions and redemptions: every one, in order, with the certificate
//! that committed its transaction and the ABS posting that backs it. DT in circulation is what
//! it issued minus what it redeemed.

use dtenge_core::token::TxId;
use dtenge_core::{Amount, Error, ErrorCode, Result};
use dtenge_store::{Store, Table, WriteBatch};
use dtenge_wire::{Decode, DecodeError, Encode, Reader, Writer};

/// The registry, by entry number (u64 big-endian).
pub const REGISTRY_TABLE: Table = Table("central_registry");

/// Which way an entry moved DT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// DT issued to a bank against its correspondent account (`corr:<bank> → dt_liability`).
    Emission,
    /// DT of a bank destroyed, its correspondent account credited (`dt_liability → corr:<bank>`).
    Redemption,
}

/// One emission or redemption, as the registry keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryEntry {
    /// Its position in the registry, from 0.
    pub number: u64,
    pub kind: EntryKind,
    pub bank: String,
    pub amount: Amount,
    pub tx_id: TxId,
    /// The notary's certificate that committed the issue or the redemption.
    pub certificate_seq: u64,
    /// The ABS posting that backs it.
    pub abs_seq: u64,
    pub at_ms: u64,
}

/// An emission's answer: its registry entry (of kind [`EntryKind::Emission`]).
pub type Emission = RegistryEntry;

impl Encode for EntryKind {
    fn encode(&self, w: &mut Writer) {
        w.u8(match self {
            EntryKind::Emission => 1,
            EntryKind::Redemption => 2,
        });
    }
}

impl Decode for EntryKind {
    const ENCODED_BYTES_MIN: usize = 1;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        match r.u8("registry entry kind")? {
            1 => Ok(EntryKind::Emission),
            2 => Ok(EntryKind::Redemption),
            tag => Err(DecodeError::UnknownTag { what: "registry entry kind", tag: u64::from(tag) }),
        }
    }
}

impl Encode for RegistryEntry {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.number);
        w.put(&self.kind);
        w.str(&self.bank);
        w.put(&self.amount);
        w.put(&self.tx_id);
        w.u64(self.certificate_seq);
        w.u64(self.abs_seq);
        w.u64(self.at_ms);
    }
}

impl Decode for RegistryEntry {
    const ENCODED_BYTES_MIN: usize = 8 + 1 + 4 + 8 + 32 + 8 + 8 + 8;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(RegistryEntry {
            number: r.u64("number")?,
            kind: r.get()?,
            bank: r.string("bank")?,
            amount: r.get()?,
            tx_id: r.get()?,
            certificate_seq: r.u64("certificate seq")?,
            abs_seq: r.u64("abs seq")?,
            at_ms: r.u64("at")?,
        })
    }
}

/// What the registry issued and redeemed in all, for `bank` only when it is given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub issued: Amount,
    pub redeemed: Amount,
}

impl Totals {
    pub fn of(entries: &[RegistryEntry], bank: Option<&str>) -> Totals {
        let mut totals = Totals::default();
        for entry in entries.iter().filter(|e| bank.is_none_or(|b| e.bank == b)) {
            // Every entry is backed by an ABS posting, and ABS balances stay within
            // `Amount::MAX`, so the registry's sums cannot overflow either.
            let sum = match entry.kind {
                EntryKind::Emission => &mut totals.issued,
                EntryKind::Redemption => &mut totals.redeemed,
            };
            *sum = sum.checked_add(entry.amount).expect("the registry's sums stay within the ABS's bounds");
        }
        totals
    }

    /// Issued minus redeemed: DT in circulation by the registry (of the whole registry: one
    /// bank may redeem more than was issued to it, DT it was paid by others' clients).
    pub fn circulation(&self) -> Amount {
        // Nothing is redeemed that was not issued (a redemption spends issued tokens).
        self.issued.checked_sub(self.redeemed).expect("the registry redeemed more than it issued")
    }
}

pub(crate) fn write(entry: &RegistryEntry, batch: &mut WriteBatch) {
    batch.put(REGISTRY_TABLE, entry.number.to_be_bytes().to_vec(), entry.to_bytes());
}

pub(crate) fn load(store: &Store) -> Result<Vec<RegistryEntry>> {
    let mut registry = Vec::new();
    for (_, value) in store.scan(REGISTRY_TABLE)? {
        let entry = RegistryEntry::from_bytes(&value)
            .map_err(|e| Error::new(ErrorCode::StorageFailure, format!("the NBK registry: {e}")))?;
        assert_eq!(entry.number, registry.len() as u64, "the registry is numbered from 0 without gaps");
        registry.push(entry);
    }
    // Read back whole, the registry must not redeem more than it issued (checked, not assumed:
    // its rows carry no checksum of the store's own).
    let totals = Totals::of(&registry, None);
    if totals.redeemed > totals.issued {
        return Err(Error::new(ErrorCode::StorageFailure, "the NBK registry redeems more than it issued"));
    }
    Ok(registry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dtenge_core::crypto::Hash32;

    fn entry(number: u64, kind: EntryKind, bank: &str, tiyn: u64) -> RegistryEntry {
        RegistryEntry {
            number,
            kind,
            bank: bank.into(),
            amount: Amount::from_tiyn(tiyn).unwrap(),
            tx_id: TxId(Hash32([number as u8; 32])),
            certificate_seq: 7,
            abs_seq: 3,
            at_ms: 11,
        }
    }

    #[test]
    fn an_entry_decodes_to_itself_and_an_unknown_kind_is_refused() {
        for kind in [EntryKind::Emission, EntryKind::Redemption] {
            let e = entry(4, kind, "steppe", 500);
            assert_eq!(RegistryEntry::from_bytes(&e.to_bytes()).unwrap(), e);
        }
        let mut bytes = entry(4, EntryKind::Emission, "steppe", 500).to_bytes();
        bytes[8] = 3;
        assert!(RegistryEntry::from_bytes(&bytes).is_err());
    }

    #[test]
    fn circulation_is_issued_minus_redeemed_overall_and_per_bank() {
        let entries = [
            entry(0, EntryKind::Emission, "steppe", 1_000),
            entry(1, EntryKind::Emission, "sapa", 300),
            entry(2, EntryKind::Redemption, "steppe", 400),
        ];
        let all = Totals::of(&entries, None);
        assert_eq!((all.issued.tiyn(), all.redeemed.tiyn(), all.circulation().tiyn()), (1_300, 400, 900));
        let steppe = Totals::of(&entries, Some("steppe"));
        assert_eq!((steppe.issued.tiyn(), steppe.redeemed.tiyn()), (1_000, 400));
    }
}
