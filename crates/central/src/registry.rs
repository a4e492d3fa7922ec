//! The NBK registry of emissions: every emission, in order, with the certificate that issued
//! it and the ABS posting that backs it.

use dtenge_core::token::TxId;
use dtenge_core::{Amount, Error, ErrorCode, Result};
use dtenge_store::{Store, Table, WriteBatch};
use dtenge_wire::{Decode, DecodeError, Encode, Reader, Writer};

/// The registry, by entry number (u64 big-endian).
pub const REGISTRY_TABLE: Table = Table("central_registry");

/// One emission, as the registry keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Emission {
    /// Its position in the registry, from 0.
    pub number: u64,
    pub bank: String,
    pub amount: Amount,
    pub tx_id: TxId,
    /// The notary's certificate that committed the issue.
    pub certificate_seq: u64,
    /// The ABS posting `corr:<bank> → dt_liability`.
    pub abs_seq: u64,
    pub at_ms: u64,
}

impl Encode for Emission {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.number);
        w.str(&self.bank);
        w.put(&self.amount);
        w.put(&self.tx_id);
        w.u64(self.certificate_seq);
        w.u64(self.abs_seq);
        w.u64(self.at_ms);
    }
}

impl Decode for Emission {
    const ENCODED_BYTES_MIN: usize = 8 + 4 + 8 + 32 + 8 + 8 + 8;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(Emission {
            number: r.u64("number")?,
            bank: r.string("bank")?,
            amount: r.get()?,
            tx_id: r.get()?,
            certificate_seq: r.u64("certificate seq")?,
            abs_seq: r.u64("abs seq")?,
            at_ms: r.u64("at")?,
        })
    }
}

pub(crate) fn write(emission: &Emission, batch: &mut WriteBatch) {
    batch.put(REGISTRY_TABLE, emission.number.to_be_bytes().to_vec(), emission.to_bytes());
}

pub(crate) fn load(store: &Store) -> Result<Vec<Emission>> {
    let mut registry = Vec::new();
    for (_, value) in store.scan(REGISTRY_TABLE)? {
        let emission = Emission::from_bytes(&value)
            .map_err(|e| Error::new(ErrorCode::StorageFailure, format!("the NBK registry: {e}")))?;
        assert_eq!(emission.number, registry.len() as u64, "the registry is numbered from 0 without gaps");
        registry.push(emission);
    }
    Ok(registry)
}
