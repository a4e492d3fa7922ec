//! The central role: the NBK's node (the issuer), the ABS as the platform sees it, and the NBK
//! registry of emissions and redemptions.
//!
//! **Emission** (bank → NBK conversion, SPEC sub-scenario 3): the NBK issues DT to a bank's own
//! account against the bank's correspondent account in the ABS.
//! 1. [`CentralService::emit`] checks that the correspondent account holds the amount beyond
//!    what emissions in flight have reserved, builds the issue (one output to the bank's own
//!    address), attests it with the NBK key, reserves the amount, and writes the emission to
//!    central's outbox (durably) before it sends the notary a signed request;
//! 2. on the notary's certificate, **one commit** holds the ABS posting
//!    (`corr:<bank> → dt_liability`), the registry entry (with the certificate's number), the
//!    numbered delivery of the issue to the bank, and the idempotency key's answer; only then
//!    is the caller answered;
//! 3. the bank applies the delivery (its own account receives the DT) and acknowledges.
//!
//! DT therefore never exists without the ABS posting that backs it: the posting commits with
//! the first certificate of the issue (a crash in between leaves the emission in the outbox;
//! the notary answers the resent request by the transaction's id), and the amount stays
//! reserved from the request to the posting, so emissions in flight cannot overdraw the
//! correspondent account. A refused issue releases its reservation and posts nothing.
//!
//! **Redemption** (NBK → bank conversion, SPEC sub-scenario 13) runs the other way and starts
//! at the bank, whose tokens it spends (see [`redeem`]): the bank sends its `Redeem`
//! transaction; central validates it, attests it with the NBK key, writes it to its outbox and
//! notarizes it itself; on the certificate one commit holds the ABS posting
//! (`dt_liability → corr:<bank>`), the registry entry, the transaction's decision and the
//! numbered delivery of the certified transaction back to the bank.
//!
//! **The operational calendar** (see [`calendar`]): central takes emissions and redemptions on
//! the NBK's operational days only (`NonWorkingDay` otherwise); the operator's overrides of
//! single days are kept in central's store ([`CentralService::set_day`]). Time is the
//! caller's `now_ms`.
//!
//! One lock guards the role's state from a step's plan to its apply, as in the bank role.

#![forbid(unsafe_code)]

pub mod calendar;
pub mod card_settlement;
pub mod redeem;
mod registry;
// Running figures for monitoring, published without the role's lock.
mod figures;
pub use figures::{CentralAtSeq, CentralFigures, CentralProgress, REGISTRY_KEPT_MAX};

pub use calendar::DayView;
pub use card_settlement::{Settlement, CARD_SETTLEMENTS_TABLE};

pub use redeem::{REDEEM_OUTBOX_TABLE, REDEMPTIONS_IN_FLIGHT_MAX, REDEMPTIONS_TABLE};
pub use registry::{Emission, EntryKind, RegistryEntry, Totals, REGISTRY_TABLE};

use crossbeam_channel::{Receiver, Sender};
use dtenge_abs::{correspondent, Abs, Posting, PostingKind, DT_LIABILITY, RTGS_EXTERNAL};
use dtenge_core::certificate::{notarize_message, CompactTx};
use dtenge_core::crypto::{Address, Hash32, NodeKey, PublicKey};
use dtenge_core::token::Output;
use dtenge_core::tx::{Command, Transaction, TxBody};
use dtenge_core::validate::TxIds;
use dtenge_core::{Amount, Error, ErrorCode, Result};
use dtenge_store::retention::{RecordAge, Retention, IDEMPOTENCY_RETENTION_MS_DEFAULT, IDEMPOTENCY_RETENTION_MS_MIN};
use dtenge_store::{Store, Table, WriteBatch};
use dtenge_transport::Transport;
use dtenge_wire::{Decode, Encode, Envelope, Message, NotarizeReply, NotarizeRequest, Outcome, Payload, RoleId};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Emissions at the notary, by batch number (one emission per batch: emissions are few).
pub const OUTBOX_TABLE: Table = Table("central_outbox");
/// Idempotency keys of emissions: fingerprint and the registry entry's number, once committed.
pub const IDEM_TABLE: Table = Table("central_idempotency");
/// Idempotency keys of credits to correspondent accounts ([`CentralService::credit_correspondent_once`]):
/// fingerprint and the ABS posting's number. A key space of its own: an emission's record
/// names a registry entry, a credit's a posting.
pub const CREDIT_IDEM_TABLE: Table = Table("central_credit_idempotency");
/// [`IDEM_TABLE`]'s and [`CREDIT_IDEM_TABLE`]'s records by the time they were written: the
/// retention sweep's indexes (`dtenge_store::retention`). Each record ends with that time
/// (Unix ms, u64; absent in records from before 2026-12-07).
pub const IDEM_BY_TIME_TABLE: Table = Table("central_idempotency_by_time");
pub const CREDIT_IDEM_BY_TIME_TABLE: Table = Table("central_credit_idempotency_by_time");
/// The next batch number, `blocked:<bank>` -> the reason of the operator's block, and
/// `calendar:<date>` -> the operator's override of a day (see [`CentralService::set_day`]).
pub const META_TABLE: Table = Table("central_meta");
const NEXT_BATCH_KEY: &[u8] = b"next_batch";
const BLOCKED_PREFIX: &[u8] = b"blocked:";

