//! The scheduling class of the settle pipeline's threads.
//!
//! A role's inbox, a bank's flusher and finisher and a store's committer are batch stages:
//! each takes everything waiting and pays a fixed cost per batch (a signature, an fsync, a
//! wakeup), so the more that waits when it runs, the less each payment costs. Under Linux's
//! default policy a thread woken by a message preempts the running one at once: with a
//! dozen such threads on two cores every stage ran as soon as one payment reached it, and
//! the REST gateway, which feeds them all, got the leftovers. The requests then queued in
//! the sockets, not in front of the stages, and the stages ran batches of a handful
//! (`docs/PERFORMANCE.md`, "Issue 17, seventh stop": 10,000 against 14,700 custodial
//! transfers/s at 512 connections, the same build).
//!
//! `SCHED_BATCH` keeps the thread's fair share of the CPU (same weight, same nice value) and
//! only drops the wakeup preemption: a woken stage waits for the running thread's slice to
//! end, by which time more has queued for it. Nothing starves, unlike `SCHED_IDLE` or a
//! high nice value, which would let a flood of balance queries stop settlement.

/// Make the calling thread a batch stage (`SCHED_BATCH` on Linux; nothing elsewhere). A
/// refusal (a seccomp profile, a kernel without the policy) leaves the thread as it was:
/// slower under load, never wrong, so it is not an error.
pub fn run_as_batch_stage() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `sched_setscheduler` reads `param` during the call only; pid 0 is the
        // calling thread; SCHED_BATCH takes priority 0 and needs no privilege.
        let _refused = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the calling thread runs as a batch stage.
    fn is_batch_stage() -> bool {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: pid 0 is the calling thread; the call reads nothing of ours.
            unsafe { libc::sched_getscheduler(0) == libc::SCHED_BATCH }
        }
        #[cfg(not(target_os = "linux"))]
        {
            false
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_thread_made_a_batch_stage_runs_under_sched_batch_and_others_do_not() {
        let stage = std::thread::spawn(|| {
            run_as_batch_stage();
            is_batch_stage()
        });
        assert!(stage.join().expect("the stage thread ran"));
        let other = std::thread::spawn(is_batch_stage);
        assert!(!other.join().expect("the other thread ran"));
    }
}
