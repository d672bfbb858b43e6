//! The poll queue of the AppWebsocket endpoints in queue mode.
//!
//! It needs no capacity limit of its own: each connection has at most one
//! message waiting (the one-message credit of §5.4 holds the rest in the
//! socket), plus its login and close events.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::engine::PollError;

struct State<T> {
    events: VecDeque<T>,
    interrupted: bool,
    closed: bool,
}

pub(crate) struct HostQueue<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

impl<T> HostQueue<T> {
    pub(crate) fn new() -> HostQueue<T> {
        HostQueue {
            state: Mutex::new(State {
                events: VecDeque::new(),
                interrupted: false,
                closed: false,
            }),
            ready: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        crate::lock(&self.state)
    }

    pub(crate) fn push(&self, event: T) {
        self.lock().events.push_back(event);
        self.ready.notify_one();
    }

    /// Pushes the final event and closes the queue in one step, so a poller
    /// that gets it finds the queue closed right after.
    pub(crate) fn push_last(&self, event: T) {
        {
            let mut g = self.lock();
            g.events.push_back(event);
            g.closed = true;
        }
        self.ready.notify_all();
    }

    /// Waits up to `timeout` (`None`: forever) for the next event. Events
    /// still queued are handed out after `close`.
    pub(crate) fn poll(&self, timeout: Option<Duration>) -> Result<T, PollError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut g = self.lock();
        loop {
            if g.interrupted {
                g.interrupted = false;
                return Err(PollError::Interrupted);
            }
            if let Some(e) = g.events.pop_front() {
                return Ok(e);
            }
            if g.closed {
                return Err(PollError::Closed);
            }
            g = match deadline {
                None => self.ready.wait(g).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(PollError::Timeout);
                    }
                    self.ready.wait_timeout(g, d - now).unwrap_or_else(|e| e.into_inner()).0
                }
            };
        }
    }

    /// Makes one pending or future `poll` return `Interrupted`.
    pub(crate) fn interrupt(&self) {
        self.lock().interrupted = true;
        self.ready.notify_all();
    }

    /// No more events will come: `poll` fails with `Closed` once empty.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_timeout_interrupt_close() {
        let q = HostQueue::new();
        q.push(1);
        q.push(2);
        assert_eq!(q.poll(Some(Duration::ZERO)), Ok(1));
        q.interrupt();
        assert_eq!(q.poll(None), Err(PollError::Interrupted));
        assert_eq!(q.poll(None), Ok(2));
        assert_eq!(q.poll(Some(Duration::from_millis(10))), Err(PollError::Timeout));
        q.push(3);
        q.close();
        assert_eq!(q.poll(None), Ok(3));
        assert_eq!(q.poll(None), Err(PollError::Closed));
    }
}