/// A request not answered after this long is sent again.
pub const RESEND_AFTER_MS: u64 = 200;
/// Most emissions at the notary at once.
pub const OUTBOX_EMISSIONS_MAX: usize = 256;

/// Every table of central's store.
pub fn tables() -> Vec<Table> {
    let mut tables = dtenge_abs::TABLES.to_vec();
    tables.extend(dtenge_delivery::TABLES);
    tables.extend([OUTBOX_TABLE, IDEM_TABLE, META_TABLE, REGISTRY_TABLE, REDEEM_OUTBOX_TABLE, REDEMPTIONS_TABLE]);
    tables.push(CARD_SETTLEMENTS_TABLE);
    tables.push(CREDIT_IDEM_TABLE);
    tables.extend([IDEM_BY_TIME_TABLE, CREDIT_IDEM_BY_TIME_TABLE]);
    tables
}

/// What central knows of a bank: where its DT is issued (its own account), and the node key
/// it attests its transactions with (checked on the redemptions it sends).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BankKeys {
    pub own: Address,
    pub node_key: PublicKey,
}

/// An emission's answer: its registry entry.
pub type Answer = Receiver<Result<Emission>>;

/// An idempotency key with the fingerprint of the request it was first used with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdemKey {
    pub key: String,
    pub fingerprint: Hash32,
}

/// An emission at the notary.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pending {
    bank: String,
    amount: Amount,
    tx: Transaction,
    idem: Option<IdemKey>,
    requested_at_ms: u64,
}

struct InFlight {
    pending: Pending,
    ids: TxIds,
    sent_at_ms: u64,
    waiters: Vec<Sender<Result<Emission>>>,
}

struct Inner {
    abs: Abs,
    /// Correspondent account -> amount reserved by emissions in flight.
    reserved: BTreeMap<String, Amount>,
    next_batch: u64,
    outbox: BTreeMap<u64, InFlight>,
    /// Idempotency key -> batch, for emissions in flight.
    keys_in_flight: HashMap<String, u64>,
    /// Redemptions at the notary, by batch number (numbered with the emissions).
    redeem_outbox: BTreeMap<u64, redeem::RedeemInFlight>,
    registry: Vec<RegistryEntry>,
    /// Bank -> why the operator blocked it.
    blocked: BTreeMap<String, String>,
    /// The operational calendar with the operator's overrides.
    calendar: dtenge_core::calendar::Calendar,
    outbound: dtenge_delivery::Outbound,
    /// The banks' streams of card settlements, and those waiting for funds.
    cards: card_settlement::Settlements,
    /// Set when a durable commit failed: the role answers nothing until it is reopened.
    failed: bool,
}

/// The central role.
pub struct CentralService {
    store: Store,
    key: NodeKey,
    notary: PublicKey,
    /// Each bank's own account address (where its DT is issued) and node key.
    banks: BTreeMap<String, BankKeys>,
    transport: Arc<dyn Transport>,
    /// The role's state; each release of its lock publishes the running figures
    /// ([`CentralService::figures`]).
    inner: figures::RoleLock,
    /// The retention of the idempotency records ([`CentralService::tick`] sweeps them).
    idem_retention: Retention,
    credit_idem_retention: Retention,
    idem_retention_ms: std::sync::atomic::AtomicU64,
}

impl Encode for Pending {
    fn encode(&self, w: &mut dtenge_wire::Writer) {
        w.str(&self.bank);
        w.put(&self.amount);
        w.put(&self.tx);
        match &self.idem {
            None => w.u8(0),
            Some(idem) => {
                w.u8(1);
                w.str(&idem.key);
                w.put(&idem.fingerprint);
            }
        }
        w.u64(self.requested_at_ms);
    }
}

impl Decode for Pending {
    const ENCODED_BYTES_MIN: usize = 4 + 8 + Transaction::ENCODED_BYTES_MIN + 1 + 8;
    fn decode(r: &mut dtenge_wire::Reader<'_>) -> std::result::Result<Self, dtenge_wire::DecodeError> {
        let bank = r.string("bank")?;
        let amount = r.get()?;
        let tx = r.get()?;
        let idem = match r.u8("idempotency key")? {
            0 => None,
            1 => Some(IdemKey { key: r.string("idempotency key")?, fingerprint: r.get()? }),
            tag => return Err(dtenge_wire::DecodeError::UnknownTag { what: "idempotency key", tag: u64::from(tag) }),
        };
        Ok(Pending { bank, amount, tx, idem, requested_at_ms: r.u64("requested at")? })
    }
}

fn corrupt(what: &str) -> Error {
    Error::new(ErrorCode::StorageFailure, format!("central: {what}"))
}

