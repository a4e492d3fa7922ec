//! The threads that run a role, whatever carries its envelopes: the assembly starts every
//! role's on the in-process transport, and a participant's own process (`dtenge run`, the
//! `dtenge-process` crate) starts its one role's on the network between processes. Only the
//! inbox and the transport differ.
//!
//! | thread | what it does |
//! |---|---|
//! | one per role: `inbox:<role>` | takes the role's envelopes in order and hands each to the role |
//! | one per bank: `flush:<bank>` | woken by a submission, takes the bank's queue in batches ([`BankService::flush`]) |
//! | one per bank: `finish:<bank>` | waits for the commits of the bank's inbox steps, in order, and sends what each owes ([`BankService::pipeline`]) |
//! | `ticker` | every [`TICK_MS`], lets every role resend what was not answered in time |
//! | `checkpoint:notary` | every [`CHECKPOINT_POLL_MS`], writes a checkpoint of the notary's unspent set when one is due |
//! | one per bank: `checkpoint:<bank>` | every [`CHECKPOINT_POLL_MS`], writes a checkpoint of the bank's tokens when one is due ([`BankService::checkpoint`]) |
//!
//! A panic on any of them stops the process ([`stop_on_panic`]).

use crate::{BankHandle, Clock, TICK_MS};
use dtenge_bank::{BankService, DirectoryClient};
use dtenge_central::CentralService;
use dtenge_core::{Error, ErrorCode, Result};
use dtenge_directory::DirectoryService;
use dtenge_notary::service::{NotaryService, CHECKPOINT_POLL_MS};
use dtenge_oracle::service::OracleService;
use dtenge_transport::{Inbox, Transport};
use dtenge_wire::{Envelope, RoleId};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How long an idle flusher sleeps before it looks at the stop flag again.
const FLUSHER_IDLE_MS: u64 = 50;

/// A role's questions to other roles in processes of their own, whose answers its inbox
/// hands over (`Threads::dispatch`): the directory's, and for a bank the oracle's.
#[derive(Clone)]
pub struct Asks {
    pub directory: Arc<DirectoryClient>,
    pub oracle: Option<Arc<dtenge_oracle::client::OracleClient>>,
}

/// The running threads of one or more roles.
pub struct Threads {
    stop: Arc<AtomicBool>,
    /// The ticker, the flushers and the checkpointer: stopped by the flag.
    timed: Vec<JoinHandle<()>>,
    /// The inbox threads: stopped by closing the inboxes.
    inboxes: Vec<JoinHandle<()>>,
    /// The banks' finishers (`dtenge_bank::BankService::pipeline`): stopped by closing their
    /// queues once the inboxes have stopped, after finishing what they hold.
    finishers: Vec<(Arc<dtenge_sync::Queue<dtenge_bank::Finish>>, JoinHandle<()>)>,
}

impl Default for Threads {
    fn default() -> Threads {
        Threads::new()
    }
}

impl Threads {
    pub fn new() -> Threads {
        Threads {
            stop: Arc::new(AtomicBool::new(false)),
            timed: Vec::new(),
            inboxes: Vec::new(),
            finishers: Vec::new(),
        }
    }

    /// An inbox thread of a role hosted outside this crate (a replica of the notary): each
    /// envelope handed to `handle`, in order, until the inbox closes.
    pub fn serve(&mut self, name: &str, inbox: Inbox, mut handle: impl FnMut(Envelope) + Send + 'static) -> Result<()> {
        self.inboxes.push(spawn(
            format!("inbox:{name}"),
            Box::new(move || {
                for envelope in inbox {
                    handle(envelope);
                }
            }),
        )?);
        Ok(())
    }

    /// The notary's inbox (its answers go back on `replies`) and its checkpointer.
    pub fn notary(&mut self, notary: Arc<NotaryService>, inbox: Inbox, replies: Arc<dyn Transport>) -> Result<()> {
        let service = notary.clone();
        self.inboxes.push(spawn(
            "inbox:notary".into(),
            Box::new(move || {
                for envelope in inbox {
                    if let Some(reply) = service.handle(envelope) {
                        // A lost answer is asked for again by its sender.
                        let _ = replies.send(reply);
                    }
                }
            }),
        )?);
        // Why a thread of its own, not the notary's inbox thread: the inbox goes on answering
        // the banks while the set is dumped (`dtenge_notary::service::checkpoint`).
        let stop = self.stop.clone();
        self.timed.push(spawn(
            "checkpoint:notary".into(),
            Box::new(move || checkpoint_when_due("notary", &stop, || notary.stopped(), || notary.checkpoint_if_due())),
        )?);
        Ok(())
    }

    pub fn central(&mut self, central: Arc<CentralService>, inbox: Inbox, clock: Clock) -> Result<()> {
        self.inboxes.push(spawn(
            "inbox:central".into(),
            Box::new(move || {
                for envelope in inbox {
                    central.handle(envelope, clock());
                }
            }),
        )?);
        Ok(())
    }

