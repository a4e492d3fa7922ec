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
//! Records (in the role's own store; log rows, so that a commit that plans or applies a
//! delivery writes nothing to fjall and costs one append and one `fdatasync`):
//!
//! | log | record (`dtenge-wire` encoding) |
//! |---|---|
//! | `delivery_out_log` | `1`, receiver (wire role), number (u64), the `Deliver` message: a delivery planned |
//! | `delivery_out_log` | `2`, receiver, number: the receiver acknowledged every delivery up to it |
//! | `delivery_out_log` | `3`, receiver, number: the next number to it |
//! | `delivery_in_log` | sender (wire role), number (u64): the last number applied from it |
//!
//! Reading a log back gives the state: the next number to each receiver (the highest
//! planned, plus one, or a `3` record), and the deliveries not acknowledged. The logs do not
//! grow without end: every [`SNAPSHOT_EVERY`] deliveries a plan writes the outbound state
//! again (every stream's next number and every delivery not acknowledged) and drops the rows
//! written before ([`WriteBatch::truncate_log_here`]), unless what it would write again is more
//! than half of what was written since the last snapshot (a receiver away for long: the log
//! then grows until it acknowledges); every applied delivery writes every
//! sender's last number and drops the rows before. Before these logs (2026-12-06) the
//! deliveries were keyed rows (`delivery_out`, `delivery_streams`): a payment's answer and its
//! delivery each paid fjall's write and fsync besides the journal's, and the transactions were
//! written to fjall whole. A store of that format is not read (there is no deployed data).

#![forbid(unsafe_code)]

use dtenge_core::{Error, ErrorCode, Result};
use dtenge_store::{LogTable, Store, Table, WriteBatch};
use dtenge_wire::{Deliver, Envelope, Message, Payload, Reader, RoleId, Writer};
use std::collections::BTreeMap;

/// Deliveries planned, their acknowledgements and the streams' next numbers.
pub const OUT_LOG: LogTable = LogTable("delivery_out_log");
/// The last number applied from each sender.
pub const IN_LOG: LogTable = LogTable("delivery_in_log");
pub const TABLES: [Table; 2] = [OUT_LOG.table(), IN_LOG.table()];

/// A delivery not acknowledged after this long is sent again.
pub const RESEND_AFTER_MS: u64 = 200;

/// Deliveries planned between two snapshots of the outbound log (see the module docs): a
/// restart reads about this many deliveries at most, whatever ran before it.
pub const SNAPSHOT_EVERY: usize = 64;
/// The same on the simulator's disk, so that its crashes and torn writes hit snapshots.
pub const SNAPSHOT_EVERY_SIMULATED: usize = 3;

/// Tags of the outbound log's records.
const PLANNED: u8 = 1;
const ACKED: u8 = 2;
const NEXT: u8 = 3;

/// `Unacked::sent_at_ms` of a delivery whose commit is not durable yet: never due.
const NOT_SENT: u64 = u64::MAX;

fn corrupt(what: &str) -> Error {
    Error::new(ErrorCode::StorageFailure, format!("deliveries: {what}"))
}

fn number_record(tag: u8, role: &RoleId, seq: u64) -> Vec<u8> {
    let mut w = Writer::with_capacity(16);
    w.u8(tag);
    w.put(role);
    w.u64(seq);
    w.into_bytes()
}

/// An outbound record, decoded: its tag, role, number, and (a planned delivery) the message.
fn outbound_record(record: &[u8]) -> std::result::Result<(u8, RoleId, u64, Option<Message>), dtenge_wire::DecodeError> {
    let mut r = Reader::new(record);
    let tag = r.u8("delivery record")?;
    let role: RoleId = r.get()?;
    let seq = r.u64("delivery number")?;
    let message = if tag == PLANNED { Some(r.get::<Message>()?) } else { None };
    r.finish()?;
    Ok((tag, role, seq, message))
}

/// A delivery not acknowledged: kept as the bytes of its record (decoded again only to be
/// resent, which is rare), so that a large delivery is not copied whole to be kept.
struct Unacked {
    record: Vec<u8>,
    /// [`NOT_SENT`] until the commit that planned it is durable.
    sent_at_ms: u64,
}