impl CentralService {
    /// Open central on its own store (created with [`tables`]), with the NBK key, the notary's
    /// key, and each bank's own account address and node key.
    pub fn open(
        store: Store,
        key: impl Into<NodeKey>,
        notary: PublicKey,
        banks: BTreeMap<String, BankKeys>,
        transport: Arc<dyn Transport>,
    ) -> Result<CentralService> {
        let abs = Abs::load(&store)?;
        let next_batch = match store.get(META_TABLE, NEXT_BATCH_KEY)? {
            Some(bytes) => u64::from_le_bytes(bytes.as_slice().try_into().map_err(|_| corrupt("next batch"))?),
            None => 1,
        };
        let mut inner = Inner {
            abs,
            reserved: BTreeMap::new(),
            next_batch,
            outbox: BTreeMap::new(),
            keys_in_flight: HashMap::new(),
            redeem_outbox: BTreeMap::new(),
            registry: registry::load(&store)?,
            blocked: BTreeMap::new(),
            calendar: calendar::load(&store)?,
            outbound: dtenge_delivery::Outbound::load(&store)?,
            cards: card_settlement::Settlements::load(&store)?,
            failed: false,
        };
        for (key, reason) in store.scan_prefix(META_TABLE, BLOCKED_PREFIX)? {
            let bank =
                String::from_utf8(key[BLOCKED_PREFIX.len()..].to_vec()).map_err(|_| corrupt("a blocked bank"))?;
            inner.blocked.insert(bank, String::from_utf8_lossy(&reason).into_owned());
        }
        for (key, value) in store.scan(OUTBOX_TABLE)? {
            let batch_no = u64::from_be_bytes(key.as_slice().try_into().map_err(|_| corrupt("an outbox key"))?);
            let pending = Pending::from_bytes(&value).map_err(|e| corrupt(&format!("an outbox entry: {e}")))?;
            let ids = TxIds::of(&pending.tx)?;
            inner.reserve(&pending.bank, pending.amount)?;
            if let Some(idem) = &pending.idem {
                inner.keys_in_flight.insert(idem.key.clone(), batch_no);
            }
            inner.outbox.insert(batch_no, InFlight { pending, ids, sent_at_ms: 0, waiters: Vec::new() });
        }
        redeem::load(&store, &mut inner, next_batch)?;
        let inner = figures::RoleLock::new(inner, banks.keys().cloned().collect());
        Ok(CentralService {
            store,
            key: key.into(),
            notary,
            banks,
            transport,
            inner,
            idem_retention: Retention::new(IDEM_TABLE, IDEM_BY_TIME_TABLE),
            credit_idem_retention: Retention::new(CREDIT_IDEM_TABLE, CREDIT_IDEM_BY_TIME_TABLE),
            idem_retention_ms: std::sync::atomic::AtomicU64::new(IDEMPOTENCY_RETENTION_MS_DEFAULT),
        })
    }

    /// The issuer: every DT token names this address.
    pub fn issuer(&self) -> Address {
        self.key.address()
    }

    /// The running figures (registry totals, DT liability, correspondent balances, blocks) as
    /// of the last step central finished, read without its lock: monitoring never waits for
    /// an emission's commit. Once central is quiet they equal what its locked reads return.
    pub fn figures(&self) -> CentralFigures {
        self.inner.figures()
    }

    /// Central's circulation by its registry and its DT liability as of the notary's
    /// certificate `seq` (read without its lock): exact once every emission and redemption
    /// certified up to `seq` is applied (its batches past the notary, see
    /// [`CentralFigures::progress`]); `None` when an entry certified after `seq` is no longer
    /// kept ([`REGISTRY_KEPT_MAX`]).
    pub fn at_seq(&self, seq: u64) -> Option<CentralAtSeq> {
        self.inner.at_seq(seq)
    }

    /// A number for the present moment, to ask for progress published after it
    /// ([`CentralService::progress_after`]).
    pub fn progress_epoch(&self) -> u64 {
        self.inner.epoch()
    }

    /// How far central's batches at the notary and its deliveries have got, as published by
    /// a step that began after `epoch` was read, so it includes every batch sent before.
    /// Never waits for the lock: `None` while a step that began before is under way.
    pub fn progress_after(&self, epoch: u64) -> Option<CentralProgress> {
        self.inner.progress_after(epoch)
    }

    /// DT in circulation as the ABS sees it: the DT liability account.
    pub fn dt_liability(&self) -> Amount {
        self.inner.lock().abs.dt_liability()
    }

    pub fn abs_balance(&self, account: &str) -> i64 {
        self.inner.lock().abs.balance(account)
    }

    /// Every ABS account's balance (tiyn; the external account may be negative).
    pub fn abs_balances(&self) -> BTreeMap<String, i64> {
        self.inner.lock().abs.balances().clone()
    }

    /// The ABS posting numbered `seq` (an emission's or a redemption's `abs_seq`), from the
    /// ledger's journal; `None` when there is none.
    pub fn posting(&self, seq: u64) -> Result<Option<Posting>> {
        let Some(bytes) = self.store.get(dtenge_abs::JOURNAL_TABLE, &seq.to_be_bytes())? else { return Ok(None) };
        let posting: Posting = dtenge_store::decode(&bytes)?;
        if posting.seq != seq {
            return Err(corrupt(&format!("the ABS journal's row {seq} holds posting {}", posting.seq)));
        }
        Ok(Some(posting))
    }

    /// The registry of emissions and redemptions, oldest first.
    pub fn registry(&self) -> Vec<RegistryEntry> {
        self.inner.lock().registry.clone()
    }

    /// At most `count` entries of the registry, newest first, from the `skip`-th, and how
    /// many it holds: read under the lock, only the page copied (issue 19).
    pub fn registry_newest(&self, skip: usize, count: usize) -> (Vec<RegistryEntry>, usize) {
        let inner = self.inner.lock();
        let page = inner.registry.iter().rev().skip(skip).take(count).cloned().collect();
        (page, inner.registry.len())
    }