    pub fn directory(
        &mut self,
        directory: Arc<DirectoryService>,
        inbox: Inbox,
        replies: Arc<dyn Transport>,
    ) -> Result<()> {
        self.inboxes.push(spawn(
            "inbox:directory".into(),
            Box::new(move || {
                for envelope in inbox {
                    if let Some(reply) = directory.handle(envelope) {
                        let _ = replies.send(reply);
                    }
                }
            }),
        )?);
        Ok(())
    }

    /// The oracle's inbox. `asks`: the oracle asks the directory over the transport (a
    /// process of its own) for the parties its providers name, and its answers go there.
    pub fn oracle(&mut self, oracle: Arc<OracleService>, inbox: Inbox, clock: Clock, asks: Option<Asks>) -> Result<()> {
        let inbox = match asks {
            Some(asks) => self.dispatch(RoleId::Oracle, "oracle", inbox, asks)?,
            None => inbox,
        };
        self.inboxes.push(spawn(
            "inbox:oracle".into(),
            Box::new(move || {
                for envelope in inbox {
                    oracle.handle(envelope, clock());
                }
            }),
        )?);
        Ok(())
    }

    /// A bank's inbox, finisher and flusher. `asks`: the bank asks the directory and the
    /// oracle over the transport (processes of their own), and its inbox hands their answers
    /// there.
    pub fn bank(&mut self, bank: &BankHandle, inbox: Inbox, clock: Clock, asks: Option<Asks>) -> Result<()> {
        // The bank's inbox goes on with the next message while a step's commit is written;
        // its finisher waits for each commit, in order, and then sends what it owes.
        let finisher = Arc::new(dtenge_sync::Queue::new(dtenge_bank::FINISH_QUEUE_MAX));
        bank.service.pipeline(finisher.clone());
        let (service, queue) = (bank.service.clone(), finisher.clone());
        self.finishers.push((
            finisher,
            spawn(format!("finish:{}", bank.id()), Box::new(move || finish_in_order(&service, &queue)))?,
        ));
        let inbox = match asks {
            Some(asks) => self.dispatch(bank.service.role(), bank.id(), inbox, asks)?,
            None => inbox,
        };
        let (service, now, flusher) = (bank.service.clone(), clock.clone(), bank.clone());
        self.inboxes.push(spawn(
            format!("inbox:{}", bank.id()),
            Box::new(move || {
                for envelope in inbox {
                    service.handle(envelope, now());
                    // An answer from the notary lets the next batch go (`flush` paces).
                    flusher.wake();
                }
            }),
        )?);
        let (service, woken, stop) = (bank.service.clone(), bank.wake.clone(), self.stop.clone());
        self.timed.push(spawn(
            format!("flush:{}", bank.id()),
            Box::new(move || flush_when_woken(&service, &woken, &stop, &*clock)),
        )?);
        // Its tokens' checkpoints, beside its steps (`dtenge_bank::checkpoint`).
        let (service, stop) = (bank.service.clone(), self.stop.clone());
        self.timed.push(spawn(
            format!("checkpoint:{}", bank.id()),
            Box::new(move || {
                let role = service.role().to_string();
                checkpoint_when_due(&role, &stop, || service.stopped(), || service.checkpoint_if_due())
            }),
        )?);
        Ok(())
    }

    /// A thread between the network's inbox and a role's (a bank's, the oracle's): the
    /// directory's and the oracle's answers go straight to the questions waiting for them, the rest on to the
    /// role's inbox. Why not in the role's inbox thread: a bank asks the directory under its
    /// own lock (where a payee's account is, while it admits a payment), and the inbox thread
    /// may be waiting for that lock with the answer queued behind it; each would wait for the
    /// other until the question gave up. Ends when the network's inbox closes, closing the
    /// role's.
    fn dispatch(&mut self, role: RoleId, name: &str, inbox: Inbox, asks: Asks) -> Result<Inbox> {
        let local = Arc::new(dtenge_transport::InProcess::new());
        let onward = local.register(role.clone());
        self.inboxes.push(spawn(
            format!("dispatch:{name}"),
            Box::new(move || {
                for envelope in inbox {
                    if asks.directory.take_reply(&envelope)
                        || asks.oracle.as_ref().is_some_and(|oracle| oracle.take_reply(&envelope))
                    {
                        continue;
                    }
                    push_waiting(&local, envelope);
                }
                local.unregister(&role);
            }),
        )?);
        Ok(onward)
    }

