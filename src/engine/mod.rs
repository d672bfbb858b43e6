//! The engine: I/O threads running a `mio` event loop, each connection a
//! non-blocking WebSocket state machine, timers and limits.
//!
//! [`Server::start`] binds, spawns the I/O threads and returns; events reach
//! a [`Handler`] on an I/O thread (callback mode) or an [`EventQueue`] the host
//! polls (queue mode). [`ServerHandle`] sends, pings, closes and queries from
//! any thread without blocking.

mod config;
mod dial;
pub mod frame;
mod handshake;
mod out;
mod queue;
mod registry;
mod transport;
mod worker;

pub use config::{Config, OverflowPolicy};
pub use dial::{ConnectError, DialTarget, ProxyTunnel};
pub use queue::{EventQueue, OwnedEvent, PollError};

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub(crate) use registry::IdMap;
use registry::Registry;
use worker::{Cmd, WorkerLink};

/// A connection id: unique within the process, never reused. 0 is never a valid id.
pub type ConnId = u64;

/// Something that happened on a connection. Borrowed data lives until the
/// handler returns.
#[derive(Debug)]
pub enum Event<'a> {
    /// The upgrade completed. `path` is the request target (path and query);
    /// `protocol` the selected subprotocol.
    Open {
        conn: ConnId,
        remote: SocketAddr,
        path: &'a str,
        protocol: Option<&'a str>,
    },
    /// A complete message (fragments reassembled; text is valid UTF-8). The
    /// byte after `data` is always 0, for the C API.
    Message { conn: ConnId, data: &'a [u8], text: bool },
    /// A ping arrived; the pong has already been queued.
    Ping { conn: ConnId, data: &'a [u8] },
    /// A pong arrived.
    Pong { conn: ConnId, data: &'a [u8] },
    /// The outbound buffer went back under the soft limit after a write
    /// reported backpressure.
    Drain { conn: ConnId },
    /// The connection has ended. `status`: the peer's close code; 0 for a close
    /// frame without a code; the code wsbroker sent when it failed the
    /// connection (1002, 1007, 1008, 1009) or the host's code when `by_host`;
    /// -1 when the transport dropped without a close frame.
    Close {
        conn: ConnId,
        status: i32,
        reason: &'a str,
        by_host: bool,
    },
    /// Client role: one message (a `send`) has been written to the socket.
    /// Only with [`DialTarget::send_results`]; one event per message, in order.
    Sent { conn: ConnId },
    /// Client role: the connection failed before it opened (no `Open` or
    /// `Close` follows for this id).
    ConnectFailed {
        conn: ConnId,
        error: ConnectError,
        message: &'a str,
    },
}

/// Receives events on an I/O thread. Never called twice at once for one server.
pub trait Handler: Send + 'static {
    fn on_event(&mut self, server: &ServerHandle, event: Event<'_>);

    /// Called about every 100 ms on an I/O thread (never at the same time as
    /// `on_event`), for the handler's own timers. Does nothing by default.
    fn on_tick(&mut self, _server: &ServerHandle) {}
}

impl<F> Handler for F
where
    F: FnMut(&ServerHandle, Event<'_>) + Send + 'static,
{
    fn on_event(&mut self, server: &ServerHandle, event: Event<'_>) {
        self(server, event)
    }
}

/// A write that was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Queued; the outbound buffer is under the soft limit.
    Queued,
    /// Queued, but the outbound buffer is above the soft limit: a `Drain`
    /// event follows when it falls below.
    Backpressure,
}

/// Why a write, ping or close was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// No connection has this id (never existed or fully gone).
    NotFound,
    /// The connection is closing or closed (or its handshake is not done).
    Closed,
    /// Text that is not valid UTF-8.
    InvalidUtf8,
    /// A ping payload over 125 bytes, or a close reason over 123 bytes.
    TooBig,
    /// Refused: the outbound buffer would pass the hard limit (policy Refuse).
    WouldOverflow,
    /// The outbound buffer would pass the hard limit: the connection is being
    /// closed with 1008 "slow consumer" (policy Close).
    SlowConsumer,
    /// The server is shutting down.
    ShutDown,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SendError::NotFound => "no connection with this id",
            SendError::Closed => "the connection is closed or closing",
            SendError::InvalidUtf8 => "text is not valid UTF-8",
            SendError::TooBig => "control payload too large",
            SendError::WouldOverflow => "the outbound buffer would pass its hard limit",
            SendError::SlowConsumer => "slow consumer: the connection is being closed",
            SendError::ShutDown => "the server is shutting down",
        })
    }
}