    /// DT in circulation by the registry: issued minus redeemed.
    pub fn circulation(&self) -> Amount {
        Totals::of(&self.inner.lock().registry, None).circulation()
    }

    /// Emissions and redemptions at the notary, and deliveries not acknowledged.
    pub fn outstanding(&self) -> (usize, usize) {
        let inner = self.inner.lock();
        (inner.outbox.len() + inner.redeem_outbox.len(), inner.outbound.len())
    }

    /// Money arrives on a bank's correspondent account from outside the platform (the RTGS):
    /// what emissions are paid from.
    pub fn credit_correspondent(&self, bank: &str, amount: Amount, now_ms: u64) -> Result<()> {
        self.credit_correspondent_once(bank, amount, None, now_ms).map(|_| ())
    }

    /// [`CentralService::credit_correspondent`], once per idempotency key: the posting is
    /// answered, and a request repeated under its key gets the first posting again (the key's
    /// record commits with the posting); the same key with another request is refused
    /// `IDEMPOTENCY_KEY_REUSED`.
    pub fn credit_correspondent_once(
        &self,
        bank: &str,
        amount: Amount,
        idem: Option<IdemKey>,
        now_ms: u64,
    ) -> Result<Posting> {
        let mut inner = self.inner.lock();
        inner.ensure_running()?;
        if let Some(idem) = &idem {
            if let Some(bytes) = self.store.get(CREDIT_IDEM_TABLE, idem.key.as_bytes())? {
                let (fingerprint, seq, _) = credit_idem_of(&bytes)?;
                if fingerprint != idem.fingerprint {
                    return Err(Error::new(
                        ErrorCode::IdempotencyKeyReused,
                        format!("idempotency key '{}' was used with a different request", idem.key),
                    ));
                }
                return self.posting(seq)?.ok_or_else(|| corrupt("a credit's key names no posting"));
            }
        }
        self.known_bank(bank)?;
        let posting =
            inner.abs.plan(PostingKind::ExternalCredit, RTGS_EXTERNAL, &correspondent(bank), amount, "rtgs", now_ms)?;
        let mut batch = WriteBatch::new();
        inner.abs.writes(&posting, &mut batch)?;
        if let Some(idem) = &idem {
            let mut record = (idem.fingerprint, posting.seq).to_bytes();
            record.extend_from_slice(&now_ms.to_le_bytes());
            batch.put(CREDIT_IDEM_TABLE, idem.key.as_bytes().to_vec(), record);
            self.credit_idem_retention.index(&mut batch, idem.key.as_bytes(), now_ms);
        }
        self.commit(&mut inner, batch)?;
        inner.abs.apply(&posting);
        Ok(posting)
    }

    fn known_bank(&self, bank: &str) -> Result<BankKeys> {
        self.banks
            .get(bank)
            .copied()
            .ok_or_else(|| Error::new(ErrorCode::UnknownAccount, format!("no bank '{bank}' in this network")))
    }

    /// The operator blocks `bank` (or lifts its block, with `blocked` false): recorded
    /// durably, then delivered to the notary and every bank, in order and once, until each
    /// has applied it. From then on central emits nothing to the bank, the notary spends
    /// nothing it sends, and the other banks' checks refuse its attestations; what was
    /// certified before completes.
    pub fn set_blocked(&self, bank: &str, blocked: bool, reason: &str, now_ms: u64) -> Result<()> {
        let mut inner = self.inner.lock();
        inner.ensure_running()?;
        self.known_bank(bank)?;
        if reason.len() > dtenge_wire::message::CLAIM_FIELD_BYTES_MAX {
            return Err(Error::malformed("a reason has at most 256 bytes"));
        }
        let mut key = BLOCKED_PREFIX.to_vec();
        key.extend_from_slice(bank.as_bytes());
        let mut batch = WriteBatch::new();
        if blocked {
            batch.put(META_TABLE, key, reason.as_bytes().to_vec());
        } else {
            batch.delete(META_TABLE, key);
        }
        let decision = dtenge_wire::Decision::Blocked { bank: bank.to_string(), blocked, reason: reason.to_string() };
        let mut receivers = vec![RoleId::Notary];
        receivers.extend(self.banks.keys().map(|b| RoleId::Bank(b.clone())));
        let planned: Vec<_> = receivers
            .into_iter()
            .map(|to| inner.outbound.plan(to, Payload::Decision(decision.clone()), &mut batch))
            .collect();
        self.commit(&mut inner, batch)?;
        if blocked {
            inner.blocked.insert(bank.to_string(), reason.to_string());
        } else {
            inner.blocked.remove(bank);
        }
        for delivery in planned {
            let envelope = inner.outbound.sent(delivery, &RoleId::Central, now_ms);
            let _ = self.transport.send(envelope);
        }
        Ok(())
    }

    /// The banks the operator has blocked, with the reason of each block: what central has
    /// decided (the notary and the banks apply it from their deliveries). Read from the
    /// figures published when a step releases the role's lock (a block is decided under it),
    /// so a reader never waits for a step.
    pub fn blocked(&self) -> BTreeMap<String, String> {
        self.inner.blocked()
    }

