//! Deliveries between roles: certified transactions that must reach another role exactly once,
//! over a transport that loses, duplicates and reorders.
//!
//! The sender numbers its deliveries to each receiver from 1 ([`Outbound`]) and stores each in
//! the same durable commit as the change that produced it, so a crash never loses one; it
//! resends every delivery not acknowledged within its timeout, in order. The receiver
//! ([`Inbound`]) applies only the next number from each sender, stores that number with what
//! the delivery changed (one commit), and acknowledges; a number it has applied is
//! acknowledged again and not applied; a number beyond the next is dropped (the sender resends
//! in order). A receiver therefore applies each delivery once, in its sender's order, whatever
//! the network does.
//!
//! Rows (in the role's own store):
//!
//! | table | key | value |
//! |---|---|---|
//! | `delivery_out` | receiver (wire role), number (u64 big-endian) | the `Deliver` message |
//! | `delivery_streams` | `out` or `in_`, then a role (wire) | next number to it / last applied from it (u64 LE) |

#![forbid(unsafe_code)]

use dtenge_core::{Error, ErrorCode, Result};
use dtenge_store::{Store, Table, WriteBatch};
use dtenge_wire::{Decode, Deliver, Encode, Envelope, Message, Payload, RoleId};
use std::collections::BTreeMap;

/// Deliveries not acknowledged yet, by receiver and number.
pub const OUT_TABLE: Table = Table("delivery_out");
/// The streams' numbers.
pub const STREAMS_TABLE: Table = Table("delivery_streams");
pub const TABLES: [Table; 2] = [OUT_TABLE, STREAMS_TABLE];

/// A delivery not acknowledged after this long is sent again.
pub const RESEND_AFTER_MS: u64 = 200;

/// Stream keys start with one of these (three bytes each), then the role's encoding.
const OUT: &[u8] = b"out";
const IN: &[u8] = b"in_";
const PREFIX_BYTES: usize = 3;

fn stream_key(direction: &[u8], role: &RoleId) -> Vec<u8> {
    debug_assert_eq!(direction.len(), PREFIX_BYTES);
    let mut key = direction.to_vec();
    key.extend_from_slice(&role.to_bytes());
    key
}

