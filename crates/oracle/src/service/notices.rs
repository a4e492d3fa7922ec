//! What the oracle tells the banks: a notice to a party's bank for each decision that concerns
//! its client (an event registered, funds held, released or returned, marked DT moved, an
//! e-invoice paid, a contract used), as the one-process network's notifications.
//!
//! A notice is written in the same commit as the decision that causes it, so a crash loses
//! both or neither, and a decision taken once (a delivery applied once, a confirmation
//! decided once) tells once. Notices are numbered per bank node (`seq`, from 0, dense) and
//! kept in their own table:
//!
//! | table | key | value |
//! |---|---|---|
//! | `oracle_role_notices` | node id, 0, seq (u64 BE) | a [`Notice`] |
//!
//! Only the newest [`NOTICES_KEPT_MAX`] of a node are kept (the commit that writes one
//! deletes the one that many before it); the number of the newest is the count of all ever
//! written to the node, so no counter is stored beside them.

use super::programmed::SpendChange;
use super::rows::{stored, EventStatus, HoldEvent};
use crate::UseKind;
use dtenge_core::crypto::Address;
use dtenge_core::party::Party;
use dtenge_core::token::TxId;
use dtenge_core::{Amount, Error, Result};
use dtenge_store::{Store, Table, WriteBatch};
use dtenge_wire::{Decode, DecodeError, Encode, Reader, Spend, Writer};
use std::collections::{BTreeMap, VecDeque};

pub const ROLE_NOTICES_TABLE: Table = Table("oracle_role_notices");

/// Most notices kept per bank node: the newest. A bank reads its notices as a feed (the
/// gateway pages them, newest first); one that fell 10,000 behind has the ledger, the
/// events and the registry to catch up from, while keeping everything would grow the
/// oracle's store and memory without bound (every event and payment under a programme adds
/// some). The one-process network kept as many in memory.
pub const NOTICES_KEPT_MAX: usize = 10_000;
/// Largest page of notices one read answers.
pub const NOTICES_PAGE_MAX: usize = 1_000;

/// What a notice is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeKind {
    /// An event names the client as its sender or a payee.
    EventRegistered,
    /// The sender's funds are held for an event that pays the client.
    FundsHeld,
    /// An event's held funds were released: to the client (a payee) or from it (the sender).
    FundsReleased,
    /// An event's held funds went back to the sender (rejection, expiry, partial release), or
    /// it ended without paying the client (a payee).
    FundsReturned,
    /// Marked DT moved (to the marking's initiator: traceability).
    MarkedTransfer,
    /// An e-invoice to or from the client was paid.
    InvoicePaid,
    /// A payment or withdrawal under a contract (to the chain's initiator).
    ContractUse,
}

/// One notice to a bank about one of its clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// Per node, from 0, dense.
    pub seq: u64,
    /// The bank (or Treasury) told.
    pub node: String,
    /// The client's account at `node`.
    pub address: Address,
    /// The client's id at `node` when the oracle knows it (markings, invoices and contracts
    /// name parties with it; events name addresses only).
    pub client_id: Option<String>,
    /// When the oracle decided (its clock).
    pub at_ms: u64,
    pub kind: NoticeKind,
    /// The event, marking, e-invoice or contract it is about.
    pub subject_id: String,
    pub amount_tiyn: Amount,
    pub text: String,
    /// The transaction that moved the funds, if any.
    pub tx_id: Option<TxId>,
}

/// A notice before its number and time are known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Draft {
    node: String,
    address: Address,
    client_id: Option<String>,
    kind: NoticeKind,
    subject_id: String,
    amount_tiyn: Amount,
    text: String,
    tx_id: Option<TxId>,
}

impl Draft {
    /// To the client at `address` of `node`.
    pub(crate) fn to_account(
        node: &str,
        address: Address,
        kind: NoticeKind,
        subject_id: &str,
        amount_tiyn: Amount,
        text: String,
        tx_id: Option<TxId>,
    ) -> Draft {
        Draft {
            node: node.to_string(),
            address,
            client_id: None,
            kind,
            subject_id: subject_id.to_string(),
            amount_tiyn,
            text,
            tx_id,
        }
    }