    /// Why `bank` is blocked, or `None`: [`CentralService::blocked`] for one bank, as a
    /// gateway asks on every payment.
    pub fn blocked_reason(&self, bank: &str) -> Option<String> {
        self.inner.blocked_reason(bank)
    }

    /// Issue `amount` of DT to `bank`'s own account against its correspondent account. The
    /// answer comes once the ABS posting and the registry entry are durable. Taken on an
    /// operational day only (`NonWorkingDay` otherwise, nothing changed).
    pub fn emit(&self, bank: &str, amount: Amount, idem: Option<IdemKey>, now_ms: u64) -> Answer {
        let (answer, receiver) = crossbeam_channel::bounded(1);
        let mut inner = self.inner.lock();
        match self.admit(&mut inner, bank, amount, idem, now_ms, &answer) {
            Ok(Some(batch_no)) => {
                inner.outbox.get_mut(&batch_no).expect("admitted").waiters.push(answer);
                self.send_request(&inner, batch_no);
            }
            Ok(None) => {}
            Err(e) => {
                let _ = answer.send(Err(e));
            }
        }
        receiver
    }

    /// Check, reserve and write an emission to the outbox: `Ok(Some(batch))` to send,
    /// `Ok(None)` when the idempotency key answered it (or attached it to the one in flight).
    fn admit(
        &self,
        inner: &mut Inner,
        bank: &str,
        amount: Amount,
        idem: Option<IdemKey>,
        now_ms: u64,
        answer: &Sender<Result<Emission>>,
    ) -> Result<Option<u64>> {
        inner.ensure_running()?;
        if let Some(idem) = &idem {
            if self.answered_by_key(inner, idem, answer)? {
                return Ok(None);
            }
        }
        if amount.is_zero() {
            return Err(Error::malformed("the amount must be positive"));
        }
        if inner.outbox.len() >= OUTBOX_EMISSIONS_MAX {
            return Err(Error::new(ErrorCode::LimitExceeded, "too many emissions in flight; retry"));
        }
        let own = self.known_bank(bank)?.own;
        if let Some(reason) = inner.blocked.get(bank) {
            return Err(Error::new(
                ErrorCode::BankBlocked,
                format!("'{bank}' is blocked by the NBK operator: {reason}"),
            ));
        }
        // After the idempotency key: an emission answered already is answered on any day.
        inner.ensure_operational_day(now_ms)?;
        inner.ensure_liability_room(amount)?;
        let batch_no = inner.next_batch;
        let mut tx = Transaction::new(TxBody {
            command: Command::Issue,
            inputs: Vec::new(),
            outputs: vec![Output::standard(amount, own, self.issuer())],
            // An issue spends nothing, so the nonce makes its id unique: central's batch
            // numbers are never reused.
            nonce: batch_no,
        });
        tx.attest(&self.key);
        let ids = TxIds::of(&tx)?;
        inner.reserve(bank, amount)?;
        let pending = Pending { bank: bank.to_string(), amount, tx, idem, requested_at_ms: now_ms };
        let mut batch = WriteBatch::new();
        batch.put(OUTBOX_TABLE, batch_no.to_be_bytes().to_vec(), pending.to_bytes());
        batch.put(META_TABLE, NEXT_BATCH_KEY.to_vec(), (batch_no + 1).to_le_bytes().to_vec());
        if let Some(idem) = &pending.idem {
            batch.put(IDEM_TABLE, idem.key.as_bytes().to_vec(), idem_record(&idem.fingerprint, None, now_ms));
            self.idem_retention.index(&mut batch, idem.key.as_bytes(), now_ms);
        }
        if let Err(e) = self.commit(inner, batch) {
            inner.release(bank, amount);
            return Err(e);
        }
        inner.next_batch = batch_no + 1;
        if let Some(idem) = &pending.idem {
            inner.keys_in_flight.insert(idem.key.clone(), batch_no);
        }
        inner.outbox.insert(batch_no, InFlight { pending, ids, sent_at_ms: now_ms, waiters: Vec::new() });
        Ok(Some(batch_no))
    }

    fn answered_by_key(&self, inner: &mut Inner, idem: &IdemKey, answer: &Sender<Result<Emission>>) -> Result<bool> {
        let reused = || {
            Error::new(
                ErrorCode::IdempotencyKeyReused,
                format!("idempotency key '{}' was used with a different request", idem.key),
            )
        };
        if let Some(batch_no) = inner.keys_in_flight.get(&idem.key).copied() {
            let in_flight = inner.outbox.get_mut(&batch_no).expect("a key in flight names a batch in the outbox");
            if in_flight.pending.idem.as_ref().map(|i| i.fingerprint) != Some(idem.fingerprint) {
                return Err(reused());
            }
            in_flight.waiters.push(answer.clone());
            return Ok(true);
        }
        let Some(bytes) = self.store.get(IDEM_TABLE, idem.key.as_bytes())? else { return Ok(false) };
        let (fingerprint, entry) = idem_of(&bytes)?;
        if fingerprint != idem.fingerprint {
            return Err(reused());
        }
        let entry = entry.ok_or_else(|| corrupt("a key in flight on disk is not in flight in memory"))?;
        let emission =
            inner.registry.get(entry as usize).cloned().ok_or_else(|| corrupt("a key names no registry entry"))?;
        let _ = answer.send(Ok(emission));
        Ok(true)
    }

