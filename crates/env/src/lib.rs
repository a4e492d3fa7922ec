//! What the platform takes from the outside world: time and randomness, injected so that a
//! test or the deterministic simulator controls both; and the request to stop its background
//! threads. Its own crate, so that the roles' faces (the gateway's platform facade) and
//! today's one-process network share it, and it outlives the network.

use parking_lot::{Condvar, Mutex};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::sync::atomic::{AtomicU64, Ordering};

/// Wall-clock time in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> u64;

    /// Move the clock forward, if it is one that can be moved (tests and the demo). The
    /// operating system's clock cannot: `false`.
    fn advance_ms(&self, _ms: u64) -> bool {
        false
    }
}

/// The operating system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }
}

/// A clock that moves only when told to: for tests, the demo and the simulator.
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(now_ms: u64) -> ManualClock {
        ManualClock(AtomicU64::new(now_ms))
    }
    pub fn set(&self, now_ms: u64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    fn advance_ms(&self, ms: u64) -> bool {
        self.advance(ms);
        true
    }
}

/// Source of key material and nonces: a ChaCha20 CSPRNG, seeded from the OS in production and
/// from a fixed seed under test.
pub struct Entropy(Mutex<ChaCha20Rng>);

impl Entropy {
    pub fn from_os() -> Entropy {
        Entropy(Mutex::new(ChaCha20Rng::from_entropy()))
    }
    pub fn from_seed(seed: u64) -> Entropy {
        Entropy(Mutex::new(ChaCha20Rng::seed_from_u64(seed)))
    }
    pub fn seed32(&self) -> [u8; 32] {
        let mut seed = [0u8; 32];
        self.0.lock().fill_bytes(&mut seed);
        seed
    }
    /// Move to a new stream for a new run of the same network: drawn from the current stream
    /// and the run's number, so that a network reopened with the same seed (tests, the
    /// simulator) never repeats the keys and nonces of an earlier run, yet stays reproducible.
    pub fn reseed(&self, run: u64) {
        let mut rng = self.0.lock();
        let mut material = [0u8; 32];
        rng.fill_bytes(&mut material);
        let seed = dtenge_core::crypto::hash_parts(b"dtenge/entropy/run/v1", &[&material, &run.to_le_bytes()]);
        *rng = ChaCha20Rng::from_seed(seed.0);
    }

    pub fn nonce(&self) -> u64 {
        self.0.lock().next_u64()
    }
}

/// Tells the platform's background threads (the expiry sweeper, the checkpointer) to end, and
/// wakes them from their wait between two passes, so that a stop does not wait out a period.
/// Clones share the signal.
#[derive(Clone, Default)]
pub struct StopSignal(std::sync::Arc<(Mutex<bool>, Condvar)>);

impl StopSignal {
    pub fn new() -> StopSignal {
        StopSignal::default()
    }

    /// Ask every thread that waits on this signal to end after its current pass.
    pub fn stop(&self) {
        let (stopped, wake) = &*self.0;
        *stopped.lock() = true;
        wake.notify_all();
    }

    pub fn is_stopped(&self) -> bool {
        *self.0 .0.lock()
    }

    /// Wait `period_ms`, or less if told to stop meanwhile; `true` when told to stop.
    pub fn wait_ms(&self, period_ms: u64) -> bool {
        let (stopped, wake) = &*self.0;
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(period_ms);
        let mut stopped = stopped.lock();
        while !*stopped {
            if wake.wait_until(&mut stopped, deadline).timed_out() {
                break;
            }
        }
        *stopped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_wakes_a_waiting_thread_at_once() {
        let signal = StopSignal::new();
        let waiter = {
            let signal = signal.clone();
            std::thread::spawn(move || {
                let started = std::time::Instant::now();
                (signal.wait_ms(60_000), started.elapsed())
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        signal.stop();
        let (stopped, waited) = waiter.join().unwrap();
        assert!(stopped);
        assert!(waited < std::time::Duration::from_secs(10), "waited {waited:?}");
        assert!(signal.is_stopped());
        // Once stopped, a wait returns at once.
        assert!(signal.wait_ms(60_000));
    }

    #[test]
    fn without_a_stop_a_wait_lasts_its_period() {
        let signal = StopSignal::new();
        let started = std::time::Instant::now();
        assert!(!signal.wait_ms(30));
        assert!(started.elapsed() >= std::time::Duration::from_millis(30));
    }
}