/// The sending side: every receiver's next number and the deliveries it has not acknowledged
/// (those planned into a commit not durable yet included).
pub struct Outbound {
    next: BTreeMap<RoleId, u64>,
    unacked: BTreeMap<(RoleId, u64), Unacked>,
    /// Deliveries planned since the last snapshot of the log, and their records' bytes.
    since_snapshot: usize,
    since_snapshot_bytes: usize,
    snapshot_every: usize,
}

impl Default for Outbound {
    fn default() -> Outbound {
        Outbound {
            next: BTreeMap::new(),
            unacked: BTreeMap::new(),
            since_snapshot: 0,
            since_snapshot_bytes: 0,
            snapshot_every: SNAPSHOT_EVERY,
        }
    }
}

/// A delivery planned into a write batch, to be sent once that batch is durable.
#[must_use = "a planned delivery is sent with `Outbound::sent` after its commit"]
pub struct Planned {
    pub to: RoleId,
    pub deliver: Deliver,
}

impl Outbound {
    /// Read the streams and the deliveries not acknowledged.
    pub fn load(store: &Store) -> Result<Outbound> {
        let mut outbound = Outbound::default();
        if store.is_simulated() {
            outbound.snapshot_every = SNAPSHOT_EVERY_SIMULATED;
        }
        let mut acked: BTreeMap<RoleId, u64> = BTreeMap::new();
        for record in store.scan_log(OUT_LOG)? {
            let (tag, role, seq, message) = outbound_record(&record).map_err(|e| corrupt(&format!("a record: {e}")))?;
            let next = outbound.next.entry(role.clone()).or_insert(1);
            match (tag, message) {
                (PLANNED, Some(Message::Deliver(deliver))) if deliver.seq == seq => {
                    *next = (*next).max(seq.checked_add(1).ok_or_else(|| corrupt("a delivery number"))?);
                    outbound.unacked.insert((role, seq), Unacked { record, sent_at_ms: 0 });
                }
                (ACKED, None) => {
                    let last = acked.entry(role).or_insert(0);
                    *last = (*last).max(seq);
                }
                (NEXT, None) => *next = (*next).max(seq),
                _ => return Err(corrupt("a record is not a delivery, an acknowledgement or a number")),
            }
        }
        outbound.unacked.retain(|(role, seq), _| acked.get(role).is_none_or(|last| seq > last));
        Ok(outbound)
    }

    /// Number a delivery for `to` and write it into `batch`; once the batch is durable, hand
    /// the result to [`Outbound::sent`]. Deliveries planned into one batch are numbered in the
    /// order they are planned. The batch must be committed (a role whose commit fails stops,
    /// and its restart reads the numbers from the disk).
    pub fn plan(&mut self, to: RoleId, payload: Payload, batch: &mut WriteBatch) -> Planned {
        let seq = self.next.get(&to).copied().unwrap_or(1);
        let message = Message::Deliver(Deliver { seq, payload });
        let mut w = Writer::new();
        w.u8(PLANNED);
        w.put(&to);
        w.u64(seq);
        w.put(&message);
        let record = w.into_bytes();
        // The rows a snapshot drops hold only what it writes again (every delivery not
        // acknowledged, those whose commit is still in flight included: their batches were
        // handed to the store before this one, which stops after a failed commit, so none of
        // them can be lost while this one commits) or what is acknowledged. Until issue 20 a
        // snapshot also waited until no delivery waited for its commit: a bank whose commits
        // are pipelined always has one in flight under load, so its log was never cut and
        // kept every journal segment. A snapshot is taken only while what it writes again
        // is at most half of what was written since the last one: a receiver that stays
        // away (its deliveries pile up) must not make every snapshot rewrite them all; the
        // log grows instead until it acknowledges.
        let written = self.since_snapshot_bytes + record.len();
        let snapshot = self.since_snapshot + 1 >= self.snapshot_every
            && self.unacked.values().map(|unacked| unacked.record.len()).sum::<usize>() <= written / 2;
        self.unacked.insert((to.clone(), seq), Unacked { record: record.clone(), sent_at_ms: NOT_SENT });
        // Numbered now, so that a second plan into the same batch takes the next number.
        self.next.insert(to.clone(), seq + 1);
        if snapshot {
            for (role, next) in &self.next {
                batch.record(OUT_LOG, number_record(NEXT, role, *next));
            }
            for unacked in self.unacked.values() {
                batch.record(OUT_LOG, unacked.record.clone());
            }
            batch.truncate_log_here(OUT_LOG);
            self.since_snapshot = 0;
            self.since_snapshot_bytes = 0;
        } else {
            batch.record(OUT_LOG, record);
            self.since_snapshot += 1;
            self.since_snapshot_bytes = written;
        }
        let Message::Deliver(deliver) = message else { unreachable!("built as a delivery above") };
        Planned { to, deliver }
    }