    fn send_request(&self, inner: &Inner, batch_no: u64) {
        self.notarize(batch_no, &inner.outbox[&batch_no].ids);
    }

    /// Ask the notary to spend one transaction: a request of one, numbered `batch_no` and
    /// signed with the NBK key (central is the notary's `Central` sender).
    fn notarize(&self, batch_no: u64, ids: &TxIds) {
        let compact = CompactTx::of(ids);
        let root = dtenge_core::merkle::root(&[compact.hash()]);
        let signature = self.key.sign(&notarize_message(batch_no, &root).0);
        let request = NotarizeRequest { batch: batch_no, txs: vec![compact], signature };
        let _ = self.transport.send(Envelope {
            from: RoleId::Central,
            to: RoleId::Notary,
            message: Message::NotarizeRequest(request),
        });
    }

    /// Take one envelope from the network: the notary's answers and the banks'
    /// acknowledgements.
    pub fn handle(&self, envelope: Envelope, now_ms: u64) {
        let mut inner = self.inner.lock();
        if inner.failed {
            return;
        }
        match envelope.message {
            Message::NotarizeReply(reply) if envelope.from == RoleId::Notary => {
                self.on_reply(&mut inner, reply, now_ms)
            }
            Message::RedeemRequest(request) => {
                if let RoleId::Bank(bank) = &envelope.from {
                    self.on_redeem_request(&mut inner, bank, request.tx, now_ms);
                }
            }
            Message::Deliver(deliver) => {
                if let RoleId::Bank(bank) = &envelope.from {
                    self.on_bank_delivery(&mut inner, bank, deliver, now_ms);
                }
            }
            Message::DeliverAck(ack) => {
                let mut batch = WriteBatch::new();
                if inner.outbound.plan_ack(&envelope.from, ack.seq, &mut batch)
                    && self.commit(&mut inner, batch).is_ok()
                {
                    inner.outbound.forget(&envelope.from, ack.seq);
                }
            }
            _ => {}
        }
    }

    fn on_reply(&self, inner: &mut Inner, reply: NotarizeReply, now_ms: u64) {
        if inner.redeem_outbox.contains_key(&reply.batch) {
            return self.on_redeem_reply(inner, reply, now_ms);
        }
        let Some(in_flight) = inner.outbox.get(&reply.batch) else { return };
        let [outcome] = reply.outcomes.as_slice() else { return };
        let leaf = CompactTx::of(&in_flight.ids).hash();
        match outcome {
            Outcome::Committed(proof) => {
                let Some(certificate) = &reply.certificate else { return };
                if certificate.verify(&self.notary, &leaf, proof).is_err() {
                    return;
                }
                let in_flight = inner.outbox.remove(&reply.batch).expect("found above");
                self.post(inner, reply.batch, in_flight, certificate.clone(), proof.clone(), now_ms);
            }
            // Not decided at the notary (being committed, or its store failed): ask again.
            Outcome::Refused(e) if matches!(e.code, ErrorCode::RequestInProgress | ErrorCode::StorageFailure) => {}
            Outcome::Refused(e) => {
                let in_flight = inner.outbox.remove(&reply.batch).expect("found above");
                let mut batch = WriteBatch::new();
                batch.delete(OUTBOX_TABLE, reply.batch.to_be_bytes().to_vec());
                if let Some(idem) = &in_flight.pending.idem {
                    batch.delete(IDEM_TABLE, idem.key.as_bytes().to_vec());
                }
                if self.commit(inner, batch).is_err() {
                    inner.outbox.insert(reply.batch, in_flight);
                    return;
                }
                inner.release(&in_flight.pending.bank, in_flight.pending.amount);
                if let Some(idem) = &in_flight.pending.idem {
                    inner.keys_in_flight.remove(&idem.key);
                }
                for waiter in in_flight.waiters {
                    let _ = waiter.send(Err(e.clone()));
                }
            }
        }
    }