    /// To `party`, whose client id the oracle knows.
    pub(crate) fn to_party(
        party: &Party,
        kind: NoticeKind,
        subject_id: &str,
        amount_tiyn: Amount,
        text: String,
        tx_id: Option<TxId>,
    ) -> Draft {
        Draft {
            client_id: Some(party.client_id.clone()),
            ..Draft::to_account(&party.bank, party.address, kind, subject_id, amount_tiyn, text, tx_id)
        }
    }
}

/// A page of one node's notices, newest first, and how many were ever written to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NoticePage {
    pub notices: Vec<Notice>,
    pub total: u64,
}

/// Every node's newest notices, as in the store.
#[derive(Debug)]
pub(crate) struct Notices {
    by_node: BTreeMap<String, VecDeque<Notice>>,
    kept_max: usize,
}

fn row_key(node: &str, seq: u64) -> Vec<u8> {
    let mut key = node.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

impl Notices {
    /// The rows of [`ROLE_NOTICES_TABLE`], keeping at most `kept_max` per node. A row under
    /// another key than its own node and number, a node's numbers with a gap, or fewer rows
    /// than the newest `kept_max` (the oldest missing) is corrupt storage.
    pub(crate) fn load(store: &Store, kept_max: usize) -> Result<Notices> {
        assert!(kept_max > 0, "a node keeps at least its newest notice");
        let mut by_node: BTreeMap<String, VecDeque<Notice>> = BTreeMap::new();
        // Per node, the number of its oldest row.
        let mut first: BTreeMap<String, u64> = BTreeMap::new();
        // Keys are node, 0, seq big-endian: a scan reads each node's in order.
        for (key, value) in store.scan(ROLE_NOTICES_TABLE)? {
            let notice: Notice = stored(&value, "a notice")?;
            if key != row_key(&notice.node, notice.seq) {
                return Err(Error::storage(format!(
                    "oracle role: notice {} of {} is stored under another key",
                    notice.seq, notice.node
                )));
            }
            first.entry(notice.node.clone()).or_insert(notice.seq);
            let list = by_node.entry(notice.node.clone()).or_default();
            if let Some(last) = list.back() {
                if last.seq.checked_add(1) != Some(notice.seq) {
                    return Err(Error::storage(format!(
                        "oracle role: notices of {} jump from {} to {}",
                        notice.node, last.seq, notice.seq
                    )));
                }
            }
            list.push_back(notice);
            if list.len() > kept_max {
                // Rows of a larger bound before: the oldest are not kept in memory.
                list.pop_front();
            }
        }
        let notices = Notices { by_node, kept_max };
        for (node, first) in first {
            let total = notices.total(&node);
            if first > total.saturating_sub(kept_max as u64) {
                return Err(Error::storage(format!(
                    "oracle role: {node} was sent {total} notices, but they are kept from {first}"
                )));
            }
        }
        Ok(notices)
    }

    /// How many notices were ever written to `node`.
    pub(crate) fn total(&self, node: &str) -> u64 {
        self.by_node.get(node).and_then(|l| l.back()).map_or(0, |n| n.seq + 1)
    }

    /// Number the drafts (in order, per node), stamp them `at_ms`, and write them to `batch`
    /// with the deletion of the rows they push out of the bound. Applied with
    /// [`Notices::apply`] once the batch is committed.
    pub(crate) fn plan(&self, drafts: Vec<Draft>, at_ms: u64, batch: &mut WriteBatch) -> Vec<Notice> {
        let mut next: BTreeMap<String, u64> = BTreeMap::new();
        let mut planned = Vec::with_capacity(drafts.len());
        for draft in drafts {
            let seq = next.entry(draft.node.clone()).or_insert_with(|| self.total(&draft.node));
            let notice = Notice {
                seq: *seq,
                node: draft.node,
                address: draft.address,
                client_id: draft.client_id,
                at_ms,
                kind: draft.kind,
                subject_id: draft.subject_id,
                amount_tiyn: draft.amount_tiyn,
                text: draft.text,
                tx_id: draft.tx_id,
            };
            *seq += 1;
            batch.put(ROLE_NOTICES_TABLE, row_key(&notice.node, notice.seq), notice.to_bytes());
            if let Some(gone) = notice.seq.checked_sub(self.kept_max as u64) {
                batch.delete(ROLE_NOTICES_TABLE, row_key(&notice.node, gone));
            }
            planned.push(notice);
        }
        planned
    }

    /// The planned notices, committed.
    pub(crate) fn apply(&mut self, planned: Vec<Notice>) {
        for notice in planned {
            let list = self.by_node.entry(notice.node.clone()).or_default();
            assert_eq!(list.back().map_or(notice.seq, |n| n.seq + 1), notice.seq, "notices are applied in their order");
            list.push_back(notice);
            if list.len() > self.kept_max {
                list.pop_front();
            }
        }
    }

    /// `node`'s notices, newest first: `limit` from the `offset`-th.
    pub(crate) fn page(&self, node: &str, offset: usize, limit: usize) -> NoticePage {
        let notices = self
            .by_node
            .get(node)
            .map(|l| l.iter().rev().skip(offset).take(limit).cloned().collect())
            .unwrap_or_default();
        NoticePage { notices, total: self.total(node) }
    }
}

/// The notices of a registration: the sender's bank and every payee's.
pub(crate) fn registered(event: &HoldEvent) -> Vec<Draft> {
    let (id, reference) = (&event.id, &event.reference);
    let total = event.amount_tiyn;
    let mut drafts = vec![Draft::to_account(
        &event.sender_bank,
        event.sender,
        NoticeKind::EventRegistered,
        id,
        total,
        format!("event {id} ({reference}): {total} to be held from this account"),
        None,
    )];
    for payee in &event.payees {
        let share = payee.amount_tiyn;
        drafts.push(Draft::to_account(
            &payee.bank,
            payee.address,
            NoticeKind::EventRegistered,
            id,
            share,
            format!("event {id} ({reference}): {share} to be paid to this account"),
            None,
        ));
    }
    drafts
}

/// The notices of a hold applied: every payee's bank.
pub(crate) fn held(event: &HoldEvent, tx_id: TxId) -> Vec<Draft> {
    let (id, reference) = (&event.id, &event.reference);
    let drafts = event.payees.iter().map(|payee| {
        let share = payee.amount_tiyn;
        Draft::to_account(
            &payee.bank,
            payee.address,
            NoticeKind::FundsHeld,
            id,
            share,
            format!("funds held for this account by event {id} ({reference}): {share} on each occurrence"),
            Some(tx_id),
        )
    });
    drafts.collect()
}

/// The notices of a release applied (`event` as it ended): to the payees paid and the sender
/// when it completed, what went back to the sender (and to the payees, that nothing came) when
/// it was rejected or expired. `why` says why funds went back.
pub(crate) fn released(event: &HoldEvent, tx_id: TxId, why: &str) -> Vec<Draft> {
    let release = event.release.as_ref().expect("a released event keeps its release");
    let (id, reference) = (&event.id, &event.reference);
    if event.status != EventStatus::Completed {
        return returned(event, release.returned_tiyn, why, Some(tx_id));
    }
    let mut drafts = Vec::new();
    for payee in &event.payees {
        let paid = release.outputs.iter().filter(|o| o.owner == payee.address).map(|o| o.amount_tiyn);
        let paid = Amount::sum(paid).expect("a release pays within what was held");
        if paid.is_zero() {
            continue;
        }
        drafts.push(Draft::to_account(
            &payee.bank,
            payee.address,
            NoticeKind::FundsReleased,
            id,
            paid,
            format!("event {id} ({reference}): {paid} released to this account"),
            Some(tx_id),
        ));
    }
    let paid = release.paid_tiyn;
    drafts.push(Draft::to_account(
        &event.sender_bank,
        event.sender,
        NoticeKind::FundsReleased,
        id,
        paid,
        format!("event {id} ({reference}): {paid} released to the payees"),
        Some(tx_id),
    ));
    if !release.returned_tiyn.is_zero() {
        drafts.extend(returned(event, release.returned_tiyn, why, Some(tx_id)).into_iter().take(1));
    }
    drafts
}

/// The notices of funds going back to the sender (`amount`: zero for an event that held
/// nothing), the sender's first, then the payees', that the event ended without paying them.
pub(crate) fn returned(event: &HoldEvent, amount: Amount, why: &str, tx_id: Option<TxId>) -> Vec<Draft> {
    let (id, reference) = (&event.id, &event.reference);
    let mut drafts = vec![Draft::to_account(
        &event.sender_bank,
        event.sender,
        NoticeKind::FundsReturned,
        id,
        amount,
        format!("event {id} ({reference}): {amount} returned to this account: {why}"),
        tx_id,
    )];
    for payee in &event.payees {
        drafts.push(Draft::to_account(
            &payee.bank,
            payee.address,
            NoticeKind::FundsReturned,
            id,
            Amount::ZERO,
            format!("event {id} ({reference}) ended without payment to this account: {why}"),
            tx_id,
        ));
    }
    drafts
}

/// Why an event's funds go back to its sender, as the one-process network words it.
pub(crate) fn why_returned(event: &HoldEvent, reason: Option<&str>) -> String {
    match event.status {
        EventStatus::Expired => format!("no event before the validity ended at {} ms", event.valid_until_ms),
        EventStatus::Rejected => reason.unwrap_or("rejected by its provider").to_string(),
        _ => "partial release: the rest returns to the sender".to_string(),
    }
}

/// The notices of a programmed spend applied from its certificate: a marked transfer to the
/// marking's initiator, an e-invoice payment to its seller and buyer, a contract's use to the
/// chain's initiator; a VAT payment tells no one (as on the one-process network).
pub(crate) fn spent(spend: &Spend, change: &SpendChange, tx_id: TxId) -> Vec<Draft> {
    let tx = Some(tx_id);
    match change {
        SpendChange::Marking(change) => {
            let marking = &change.marking;
            let step = &change.moves.first().expect("a certified marked transfer records its move").body;
            let text = format!(
                "marking {} ({}): {} moved from {} (level {}) to {} (level {}){}",
                marking.id,
                marking.reference,
                step.amount_tiyn,
                step.from.client_id,
                step.from_level,
                step.to.client_id,
                step.to_level,
                if step.unmarked { "; marking removed at the last level" } else { "" }
            );
            vec![Draft::to_party(
                &marking.initiator,
                NoticeKind::MarkedTransfer,
                &marking.id,
                step.amount_tiyn,
                text,
                tx,
            )]
        }
        SpendChange::Invoice(invoice) => {
            let total = invoice.total().expect("a registered invoice's total is an amount");
            let text = format!("e-invoice {} paid: {} + VAT {}", invoice.id, invoice.net_tiyn, invoice.vat_tiyn);
            vec![
                Draft::to_party(&invoice.seller, NoticeKind::InvoicePaid, &invoice.id, total, text.clone(), tx),
                Draft::to_party(&invoice.buyer, NoticeKind::InvoicePaid, &invoice.id, total, text, tx),
            ]
        }
        SpendChange::Vat(_) => Vec::new(),
        SpendChange::Contract(change) => {
            let contract = &change.contract;
            let used = &change.uses.first().expect("a certified contract spend records its use").body;
            let text = match used.kind {
                UseKind::Transfer => {
                    format!(
                        "contract {}: {} paid to {}",
                        contract.number, used.amount_tiyn, contract.recipient.client_id
                    )
                }
                UseKind::Withdrawal => format!(
                    "contract {}: {} of its DT withdrawn to bank money by {}",
                    contract.number, used.amount_tiyn, spend.payer.client_id
                ),
            };
            vec![Draft::to_party(
                &contract.initiator,
                NoticeKind::ContractUse,
                &contract.number,
                used.amount_tiyn,
                text,
                tx,
            )]
        }
    }
}

impl Encode for NoticeKind {
    fn encode(&self, w: &mut Writer) {
        w.u8(match self {
            NoticeKind::EventRegistered => 1,
            NoticeKind::FundsHeld => 2,
            NoticeKind::FundsReleased => 3,
            NoticeKind::FundsReturned => 4,
            NoticeKind::MarkedTransfer => 5,
            NoticeKind::InvoicePaid => 6,
            NoticeKind::ContractUse => 7,
        });
    }
}

impl Decode for NoticeKind {
    const ENCODED_BYTES_MIN: usize = 1;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        match r.u8("notice kind")? {
            1 => Ok(NoticeKind::EventRegistered),
            2 => Ok(NoticeKind::FundsHeld),
            3 => Ok(NoticeKind::FundsReleased),
            4 => Ok(NoticeKind::FundsReturned),
            5 => Ok(NoticeKind::MarkedTransfer),
            6 => Ok(NoticeKind::InvoicePaid),
            7 => Ok(NoticeKind::ContractUse),
            tag => Err(DecodeError::UnknownTag { what: "notice kind", tag: u64::from(tag) }),
        }
    }
}

