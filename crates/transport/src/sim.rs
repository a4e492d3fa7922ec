//! The deterministic simulator's network: lossy, duplicating, delaying, and reproducible.
//!
//! The simulator owns time. It asks [`SimNetwork::next_due`] when the next envelope arrives,
//! advances its clock, and takes the envelope with [`SimNetwork::pop_due`]. Every envelope is
//! encoded when sent and decoded when delivered, so the wire format is exercised under every
//! fault. Envelopes due at the same millisecond leave in the order they were sent: with the
//! same seed (the same [`Faults`] decisions) a run repeats exactly.

use crate::{SendError, Transport};
use dtenge_wire::{Decode, Encode, Envelope, RoleId};
use parking_lot::Mutex;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

/// Most envelopes in flight at once. Beyond it, sends are lost (and counted): the simulated
/// network is bounded like every other queue.
pub const SIM_QUEUE_ENVELOPES_MAX: usize = 1 << 20;

/// What the network does with one envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Lose,
    Deliver {
        delay_ms: u64,
    },
    /// Deliver twice, after each delay.
    Duplicate {
        delay_ms: u64,
        again_ms: u64,
    },
}

/// Decides each envelope's fate: the simulator's seeded policy.
pub trait Faults: Send {
    fn fate(&mut self, from: &RoleId, to: &RoleId) -> Fate;
}

/// Deliver everything at once, in order.
pub struct NoFaults;

impl Faults for NoFaults {
    fn fate(&mut self, _from: &RoleId, _to: &RoleId) -> Fate {
        Fate::Deliver { delay_ms: 0 }
    }
}

/// What the network did, for the simulator's report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    pub sent: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    /// Lost because the receiver was down when the envelope arrived.
    pub to_down_role: u64,
}

struct InFlight {
    due_ms: u64,
    seq: u64,
    to: RoleId,
    bytes: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.due_ms, self.seq) == (other.due_ms, other.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due_ms, self.seq).cmp(&(other.due_ms, other.seq))
    }
}

struct State<F> {
    now_ms: u64,
    next_seq: u64,
    queue: BinaryHeap<Reverse<InFlight>>,
    down: BTreeSet<RoleId>,
    faults: F,
    stats: SimStats,
}

/// The simulated network.
pub struct SimNetwork<F: Faults> {
    state: Mutex<State<F>>,
}

impl<F: Faults> SimNetwork<F> {
    pub fn new(faults: F) -> SimNetwork<F> {
        SimNetwork {
            state: Mutex::new(State {
                now_ms: 0,
                next_seq: 0,
                queue: BinaryHeap::new(),
                down: BTreeSet::new(),
                faults,
                stats: SimStats::default(),
            }),
        }
    }

    /// The simulator's clock moved: sends from now on leave at `now_ms`.
    pub fn set_now(&self, now_ms: u64) {
        let mut state = self.state.lock();
        assert!(now_ms >= state.now_ms, "simulated time never goes back");
        state.now_ms = now_ms;
    }

    /// When the next envelope arrives, if any is in flight.
    pub fn next_due(&self) -> Option<u64> {
        self.state.lock().queue.peek().map(|Reverse(f)| f.due_ms)
    }

    /// The next envelope due at or before `now_ms`, decoded. Envelopes for a role that is down
    /// are lost on arrival, as a crashed process loses what reaches its socket.
    pub fn pop_due(&self, now_ms: u64) -> Option<Envelope> {
        let mut state = self.state.lock();
        loop {
            let due = state.queue.peek().is_some_and(|Reverse(f)| f.due_ms <= now_ms);
            if !due {
                return None;
            }
            let Reverse(in_flight) = state.queue.pop().expect("peeked");
            if state.down.contains(&in_flight.to) {
                state.stats.to_down_role += 1;
                continue;
            }
            state.stats.delivered += 1;
            // It was encoded by `send` from a valid envelope: failing to decode it is a bug in
            // the wire format, which this network exists to catch.
            let envelope = Envelope::from_bytes(&in_flight.bytes)
                .unwrap_or_else(|e| panic!("an envelope the simulator encoded does not decode: {e}"));
            assert_eq!(envelope.to, in_flight.to);
            return Some(envelope);
        }
    }

