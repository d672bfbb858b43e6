//! One I/O thread: a mio event loop over the connections it owns.
//!
//! Connection `id` lives on worker `id % threads`. Frames are parsed in place
//! in a per-thread scratch buffer; only a partial frame is copied into the
//! connection's own buffer, so an idle connection holds no read buffer at all.
//! Handlers run with no borrow of the connection table held, so a handler may
//! send, close or ping (its sends go straight into the outbound buffers and
//! are written once per event-loop round).
//!
//! The same loop runs both roles: accepted connections (server) and dialled
//! ones (client: connect, optional proxy CONNECT, optional TLS, upgrade),
//! in the clear or through rustls.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry as MioRegistry, Token, Waker};

use super::config::OverflowPolicy;
use super::dial::{self, ConnectError, DialTarget, Reply};
use super::frame::{self, HeaderError, PeerClose};
use super::handshake::{self, Outcome};
use super::out::{Frame, OutBuf};
use super::queue::OwnedEvent;
use super::registry::{ConnShared, IdMap, ST_CLOSING, ST_OPEN};
use super::transport;
use super::{ConnId, Event, SendError, Sent, ServerHandle, Shared, Stats};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX);
/// Per-thread read buffer. One extra byte always follows the data so a
/// message can be NUL-terminated in place.
const SCRATCH: usize = 256 << 10;
const TICK: Duration = Duration::from_millis(100);
/// Reads of one socket per readiness event before others get a turn.
const READS_PER_EVENT: usize = 16;
/// How long `shutdown` waits for closing handshakes.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

pub(crate) enum Cmd {
    Send {
        id: ConnId,
        frame: Frame<'static>,
        len: usize,
        counts: bool,
    },
    Close {
        id: ConnId,
        code: u16,
        reason: String,
    },
    Adopt {
        sock: TcpStream,
        remote: SocketAddr,
        id: ConnId,
    },
    Dial {
        id: ConnId,
        target: Box<DialTarget>,
    },
    Complete {
        id: ConnId,
    },
    Overflow {
        id: ConnId,
    },
    Resume,
    Shutdown,
}

#[repr(align(128))]
#[derive(Default)]
pub(crate) struct WorkerStats {
    opened: AtomicU64,
    msgs_in: AtomicU64,
    bytes_in: AtomicU64,
    msgs_out: AtomicU64,
    bytes_out: AtomicU64,
    slow: AtomicU64,
    hs_failed: AtomicU64,
}

/// Only the owning worker writes its counters: a load and a store, no locked
/// instruction on the hot path.
#[inline]
fn bump(a: &AtomicU64, n: u64) {
    a.store(a.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

impl WorkerStats {
    pub(crate) fn add_to(&self, s: &mut Stats) {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        s.connections_total += l(&self.opened);
        s.messages_in += l(&self.msgs_in);
        s.bytes_in += l(&self.bytes_in);
        s.messages_out += l(&self.msgs_out);
        s.bytes_out += l(&self.bytes_out);
        s.slow_consumers_closed += l(&self.slow);
        s.handshakes_failed += l(&self.hs_failed);
    }
}

/// What other threads hold of a worker.
pub(crate) struct WorkerLink {
    tx: Sender<Cmd>,
    waker: Waker,
    wake_pending: AtomicBool,
    pub(crate) stats: WorkerStats,
    /// `pthread_self()` of the thread running this worker, 0 when none, and
    /// the worker itself (on that thread's stack). Sends compare the thread
    /// instead of reading a thread-local: in a shared library every
    /// thread-local access is a call to `__tls_get_addr`, once per message.
    thread: AtomicUsize,
    worker: AtomicPtr<Worker>,
}

impl WorkerLink {
    pub(crate) fn command(&self, c: Cmd) {
        if self.tx.send(c).is_ok() && !self.wake_pending.swap(true, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
    }
}

/// What the worker thread takes with it.
pub(crate) struct WorkerPart {
    index: usize,
    poll: Poll,
    rx: Receiver<Cmd>,
}

impl WorkerPart {
    pub(crate) fn index(&self) -> usize {
        self.index
    }
}

pub(crate) fn prepare(index: usize) -> io::Result<(WorkerLink, WorkerPart)> {
    let poll = Poll::new()?;
    let waker = Waker::new(poll.registry(), WAKER)?;
    let (tx, rx) = crossbeam_channel::unbounded();
    Ok((
        WorkerLink {
            thread: AtomicUsize::new(0),
            worker: AtomicPtr::new(std::ptr::null_mut()),
            tx,
            waker,
            wake_pending: AtomicBool::new(false),
            stats: WorkerStats::default(),
        },
        WorkerPart { index, poll, rx },
    ))
}

pub(crate) fn spawn(
    shared: Arc<Shared>,
    part: WorkerPart,
    listener: Option<TcpListener>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("wsb-io-{}", part.index))
        .spawn(move || {
            let WorkerPart { index, mut poll, rx } = part;
            let registry = match poll.registry().try_clone() {
                Ok(r) => r,
                Err(_) => return,
            };
            let mut listener = listener;
            if let Some(l) = listener.as_mut() {
                if registry.register(l, LISTENER, Interest::READABLE).is_err() {
                    listener = None;
                }
            }
            let w = Worker {
                handle: ServerHandle { shared: shared.clone() },
                shared,
                idx: index,
                registry,
                listener: RefCell::new(listener),
                rx,
                io: RefCell::new(Io::default()),
                scratch: RefCell::new(vec![0u8; SCRATCH + 1]),
                start: Instant::now(),
                now: Cell::new(0),
                stopping: Cell::new(None),
                accept_blocked: Cell::new(false),
            };
            let link = &w.shared.workers[index];
            link.worker.store(&w as *const Worker as *mut Worker, Ordering::Relaxed);
            link.thread.store(this_thread(), Ordering::Relaxed);
            w.run(&mut poll);
            // Cleared before the worker is dropped and before the thread ends,
            // so a later thread that reuses this pthread_t never matches.
            link.thread.store(0, Ordering::Relaxed);
            w.teardown_all();
        })
}

fn this_thread() -> usize {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() as usize }
}

/// Worker `idx` of `shared`, if it runs on this thread.
fn worker_here(shared: &Shared, idx: usize) -> Option<&Worker> {
    let link = &shared.workers[idx];
    if link.thread.load(Ordering::Relaxed) != this_thread() {
        return None;
    }
    // SAFETY: `thread` equals this thread only between the stores in
    // `spawn`, all made by this thread, while the worker lives on this
    // thread's stack; the reference does not escape the caller, which runs
    // on this thread inside that span.
    Some(unsafe { &*link.worker.load(Ordering::Relaxed) })
}

/// The worker running on this thread, if it belongs to `shared`.
fn current_worker(shared: &Shared) -> Option<&Worker> {
    (0..shared.workers.len()).find_map(|i| worker_here(shared, i))
}

pub(crate) fn on_io_thread_of(shared: &Shared) -> bool {
    current_worker(shared).is_some()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Client: TCP connect in progress.
    Connecting,
    /// Client: CONNECT sent to the proxy, waiting for its answer.
    Proxy,
    /// Client: upgrade request sent (through TLS if any), waiting for 101.
    Upgrading,
    /// Server: reading the upgrade request.
    Handshake,
    Open,
    /// The host closed: our close frame is queued, waiting for the peer's.
    Closing,
    /// Nothing more to say: flush, shut down our side, wait for EOF.
    Lingering,
}

struct Hs {
    buf: Vec<u8>,
    remote: SocketAddr,
}

struct Frag {
    buf: Vec<u8>,
    text: bool,
    utf8_ok: usize,
}

struct CloseInfo {
    status: i32,
    reason: String,
    by_host: bool,
    /// Set when an outgoing connection failed before it opened.
    error: Option<ConnectError>,
}

fn close_info(status: i32, reason: impl Into<String>, by_host: bool) -> Box<CloseInfo> {
    Box::new(CloseInfo {
        status,
        reason: reason.into(),
        by_host,
        error: None,
    })
}

/// An outgoing connection until it opens.
struct DialState {
    target: Box<DialTarget>,
    key: String,
    /// Index in `target.addrs` being tried.
    addr: usize,
    buf: Vec<u8>,
}

struct Conn {
    sock: TcpStream,
    id: ConnId,
    cs: Arc<ConnShared>,
    phase: Phase,
    opened: bool,
    dirty: bool,
    read_paused: bool,
    shut_wr: bool,
    /// The closing handshake is complete: close TCP as soon as the outbound
    /// buffer is written (the server closes first, RFC 6455 §7.1.1).
    close_after_flush: bool,
    /// Client role: frames we send are masked, frames we receive must not be.
    client: bool,
    /// Manual flow control: after each message, wait for `complete`.
    manual: bool,
    waiting_complete: bool,
    inbuf: Vec<u8>,
    out: OutBuf,
    frag: Option<Box<Frag>>,
    hs: Option<Box<Hs>>,
    dial: Option<Box<DialState>>,
    tls: Option<Box<rustls::Connection>>,
    close: Option<Box<CloseInfo>>,
    last_recv: u64,
    last_ping: u64,
    deadline: u64,
}

impl Conn {
    /// Queues a frame the engine itself sends (control frames), masked in
    /// the client role.
    fn push_frame(&mut self, op: u8, payload: &[u8]) {
        if self.client {
            self.out.push_masked(op, payload, dial::mask_key());
        } else {
            self.out.push(Frame::Build(op, payload));
        }
    }

    fn set_close(&mut self, info: Box<CloseInfo>) {
        if self.close.is_none() {
            self.close = Some(info);
        }
    }
}

#[derive(Default)]
struct Io {
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    ids: IdMap<usize>,
    dirty: Vec<usize>,
    paused: Vec<usize>,
    /// Sockets that still had data when their read budget ran out.
    again: Vec<usize>,
}

impl Io {
    fn conn(&mut self, slot: usize) -> Option<&mut Conn> {
        self.conns.get_mut(slot).and_then(|c| c.as_mut())
    }
    fn mark_dirty(&mut self, slot: usize) {
        if let Some(c) = self.conn(slot) {
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(slot);
            }
        }
    }
}