fn out_key(receiver: &RoleId, seq: u64) -> Vec<u8> {
    let mut key = receiver.to_bytes();
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn corrupt(what: &str) -> Error {
    Error::new(ErrorCode::StorageFailure, format!("deliveries: {what}"))
}

fn number_of(bytes: &[u8]) -> Result<u64> {
    let bytes: [u8; 8] = bytes.try_into().map_err(|_| corrupt("a stream number is not 8 bytes"))?;
    Ok(u64::from_le_bytes(bytes))
}

/// A delivery not acknowledged: kept as the bytes its row holds (decoded again only to be
/// resent, which is rare), so that a large delivery is not copied whole to be kept.
struct Unacked {
    encoded: Vec<u8>,
    sent_at_ms: u64,
}

/// The sending side: every receiver's next number and the deliveries it has not acknowledged.
#[derive(Default)]
pub struct Outbound {
    next: BTreeMap<RoleId, u64>,
    unacked: BTreeMap<(RoleId, u64), Unacked>,
}

/// A delivery planned into a write batch, to be sent once that batch is durable.
#[must_use = "a planned delivery is sent with `Outbound::sent` after its commit"]
pub struct Planned {
    pub to: RoleId,
    pub deliver: Deliver,
    encoded: Vec<u8>,
}

impl Outbound {
    /// Read the streams and the deliveries not acknowledged.
    pub fn load(store: &Store) -> Result<Outbound> {
        let mut outbound = Outbound::default();
        for (key, value) in store.scan(STREAMS_TABLE)? {
            if key.starts_with(OUT) {
                let role = RoleId::from_bytes(&key[PREFIX_BYTES..]).map_err(|_| corrupt("a stream's role"))?;
                outbound.next.insert(role, number_of(&value)?);
            }
        }
        for (key, value) in store.scan(OUT_TABLE)? {
            let Ok(Message::Deliver(deliver)) = Message::from_bytes(&value) else {
                return Err(corrupt("a stored delivery is not a delivery"));
            };
            let split = key.len().checked_sub(8).ok_or_else(|| corrupt("a delivery key is too short"))?;
            let receiver = RoleId::from_bytes(&key[..split]).map_err(|_| corrupt("a delivery's receiver"))?;
            assert_eq!(key[split..], deliver.seq.to_be_bytes(), "a delivery is stored under its number");
            let next = outbound.next.get(&receiver).copied().unwrap_or(1);
            assert!(deliver.seq < next, "a stored delivery is numbered below its stream's next number");
            outbound.unacked.insert((receiver, deliver.seq), Unacked { encoded: value, sent_at_ms: 0 });
        }
        Ok(outbound)
    }

    /// Number a delivery for `to` and write it (with the stream's new next number) into
    /// `batch`; once the batch is durable, hand the result to [`Outbound::sent`]. Deliveries
    /// planned into one batch are numbered in the order they are planned.
    pub fn plan(&mut self, to: RoleId, payload: Payload, batch: &mut WriteBatch) -> Planned {
        let seq = self.next.get(&to).copied().unwrap_or(1);
        let message = Message::Deliver(Deliver { seq, payload });
        let encoded = message.to_bytes();
        batch.put(OUT_TABLE, out_key(&to, seq), encoded.clone());
        batch.put(STREAMS_TABLE, stream_key(OUT, &to), (seq + 1).to_le_bytes().to_vec());
        // Numbered now, so that a second plan into the same batch takes the next number; if
        // the batch never commits the role stops (a failed commit stops the store) and its
        // restart reads the numbers from the disk.
        self.next.insert(to.clone(), seq + 1);
        let Message::Deliver(deliver) = message else { unreachable!("built as a delivery above") };
        Planned { to, deliver, encoded }
    }

    /// The batch holding `planned` is durable: send it.
    pub fn sent(&mut self, planned: Planned, from: &RoleId, now_ms: u64) -> Envelope {
        let Planned { to, deliver, encoded } = planned;
        self.unacked.insert((to.clone(), deliver.seq), Unacked { encoded, sent_at_ms: now_ms });
        Envelope { from: from.clone(), to, message: Message::Deliver(deliver) }
    }

    /// `from` acknowledged every delivery up to `seq`: the rows to delete go into `batch`;
    /// call [`Outbound::forget`] with the same arguments once it is durable. Returns whether
    /// anything was acknowledged.
    pub fn plan_ack(&self, from: &RoleId, seq: u64, batch: &mut WriteBatch) -> bool {
        let mut any = false;
        for ((receiver, n), _) in self.unacked.range((from.clone(), 0)..=(from.clone(), seq)) {
            batch.delete(OUT_TABLE, out_key(receiver, *n));
            any = true;
        }
        any
    }

    pub fn forget(&mut self, from: &RoleId, seq: u64) {
        let acked: Vec<(RoleId, u64)> =
            self.unacked.range((from.clone(), 0)..=(from.clone(), seq)).map(|(k, _)| k.clone()).collect();
        for key in acked {
            self.unacked.remove(&key);
        }
    }

    /// The deliveries to send again (not acknowledged within [`RESEND_AFTER_MS`]), in order.
    pub fn due(&mut self, from: &RoleId, now_ms: u64) -> Vec<Envelope> {
        let mut envelopes = Vec::new();
        for ((to, _), unacked) in self.unacked.iter_mut() {
            if unacked.sent_at_ms.saturating_add(RESEND_AFTER_MS) <= now_ms {
                unacked.sent_at_ms = now_ms;
                // Its own bytes, written and read back by this role: they decode, or the
                // memory is corrupt.
                let message = Message::from_bytes(&unacked.encoded)
                    .unwrap_or_else(|e| panic!("a kept delivery does not decode: {e}"));
                envelopes.push(Envelope { from: from.clone(), to: to.clone(), message });
            }
        }
        envelopes
    }

    /// Deliveries not acknowledged.
    pub fn len(&self) -> usize {
        self.unacked.len()
    }

    pub fn is_empty(&self) -> bool {
        self.unacked.is_empty()
    }
}

/// What a receiver does with a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accept {
    /// The next from its sender: check it, apply it with [`Inbound::plan_applied`], then
    /// [`Inbound::applied`] and acknowledge.
    Apply,
    /// Applied before: acknowledge this number again, apply nothing.
    Duplicate { ack: u64 },
    /// Beyond the next: drop it (the sender resends in order).
    Early,
}

/// The receiving side: the last number applied from each sender.
#[derive(Default)]
pub struct Inbound {
    last: BTreeMap<RoleId, u64>,
}