    /// The batch holding `planned` is durable: send it.
    pub fn sent(&mut self, planned: Planned, from: &RoleId, now_ms: u64) -> Envelope {
        let Planned { to, deliver } = planned;
        if let Some(unacked) = self.unacked.get_mut(&(to.clone(), deliver.seq)) {
            unacked.sent_at_ms = now_ms;
        }
        Envelope { from: from.clone(), to, message: Message::Deliver(deliver) }
    }

    /// `from` acknowledged every delivery up to `seq`: the record that says so goes into
    /// `batch`; call [`Outbound::forget`] with the same arguments. Returns whether anything
    /// was acknowledged.
    pub fn plan_ack(&self, from: &RoleId, seq: u64, batch: &mut WriteBatch) -> bool {
        let any = self.unacked.range((from.clone(), 0)..=(from.clone(), seq)).next().is_some();
        if any {
            batch.record(OUT_LOG, number_record(ACKED, from, seq));
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
            if unacked.sent_at_ms != NOT_SENT && unacked.sent_at_ms.saturating_add(RESEND_AFTER_MS) <= now_ms {
                unacked.sent_at_ms = now_ms;
                // Its own record, written and read back by this role: it decodes, or the
                // memory is corrupt.
                let (_, _, _, message) =
                    outbound_record(&unacked.record).unwrap_or_else(|e| panic!("a kept delivery does not decode: {e}"));
                let message = message.unwrap_or_else(|| panic!("a kept delivery holds its message"));
                envelopes.push(Envelope { from: from.clone(), to: to.clone(), message });
            }
        }
        envelopes
    }

    /// Deliveries not acknowledged.
    pub fn len(&self) -> usize {
        self.unacked.len()
    }

    /// Deliveries numbered so far, over every stream: with [`Outbound::len`], it changes
    /// whenever [`Outbound::streams`] does (a plan numbers one more, an acknowledgement
    /// shortens the rest), so a caller can tell when to read them again.
    pub fn numbered(&self) -> u64 {
        self.next.values().map(|next| next.saturating_sub(1)).sum()
    }