impl std::error::Error for SendError {}

/// Counters of one server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// WebSocket connections open now (handshake done, not yet closed).
    pub connections_open: u64,
    /// WebSocket connections opened since start.
    pub connections_total: u64,
    pub messages_in: u64,
    pub bytes_in: u64,
    pub messages_out: u64,
    pub bytes_out: u64,
    /// Connections closed with 1008 because they did not read fast enough.
    pub slow_consumers_closed: u64,
    /// TCP connections whose upgrade failed, timed out, or ended before it
    /// completed (a refused TLS handshake included).
    pub handshakes_failed: u64,
}

pub(crate) struct Shared {
    pub(crate) cfg: Config,
    pub(crate) local_addr: SocketAddr,
    pub(crate) workers: Vec<WorkerLink>,
    pub(crate) registry: Registry,
    pub(crate) next_id: AtomicU64,
    pub(crate) open_count: AtomicUsize,
    /// TCP connections held, handshakes included (for `max_connections`).
    pub(crate) live_count: AtomicUsize,
    pub(crate) handler: Mutex<Option<Box<dyn Handler>>>,
    pub(crate) queue: Option<Arc<EventQueue>>,
    pub(crate) shutting_down: AtomicBool,
    /// Every connection of this engine is dialled (client role).
    pub(crate) client: bool,
    /// Accepted connections speak TLS with this configuration.
    pub(crate) tls_server: Option<Arc<rustls::ServerConfig>>,
}

/// A cheap, cloneable handle for sending and querying from any thread.
#[derive(Clone)]
pub struct ServerHandle {
    pub(crate) shared: Arc<Shared>,
}

/// A prebuilt server frame, shared (not copied) by every recipient.
#[derive(Clone, Debug)]
pub struct SharedFrame(pub(crate) Arc<[u8]>);

impl SharedFrame {
    /// Frames `data` once as a text or binary message.
    pub fn new(data: &[u8], text: bool) -> Result<SharedFrame, SendError> {
        if text && !frame::is_utf8(data) {
            return Err(SendError::InvalidUtf8);
        }
        let op = if text { frame::OP_TEXT } else { frame::OP_BINARY };
        Ok(SharedFrame(frame::build_frame(op, data, None).into()))
    }
}

impl ServerHandle {
    /// The address the server listens on (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// Sends one message. Safe to call from any thread; never blocks.
    pub fn send(&self, conn: ConnId, data: &[u8], text: bool) -> Result<Sent, SendError> {
        if text && !frame::is_utf8(data) {
            return Err(SendError::InvalidUtf8);
        }
        let op = if text { frame::OP_TEXT } else { frame::OP_BINARY };
        worker::send(&self.shared, conn, out::Frame::Build(op, data), true)
    }

    /// Sends a prebuilt frame (the same bytes to many connections).
    pub fn send_shared(&self, conn: ConnId, f: &SharedFrame) -> Result<Sent, SendError> {
        worker::send(&self.shared, conn, out::Frame::Shared(f.0.clone()), true)
    }

    /// Sends a ping (payload at most 125 bytes).
    pub fn ping(&self, conn: ConnId, payload: &[u8]) -> Result<Sent, SendError> {
        if payload.len() > 125 {
            return Err(SendError::TooBig);
        }
        worker::send(&self.shared, conn, out::Frame::Build(frame::OP_PING, payload), false)
    }

    /// Starts the closing handshake. Codes ≤ 0, and codes not allowed on the
    /// wire, are sent as 1000. From then on `is_valid` is false and writes
    /// fail; the `Close` event (with `by_host`) follows when the peer answers
    /// or the close timeout passes.
    pub fn close(&self, conn: ConnId, code: i32, reason: &str) -> Result<(), SendError> {
        if reason.len() > 123 {
            return Err(SendError::TooBig);
        }
        worker::close(&self.shared, conn, frame::sanitize_close_code(code), reason)
    }

    /// True from the open event until `close` or the end of the connection.
    pub fn is_valid(&self, conn: ConnId) -> bool {
        self.shared.registry.get(conn).is_some_and(|c| c.is_open())
    }

    /// Bytes waiting in the connection's outbound buffer (approximate from
    /// other threads).
    pub fn buffered(&self, conn: ConnId) -> Option<usize> {
        self.shared.registry.get(conn).map(|c| c.buffered())
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        for w in &self.shared.workers {
            w.stats.add_to(&mut s);
        }
        s.connections_open = self.shared.open_count.load(Ordering::Relaxed) as u64;
        s
    }

    /// The server configuration.
    pub fn config(&self) -> &Config {
        &self.shared.cfg
    }