enum Read {
    /// There may be more to read now.
    More,
    /// Short read or would block: wait for the next readiness event.
    Done,
}

struct Worker {
    shared: Arc<Shared>,
    handle: ServerHandle,
    idx: usize,
    registry: MioRegistry,
    listener: RefCell<Option<TcpListener>>,
    rx: Receiver<Cmd>,
    io: RefCell<Io>,
    scratch: RefCell<Vec<u8>>,
    start: Instant,
    now: Cell<u64>,
    stopping: Cell<Option<u64>>,
    accept_blocked: Cell<bool>,
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

fn classify_connect_error(e: &io::Error) -> ConnectError {
    if let Some(t) = transport::as_tls_error(e) {
        return match t {
            rustls::Error::InvalidCertificate(_) => ConnectError::Certificate,
            _ => ConnectError::Tls,
        };
    }
    match e.kind() {
        io::ErrorKind::ConnectionRefused => ConnectError::Refused,
        io::ErrorKind::TimedOut => ConnectError::Timeout,
        _ => match e.raw_os_error() {
            Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH) | Some(libc::EADDRNOTAVAIL) => ConnectError::Unreachable,
            _ => ConnectError::Io,
        },
    }
}

/// A server's alert about the client certificate, in words; `None` for an
/// alert about something else. (A server judges no other certificate.)
fn refused_client_cert(e: &rustls::Error) -> Option<&'static str> {
    use rustls::AlertDescription as A;
    let rustls::Error::AlertReceived(a) = e else {
        return None;
    };
    Some(match a {
        A::UnknownCA => "the server does not trust its issuer",
        A::CertificateExpired => "the server finds it expired or not yet valid",
        A::BadCertificate => "the server finds it bad",
        A::UnsupportedCertificate => "the server does not accept its kind or key usage",
        A::CertificateRevoked => "the server finds it revoked",
        A::CertificateUnknown => "the server does not accept it",
        A::AccessDenied => "the server denies it access",
        _ => return None,
    })
}

impl Worker {
    fn link(&self) -> &WorkerLink {
        &self.shared.workers[self.idx]
    }

    fn stats(&self) -> &WorkerStats {
        &self.link().stats
    }

    fn tick_now(&self) -> u64 {
        let n = ms(self.start.elapsed());
        self.now.set(n);
        n
    }