    /// The issue is certified: post it in the ABS, enter it in the registry, deliver it to the
    /// bank and answer, in one commit.
    fn post(
        &self,
        inner: &mut Inner,
        batch_no: u64,
        in_flight: InFlight,
        certificate: dtenge_core::certificate::CommitCertificate,
        proof: dtenge_core::certificate::CommitProof,
        now_ms: u64,
    ) {
        let pending = &in_flight.pending;
        let reference = in_flight.ids.tx_id.to_string();
        let debit = correspondent(&pending.bank);
        let posting = inner
            .abs
            .plan(PostingKind::Emission, &debit, DT_LIABILITY, pending.amount, &reference, now_ms)
            .unwrap_or_else(|e| panic!("an emission reserved on its correspondent account cannot be posted: {e}"));
        let emission = Emission {
            number: inner.registry.len() as u64,
            kind: EntryKind::Emission,
            bank: pending.bank.clone(),
            amount: pending.amount,
            tx_id: in_flight.ids.tx_id,
            certificate_seq: certificate.seq,
            abs_seq: posting.seq,
            at_ms: now_ms,
        };
        let mut batch = WriteBatch::new();
        inner.abs.writes(&posting, &mut batch).unwrap_or_else(|e| panic!("an ABS posting cannot be encoded: {e}"));
        registry::write(&emission, &mut batch);
        batch.delete(OUTBOX_TABLE, batch_no.to_be_bytes().to_vec());
        if let Some(idem) = &pending.idem {
            let record = idem_record(&idem.fingerprint, Some(emission.number), now_ms);
            batch.put(IDEM_TABLE, idem.key.as_bytes().to_vec(), record);
            self.idem_retention.index(&mut batch, idem.key.as_bytes(), now_ms);
        }
        let bank = RoleId::Bank(pending.bank.clone());
        let payload = Payload::Certified { certificate, txs: vec![(pending.tx.clone(), proof)] };
        let delivery = inner.outbound.plan(bank, payload, &mut batch);
        if self.commit(inner, batch).is_err() {
            inner.outbox.insert(batch_no, in_flight);
            return;
        }
        inner.abs.apply(&posting);
        inner.release(&pending.bank, pending.amount);
        inner.registry.push(emission.clone());
        if let Some(idem) = &pending.idem {
            inner.keys_in_flight.remove(&idem.key);
        }
        let envelope = inner.outbound.sent(delivery, &RoleId::Central, now_ms);
        let _ = self.transport.send(envelope);
        for waiter in in_flight.waiters {
            let _ = waiter.send(Ok(emission.clone()));
        }
    }

    /// Resend what was not answered in time.
    pub fn tick(&self, now_ms: u64) {
        let mut inner = self.inner.lock();
        if inner.failed {
            return;
        }
        let due: Vec<u64> = inner
            .outbox
            .iter()
            .filter(|(_, f)| f.sent_at_ms.saturating_add(RESEND_AFTER_MS) <= now_ms)
            .map(|(b, _)| *b)
            .collect();
        for batch_no in due {
            self.send_request(&inner, batch_no);
            inner.outbox.get_mut(&batch_no).expect("listed above").sent_at_ms = now_ms;
        }
        self.resend_redemptions(&mut inner, now_ms);
        self.post_queued(&mut inner, now_ms);
        for envelope in inner.outbound.due(&RoleId::Central, now_ms) {
            let _ = self.transport.send(envelope);
        }
        // A failed commit marks the role failed (as a resend's would); a read that failed is
        // tried again at the next tick.
        let _ = self.sweep_idempotency_locked(&mut inner, now_ms, dtenge_store::retention::SWEEP_ROWS_MAX);
    }