impl Encode for Notice {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.seq);
        w.str(&self.node);
        w.put(&self.address);
        w.put(&self.client_id);
        w.u64(self.at_ms);
        w.put(&self.kind);
        w.str(&self.subject_id);
        w.put(&self.amount_tiyn);
        w.str(&self.text);
        w.put(&self.tx_id);
    }
}

impl Decode for Notice {
    const ENCODED_BYTES_MIN: usize = 8 + 4 + 32 + 1 + 8 + 1 + 4 + 8 + 4 + 1;
    fn decode(r: &mut Reader<'_>) -> std::result::Result<Self, DecodeError> {
        Ok(Notice {
            seq: r.u64("notice number")?,
            node: r.string("notice's node")?,
            address: r.get()?,
            client_id: r.get()?,
            at_ms: r.u64("notice time")?,
            kind: r.get()?,
            subject_id: r.string("notice's subject")?,
            amount_tiyn: r.get()?,
            text: r.string("notice text")?,
            tx_id: r.get()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dtenge_core::crypto::{Hash32, SecretKey};
    use dtenge_core::ErrorCode;
    use dtenge_store::SimDisk;

    fn tiyn(t: u64) -> Amount {
        Amount::from_tiyn(t).unwrap()
    }

    fn draft(node: &str, n: u64) -> Draft {
        Draft::to_account(
            node,
            SecretKey::from_seed([1; 32]).address(),
            NoticeKind::FundsHeld,
            "EV0000001",
            tiyn(n + 1),
            format!("notice {n}"),
            Some(TxId(Hash32([n as u8; 32]))),
        )
    }

    fn store(disk: &SimDisk) -> Store {
        Store::open_simulated(disk.clone(), &[ROLE_NOTICES_TABLE]).unwrap()
    }

    /// Write `drafts` in one commit, as a decision of the role does.
    fn write(store: &Store, notices: &mut Notices, drafts: Vec<Draft>, at_ms: u64) {
        let mut batch = WriteBatch::new();
        let planned = notices.plan(drafts, at_ms, &mut batch);
        store.commit(batch).unwrap();
        notices.apply(planned);
    }

    #[test]
    fn a_notice_decodes_to_what_was_written_and_a_cut_row_is_refused() {
        let party = Party {
            bank: "sapa".into(),
            client_id: "900101300123".into(),
            address: SecretKey::from_seed([2; 32]).address(),
        };
        let notices = [
            Notice {
                seq: 7,
                node: "steppe".into(),
                address: SecretKey::from_seed([1; 32]).address(),
                client_id: None,
                at_ms: 12,
                kind: NoticeKind::FundsReturned,
                subject_id: "EV0000001".into(),
                amount_tiyn: Amount::ZERO,
                text: "returned".into(),
                tx_id: None,
            },
            {
                let d = Draft::to_party(
                    &party,
                    NoticeKind::ContractUse,
                    "C-1",
                    tiyn(5),
                    "used".into(),
                    Some(TxId(Hash32([3; 32]))),
                );
                let mut batch = WriteBatch::new();
                let empty = Notices { by_node: BTreeMap::new(), kept_max: 4 };
                empty.plan(vec![d], 99, &mut batch).remove(0)
            },
        ];
        assert_eq!(notices[1].client_id.as_deref(), Some("900101300123"));
        for notice in notices {
            let bytes = notice.to_bytes();
            assert_eq!(Notice::from_bytes(&bytes).unwrap(), notice);
            for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
                assert!(Notice::from_bytes(&bytes[..cut]).is_err(), "a notice cut at {cut} decodes");
            }
        }
        assert_eq!(stored::<Notice>(&[0; 8], "a notice").unwrap_err().code, ErrorCode::StorageFailure);
    }

    #[test]
    fn notices_are_numbered_densely_per_node_bounded_and_read_back_newest_first() {
        let disk = SimDisk::new();
        let store = store(&disk);
        let mut notices = Notices::load(&store, 3).unwrap();
        assert_eq!(notices.page("steppe", 0, 10), NoticePage::default());
        write(&store, &mut notices, vec![draft("steppe", 0), draft("sapa", 0), draft("steppe", 1)], 5);
        let page = notices.page("steppe", 0, 10);
        assert_eq!(page.total, 2);
        assert_eq!(page.notices.iter().map(|n| (n.seq, n.at_ms)).collect::<Vec<_>>(), [(1, 5), (0, 5)]);
        assert_eq!(notices.page("sapa", 0, 10).notices[0].seq, 0, "numbered per node");
        for n in 2..7 {
            write(&store, &mut notices, vec![draft("steppe", n)], 10 + n);
        }
        let page = notices.page("steppe", 0, 10);
        assert_eq!(page.total, 7, "every notice ever written counts");
        assert_eq!(page.notices.iter().map(|n| n.seq).collect::<Vec<_>>(), [6, 5, 4], "the newest 3 are kept");
        assert_eq!(notices.page("steppe", 1, 1).notices[0].seq, 5);
        assert!(notices.page("steppe", 3, 10).notices.is_empty());
        // On disk too: the rows pushed out are deleted in the commit that pushes them out.
        assert_eq!(store.scan(ROLE_NOTICES_TABLE).unwrap().len(), 3 + 1);

        let reopened = Notices::load(&Store::open_simulated(disk.clone(), &[ROLE_NOTICES_TABLE]).unwrap(), 3).unwrap();
        assert_eq!(reopened.page("steppe", 0, 10), notices.page("steppe", 0, 10));
        assert_eq!(reopened.page("sapa", 0, 10), notices.page("sapa", 0, 10));
        // A smaller bound than the rows were written with keeps the newest.
        let smaller = Notices::load(&store, 2).unwrap();
        assert_eq!(smaller.page("steppe", 0, 10).notices.iter().map(|n| n.seq).collect::<Vec<_>>(), [6, 5]);
        assert_eq!(smaller.total("steppe"), 7);
    }

    #[test]
    fn a_gap_in_a_nodes_numbers_or_a_row_under_another_key_is_corrupt_storage() {
        let disk = SimDisk::new();
        let store = store(&disk);
        let mut notices = Notices::load(&store, 10).unwrap();
        write(&store, &mut notices, (0..3).map(|n| draft("steppe", n)).collect(), 1);
        let mut batch = WriteBatch::new();
        batch.delete(ROLE_NOTICES_TABLE, row_key("steppe", 1));
        store.commit(batch).unwrap();
        assert_eq!(Notices::load(&store, 10).unwrap_err().code, ErrorCode::StorageFailure);

        // The oldest rows missing (not pushed out by the bound): refused too.
        let mut batch = WriteBatch::new();
        batch.delete(ROLE_NOTICES_TABLE, row_key("steppe", 2));
        batch.put(ROLE_NOTICES_TABLE, row_key("steppe", 1), notices.page("steppe", 1, 1).notices[0].to_bytes());
        batch.delete(ROLE_NOTICES_TABLE, row_key("steppe", 0));
        store.commit(batch).unwrap();
        let error = Notices::load(&store, 10).unwrap_err();
        assert_eq!(error.code, ErrorCode::StorageFailure);
        assert!(error.message.contains("kept from 1"), "{}", error.message);
        assert_eq!(Notices::load(&store, 1).unwrap().total("steppe"), 2, "with a bound of 1, only the newest");

        let mut batch = WriteBatch::new();
        let moved = notices.page("steppe", 0, 1).notices.remove(0);
        batch.put(ROLE_NOTICES_TABLE, row_key("steppe", 1), moved.to_bytes());
        store.commit(batch).unwrap();
        assert_eq!(Notices::load(&store, 10).unwrap_err().code, ErrorCode::StorageFailure);
    }
}
