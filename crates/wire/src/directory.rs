//! The directory (the ID center) asked across processes (kinds 60-79).
//!
//! In one process the banks read the directory's listings in memory; a bank in a process of
//! its own asks it instead:
//!
//! - [`ClaimMany`] / [`ClaimManyReply`] (kinds 60, 61): a bank migrating its clients claims
//!   many accounts in one durable commit at the directory, all or nothing
//!   (`DirectoryService::claim_all`). The same list again is answered as the first time.
//! - [`Lookup`] / [`LookupReply`] (kinds 62, 63): where an account is, by its address, the
//!   phone registered to it or its client. The answer names the bank, the address and the
//!   kind of client, never the display name or the phone: the directory tells a bank what a
//!   payment to that account needs and nothing else of another bank's client.
//!
//! Both are answered by the request's number (`request`), which the asking bank draws; a
//! request lost or unanswered is asked again, and each is safe to repeat.

use crate::codec::{Decode, DecodeError, Encode, Reader, Writer};
use crate::message::{bounded_string, AccountKind, Claim};
use dtenge_core::crypto::Address;

/// Most claims in one [`ClaimMany`] (the directory's own bound on one commit).
pub const CLAIMS_AT_ONCE_MAX: usize = 100_000;

/// A bank claims many accounts at once (a migration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimMany {
    pub request: u64,
    pub claims: Vec<Claim>,
}

/// The directory's answer to a [`ClaimMany`]: `None`, every claim is listed (now or before).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimManyReply {
    pub request: u64,
    pub refused: Option<dtenge_core::Error>,
}

/// Whose account a bank asks for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Whom {
    Address(Address),
    /// `+7XXXXXXXXXX`.
    Phone(String),
    /// IIN or BIN.
    Client(String),
}

/// Where is an account: at `bank` when it is named (for a phone or a client), else the first
/// listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lookup {
    pub request: u64,
    pub whom: Whom,
    pub bank: Option<String>,
}

/// What the directory lists for a [`Lookup`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub address: Address,
    pub bank: String,
    pub kind: AccountKind,
}

/// The directory's answer to a [`Lookup`]: `None` when no account is listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupReply {
    pub request: u64,
    pub listed: Option<Listed>,
}

impl Encode for ClaimMany {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.request);
        w.seq(&self.claims);
    }
}

impl Decode for ClaimMany {
    const ENCODED_BYTES_MIN: usize = 8 + 4;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ClaimMany { request: r.u64("request")?, claims: r.seq("claims", CLAIMS_AT_ONCE_MAX)? })
    }
}

impl Encode for ClaimManyReply {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.request);
        w.put(&self.refused);
    }
}

impl Decode for ClaimManyReply {
    const ENCODED_BYTES_MIN: usize = 8 + 1;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ClaimManyReply { request: r.u64("request")?, refused: r.get()? })
    }
}

impl Encode for Whom {
    fn encode(&self, w: &mut Writer) {
        match self {
            Whom::Address(address) => {
                w.u8(1);
                w.put(address);
            }
            Whom::Phone(phone) => {
                w.u8(2);
                w.str(phone);
            }
            Whom::Client(client) => {
                w.u8(3);
                w.str(client);
            }
        }
    }
}

impl Decode for Whom {
    const ENCODED_BYTES_MIN: usize = 1 + 4;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("whom")? {
            1 => Ok(Whom::Address(r.get()?)),
            2 => Ok(Whom::Phone(bounded_string(r, "phone")?)),
            3 => Ok(Whom::Client(bounded_string(r, "client id")?)),
            tag => Err(DecodeError::UnknownTag { what: "whom", tag: u64::from(tag) }),
        }
    }
}

impl Encode for Lookup {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.request);
        w.put(&self.whom);
        w.put(&self.bank);
    }
}

impl Decode for Lookup {
    const ENCODED_BYTES_MIN: usize = 8 + 5 + 1;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let request = r.u64("request")?;
        let whom = r.get()?;
        let bank = match r.u8("bank")? {
            0 => None,
            1 => Some(bounded_string(r, "bank")?),
            tag => return Err(DecodeError::UnknownTag { what: "bank", tag: u64::from(tag) }),
        };
        Ok(Lookup { request, whom, bank })
    }
}

impl Encode for LookupReply {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.request);
        match &self.listed {
            None => w.u8(0),
            Some(listed) => {
                w.u8(1);
                w.put(&listed.address);
                w.str(&listed.bank);
                w.put(&listed.kind);
            }
        }
    }
}

impl Decode for LookupReply {
    const ENCODED_BYTES_MIN: usize = 8 + 1;
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let request = r.u64("request")?;
        let listed = match r.u8("listed")? {
            0 => None,
            1 => Some(Listed { address: r.get()?, bank: bounded_string(r, "bank")?, kind: r.get()? }),
            tag => return Err(DecodeError::UnknownTag { what: "listed", tag: u64::from(tag) }),
        };
        Ok(LookupReply { request, listed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Envelope, Message, RoleId};
    use dtenge_core::crypto::Hash32;

    fn round_trip(message: Message) {
        let envelope = Envelope { from: RoleId::Bank("steppe".into()), to: RoleId::Directory, message };
        let mut w = Writer::new();
        envelope.encode(&mut w);
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes);
        let decoded = Envelope::decode(&mut r).unwrap();
        r.finish().unwrap();
        assert_eq!(decoded, envelope);
        // Every proper prefix is refused, never misread.
        for cut in 0..bytes.len() {
            let mut r = Reader::new(&bytes[..cut]);
            assert!(Envelope::decode(&mut r).and_then(|_| r.finish()).is_err(), "prefix of {cut} bytes");
        }
    }

    #[test]
    fn the_directory_messages_round_trip() {
        let address = Address(Hash32([7; 32]));
        let claim = Claim {
            client_id: "900101300123".into(),
            address,
            kind: AccountKind::Individual,
            display_name: "Aigerim S.".into(),
            phone: Some("+77011234567".into()),
        };
        round_trip(Message::ClaimMany(ClaimMany { request: 3, claims: vec![claim.clone(), claim] }));
        round_trip(Message::ClaimManyReply(ClaimManyReply { request: 3, refused: None }));
        let refused = dtenge_core::Error::new(dtenge_core::ErrorCode::DuplicateAccount, "taken");
        round_trip(Message::ClaimManyReply(ClaimManyReply { request: 4, refused: Some(refused) }));
        for whom in [Whom::Address(address), Whom::Phone("+77011234567".into()), Whom::Client("900101300123".into())] {
            round_trip(Message::Lookup(Lookup { request: 9, whom: whom.clone(), bank: None }));
            round_trip(Message::Lookup(Lookup { request: 9, whom, bank: Some("sapa".into()) }));
        }
        round_trip(Message::LookupReply(LookupReply { request: 9, listed: None }));
        let listed = Listed { address, bank: "tulpar".into(), kind: AccountKind::LegalEntity };
        round_trip(Message::LookupReply(LookupReply { request: 9, listed: Some(listed) }));
    }
}