    /// Keep idempotency records `retention_ms` (at least a minute; default 7 days).
    pub fn set_idempotency_retention_ms(&self, retention_ms: u64) -> Result<()> {
        if retention_ms < IDEMPOTENCY_RETENTION_MS_MIN {
            return Err(Error::malformed(format!("an idempotency retention of {retention_ms} ms")));
        }
        self.idem_retention_ms.store(retention_ms, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// One retention sweep of both key tables (each tick runs one): delete the records older
    /// than the window, reading at most `rows_max` index rows of each; emissions in flight are
    /// kept. The records deleted.
    pub fn sweep_idempotency(&self, now_ms: u64, rows_max: usize) -> Result<u64> {
        let mut inner = self.inner.lock();
        inner.ensure_running()?;
        self.sweep_idempotency_locked(&mut inner, now_ms, rows_max)
    }

    fn sweep_idempotency_locked(&self, inner: &mut Inner, now_ms: u64, rows_max: usize) -> Result<u64> {
        let retention_ms = self.idem_retention_ms.load(std::sync::atomic::Ordering::Relaxed);
        let mut batch = WriteBatch::new();
        // Under the role's lock, committed before it is released: no request reads or
        // writes these keys meanwhile.
        let in_flight = &inner.keys_in_flight;
        let emissions =
            self.idem_retention.sweep(&self.store, &mut batch, now_ms, retention_ms, rows_max, |key, record| {
                let (_, entry, written_ms) = idem_of_timed(record)?;
                let flying = std::str::from_utf8(key).is_ok_and(|key| in_flight.contains_key(key));
                Ok(if flying || entry.is_none() { RecordAge::InFlight } else { RecordAge::Written(written_ms) })
            })?;
        let credits = self.credit_idem_retention.sweep(
            &self.store,
            &mut batch,
            now_ms,
            retention_ms,
            rows_max,
            |_, record| Ok(RecordAge::Written(credit_idem_of(record)?.2)),
        )?;
        if !batch.is_empty() {
            self.commit(inner, batch)?;
        }
        Ok(emissions.records + credits.records)
    }

    fn commit(&self, inner: &mut Inner, batch: WriteBatch) -> Result<()> {
        self.store.commit(batch).inspect_err(|_| inner.failed = true)
    }
}

impl Inner {
    fn ensure_running(&self) -> Result<()> {
        if self.failed {
            return Err(Error::new(ErrorCode::StorageFailure, "central's store failed; it restarts from its disk"));
        }
        Ok(())
    }

    /// The DT liability stays at most [`Amount::MAX`] with `amount` and every emission in
    /// flight posted (`LIMIT_EXCEEDED` otherwise), so that the posting planned on the
    /// certificate cannot fail: the notary would have issued DT that central could never post.
    fn ensure_liability_room(&self, amount: Amount) -> Result<()> {
        let in_flight = Amount::sum(self.reserved.values().copied())?;
        let after = self.abs.dt_liability().checked_add(in_flight).and_then(|a| a.checked_add(amount));
        after.map(|_| ()).map_err(|_| {
            Error::new(
                ErrorCode::LimitExceeded,
                format!("the DT liability would exceed the maximum {} tiyn with this emission", Amount::MAX.tiyn()),
            )
        })
    }

    /// Reserve `amount` on `bank`'s correspondent account for an emission in flight.
    fn reserve(&mut self, bank: &str, amount: Amount) -> Result<()> {
        let account = correspondent(bank);
        let reserved = self.reserved.get(&account).copied().unwrap_or(Amount::ZERO);
        let wanted = reserved.checked_add(amount)?;
        let balance = self.abs.balance(&account).max(0) as u64;
        if wanted.tiyn() > balance {
            return Err(Error::new(
                ErrorCode::InsufficientFunds,
                format!(
                    "ABS account {account} holds {balance} tiyn, {} needed with emissions in flight",
                    wanted.tiyn()
                ),
            ));
        }
        self.reserved.insert(account, wanted);
        Ok(())
    }

    fn release(&mut self, bank: &str, amount: Amount) {
        let account = correspondent(bank);
        let reserved = self.reserved.get(&account).copied().unwrap_or(Amount::ZERO);
        let left = reserved.checked_sub(amount).expect("a release follows its reservation");
        self.reserved.insert(account, left);
    }
}

/// An idempotency record: the fingerprint, then the registry entry's number once committed,
/// then when it was written.
fn idem_record(fingerprint: &Hash32, entry: Option<u64>, written_ms: u64) -> Vec<u8> {
    let mut w = dtenge_wire::Writer::new();
    w.put(fingerprint);
    w.put(&entry);
    w.u64(written_ms);
    w.into_bytes()
}

fn idem_of(bytes: &[u8]) -> Result<(Hash32, Option<u64>)> {
    idem_of_timed(bytes).map(|(fingerprint, entry, _)| (fingerprint, entry))
}

/// A record decoded with its write time (`None`: written before the time was kept).
fn idem_of_timed(bytes: &[u8]) -> Result<(Hash32, Option<u64>, Option<u64>)> {
    let mut r = dtenge_wire::Reader::new(bytes);
    let decoded = (|| -> std::result::Result<_, dtenge_wire::DecodeError> {
        let fingerprint: Hash32 = r.get()?;
        let entry: Option<u64> = r.get()?;
        let written_ms = if r.remaining() == 0 { None } else { Some(r.u64("written at")?) };
        r.finish()?;
        Ok((fingerprint, entry, written_ms))
    })();
    decoded.map_err(|e| corrupt(&format!("an idempotency record: {e}")))
}

/// A credit's idempotency record: fingerprint, posting number, and the time written.
fn credit_idem_of(bytes: &[u8]) -> Result<(Hash32, u64, Option<u64>)> {
    let mut r = dtenge_wire::Reader::new(bytes);
    let decoded = (|| -> std::result::Result<_, dtenge_wire::DecodeError> {
        let fingerprint: Hash32 = r.get()?;
        let seq = r.u64("posting")?;
        let written_ms = if r.remaining() == 0 { None } else { Some(r.u64("written at")?) };
        r.finish()?;
        Ok((fingerprint, seq, written_ms))
    })();
    decoded.map_err(|e| corrupt(&format!("a credit's idempotency record: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_records_decode_with_and_without_their_write_time() {
        let fp = Hash32([7; 32]);
        assert_eq!(idem_of_timed(&idem_record(&fp, Some(3), 9)).unwrap(), (fp, Some(3), Some(9)));
        let old = (fp, Some(3u64)).to_bytes();
        assert_eq!(idem_of_timed(&old).unwrap(), (fp, Some(3), None));
        let mut credit = (fp, 4u64).to_bytes();
        assert_eq!(credit_idem_of(&credit).unwrap(), (fp, 4, None));
        credit.extend_from_slice(&9u64.to_le_bytes());
        assert_eq!(credit_idem_of(&credit).unwrap(), (fp, 4, Some(9)));
        assert!(credit_idem_of(&credit[..credit.len() - 1]).is_err());
    }

    /// Bytes of the records and their index rows, and what 7 days hold at 1,000 keyed
    /// requests a second: `cargo test -p dtenge-central --lib tests::disk_growth -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn disk_growth() {
        let key_bytes = "nbk-operator/".len() + 36;
        let index = dtenge_store::retention::index_row_key_bytes(key_bytes);
        let keys_7d: u64 = 1_000 * 86_400 * 7;
        let emission = idem_record(&Hash32([7; 32]), Some(1 << 40), 1 << 40).len();
        let mut credit = (Hash32([7; 32]), 1u64 << 40).to_bytes();
        credit.extend_from_slice(&(1u64 << 40).to_le_bytes());
        for (table, value) in [("central_idempotency", emission), ("central_credit_idempotency", credit.len())] {
            let per_key = key_bytes + value + index;
            println!(
                "{table}: {key_bytes} B key + {value} B value, index row {index} B = {per_key} B/key \
                 (payload, before LSM overhead); 7 days at 1000/s = {:.1} GiB",
                (keys_7d * per_key as u64) as f64 / (1u64 << 30) as f64
            );
        }
    }
}