    /// `role` crashed: what arrives for it until [`SimNetwork::up`] is lost.
    pub fn down(&self, role: RoleId) {
        self.state.lock().down.insert(role);
    }

    pub fn up(&self, role: &RoleId) {
        self.state.lock().down.remove(role);
    }

    pub fn in_flight(&self) -> usize {
        self.state.lock().queue.len()
    }

    pub fn stats(&self) -> SimStats {
        self.state.lock().stats
    }
}

impl<F: Faults> State<F> {
    fn enqueue(&mut self, due_ms: u64, to: &RoleId, bytes: Vec<u8>) {
        if self.queue.len() >= SIM_QUEUE_ENVELOPES_MAX {
            self.stats.lost += 1;
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push(Reverse(InFlight { due_ms, seq, to: to.clone(), bytes }));
    }
}

impl<F: Faults> Transport for SimNetwork<F> {
    fn send(&self, envelope: Envelope) -> Result<(), SendError> {
        let bytes = envelope.to_bytes();
        let mut state = self.state.lock();
        state.stats.sent += 1;
        let now_ms = state.now_ms;
        match state.faults.fate(&envelope.from, &envelope.to) {
            Fate::Lose => state.stats.lost += 1,
            Fate::Deliver { delay_ms } => state.enqueue(now_ms + delay_ms, &envelope.to, bytes),
            Fate::Duplicate { delay_ms, again_ms } => {
                state.stats.duplicated += 1;
                state.enqueue(now_ms + delay_ms, &envelope.to, bytes.clone());
                state.enqueue(now_ms + again_ms, &envelope.to, bytes);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dtenge_wire::{DeliverAck, Message};

    fn ack(seq: u64) -> Envelope {
        Envelope {
            from: RoleId::Notary,
            to: RoleId::Bank("sapa".into()),
            message: Message::DeliverAck(DeliverAck { seq }),
        }
    }

    /// Fates from a fixed script, then plain delivery.
    struct Script(Vec<Fate>);
    impl Faults for Script {
        fn fate(&mut self, _: &RoleId, _: &RoleId) -> Fate {
            if self.0.is_empty() {
                Fate::Deliver { delay_ms: 0 }
            } else {
                self.0.remove(0)
            }
        }
    }

    #[test]
    fn delays_reorder_losses_lose_and_duplicates_arrive_twice() {
        let net = SimNetwork::new(Script(vec![
            Fate::Deliver { delay_ms: 10 },
            Fate::Lose,
            Fate::Duplicate { delay_ms: 1, again_ms: 20 },
            Fate::Deliver { delay_ms: 5 },
        ]));
        for seq in 1..=4 {
            net.send(ack(seq)).unwrap();
        }
        let mut arrived = Vec::new();
        while let Some(due) = net.next_due() {
            let envelope = net.pop_due(due).unwrap();
            let Message::DeliverAck(a) = envelope.message else { panic!("an ack was sent") };
            arrived.push((due, a.seq));
        }
        assert_eq!(arrived, vec![(1, 3), (5, 4), (10, 1), (20, 3)]);
        let stats = net.stats();
        assert_eq!((stats.sent, stats.delivered, stats.lost, stats.duplicated), (4, 4, 1, 1));
    }

    #[test]
    fn what_arrives_for_a_role_that_is_down_is_lost() {
        let net = SimNetwork::new(NoFaults);
        net.send(ack(1)).unwrap();
        net.down(RoleId::Bank("sapa".into()));
        assert_eq!(net.pop_due(0), None);
        net.up(&RoleId::Bank("sapa".into()));
        net.send(ack(2)).unwrap();
        assert_eq!(net.pop_due(0), Some(ack(2)));
        assert_eq!(net.stats().to_down_role, 1);
    }
}