    fn run(&self, poll: &mut Poll) {
        let mut events = Events::with_capacity(1024);
        let mut next_tick = 0u64;
        loop {
            let timeout = if self.io.borrow().again.is_empty() {
                TICK
            } else {
                Duration::ZERO
            };
            if let Err(e) = poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    break;
                }
            }
            self.tick_now();
            for ev in events.iter() {
                match ev.token() {
                    WAKER => self.drain_commands(),
                    LISTENER => self.accept(),
                    Token(slot) => {
                        if ev.is_writable() || ev.is_write_closed() || ev.is_error() {
                            self.guarded(slot, |w| w.on_writable(slot));
                        }
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.guarded(slot, |w| w.on_readable(slot));
                            // A short read passes for "drained", but the peer's FIN
                            // may sit right behind the data, and edge-triggered
                            // polling will not report it again: read once more.
                            if ev.is_read_closed() {
                                self.io.borrow_mut().again.push(slot);
                            }
                        }
                    }
                }
            }
            let again = std::mem::take(&mut self.io.borrow_mut().again);
            for slot in again {
                self.guarded(slot, |w| w.on_readable(slot));
            }
            self.flush_dirty();
            let now = self.now.get();
            if now >= next_tick {
                next_tick = now + ms(TICK);
                self.tick();
                self.flush_dirty();
            }
            if let Some(deadline) = self.stopping.get() {
                let empty = self.io.borrow().ids.is_empty();
                if empty || now >= deadline {
                    break;
                }
            }
        }
    }

    /// Runs `f`; a panic in it (a bug, or a panicking Rust handler) costs the
    /// one connection, never the thread.
    fn guarded(&self, slot: usize, f: impl FnOnce(&Worker)) {
        if catch_unwind(AssertUnwindSafe(|| f(self))).is_err() {
            if let Ok(mut io) = self.io.try_borrow_mut() {
                if let Some(c) = io.conn(slot) {
                    c.set_close(close_info(1011, "internal error", false));
                }
            }
            self.teardown(slot);
        }
    }

    // ---- new connections ----

    fn accept(&self) {
        let listener = self.listener.borrow();
        let Some(l) = listener.as_ref() else { return };
        loop {
            match l.accept() {
                Ok((sock, remote)) => {
                    let sh = &self.shared;
                    if sh.live_count.load(Ordering::Relaxed) >= sh.cfg.max_connections {
                        use std::io::Write;
                        // Counted before the answer, so a peer that has read
                        // the 503 finds it in the stats.
                        bump(&self.stats().hs_failed, 1);
                        let _ = (&sock).write(
                            b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                        );
                        continue;
                    }
                    sh.live_count.fetch_add(1, Ordering::Relaxed);
                    let _ = sock.set_nodelay(true);
                    let id = sh.next_id.fetch_add(1, Ordering::Relaxed);
                    let target = (id % sh.workers.len() as u64) as usize;
                    if target == self.idx {
                        self.adopt(sock, remote, id);
                    } else {
                        sh.workers[target].command(Cmd::Adopt { sock, remote, id });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
                    ) =>
                {
                    // Out of descriptors: retry on the next tick rather than spin.
                    self.accept_blocked.set(true);
                    break;
                }
                Err(_) => continue,
            }
        }
    }

    /// Registers a socket and stores its connection; returns the slot.
    fn insert(&self, mut sock: TcpStream, id: ConnId, phase: Phase, deadline: u64) -> Option<usize> {
        let mut io = self.io.borrow_mut();
        let slot = io.free.pop().unwrap_or_else(|| {
            io.conns.push(None);
            io.conns.len() - 1
        });
        if self
            .registry
            .register(&mut sock, Token(slot), Interest::READABLE | Interest::WRITABLE)
            .is_err()
        {
            io.free.push(slot);
            return None;
        }
        let cs = Arc::new(ConnShared::default());
        self.shared.registry.insert(id, cs.clone());
        let now = self.now.get();
        io.conns[slot] = Some(Conn {
            sock,
            id,
            cs,
            phase,
            opened: false,
            dirty: false,
            read_paused: false,
            shut_wr: false,
            close_after_flush: false,
            client: false,
            // Dialled connections take theirs from the dial target instead.
            manual: self.shared.cfg.manual_complete,
            waiting_complete: false,
            inbuf: Vec::new(),
            out: OutBuf::default(),
            frag: None,
            hs: None,
            dial: None,
            tls: None,
            close: None,
            last_recv: now,
            last_ping: now,
            deadline,
        });
        io.ids.insert(id, slot);
        Some(slot)
    }

    fn adopt(&self, sock: TcpStream, remote: SocketAddr, id: ConnId) {
        if self.stopping.get().is_some() {
            self.shared.live_count.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let tls = match &self.shared.tls_server {
            Some(cfg) => match rustls::ServerConnection::new(cfg.clone()) {
                Ok(c) => Some(Box::new(rustls::Connection::Server(c))),
                Err(_) => {
                    self.shared.live_count.fetch_sub(1, Ordering::Relaxed);
                    return;
                }
            },
            None => None,
        };
        let deadline = self.now.get() + ms(self.shared.cfg.handshake_timeout);
        let Some(slot) = self.insert(sock, id, Phase::Handshake, deadline) else {
            self.shared.live_count.fetch_sub(1, Ordering::Relaxed);
            return;
        };
        if let Some(c) = self.io.borrow_mut().conn(slot) {
            c.hs = Some(Box::new(Hs {
                buf: Vec::new(),
                remote,
            }));
            c.tls = tls;
        }
    }

    /// Starts an outgoing connection (client role).
    fn dial(&self, id: ConnId, target: Box<DialTarget>) {
        if let Some((error, message)) = &target.error {
            self.deliver(Event::ConnectFailed {
                conn: id,
                error: *error,
                message,
            });
            return;
        }
        let state = Box::new(DialState {
            target,
            key: dial::new_key(),
            addr: 0,
            buf: Vec::new(),
        });
        self.dial_next(id, state, None);
    }

    /// Connects to `state.target.addrs[state.addr]`, or the next that works.
    fn dial_next(&self, id: ConnId, mut state: Box<DialState>, mut last: Option<(SocketAddr, io::Error)>) {
        let deadline = self.now.get() + ms(state.target.connect_timeout);
        loop {
            let Some(&addr) = state.target.addrs.get(state.addr) else {
                let (error, message) = match last {
                    Some((a, e)) => (classify_connect_error(&e), format!("cannot connect to {a}: {e}")),
                    None => (ConnectError::Resolve, "no address to connect to".to_owned()),
                };
                self.deliver(Event::ConnectFailed {
                    conn: id,
                    error,
                    message: &message,
                });
                return;
            };
            match TcpStream::connect(addr) {
                Ok(sock) => {
                    let _ = sock.set_nodelay(true);
                    let Some(slot) = self.insert(sock, id, Phase::Connecting, deadline) else {
                        last = Some((addr, io::Error::other("cannot register the socket")));
                        state.addr += 1;
                        continue;
                    };
                    self.shared.live_count.fetch_add(1, Ordering::Relaxed);
                    if let Some(c) = self.io.borrow_mut().conn(slot) {
                        c.client = true;
                        c.manual = state.target.manual_complete;
                        if state.target.send_results {
                            c.out.track_messages();
                        }
                        c.dial = Some(state);
                    }
                    return;
                }
                Err(e) => {
                    last = Some((addr, e));
                    state.addr += 1;
                }
            }
        }
    }

    /// A dialled connection failed before it opened.
    fn connect_failed(&self, slot: usize, error: ConnectError, message: String) {
        if let Some(c) = self.io.borrow_mut().conn(slot) {
            let mut info = close_info(-1, message, false);
            info.error = Some(error);
            c.close = Some(info);
        }
        self.teardown(slot);
    }

    fn on_writable(&self, slot: usize) {
        let phase = self.io.borrow_mut().conn(slot).map(|c| c.phase);
        match phase {
            Some(Phase::Connecting) => self.on_connected(slot),
            Some(_) => self.flush(slot),
            None => {}
        }
    }

    /// The TCP connect finished (or failed): go on to the proxy, TLS and
    /// the upgrade request.
    fn on_connected(&self, slot: usize) {
        let res = {
            let mut io = self.io.borrow_mut();
            let Some(c) = io.conn(slot) else { return };
            match c.sock.take_error() {
                Ok(Some(e)) | Err(e) => Err(e),
                Ok(None) => match c.sock.peer_addr() {
                    Ok(_) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                    Err(e) => Err(e),
                },
            }
        };
        if let Err(e) = res {
            // Forget this socket and go on with the next address, if any.
            let id = self.io.borrow_mut().conn(slot).map(|c| c.id);
            if let (Some(id), Some(mut state)) = (id, self.forget(slot)) {
                let addr = state.target.addrs.get(state.addr).copied();
                state.addr += 1;
                let last = addr.map(|a| (a, e));
                self.dial_next(id, state, last);
            }
            return;
        }
        let mut io = self.io.borrow_mut();
        let Some(c) = io.conn(slot) else { return };
        let Some(d) = c.dial.as_mut() else { return };
        if d.target.proxy.is_some() {
            c.out.push(Frame::Raw(dial::connect_request(&d.target)));
            c.phase = Phase::Proxy;
        } else {
            let r = start_upgrade(c);
            if let Err(msg) = r {
                drop(io);
                self.connect_failed(slot, ConnectError::Tls, msg);
                return;
            }
        }
        io.mark_dirty(slot);
    }

    /// Drops a connection without any event (a dial going on elsewhere);
    /// returns its dial state.
    fn forget(&self, slot: usize) -> Option<Box<DialState>> {
        let c = {
            let mut io = self.io.borrow_mut();
            let c = io.conns.get_mut(slot).and_then(|c| c.take())?;
            io.free.push(slot);
            io.ids.remove(&c.id);
            c
        };
        let mut sock = c.sock;
        let _ = self.registry.deregister(&mut sock);
        self.shared.registry.remove(c.id);
        self.shared.live_count.fetch_sub(1, Ordering::Relaxed);
        c.dial
    }

    // ---- commands from other threads ----

    fn drain_commands(&self) {
        self.link().wake_pending.store(false, Ordering::Release);
        while let Ok(cmd) = self.rx.try_recv() {
            match cmd {
                Cmd::Send { id, frame, len, counts } => {
                    let mut io = self.io.borrow_mut();
                    let Some(&slot) = io.ids.get(&id) else { continue };
                    let Some(c) = io.conn(slot) else { continue };
                    c.cs.pending.fetch_sub(len, Ordering::Relaxed);
                    if c.phase != Phase::Open {
                        continue;
                    }
                    c.out.push(frame);
                    if counts {
                        c.out.mark_message();
                        bump(&self.stats().msgs_out, 1);
                    }
                    io.mark_dirty(slot);
                }
                Cmd::Close { id, code, reason } => {
                    let slot = self.io.borrow().ids.get(&id).copied();
                    if let Some(slot) = slot {
                        self.host_close(slot, code, &reason);
                    }
                }
                Cmd::Adopt { sock, remote, id } => self.adopt(sock, remote, id),
                Cmd::Dial { id, target } => {
                    if self.stopping.get().is_none() {
                        self.dial(id, target);
                    }
                }
                Cmd::Complete { id } => {
                    let slot = self.io.borrow().ids.get(&id).copied();
                    if let Some(slot) = slot {
                        self.guarded(slot, |w| w.complete(slot));
                    }
                }
                Cmd::Overflow { id } => {
                    let slot = self.io.borrow().ids.get(&id).copied();
                    if let Some(slot) = slot {
                        self.overflow_close(slot);
                    }
                }
                Cmd::Resume => {
                    let paused = std::mem::take(&mut self.io.borrow_mut().paused);
                    for slot in paused {
                        if let Some(c) = self.io.borrow_mut().conn(slot) {
                            c.read_paused = false;
                        }
                        self.guarded(slot, |w| w.on_readable(slot));
                    }
                }
                Cmd::Shutdown => self.begin_shutdown(),
            }
        }
    }

    fn begin_shutdown(&self) {
        if self.stopping.get().is_some() {
            return;
        }
        self.stopping.set(Some(self.now.get() + ms(SHUTDOWN_GRACE)));
        if let Some(mut l) = self.listener.borrow_mut().take() {
            let _ = self.registry.deregister(&mut l);
        }
        let slots: Vec<usize> = self.io.borrow().ids.values().copied().collect();
        for slot in slots {
            let phase = self.io.borrow_mut().conn(slot).map(|c| c.phase);
            match phase {
                Some(Phase::Open) => {
                    self.host_close(slot, 1001, "going away");
                }
                Some(Phase::Closing) | Some(Phase::Lingering) | None => {}
                Some(_) => self.teardown(slot),
            }
        }
    }

    /// Manual flow control: the host finished with the last message.
    fn complete(&self, slot: usize) {
        let buf = {
            let mut io = self.io.borrow_mut();
            let Some(c) = io.conn(slot) else { return };
            if !c.waiting_complete {
                return;
            }
            c.waiting_complete = false;
            std::mem::take(&mut c.inbuf)
        };
        if !buf.is_empty() {
            // Frames already received come first, one message at a time.
            let mut buf = buf;
            let len = buf.len();
            buf.push(0);
            let consumed = self.process(slot, &mut buf, len);
            buf.truncate(len);
            buf.drain(..consumed);
            self.keep_partial(slot, buf);
        }
        let waiting = self.io.borrow_mut().conn(slot).is_some_and(|c| c.waiting_complete);
        if !waiting {
            self.io.borrow_mut().again.push(slot);
        }
    }

    // ---- reading ----

    fn on_readable(&self, slot: usize) {
        for _ in 0..READS_PER_EVENT {
            let phase = {
                let mut io = self.io.borrow_mut();
                let Some(c) = io.conn(slot) else { return };
                if c.read_paused || c.waiting_complete {
                    return;
                }
                c.phase
            };
            if matches!(phase, Phase::Open | Phase::Closing) && self.should_pause(slot) {
                return;
            }
            let r = match phase {
                Phase::Connecting => return,
                Phase::Proxy => self.read_proxy(slot),
                Phase::Upgrading => self.read_upgrade(slot),
                Phase::Handshake => self.read_handshake(slot),
                Phase::Open | Phase::Closing => self.read_frames(slot),
                Phase::Lingering => self.read_discard(slot),
            };
            match r {
                Ok(Read::More) => continue,
                Ok(Read::Done) | Err(()) => return,
            }
        }
        self.io.borrow_mut().again.push(slot);
    }

    /// Reading stops while the host's event queue is full, or while this
    /// connection's own outbound buffer is over the soft limit (a peer that
    /// sends but does not read).
    fn should_pause(&self, slot: usize) -> bool {
        let queue_full = self.shared.queue.as_ref().is_some_and(|q| q.is_full());
        let mut io = self.io.borrow_mut();
        let soft = self.shared.cfg.outbound_soft_limit;
        let Some(c) = io.conn(slot) else { return true };
        if queue_full || (c.phase == Phase::Open && c.out.len() > soft) {
            c.read_paused = true;
            io.paused.push(slot);
            return true;
        }
        false
    }

    /// Reads from the connection (through TLS when there is a session) into
    /// `buf`, handling the outcome: `Ok(Some(n))` with data, `Ok(None)` when
    /// nothing is there, `Err` when the connection ended (already torn down).
    fn recv(&self, slot: usize, buf: &mut [u8], tls_ok: bool) -> Result<Option<usize>, ()> {
        let r = {
            let mut io = self.io.borrow_mut();
            let c = io.conn(slot).ok_or(())?;
            match c.tls.as_deref_mut() {
                Some(tls) if tls_ok => transport::tls_recv(tls, &mut c.sock, buf),
                _ => transport::recv(c.sock.as_raw_fd(), buf.as_mut_ptr(), buf.len()),
            }
        };
        // A TLS read may have produced handshake records to send.
        if self
            .io
            .borrow_mut()
            .conn(slot)
            .is_some_and(|c| c.tls.as_ref().is_some_and(|t| transport::tls_pending(t)))
        {
            self.io.borrow_mut().mark_dirty(slot);
        }
        match r {
            Ok(0) => {
                self.on_eof(slot, None);
                Err(())
            }
            Ok(n) => {
                bump(&self.stats().bytes_in, n as u64);
                let now = self.now.get();
                if let Some(c) = self.io.borrow_mut().conn(slot) {
                    c.last_recv = now;
                }
                Ok(Some(n))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => {
                self.on_eof(slot, Some(e));
                Err(())
            }
        }
    }

    /// The stream ended or failed.
    fn on_eof(&self, slot: usize, err: Option<io::Error>) {
        let dialling = self
            .io
            .borrow_mut()
            .conn(slot)
            .is_some_and(|c| matches!(c.phase, Phase::Connecting | Phase::Proxy | Phase::Upgrading));
        if dialling {
            let host = self.dial_host(slot);
            let client_cert = self.dial_client_cert(slot);
            let (kind, msg) = match &err {
                Some(e) => (
                    classify_connect_error(e),
                    match (transport::as_tls_error(e).and_then(refused_client_cert), client_cert) {
                        (Some(why), Some(cert)) => format!(
                            "TLS handshake with {host} failed: the server refused the client certificate \
                             ({cert}): {why} ({e})"
                        ),
                        _ if transport::as_tls_error(e).is_some() => format!("TLS handshake with {host} failed: {e}"),
                        _ => format!("connection to {host} failed: {e}"),
                    },
                ),
                // Over TLS 1.3 a server checks the client's certificate after
                // the client already finished its handshake, and one that
                // refuses it may just close: say so rather than blame HTTP.
                None if self.silent_tls_close(slot) => (
                    ConnectError::Tls,
                    match client_cert {
                        Some(cert) => format!(
                            "{host} closed the TLS connection without answering the upgrade: \
                             it may have refused the client certificate ({cert})"
                        ),
                        None => format!(
                            "{host} closed the TLS connection without answering the upgrade: \
                             it may require a client certificate"
                        ),
                    },
                ),
                None => (
                    ConnectError::Handshake,
                    format!("{host} closed the connection before the upgrade completed"),
                ),
            };
            self.connect_failed(slot, kind, msg);
            return;
        }
        // A peer that ends or fails the upgrade (a TLS alert, a reset, a
        // close half-way through the request) is a failed handshake too.
        if self
            .io
            .borrow_mut()
            .conn(slot)
            .is_some_and(|c| c.phase == Phase::Handshake)
        {
            bump(&self.stats().hs_failed, 1);
        }
        if let Some(e) = err {
            if let Some(c) = self.io.borrow_mut().conn(slot) {
                c.set_close(close_info(-1, format!("connection error: {e}"), false));
            }
        }
        self.teardown(slot);
    }

    /// A TLS connection that closed before a single byte of the upgrade
    /// response arrived.
    fn silent_tls_close(&self, slot: usize) -> bool {
        self.io.borrow_mut().conn(slot).is_some_and(|c| {
            c.tls.is_some() && c.phase == Phase::Upgrading && c.dial.as_ref().is_some_and(|d| d.buf.is_empty())
        })
    }

    /// The description of the client certificate a dial presents, if any.
    fn dial_client_cert(&self, slot: usize) -> Option<String> {
        self.io
            .borrow_mut()
            .conn(slot)
            .and_then(|c| c.dial.as_ref())
            .and_then(|d| d.target.client_cert.clone())
    }

    fn dial_host(&self, slot: usize) -> String {
        self.io
            .borrow_mut()
            .conn(slot)
            .and_then(|c| c.dial.as_ref())
            .map(|d| format!("{}:{}", d.target.host, d.target.port))
            .unwrap_or_default()
    }

    fn read_handshake(&self, slot: usize) -> Result<Read, ()> {
        let mut scratch = self.scratch.borrow_mut();
        let Some(n) = self.recv(slot, &mut scratch[..4096], true)? else {
            return Ok(Read::Done);
        };
        let outcome = {
            let mut io = self.io.borrow_mut();
            let c = io.conn(slot).ok_or(())?;
            let hs = c.hs.as_mut().ok_or(())?;
            hs.buf.extend_from_slice(&scratch[..n]);
            handshake::server_handshake(&hs.buf, &self.shared.cfg)
        };
        drop(scratch);
        match outcome {
            Outcome::Partial => Ok(Read::More),
            Outcome::Reject { response, why } => {
                bump(&self.stats().hs_failed, 1);
                let mut io = self.io.borrow_mut();
                let now = self.now.get();
                if let Some(c) = io.conn(slot) {
                    c.out.push(Frame::Raw(response));
                    c.hs = None;
                    c.phase = Phase::Lingering;
                    c.deadline = now + 1000;
                    c.close = Some(close_info(-1, why, false));
                }
                io.mark_dirty(slot);
                Err(())
            }
            Outcome::Accept {
                response,
                consumed,
                path,
                protocol,
            } => {
                let (id, remote, rest) = {
                    let mut io = self.io.borrow_mut();
                    let c = io.conn(slot).ok_or(())?;
                    let hs = c.hs.take().ok_or(())?;
                    c.out.push(Frame::Raw(response));
                    let mut rest = hs.buf;
                    rest.drain(..consumed);
                    (c.id, hs.remote, rest)
                };
                self.open(slot);
                self.deliver(Event::Open {
                    conn: id,
                    remote,
                    path: &path,
                    protocol: protocol.as_deref(),
                });
                self.process_leftover(slot, rest);
                Ok(Read::More)
            }
        }
    }

    fn open(&self, slot: usize) {
        let mut io = self.io.borrow_mut();
        if let Some(c) = io.conn(slot) {
            c.phase = Phase::Open;
            c.opened = true;
            c.cs.set_state(ST_OPEN);
            c.last_recv = self.now.get();
        }
        io.mark_dirty(slot);
        self.shared.open_count.fetch_add(1, Ordering::Relaxed);
        bump(&self.stats().opened, 1);
    }

    /// Frames that arrived right behind the upgrade.
    fn process_leftover(&self, slot: usize, rest: Vec<u8>) {
        if rest.is_empty() {
            return;
        }
        let mut buf = rest;
        let len = buf.len();
        buf.push(0);
        let consumed = self.process(slot, &mut buf, len);
        buf.truncate(len);
        buf.drain(..consumed);
        self.keep_partial(slot, buf);
    }

    /// Client: the proxy's answer to CONNECT (always in the clear).
    fn read_proxy(&self, slot: usize) -> Result<Read, ()> {
        let mut scratch = self.scratch.borrow_mut();
        let Some(n) = self.recv(slot, &mut scratch[..4096], false)? else {
            return Ok(Read::Done);
        };
        let verdict = {
            let mut io = self.io.borrow_mut();
            let c = io.conn(slot).ok_or(())?;
            let d = c.dial.as_mut().ok_or(())?;
            d.buf.extend_from_slice(&scratch[..n]);
            dial::check_proxy_reply(&d.buf)
        };
        drop(scratch);
        match verdict {
            None => Ok(Read::More),
            Some(Err(msg)) => {
                self.connect_failed(slot, ConnectError::Proxy, msg);
                Err(())
            }
            Some(Ok(_)) => {
                let mut io = self.io.borrow_mut();
                let c = io.conn(slot).ok_or(())?;
                if let Some(d) = c.dial.as_mut() {
                    d.buf.clear();
                }
                if let Err(msg) = start_upgrade(c) {
                    drop(io);
                    self.connect_failed(slot, ConnectError::Tls, msg);
                    return Err(());
                }
                io.mark_dirty(slot);
                Ok(Read::More)
            }
        }
    }

    /// Client: the server's answer to the upgrade request.
    fn read_upgrade(&self, slot: usize) -> Result<Read, ()> {
        let mut scratch = self.scratch.borrow_mut();
        let Some(n) = self.recv(slot, &mut scratch[..4096], true)? else {
            return Ok(Read::Done);
        };
        let reply = {
            let mut io = self.io.borrow_mut();
            let c = io.conn(slot).ok_or(())?;
            let d = c.dial.as_mut().ok_or(())?;
            d.buf.extend_from_slice(&scratch[..n]);
            dial::check_response(&d.buf, &d.key, &d.target.protocols)
        };
        drop(scratch);
        match reply {
            Reply::Partial => Ok(Read::More),
            Reply::Failed(msg) => {
                let host = self.dial_host(slot);
                self.connect_failed(
                    slot,
                    ConnectError::Handshake,
                    format!("upgrade at {host} failed: {msg}"),
                );
                Err(())
            }
            Reply::Upgraded { consumed, protocol } => {
                let (id, remote, path, rest) = {
                    let mut io = self.io.borrow_mut();
                    let c = io.conn(slot).ok_or(())?;
                    let remote = c
                        .sock
                        .peer_addr()
                        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                    let d = c.dial.take().ok_or(())?;
                    let mut rest = d.buf;
                    rest.drain(..consumed);
                    (c.id, remote, d.target.path.clone(), rest)
                };
                self.open(slot);
                self.deliver(Event::Open {
                    conn: id,
                    remote,
                    path: &path,
                    protocol: protocol.as_deref(),
                });
                self.process_leftover(slot, rest);
                Ok(Read::More)
            }
        }
    }

    fn read_frames(&self, slot: usize) -> Result<Read, ()> {
        let (has_in, tls) = {
            let mut io = self.io.borrow_mut();
            let c = io.conn(slot).ok_or(())?;
            (!c.inbuf.is_empty(), c.tls.is_some())
        };
        if has_in && !tls {
            return self.read_into_inbuf(slot);
        }
        let mut scratch = self.scratch.borrow_mut();
        let Some(n) = self.recv(slot, &mut scratch[..SCRATCH], true)? else {
            return Ok(Read::Done);
        };
        // TLS may hold more decrypted data than one read returns: read on
        // until it would block.
        let more = if tls || n == SCRATCH { Read::More } else { Read::Done };
        if has_in {
            let mut buf = std::mem::take(&mut self.io.borrow_mut().conn(slot).ok_or(())?.inbuf);
            buf.extend_from_slice(&scratch[..n]);
            drop(scratch);
            self.process_leftover(slot, buf);
            return Ok(more);
        }
        let consumed = self.process(slot, &mut scratch, n);
        if consumed < n {
            let mut rest = Vec::with_capacity(self.partial_hint(&scratch[consumed..n]));
            rest.extend_from_slice(&scratch[consumed..n]);
            drop(scratch);
            self.keep_partial(slot, rest);
        }
        Ok(more)
    }

    /// Capacity for a partial frame: room for the rest of the frame (read in
    /// place, so a large message is copied once), but never more than twice
    /// what has arrived plus 64 KiB: memory follows the bytes a peer actually
    /// sends, not the length it announces.
    fn partial_hint(&self, partial: &[u8]) -> usize {
        let whole = match frame::parse_header(partial) {
            Ok(Some(h)) => {
                (h.header_len as u64 + h.payload_len + 1).min(self.shared.cfg.max_frame_size as u64 + 16) as usize
            }
            _ => 64,
        };
        whole.min(partial.len() * 2 + (64 << 10)).max(partial.len() + 1)
    }

    fn keep_partial(&self, slot: usize, buf: Vec<u8>) {
        let mut io = self.io.borrow_mut();
        if let Some(c) = io.conn(slot) {
            if matches!(c.phase, Phase::Open | Phase::Closing) && !buf.is_empty() {
                c.inbuf = buf;
            }
        }
    }

    /// Reads the rest of a partial frame straight into the connection's own
    /// buffer (sized for the whole frame), so a large message is copied once.
    fn read_into_inbuf(&self, slot: usize) -> Result<Read, ()> {
        let (fd, mut buf) = {
            let mut io = self.io.borrow_mut();
            let c = io.conn(slot).ok_or(())?;
            (c.sock.as_raw_fd(), std::mem::take(&mut c.inbuf))
        };
        let want = self.partial_hint(&buf).saturating_sub(buf.len()).max(4096);
        buf.reserve(want + 1);
        let room = buf.capacity() - buf.len() - 1;
        // SAFETY: `room` bytes of spare capacity exist past `len`.
        let r = transport::recv(fd, unsafe { buf.as_mut_ptr().add(buf.len()) }, room);
        let n = match r {
            Ok(0) => {
                self.on_eof(slot, None);
                return Err(());
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.keep_partial(slot, buf);
                return Ok(Read::Done);
            }
            Err(e) => {
                self.on_eof(slot, Some(e));
                return Err(());
            }
        };
        bump(&self.stats().bytes_in, n as u64);
        let now = self.now.get();
        if let Some(c) = self.io.borrow_mut().conn(slot) {
            c.last_recv = now;
        }
        // SAFETY: recv initialised `n` bytes of the spare capacity.
        unsafe { buf.set_len(buf.len() + n) };
        let len = buf.len();
        buf.push(0);
        let consumed = self.process(slot, &mut buf, len);
        buf.truncate(len);
        buf.drain(..consumed);
        if buf.capacity() > (64 << 10) && buf.len() < (4 << 10) {
            buf.shrink_to_fit();
        }
        self.keep_partial(slot, buf);
        Ok(if n == room { Read::More } else { Read::Done })
    }

    fn read_discard(&self, slot: usize) -> Result<Read, ()> {
        let mut scratch = self.scratch.borrow_mut();
        match self.recv(slot, &mut scratch[..SCRATCH], true)? {
            Some(_) => Ok(Read::More),
            None => Ok(Read::Done),
        }
    }

    // ---- frames ----

    /// Parses and handles the complete frames in `storage[..len]` (which must
    /// have at least one byte after `len`). Returns the bytes consumed.
    fn process(&self, slot: usize, storage: &mut [u8], len: usize) -> usize {
        debug_assert!(storage.len() > len);
        let cfg = &self.shared.cfg;
        let mut pos = 0;
        while pos < len {
            let h = match frame::parse_header(&storage[pos..len]) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(HeaderError::Protocol(why)) => {
                    self.fail(slot, 1002, why);
                    return len;
                }
            };
            if h.payload_len > cfg.max_frame_size as u64 {
                self.fail(slot, 1009, "frame too big");
                return len;
            }
            let (closing, client) = {
                let mut io = self.io.borrow_mut();
                let Some(c) = io.conn(slot) else { return len };
                if c.phase == Phase::Lingering {
                    return len;
                }
                if c.waiting_complete {
                    return pos;
                }
                let closing = c.phase == Phase::Closing;
                if !closing && matches!(h.opcode, frame::OP_CONT | frame::OP_TEXT | frame::OP_BINARY) {
                    let so_far = c.frag.as_ref().map(|f| f.buf.len());
                    let err = match (h.opcode, so_far) {
                        (frame::OP_CONT, None) => Some((1002, "continuation frame without a message")),
                        (frame::OP_TEXT | frame::OP_BINARY, Some(_)) => {
                            Some((1002, "new message inside a fragmented one"))
                        }
                        _ if so_far.unwrap_or(0) as u64 + h.payload_len > cfg.max_message_size as u64 => {
                            Some((1009, "message too big"))
                        }
                        _ => None,
                    };
                    if let Some((code, why)) = err {
                        drop(io);
                        self.fail(slot, code, why);
                        return len;
                    }
                }
                (closing, c.client)
            };
            // Clients mask every frame; servers never do.
            if client == h.mask.is_some() {
                let why = if client {
                    "masked server frame"
                } else {
                    "unmasked client frame"
                };
                self.fail(slot, 1002, why);
                return len;
            }
            let total = h.header_len + h.payload_len as usize;
            if len - pos < total {
                break;
            }
            let (ps, pe) = (pos + h.header_len, pos + total);
            if let Some(mask) = h.mask {
                frame::apply_mask(&mut storage[ps..pe], mask, 0);
            }
            pos = pe;
            if closing && h.opcode != frame::OP_CLOSE {
                continue; // Only the peer's close frame matters now.
            }
            if !self.on_frame(slot, h.opcode, h.fin, storage, ps, pe) {
                return len;
            }
        }
        pos
    }

    /// Handles one complete, unmasked frame. False when the connection stopped
    /// reading frames.
    fn on_frame(&self, slot: usize, opcode: u8, fin: bool, storage: &mut [u8], ps: usize, pe: usize) -> bool {
        let id = match self.io.borrow_mut().conn(slot) {
            Some(c) => c.id,
            None => return false,
        };
        match opcode {
            frame::OP_TEXT | frame::OP_BINARY if fin => {
                let text = opcode == frame::OP_TEXT;
                if text && !frame::is_utf8(&storage[ps..pe]) {
                    self.fail(slot, 1007, "invalid UTF-8 in text message");
                    return false;
                }
                self.deliver_message(slot, id, storage, ps, pe, text);
            }
            frame::OP_TEXT | frame::OP_BINARY | frame::OP_CONT => {
                let done = {
                    let mut io = self.io.borrow_mut();
                    let Some(c) = io.conn(slot) else { return false };
                    let f = c.frag.get_or_insert_with(|| {
                        Box::new(Frag {
                            buf: Vec::new(),
                            text: opcode == frame::OP_TEXT,
                            utf8_ok: 0,
                        })
                    });
                    f.buf.extend_from_slice(&storage[ps..pe]);
                    let bad = f.text
                        && match frame::check_utf8_incremental(&f.buf, f.utf8_ok, fin) {
                            Some(n) => {
                                f.utf8_ok = n;
                                false
                            }
                            None => true,
                        };
                    if bad {
                        c.frag = None;
                        None
                    } else if fin {
                        c.frag.take().map(Some)
                    } else {
                        Some(None)
                    }
                };
                match done {
                    None => {
                        self.fail(slot, 1007, "invalid UTF-8 in text message");
                        return false;
                    }
                    Some(Some(f)) => {
                        let Frag { mut buf, text, .. } = *f;
                        let len = buf.len();
                        buf.push(0);
                        self.deliver_message(slot, id, &mut buf, 0, len, text);
                    }
                    Some(None) => {}
                }
            }
            frame::OP_PING => {
                let open = {
                    let mut io = self.io.borrow_mut();
                    let Some(c) = io.conn(slot) else { return false };
                    let open = c.phase == Phase::Open;
                    if open {
                        c.push_frame(frame::OP_PONG, &storage[ps..pe]);
                        io.mark_dirty(slot);
                    }
                    open
                };
                if open {
                    self.deliver(Event::Ping {
                        conn: id,
                        data: &storage[ps..pe],
                    });
                }
            }
            frame::OP_PONG if self.is_open(slot) => {
                self.deliver(Event::Pong {
                    conn: id,
                    data: &storage[ps..pe],
                });
            }
            frame::OP_CLOSE => {
                self.on_peer_close(slot, &storage[ps..pe]);
                return false;
            }
            _ => {}
        }
        true
    }

    fn is_open(&self, slot: usize) -> bool {
        self.io
            .borrow_mut()
            .conn(slot)
            .is_some_and(|c| c.phase == Phase::Open && c.cs.is_open())
    }

    fn deliver_message(&self, slot: usize, id: ConnId, storage: &mut [u8], ps: usize, pe: usize, text: bool) {
        // A host that closed (possibly from another thread) hears nothing more.
        if !self.is_open(slot) {
            return;
        }
        bump(&self.stats().msgs_in, 1);
        if let Some(c) = self.io.borrow_mut().conn(slot) {
            if c.manual {
                c.waiting_complete = true;
            }
        }
        let saved = storage[pe];
        storage[pe] = 0;
        self.deliver(Event::Message {
            conn: id,
            data: &storage[ps..pe],
            text,
        });
        storage[pe] = saved;
    }

    fn on_peer_close(&self, slot: usize, payload: &[u8]) {
        let mut io = self.io.borrow_mut();
        let now = self.now.get();
        let Some(c) = io.conn(slot) else { return };
        match c.phase {
            Phase::Open => {
                let (status, reason, reply) = match frame::parse_close(payload) {
                    PeerClose::NoCode => (0, String::new(), frame::close_payload(1000, "")),
                    PeerClose::Code(code, reason) => (code as i32, reason, frame::close_payload(code, "")),
                    PeerClose::Invalid(code) => (
                        code as i32,
                        "invalid close frame".to_owned(),
                        frame::close_payload(code, "invalid close frame"),
                    ),
                };
                c.push_frame(frame::OP_CLOSE, &reply);
                c.close = Some(close_info(status, reason, false));
                c.cs.set_state(ST_CLOSING);
                c.frag = None;
                c.phase = Phase::Lingering;
                c.close_after_flush = true;
                c.waiting_complete = false;
                c.deadline = now + ms(self.shared.cfg.close_timeout);
            }
            Phase::Closing => {
                // The peer answered our close: the handshake is complete.
                c.phase = Phase::Lingering;
                c.close_after_flush = true;
                c.deadline = now + ms(self.shared.cfg.close_timeout);
            }
            _ => return,
        }
        io.mark_dirty(slot);
    }

    /// Fails the connection: close frame with `code`, then TCP close.
    fn fail(&self, slot: usize, code: u16, why: &str) {
        let mut io = self.io.borrow_mut();
        let now = self.now.get();
        let Some(c) = io.conn(slot) else { return };
        match c.phase {
            Phase::Open => {
                c.push_frame(frame::OP_CLOSE, &frame::close_payload(code, why));
                c.close = Some(close_info(code as i32, why, false));
                c.cs.set_state(ST_CLOSING);
            }
            Phase::Closing => {}
            _ => return,
        }
        c.frag = None;
        c.inbuf = Vec::new();
        c.waiting_complete = false;
        c.phase = Phase::Lingering;
        c.deadline = now + ms(self.shared.cfg.close_timeout);
        io.mark_dirty(slot);
    }

    fn host_close(&self, slot: usize, code: u16, reason: &str) -> bool {
        let mut io = self.io.borrow_mut();
        let now = self.now.get();
        let Some(c) = io.conn(slot) else { return false };
        if c.phase != Phase::Open {
            return false;
        }
        c.push_frame(frame::OP_CLOSE, &frame::close_payload(code, reason));
        c.close = Some(close_info(code as i32, reason, true));
        c.cs.set_state(ST_CLOSING);
        c.frag = None;
        c.waiting_complete = false;
        c.phase = Phase::Closing;
        c.deadline = now + ms(self.shared.cfg.close_timeout);
        io.mark_dirty(slot);
        true
    }

    fn overflow_close(&self, slot: usize) {
        let mut io = self.io.borrow_mut();
        let now = self.now.get();
        let Some(c) = io.conn(slot) else { return };
        if c.phase != Phase::Open {
            return;
        }
        c.out.truncate_unstarted();
        c.push_frame(frame::OP_CLOSE, &frame::close_payload(1008, "slow consumer"));
        c.close = Some(close_info(1008, "slow consumer", false));
        c.cs.set_state(ST_CLOSING);
        c.frag = None;
        c.phase = Phase::Lingering;
        c.deadline = now + ms(self.shared.cfg.close_timeout);
        io.mark_dirty(slot);
        bump(&self.stats().slow, 1);
    }

    // ---- sending from this thread ----

    fn send_local(&self, id: ConnId, f: Frame<'_>, counts: bool) -> Result<Sent, SendError> {
        let cfg = &self.shared.cfg;
        let mut io = self.io.borrow_mut();
        let slot = *io.ids.get(&id).ok_or(SendError::NotFound)?;
        let c = io.conn(slot).ok_or(SendError::NotFound)?;
        if c.phase != Phase::Open || !c.cs.is_open() {
            return Err(SendError::Closed);
        }
        let len = f.wire_len() + if c.client { 4 } else { 0 };
        let total = c.out.len() + c.cs.pending.load(Ordering::Relaxed) + len;
        if total > cfg.outbound_hard_limit {
            return match cfg.overflow {
                OverflowPolicy::Refuse => Err(SendError::WouldOverflow),
                OverflowPolicy::Close => {
                    drop(io);
                    self.overflow_close(slot);
                    Err(SendError::SlowConsumer)
                }
            };
        }
        match f {
            Frame::Build(op, payload) if c.client => c.out.push_masked(op, payload, dial::mask_key()),
            f => c.out.push(f),
        }
        if counts {
            c.out.mark_message();
        }
        let over = total > cfg.outbound_soft_limit;
        if over {
            c.cs.over_soft.store(true, Ordering::Relaxed);
        }
        io.mark_dirty(slot);
        if counts {
            bump(&self.stats().msgs_out, 1);
        }
        Ok(if over { Sent::Backpressure } else { Sent::Queued })
    }

    // ---- writing ----

    fn flush_dirty(&self) {
        for _ in 0..4 {
            let dirty = std::mem::take(&mut self.io.borrow_mut().dirty);
            if dirty.is_empty() {
                return;
            }
            for slot in dirty {
                if let Some(c) = self.io.borrow_mut().conn(slot) {
                    c.dirty = false;
                }
                self.guarded(slot, |w| w.flush(slot));
            }
        }
    }

    fn flush(&self, slot: usize) {
        let soft = self.shared.cfg.outbound_soft_limit;
        let (drain, resume, written, gone, err) = {
            let mut io = self.io.borrow_mut();
            let Some(c) = io.conn(slot) else { return };
            if c.phase == Phase::Connecting {
                return;
            }
            let mut gone = false;
            let mut err = None;
            // The proxy stage speaks in the clear even on a TLS connection.
            let tls = if c.phase == Phase::Proxy {
                None
            } else {
                c.tls.as_deref_mut()
            };
            if !c.out.is_empty() || tls.as_ref().is_some_and(|t| transport::tls_pending(t)) {
                match transport::flush(tls, &mut c.sock, &mut c.out) {
                    Ok(n) => bump(&self.link().stats.bytes_out, n as u64),
                    Err(e) => {
                        gone = true;
                        err = Some(e);
                    }
                }
            }
            c.cs.publish_buffered(c.out.len());
            let written = c.out.take_written();
            let mut drain = false;
            let mut resume = false;
            if !gone {
                let below = c.out.len() + c.cs.pending.load(Ordering::Relaxed) <= soft;
                if below && c.phase == Phase::Open && c.cs.over_soft.swap(false, Ordering::Relaxed) {
                    drain = true;
                }
                if below && c.read_paused && self.shared.queue.as_ref().is_none_or(|q| !q.is_full()) {
                    c.read_paused = false;
                    resume = true;
                }
                let tls_done = c.tls.as_ref().is_none_or(|t| !transport::tls_pending(t));
                if c.out.is_empty() && tls_done && c.phase == Phase::Lingering && !c.shut_wr {
                    c.shut_wr = true;
                    if let Some(t) = c.tls.as_deref_mut() {
                        t.send_close_notify();
                        let _ = transport::flush(Some(t), &mut c.sock, &mut c.out);
                    }
                    let _ = c.sock.shutdown(std::net::Shutdown::Write);
                    gone = c.close_after_flush;
                }
            }
            (drain.then_some(c.id), resume, (written, c.id), gone, err)
        };
        for _ in 0..written.0 {
            self.deliver(Event::Sent { conn: written.1 });
        }
        if gone {
            self.on_eof(slot, err);
            return;
        }
        if let Some(id) = drain {
            self.deliver(Event::Drain { conn: id });
        }
        if resume {
            let mut io = self.io.borrow_mut();
            io.paused.retain(|&s| s != slot);
            io.again.push(slot);
        }
    }

    // ---- timers ----

    fn tick(&self) {
        let now = self.now.get();
        let cfg = &self.shared.cfg;
        let ping = ms(cfg.ping_interval);
        let idle = ms(cfg.idle_timeout);
        let mut expired = Vec::new();
        {
            let mut io = self.io.borrow_mut();
            let mut pinged = Vec::new();
            for (slot, c) in io.conns.iter_mut().enumerate() {
                let Some(c) = c else { continue };
                match c.phase {
                    Phase::Open => {
                        // A connection waiting for the host's `complete` is not idle.
                        if idle > 0 && !c.waiting_complete && now.saturating_sub(c.last_recv) >= idle {
                            c.set_close(close_info(-1, "idle timeout", false));
                            expired.push(slot);
                        } else if ping > 0
                            && now.saturating_sub(c.last_recv) >= ping
                            && now.saturating_sub(c.last_ping) >= ping
                        {
                            c.last_ping = now;
                            c.push_frame(frame::OP_PING, b"");
                            pinged.push(slot);
                        }
                    }
                    _ => {
                        if now >= c.deadline {
                            expired.push(slot);
                        }
                    }
                }
            }
            for slot in pinged {
                io.mark_dirty(slot);
            }
        }
        for slot in expired {
            let phase = self.io.borrow_mut().conn(slot).map(|c| c.phase);
            match phase {
                Some(Phase::Handshake) => {
                    bump(&self.stats().hs_failed, 1);
                    self.teardown(slot);
                }
                Some(Phase::Connecting | Phase::Proxy | Phase::Upgrading) => {
                    let host = self.dial_host(slot);
                    self.connect_failed(
                        slot,
                        ConnectError::Timeout,
                        format!("connecting to {host} timed out ({} ms)", self.connect_timeout_ms(slot)),
                    );
                }
                _ => self.teardown(slot),
            }
        }
        if self.accept_blocked.replace(false) {
            self.accept();
        }
        if self.idx == 0 && self.shared.queue.is_none() && self.stopping.get().is_none() {
            let mut h = crate::lock(&self.shared.handler);
            if let Some(h) = h.as_mut() {
                h.on_tick(&self.handle);
            }
        }
    }

    fn connect_timeout_ms(&self, slot: usize) -> u64 {
        self.io
            .borrow_mut()
            .conn(slot)
            .and_then(|c| c.dial.as_ref())
            .map(|d| ms(d.target.connect_timeout))
            .unwrap_or(0)
    }

    // ---- the end of a connection ----

    fn teardown(&self, slot: usize) {
        let c = {
            let mut io = self.io.borrow_mut();
            let Some(c) = io.conns.get_mut(slot).and_then(|c| c.take()) else {
                return;
            };
            io.free.push(slot);
            io.ids.remove(&c.id);
            c
        };
        let Conn {
            mut sock,
            id,
            cs,
            opened,
            close,
            dial,
            ..
        } = c;
        let _ = self.registry.deregister(&mut sock);
        drop(sock);
        cs.set_state(ST_CLOSING);
        self.shared.registry.remove(id);
        self.shared.live_count.fetch_sub(1, Ordering::Relaxed);
        if opened {
            self.shared.open_count.fetch_sub(1, Ordering::Relaxed);
            let (status, reason, by_host) = match close {
                Some(ci) => (ci.status, ci.reason, ci.by_host),
                None => (-1, "connection dropped".to_owned(), false),
            };
            self.deliver(Event::Close {
                conn: id,
                status,
                reason: &reason,
                by_host,
            });
        } else if dial.is_some() || close.as_ref().is_some_and(|c| c.error.is_some()) {
            let (error, message) = match close {
                Some(ci) => (ci.error.unwrap_or(ConnectError::Io), ci.reason),
                None => (ConnectError::Io, "the connection ended while connecting".to_owned()),
            };
            self.deliver(Event::ConnectFailed {
                conn: id,
                error,
                message: &message,
            });
        }
    }

    fn teardown_all(&self) {
        let slots: Vec<usize> = self.io.borrow().ids.values().copied().collect();
        for slot in slots {
            self.teardown(slot);
        }
    }

    // ---- events to the host ----

    fn deliver(&self, ev: Event<'_>) {
        if self.stopping.get().is_some() || self.shared.shutting_down.load(Ordering::Relaxed) {
            return;
        }
        if let Some(q) = &self.shared.queue {
            q.push(OwnedEvent::from_event(&ev));
            return;
        }
        let mut h = crate::lock(&self.shared.handler);
        if let Some(h) = h.as_mut() {
            h.on_event(&self.handle, ev);
        }
    }
}

/// Client: the socket is connected (and tunnelled): start TLS if asked and
/// queue the upgrade request (rustls holds it until its handshake is done).
fn start_upgrade(c: &mut Conn) -> Result<(), String> {
    let Some(d) = c.dial.as_ref() else {
        return Err("no dial state".into());
    };
    if let Some(cfg) = &d.target.tls {
        let name = rustls_pki_types::ServerName::try_from(d.target.host.clone())
            .map_err(|e| format!("{:?} is not a valid TLS server name: {e}", d.target.host))?;
        let conn = rustls::ClientConnection::new(cfg.clone(), name)
            .map_err(|e| format!("cannot start TLS with {}: {e}", d.target.host))?;
        c.tls = Some(Box::new(rustls::Connection::Client(conn)));
    }
    let req = dial::client_request(&d.target, &d.key);
    c.out.push(Frame::Raw(req));
    c.phase = Phase::Upgrading;
    Ok(())
}

// ---- entry points used by ServerHandle ----

pub(crate) fn send(shared: &Arc<Shared>, id: ConnId, f: Frame<'_>, counts: bool) -> Result<Sent, SendError> {
    if id == 0 {
        return Err(SendError::NotFound);
    }
    let n = shared.workers.len() as u64;
    let owner = (id % n) as usize;
    if let Some(w) = worker_here(shared, owner) {
        if w.io.try_borrow_mut().is_ok() {
            return w.send_local(id, f, counts);
        }
    }
    if shared.shutting_down.load(Ordering::Relaxed) {
        return Err(SendError::ShutDown);
    }
    let cs = shared.registry.get(id).ok_or(SendError::NotFound)?;
    if !cs.is_open() {
        return Err(SendError::Closed);
    }
    // Frame on the calling thread: the I/O thread only appends.
    let f = match f {
        Frame::Build(op, payload) if shared.client => {
            Frame::Raw(frame::build_frame(op, payload, Some(dial::mask_key())))
        }
        f => f.into_owned(),
    };
    let cfg = &shared.cfg;
    let len = f.wire_len();
    cs.pending.fetch_add(len, Ordering::Relaxed);
    let total = cs.buffered();
    if total > cfg.outbound_hard_limit {
        cs.pending.fetch_sub(len, Ordering::Relaxed);
        return match cfg.overflow {
            OverflowPolicy::Refuse => Err(SendError::WouldOverflow),
            OverflowPolicy::Close => {
                shared.workers[owner].command(Cmd::Overflow { id });
                Err(SendError::SlowConsumer)
            }
        };
    }
    shared.workers[owner].command(Cmd::Send {
        id,
        frame: f,
        len,
        counts,
    });
    if total > cfg.outbound_soft_limit {
        cs.over_soft.store(true, Ordering::Relaxed);
        Ok(Sent::Backpressure)
    } else {
        Ok(Sent::Queued)
    }
}

pub(crate) fn close(shared: &Arc<Shared>, id: ConnId, code: u16, reason: &str) -> Result<(), SendError> {
    if id == 0 {
        return Err(SendError::NotFound);
    }
    let owner = (id % shared.workers.len() as u64) as usize;
    if let Some(w) = worker_here(shared, owner) {
        if w.io.try_borrow_mut().is_ok() {
            let slot = w.io.borrow().ids.get(&id).copied().ok_or(SendError::NotFound)?;
            return if w.host_close(slot, code, reason) {
                Ok(())
            } else {
                Err(SendError::Closed)
            };
        }
    }
    let cs = shared.registry.get(id).ok_or(SendError::NotFound)?;
    // Claim the transition here so that is_valid is false as soon as close returns.
    if cs.state() != ST_OPEN {
        return Err(SendError::Closed);
    }
    cs.set_state(ST_CLOSING);
    shared.workers[owner].command(Cmd::Close {
        id,
        code,
        reason: reason.to_owned(),
    });
    Ok(())
}

/// Starts an outgoing connection; events follow under the returned id.
pub(crate) fn dial(shared: &Arc<Shared>, target: DialTarget) -> ConnId {
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let owner = (id % shared.workers.len() as u64) as usize;
    shared.workers[owner].command(Cmd::Dial {
        id,
        target: Box::new(target),
    });
    id
}

/// Manual flow control: lets the next message of `id` through.
pub(crate) fn complete(shared: &Arc<Shared>, id: ConnId) {
    let owner = (id % shared.workers.len() as u64) as usize;
    shared.workers[owner].command(Cmd::Complete { id });
}
