//! One poller at a time per object, each waiting no longer than its own
//! timeout.
//!
//! A poll hands out pointers into storage the object keeps until its next
//! poll, so polls of one object must not overlap. A plain mutex held across
//! the wait would serialise them, but a second poller would then wait for
//! the first poller's whole timeout, past its own.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub(crate) struct PollGate {
    busy: Mutex<bool>,
    free: Condvar,
}

/// The right to poll, until dropped.
pub(crate) struct PollTurn<'a>(&'a PollGate);

impl PollGate {
    pub(crate) fn new() -> PollGate {
        PollGate {
            busy: Mutex::new(false),
            free: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, bool> {
        crate::lock(&self.busy)
    }

    /// Waits until no other poll runs, at most until `deadline` (`None`:
    /// without limit). `None` when the deadline came first.
    pub(crate) fn enter(&self, deadline: Option<Instant>) -> Option<PollTurn<'_>> {
        let mut busy = self.lock();
        while *busy {
            busy = match deadline {
                None => self.free.wait(busy).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return None;
                    }
                    self.free
                        .wait_timeout(busy, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
        *busy = true;
        Some(PollTurn(self))
    }

    /// The turn of a poll given `timeout_ms` (negative: forever) and what is
    /// left of it for the wait itself (`None`: forever); `None` when another
    /// poll kept the turn past the timeout.
    pub(crate) fn turn(&self, timeout_ms: i32) -> Option<(PollTurn<'_>, Option<Duration>)> {
        let deadline = (timeout_ms >= 0).then(|| Instant::now() + Duration::from_millis(timeout_ms as u64));
        let turn = self.enter(deadline)?;
        Some((turn, deadline.map(|d| d.saturating_duration_since(Instant::now()))))
    }
}

impl Drop for PollTurn<'_> {
    fn drop(&mut self) {
        *self.0.lock() = false;
        self.0.free.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_poller_waits_only_its_own_timeout() {
        let gate = PollGate::new();
        let first = gate.enter(None).unwrap();
        let t0 = Instant::now();
        assert!(gate.enter(Some(t0 + Duration::from_millis(50))).is_none());
        assert!(t0.elapsed() < Duration::from_millis(500));
        assert!(gate.enter(Some(Instant::now())).is_none(), "0 = just check");
        std::thread::scope(|s| {
            let waiter = s.spawn(|| gate.enter(Some(Instant::now() + Duration::from_secs(10))).is_some());
            std::thread::sleep(Duration::from_millis(50));
            drop(first);
            assert!(waiter.join().unwrap(), "the turn passes on when the first poll ends");
        });
        assert!(gate.enter(None).is_some());
    }
}