impl Inbound {
    pub fn load(store: &Store) -> Result<Inbound> {
        let mut inbound = Inbound::default();
        for (key, value) in store.scan(STREAMS_TABLE)? {
            if key.starts_with(IN) {
                let role = RoleId::from_bytes(&key[PREFIX_BYTES..]).map_err(|_| corrupt("a stream's role"))?;
                inbound.last.insert(role, number_of(&value)?);
            }
        }
        Ok(inbound)
    }

    pub fn accept(&self, from: &RoleId, seq: u64) -> Accept {
        let last = self.last.get(from).copied().unwrap_or(0);
        if seq <= last {
            Accept::Duplicate { ack: last }
        } else if seq == last + 1 {
            Accept::Apply
        } else {
            Accept::Early
        }
    }

    /// The delivery `seq` from `from` is applied in `batch`: its number goes with it.
    pub fn plan_applied(&self, from: &RoleId, seq: u64, batch: &mut WriteBatch) {
        debug_assert_eq!(self.accept(from, seq), Accept::Apply);
        batch.put(STREAMS_TABLE, stream_key(IN, from), seq.to_le_bytes().to_vec());
    }

    /// The batch is durable.
    pub fn applied(&mut self, from: &RoleId, seq: u64) {
        assert_eq!(self.accept(from, seq), Accept::Apply, "deliveries are applied in order, once");
        self.last.insert(from.clone(), seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dtenge_core::certificate::CommitCertificate;
    use dtenge_core::crypto::{Hash32, SecretKey};
    use dtenge_store::SimDisk;

    fn certificate() -> Payload {
        let certificate = CommitCertificate::sign(&SecretKey::from_seed([1; 32]), 1, &[Hash32([2; 32])]).0;
        Payload::Certified { certificate, txs: vec![] }
    }

    fn store(disk: &SimDisk) -> Store {
        Store::open_simulated(disk.clone(), &TABLES).unwrap()
    }

    #[test]
    fn deliveries_are_numbered_per_receiver_kept_until_acknowledged_and_survive_a_restart() {
        let disk = SimDisk::new();
        let s = store(&disk);
        let mut out = Outbound::default();
        let (sapa, central) = (RoleId::Bank("sapa".into()), RoleId::Central);
        let mut batch = WriteBatch::new();
        let a = out.plan(sapa.clone(), certificate(), &mut batch);
        let b = out.plan(sapa.clone(), certificate(), &mut batch);
        let c = out.plan(central.clone(), certificate(), &mut batch);
        assert_eq!((a.deliver.seq, b.deliver.seq, c.deliver.seq), (1, 2, 1));
        s.commit(batch).unwrap();
        let me = RoleId::Bank("steppe".into());
        for planned in [a, b, c] {
            let _ = out.sent(planned, &me, 0);
        }
        let mut batch = WriteBatch::new();
        assert!(out.plan_ack(&sapa, 1, &mut batch));
        s.commit(batch).unwrap();
        out.forget(&sapa, 1);
        assert_eq!(out.len(), 2);
        drop(s);
        let mut out = Outbound::load(&store(&disk)).unwrap();
        let due: Vec<(RoleId, u64)> = out
            .due(&me, RESEND_AFTER_MS)
            .into_iter()
            .map(|e| match e.message {
                Message::Deliver(d) => (e.to, d.seq),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(due, vec![(central.clone(), 1), (sapa.clone(), 2)]);
        let mut batch = WriteBatch::new();
        assert_eq!(out.plan(sapa, certificate(), &mut batch).deliver.seq, 3, "numbers go on after a restart");
    }

    #[test]
    fn a_receiver_applies_the_next_number_only_and_acknowledges_duplicates_again() {
        let disk = SimDisk::new();
        let s = store(&disk);
        let mut inbound = Inbound::default();
        let steppe = RoleId::Bank("steppe".into());
        assert_eq!(inbound.accept(&steppe, 2), Accept::Early);
        assert_eq!(inbound.accept(&steppe, 1), Accept::Apply);
        let mut batch = WriteBatch::new();
        inbound.plan_applied(&steppe, 1, &mut batch);
        s.commit(batch).unwrap();
        inbound.applied(&steppe, 1);
        assert_eq!(inbound.accept(&steppe, 1), Accept::Duplicate { ack: 1 });
        assert_eq!(inbound.accept(&RoleId::Central, 1), Accept::Apply, "each sender has its own numbers");
        drop(s);
        let inbound = Inbound::load(&store(&disk)).unwrap();
        assert_eq!(inbound.accept(&steppe, 2), Accept::Apply);
    }
}