    /// Client role: opens an outgoing connection. Events for it (`Open` or
    /// `ConnectFailed`, then the usual ones) carry the returned id.
    pub fn dial(&self, target: DialTarget) -> ConnId {
        worker::dial(&self.shared, target)
    }

    /// Manual flow control: lets the next message of `conn` through.
    pub fn message_complete(&self, conn: ConnId) {
        worker::complete(&self.shared, conn)
    }

    /// True when the calling thread is one of this server's I/O threads.
    pub fn on_io_thread(&self) -> bool {
        worker::on_io_thread_of(&self.shared)
    }
}

/// A running server. Dropping it (or [`Server::shutdown`]) sends close 1001 to
/// every connection, waits briefly for the closing handshakes, and joins the
/// I/O threads.
pub struct Server {
    handle: ServerHandle,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    /// Binds and starts in callback mode.
    pub fn start(cfg: Config, handler: impl Handler) -> io::Result<Server> {
        Self::start_inner(cfg, Some(Box::new(handler)), None, true)
    }

    /// Binds and starts in queue mode: events wait in the returned queue.
    pub fn start_queued(cfg: Config) -> io::Result<(Server, Arc<EventQueue>)> {
        let q = Arc::new(EventQueue::new(cfg.event_queue_capacity));
        let s = Self::start_inner(cfg, None, Some(q.clone()), true)?;
        Ok((s, q))
    }

    /// Starts an engine for outgoing connections only (client role; `bind`
    /// and the listener settings are ignored). Connect with
    /// [`ServerHandle::dial`].
    pub fn start_client(cfg: Config, handler: impl Handler) -> io::Result<Server> {
        Self::start_inner(cfg, Some(Box::new(handler)), None, false)
    }

    /// [`Server::start_client`] in queue mode.
    pub fn start_client_queued(cfg: Config) -> io::Result<(Server, Arc<EventQueue>)> {
        let q = Arc::new(EventQueue::new(cfg.event_queue_capacity));
        let s = Self::start_inner(cfg, None, Some(q.clone()), false)?;
        Ok((s, q))
    }

    fn start_inner(
        cfg: Config,
        handler: Option<Box<dyn Handler>>,
        queue: Option<Arc<EventQueue>>,
        listen: bool,
    ) -> io::Result<Server> {
        cfg.validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let (listener, local_addr) = if listen {
            let l = mio::net::TcpListener::bind(cfg.bind)?;
            let a = l.local_addr()?;
            (Some(l), a)
        } else {
            (None, SocketAddr::from(([0, 0, 0, 0], 0)))
        };
        let tls_server = if listen { cfg.tls.clone() } else { None };
        let mut parts = Vec::with_capacity(cfg.threads);
        let mut links = Vec::with_capacity(cfg.threads);
        for i in 0..cfg.threads {
            let (link, part) = worker::prepare(i)?;
            links.push(link);
            parts.push(part);
        }
        let shared = Arc::new(Shared {
            cfg,
            local_addr,
            workers: links,
            registry: Registry::new(),
            next_id: AtomicU64::new(1),
            open_count: AtomicUsize::new(0),
            live_count: AtomicUsize::new(0),
            handler: Mutex::new(handler),
            queue,
            shutting_down: AtomicBool::new(false),
            client: !listen,
            tls_server,
        });
        if let Some(q) = &shared.queue {
            let weak = Arc::downgrade(&shared);
            q.set_resume_hook(Box::new(move || {
                if let Some(s) = weak.upgrade() {
                    for w in &s.workers {
                        w.command(Cmd::Resume);
                    }
                }
            }));
        }
        let mut listener = listener;
        let mut threads = Vec::new();
        for part in parts {
            let l = if part.index() == 0 { listener.take() } else { None };
            threads.push(worker::spawn(shared.clone(), part, l)?);
        }
        Ok(Server {
            handle: ServerHandle { shared },
            threads,
        })
    }

    /// The handle used to send and query.
    pub fn handle(&self) -> &ServerHandle {
        &self.handle
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }

    /// Stops the server (see the type's documentation) and drops the handler.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let shared = &self.handle.shared;
        if self.threads.is_empty() {
            return;
        }
        shared.shutting_down.store(true, Ordering::SeqCst);
        for w in &shared.workers {
            w.command(Cmd::Shutdown);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(q) = &shared.queue {
            q.close();
        }
        // The handler may own host resources (C userdata): release them now,
        // not whenever the last handle clone goes away.
        let h = crate::lock(&shared.handler).take();
        drop(h);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