    /// Each stream's progress: the receiver, the number its next delivery takes, and its oldest
    /// delivery not acknowledged (the next number when none is). A receiver acknowledges a
    /// delivery once it applied it, so every delivery numbered below `next` as read once is
    /// applied when the oldest not acknowledged has reached it: what reconciliation waits for.
    pub fn streams(&self) -> impl Iterator<Item = (&RoleId, u64, u64)> + '_ {
        self.next.iter().map(|(to, next)| {
            let oldest = self.unacked.range((to.clone(), 0)..(to.clone(), *next)).next().map(|((_, seq), _)| *seq);
            (to, *next, oldest.unwrap_or(*next))
        })
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
        for record in store.scan_log(IN_LOG)? {
            let mut r = Reader::new(&record);
            let decoded = (|| {
                let role: RoleId = r.get()?;
                let seq = r.u64("delivery number")?;
                r.finish()?;
                Ok::<_, dtenge_wire::DecodeError>((role, seq))
            })();
            let (role, seq) = decoded.map_err(|e| corrupt(&format!("an applied number: {e}")))?;
            let last = inbound.last.entry(role).or_insert(0);
            *last = (*last).max(seq);
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

    /// The delivery `seq` from `from` is applied in `batch`: its number goes with it, with
    /// every other sender's last number, and the rows before are dropped. The batch must be
    /// committed (or the role stop) before the next delivery is planned: the role's lock
    /// holds across both, as it must to apply deliveries in order.
    pub fn plan_applied(&self, from: &RoleId, seq: u64, batch: &mut WriteBatch) {
        debug_assert_eq!(self.accept(from, seq), Accept::Apply);
        let mut w = Writer::with_capacity(16);
        w.put(from);
        w.u64(seq);
        batch.record(IN_LOG, w.into_bytes());
        for (role, last) in self.last.iter().filter(|(role, _)| *role != from) {
            let mut w = Writer::with_capacity(16);
            w.put(role);
            w.u64(*last);
            batch.record(IN_LOG, w.into_bytes());
        }
        batch.truncate_log_here(IN_LOG);
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
    fn the_outbound_log_is_cut_at_snapshots_and_reads_back_the_same_state() {
        let disk = SimDisk::new();
        let s = store(&disk);
        let mut out = Outbound::default();
        let me = RoleId::Bank("steppe".into());
        let (sapa, tulpar) = (RoleId::Bank("sapa".into()), RoleId::Bank("tulpar".into()));
        // Sapa acknowledges everything but the last two; tulpar never answers after its 3rd.
        let rounds = 3 * SNAPSHOT_EVERY as u64 + 5;
        for n in 1..=rounds {
            let mut batch = WriteBatch::new();
            let a = out.plan(sapa.clone(), certificate(), &mut batch);
            let planned_tulpar = (n <= 3).then(|| out.plan(tulpar.clone(), certificate(), &mut batch));
            if n > 2 && out.plan_ack(&sapa, n - 2, &mut batch) {
                out.forget(&sapa, n - 2);
            }
            s.commit(batch).unwrap();
            let _ = out.sent(a, &me, 0);
            if let Some(t) = planned_tulpar {
                let _ = out.sent(t, &me, 0);
            }
        }
        assert!(s.log_row_count(OUT_LOG).unwrap() <= SNAPSHOT_EVERY as u64 + 1, "rows before a snapshot are cut");
        let mut reloaded = Outbound::load(&store(&disk)).unwrap();
        let due = |out: &mut Outbound| due_after_resend(out, &me);
        let expected = vec![
            (sapa.clone(), rounds - 1),
            (sapa.clone(), rounds),
            (tulpar.clone(), 1),
            (tulpar.clone(), 2),
            (tulpar.clone(), 3),
        ];
        assert_eq!(due(&mut reloaded), expected);
        assert_eq!(due(&mut out), expected);
        let mut batch = WriteBatch::new();
        assert_eq!(reloaded.plan(sapa, certificate(), &mut batch).deliver.seq, rounds + 1);
        assert_eq!(reloaded.plan(tulpar, certificate(), &mut batch).deliver.seq, 4);
    }

    /// A new simulated disk, a store on it and an outbound state with nothing planned.
    fn fresh() -> (SimDisk, Store, Outbound) {
        let disk = SimDisk::new();
        let s = store(&disk);
        (disk, s, Outbound::default())
    }

    /// The deliveries `out` sends again once the resend interval has passed: (receiver, number).
    fn due_after_resend(out: &mut Outbound, me: &RoleId) -> Vec<(RoleId, u64)> {
        out.due(me, RESEND_AFTER_MS)
            .into_iter()
            .map(|e| match e.message {
                Message::Deliver(d) => (e.to, d.seq),
                _ => unreachable!("only deliveries are resent"),
            })
            .collect()
    }

    /// Issue 20: a role whose commits are pipelined plans the next delivery before the
    /// previous one's commit is durable, so one always waits for its commit; the log is cut
    /// at snapshots all the same, and reads back every delivery not acknowledged.
    #[test]
    fn the_outbound_log_is_cut_while_a_delivery_waits_for_its_commit() {
        let (disk, s, mut out) = fresh();
        let (me, sapa) = (RoleId::Bank("steppe".into()), RoleId::Bank("sapa".into()));
        let rounds = 4 * SNAPSHOT_EVERY as u64;
        let mut in_flight = None;
        for n in 1..=rounds {
            let mut batch = WriteBatch::new();
            let planned = out.plan(sapa.clone(), certificate(), &mut batch);
            if n > 2 && out.plan_ack(&sapa, n - 2, &mut batch) {
                out.forget(&sapa, n - 2);
            }
            s.commit(batch).unwrap();
            // The commit before this one is durable only now: its delivery is sent late.
            if let Some(previous) = in_flight.replace(planned) {
                let _ = out.sent(previous, &me, 0);
            }
        }
        assert!(s.log_row_count(OUT_LOG).unwrap() <= SNAPSHOT_EVERY as u64 + 1, "rows before a snapshot are cut");
        let mut reloaded = Outbound::load(&store(&disk)).unwrap();
        assert_eq!(
            due_after_resend(&mut reloaded, &me),
            vec![(sapa.clone(), rounds - 1), (sapa, rounds)],
            "the two not acknowledged, the last one's commit in flight"
        );
    }

    #[test]
    fn a_receiver_away_makes_no_snapshot_rewrite_its_pile_and_its_acknowledgement_cuts_the_log() {
        let (disk, s, mut out) = fresh();
        let (me, sapa) = (RoleId::Bank("steppe".into()), RoleId::Bank("sapa".into()));
        let rounds = 4 * SNAPSHOT_EVERY as u64;
        for _ in 0..rounds {
            let mut batch = WriteBatch::new();
            let planned = out.plan(sapa.clone(), certificate(), &mut batch);
            s.commit(batch).unwrap();
            let _ = out.sent(planned, &me, 0);
        }
        // Nothing acknowledged: every delivery is in the log once (one row per commit).
        assert_eq!(s.log_row_count(OUT_LOG).unwrap(), rounds);
        let mut batch = WriteBatch::new();
        assert!(out.plan_ack(&sapa, rounds, &mut batch));
        out.forget(&sapa, rounds);
        s.commit(batch).unwrap();
        // The next plan takes the snapshot it owed: the log is cut to it and what followed.
        for _ in 0..3 {
            let mut batch = WriteBatch::new();
            let planned = out.plan(sapa.clone(), certificate(), &mut batch);
            s.commit(batch).unwrap();
            let _ = out.sent(planned, &me, 0);
        }
        assert!(s.log_row_count(OUT_LOG).unwrap() <= 3, "the snapshot after the acknowledgement cut the log");
        let mut reloaded = Outbound::load(&store(&disk)).unwrap();
        assert_eq!(reloaded.due(&me, RESEND_AFTER_MS).len(), out.len());
        let mut batch = WriteBatch::new();
        assert_eq!(reloaded.plan(sapa, certificate(), &mut batch).deliver.seq, rounds + 4);
    }

    #[test]
    fn a_planned_delivery_is_not_due_before_its_commit() {
        let mut out = Outbound::default();
        let me = RoleId::Bank("steppe".into());
        let mut batch = WriteBatch::new();
        let planned = out.plan(RoleId::Central, certificate(), &mut batch);
        assert!(out.due(&me, u64::MAX - 1).is_empty());
        let _ = out.sent(planned, &me, 5);
        assert_eq!(out.due(&me, 5 + RESEND_AFTER_MS).len(), 1);
    }

    #[test]
    fn the_inbound_log_keeps_every_senders_number_in_one_row() {
        let disk = SimDisk::new();
        let s = store(&disk);
        let mut inbound = Inbound::default();
        let senders = [RoleId::Bank("steppe".into()), RoleId::Central, RoleId::Bank("sapa".into())];
        for seq in 1..=50u64 {
            for from in &senders[..if seq > 10 { 2 } else { 3 }] {
                let mut batch = WriteBatch::new();
                inbound.plan_applied(from, seq, &mut batch);
                s.commit(batch).unwrap();
                inbound.applied(from, seq);
            }
        }
        assert_eq!(s.log_row_count(IN_LOG).unwrap(), 1);
        let inbound = Inbound::load(&store(&disk)).unwrap();
        assert_eq!(inbound.accept(&senders[0], 51), Accept::Apply);
        assert_eq!(inbound.accept(&senders[1], 50), Accept::Duplicate { ack: 50 });
        assert_eq!(inbound.accept(&senders[2], 11), Accept::Apply);
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
