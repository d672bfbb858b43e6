//! Queue mode: events wait here until the host polls them.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::{ConnId, Event};

/// An event that owns its data (queue mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedEvent {
    Open {
        conn: ConnId,
        remote: SocketAddr,
        path: String,
        protocol: Option<String>,
    },
    /// `data` holds the payload followed by one 0 byte (see [`OwnedEvent::payload`]).
    Message {
        conn: ConnId,
        data: Vec<u8>,
        text: bool,
    },
    Ping {
        conn: ConnId,
        data: Vec<u8>,
    },
    Pong {
        conn: ConnId,
        data: Vec<u8>,
    },
    Drain {
        conn: ConnId,
    },
    Close {
        conn: ConnId,
        status: i32,
        reason: String,
        by_host: bool,
    },
    Sent {
        conn: ConnId,
    },
    ConnectFailed {
        conn: ConnId,
        error: super::ConnectError,
        message: String,
    },
}

fn with_nul(d: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(d.len() + 1);
    v.extend_from_slice(d);
    v.push(0);
    v
}

impl OwnedEvent {
    pub fn from_event(e: &Event<'_>) -> OwnedEvent {
        match *e {
            Event::Open {
                conn,
                remote,
                path,
                protocol,
            } => OwnedEvent::Open {
                conn,
                remote,
                path: path.to_owned(),
                protocol: protocol.map(str::to_owned),
            },
            Event::Message { conn, data, text } => OwnedEvent::Message {
                conn,
                data: with_nul(data),
                text,
            },
            Event::Ping { conn, data } => OwnedEvent::Ping {
                conn,
                data: with_nul(data),
            },
            Event::Pong { conn, data } => OwnedEvent::Pong {
                conn,
                data: with_nul(data),
            },
            Event::Drain { conn } => OwnedEvent::Drain { conn },
            Event::Close {
                conn,
                status,
                reason,
                by_host,
            } => OwnedEvent::Close {
                conn,
                status,
                reason: reason.to_owned(),
                by_host,
            },
            Event::Sent { conn } => OwnedEvent::Sent { conn },
            Event::ConnectFailed { conn, error, message } => OwnedEvent::ConnectFailed {
                conn,
                error,
                message: message.to_owned(),
            },
        }
    }

    /// The connection the event is about.
    pub fn conn(&self) -> ConnId {
        match self {
            OwnedEvent::Open { conn, .. }
            | OwnedEvent::Message { conn, .. }
            | OwnedEvent::Ping { conn, .. }
            | OwnedEvent::Pong { conn, .. }
            | OwnedEvent::Drain { conn }
            | OwnedEvent::Sent { conn }
            | OwnedEvent::ConnectFailed { conn, .. }
            | OwnedEvent::Close { conn, .. } => *conn,
        }
    }

    /// Message, ping or pong payload without the trailing 0.
    pub fn payload(&self) -> &[u8] {
        match self {
            OwnedEvent::Message { data, .. } | OwnedEvent::Ping { data, .. } | OwnedEvent::Pong { data, .. } => {
                &data[..data.len() - 1]
            }
            _ => &[],
        }
    }

    fn weight(&self) -> usize {
        64 + self.payload().len()
    }
}

/// Why `poll` returned without an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollError {
    Timeout,
    /// `interrupt` was called.
    Interrupted,
    /// The server has stopped and the queue is empty.
    Closed,
}

struct Inner {
    events: VecDeque<OwnedEvent>,
    bytes: usize,
    interrupted: bool,
    closed: bool,
}

/// A bounded queue of events. Sockets stop being read while it is full, so no
/// event is ever dropped.
pub struct EventQueue {
    inner: Mutex<Inner>,
    ready: Condvar,
    capacity: usize,
    byte_capacity: usize,
    paused: AtomicBool,
    resume: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl EventQueue {
    pub(crate) fn new(capacity: usize) -> EventQueue {
        EventQueue {
            inner: Mutex::new(Inner {
                events: VecDeque::new(),
                bytes: 0,
                interrupted: false,
                closed: false,
            }),
            ready: Condvar::new(),
            capacity,
            byte_capacity: 64 << 20,
            paused: AtomicBool::new(false),
            resume: OnceLock::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        crate::lock(&self.inner)
    }

    pub(crate) fn set_resume_hook(&self, f: Box<dyn Fn() + Send + Sync>) {
        let _ = self.resume.set(f);
    }

    /// Called by I/O threads: true when reading should pause.
    pub(crate) fn is_full(&self) -> bool {
        if self.paused.load(Ordering::Acquire) {
            return true;
        }
        let g = self.lock();
        if g.events.len() >= self.capacity || g.bytes >= self.byte_capacity {
            self.paused.store(true, Ordering::Release);
            return true;
        }
        false
    }

    pub(crate) fn push(&self, e: OwnedEvent) {
        let mut g = self.lock();
        g.bytes += e.weight();
        g.events.push_back(e);
        drop(g);
        self.ready.notify_one();
    }

    /// Waits up to `timeout` (`None` = forever) for the next event.
    pub fn poll(&self, timeout: Option<Duration>) -> Result<OwnedEvent, PollError> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut g = self.lock();
        loop {
            if g.interrupted {
                g.interrupted = false;
                return Err(PollError::Interrupted);
            }
            if let Some(e) = g.events.pop_front() {
                g.bytes -= e.weight();
                let low = g.events.len() < self.capacity / 2 && g.bytes < self.byte_capacity / 2;
                drop(g);
                if low && self.paused.swap(false, Ordering::AcqRel) {
                    if let Some(f) = self.resume.get() {
                        f();
                    }
                }
                return Ok(e);
            }
            if g.closed {
                return Err(PollError::Closed);
            }
            match deadline {
                None => g = self.ready.wait(g).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(PollError::Timeout);
                    }
                    g = self.ready.wait_timeout(g, d - now).unwrap_or_else(|e| e.into_inner()).0;
                }
            }
        }
    }

    /// Makes one pending or future `poll` return `Interrupted`.
    pub fn interrupt(&self) {
        self.lock().interrupted = true;
        self.ready.notify_all();
    }

    /// Events waiting now.
    pub fn len(&self) -> usize {
        self.lock().events.len()
    }

    /// True when no event waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}
