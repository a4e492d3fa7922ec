//! What the log holds and what applying it answers.
//!
//! Both are carried by openraft through serde (its messages between replicas and its log
//! entries in the store are serialized whole); inside, they are dtenge's own encoding
//! (`dtenge-wire`), so the bytes of a participant's request in the log are exactly the bytes
//! it signed and sent.

use dtenge_wire::{Decode, Encode, Envelope};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// One entry of the notary's log: an envelope a participant sent the notary (a notarize
/// request from a bank or central, a decision delivered by central), as it arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command(pub Envelope);

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> notary: message kind {}", self.0.from, self.0.message.kind())
    }
}

impl Serialize for Command {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.to_bytes().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = Vec::<u8>::deserialize(deserializer)?;
        Envelope::from_bytes(&bytes).map(Command).map_err(serde::de::Error::custom)
    }
}

/// What applying an entry answers, on the replica that proposed it (the leader): the envelope
/// to send back to the participant, if any (a notarize reply, an acknowledgement of a
/// decision). `None` on every other replica.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied(pub Option<Envelope>);

impl Serialize for Applied {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.as_ref().map(Envelope::to_bytes).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Applied {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = Option::<Vec<u8>>::deserialize(deserializer)?;
        bytes.map(|b| Envelope::from_bytes(&b)).transpose().map(Applied).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dtenge_wire::{DeliverAck, Message, RoleId};

    #[test]
    fn a_command_and_an_answer_survive_bincode_as_their_wire_bytes() {
        let envelope =
            Envelope { from: RoleId::Central, to: RoleId::Notary, message: Message::DeliverAck(DeliverAck { seq: 4 }) };
        let command = Command(envelope.clone());
        let bytes = bincode::serialize(&command).unwrap();
        assert_eq!(bincode::deserialize::<Command>(&bytes).unwrap(), command);
        for applied in [Applied(None), Applied(Some(envelope))] {
            let bytes = bincode::serialize(&applied).unwrap();
            assert_eq!(bincode::deserialize::<Applied>(&bytes).unwrap(), applied);
        }
        assert!(bincode::deserialize::<Command>(&bincode::serialize(&vec![1u8, 2, 3]).unwrap()).is_err());
    }
}