    /// Every [`TICK_MS`], the roles given resend what was not answered in time.
    pub fn ticker(
        &mut self,
        central: Option<Arc<CentralService>>,
        oracle: Option<Arc<OracleService>>,
        banks: Vec<BankHandle>,
        clock: Clock,
    ) -> Result<()> {
        let stop = self.stop.clone();
        self.timed.push(spawn(
            "ticker".into(),
            Box::new(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(TICK_MS));
                    let now_ms = clock();
                    if let Some(central) = &central {
                        central.tick(now_ms);
                    }
                    if let Some(oracle) = &oracle {
                        oracle.tick(now_ms);
                    }
                    for bank in &banks {
                        bank.service.tick(now_ms);
                        // A tick may queue (a card refund owed, submitted again).
                        if bank.service.queued() > 0 {
                            bank.wake();
                        }
                    }
                }
            }),
        )?);
        Ok(())
    }

    /// Stop every thread: the timed ones by the flag, the inboxes by `close_inboxes` (what was
    /// answered is durable; what was queued is dropped unanswered, as a crash would), then the
    /// finishers once they did what they hold.
    pub fn stop(&mut self, close_inboxes: impl FnOnce()) {
        self.stop.store(true, Ordering::Relaxed);
        for handle in self.timed.drain(..) {
            let _ = handle.join();
        }
        close_inboxes();
        for handle in self.inboxes.drain(..) {
            let _ = handle.join();
        }
        for (queue, handle) in self.finishers.drain(..) {
            queue.close();
            let _ = handle.join();
        }
    }
}

/// Hand `envelope` on, waiting while the inbox is full (the network's connection meanwhile reads
/// nothing more: back-pressure to the sender, as `dtenge-net` does). Given up only when the inbox
/// is closed (the role is stopping).
fn push_waiting(local: &dtenge_transport::InProcess, mut envelope: dtenge_wire::Envelope) {
    loop {
        match local.try_deliver(envelope) {
            Ok(()) => return,
            Err((dtenge_transport::SendError::Full(_), back)) => {
                envelope = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(_) => return,
        }
    }
}

fn spawn(name: String, work: Box<dyn FnOnce() + Send>) -> Result<JoinHandle<()>> {
    let thread = name.clone();
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            // Every role thread takes a queue in batches (`dtenge_sync::stage`).
            dtenge_sync::run_as_batch_stage();
            stop_on_panic(&thread, work)
        })
        .map_err(|e| Error::new(ErrorCode::Internal, format!("cannot start a role's thread: {e}")))
}

/// Run a role's thread; a panic on it stops the process. A failed assertion on a role's
/// path means the program is wrong, and the step in hand may be durable without being
/// applied (a batch written to the outbox, a delivery committed): the only safe state is a
/// restart, whose recovery reads what each role's store holds. Why abort and not let the
/// thread end: a panic ends only its own thread, and the platform would go on serving beside
/// a role that no longer takes its queue or its inbox (every call to it waiting, unanswered).
/// The panic's message is on stderr already (the panic hook runs before unwinding).
fn stop_on_panic(thread: &str, work: Box<dyn FnOnce() + Send>) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).is_err() {
        tracing::error!(thread, "a panic on a role's thread stops the process; restart to recover from the disk");
        // Also plainly, in case no subscriber writes the event out (a library's caller).
        eprintln!("{thread}: a panic on a role's thread stops the process; restart to recover from the disk");
        std::process::abort();
    }
}

/// A bank's finisher: what its inbox's steps owe, done in order once each is durable, until
/// the queue is closed and empty.
fn finish_in_order(service: &BankService, queue: &dtenge_sync::Queue<dtenge_bank::Finish>) {
    let mut steps = Vec::with_capacity(64);
    while queue.take(64, &mut steps) {
        for step in steps.drain(..) {
            service.finish(step);
        }
    }
}

fn flush_when_woken(service: &BankService, woken: &dtenge_sync::Signal, stop: &AtomicBool, now: &dyn Fn() -> u64) {
    while !stop.load(Ordering::Relaxed) {
        if woken.wait_timeout(Duration::from_millis(FLUSHER_IDLE_MS)) {
            service.flush(now());
        }
    }
}

/// Write a checkpoint of a role's state whenever one is due, until `stop` (a checkpoint
/// under way is finished first: the shutdown joins this thread). `role` names it in the logs;
/// `stopped` tells a role that stopped after a failed commit (it writes no checkpoint until a
/// restart); `if_due` writes one when it is due.
fn checkpoint_when_due(
    role: &str,
    stop: &AtomicBool,
    stopped: impl Fn() -> bool,
    if_due: impl Fn() -> Option<Result<dtenge_store::checkpoint::Written>>,
) {
    let mut since_look_ms = 0;
    while !stop.load(Ordering::Relaxed) {
        // Short sleeps, so that a shutdown does not wait a whole poll.
        std::thread::sleep(Duration::from_millis(TICK_MS));
        since_look_ms += TICK_MS;
        if since_look_ms < CHECKPOINT_POLL_MS {
            continue;
        }
        since_look_ms = 0;
        if stopped() {
            tracing::error!(
                role,
                "checkpoints stop: the role stopped (a commit failed or a request panicked); restart"
            );
            return;
        }
        // A failed checkpoint leaves the previous one current; the next look tries again.
        match if_due() {
            Some(Ok(written)) => tracing::info!(
                role,
                generation = written.generation,
                items = written.items,
                bytes = written.bytes,
                log_rows_deleted = written.log_rows_deleted,
                "checkpoint written"
            ),
            Some(Err(e)) => tracing::warn!(role, error = %e, "checkpoint failed, retried later"),
            None => {}
        }
    }
}
