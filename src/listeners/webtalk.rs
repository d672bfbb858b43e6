//! The webtalk listeners (PROTOCOLS.md §4): browsers on the engine, the
//! application on a plain TCP admin listener, both over one shared
//! [`Webtalk`] state. [`WebtalkHandle`] drives the same state from Rust (and
//! later C) without any admin socket.
//!
//! Browser deliveries are sent while the state lock is held, so every
//! recipient sees messages in the order the state produced them: a login's
//! queued messages always arrive before a whisper made after the login, even
//! when the whisper comes from an admin thread.

use crate::lock;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};

use super::{loopback, ListenerConfig, ListenerStats};
use crate::dialect::webtalk::admin::{self, AdminSession, Reply};
use crate::dialect::webtalk::framing::HEADER_LEN;
use crate::dialect::webtalk::{ChannelId, UserId, Webtalk, WebtalkError};
use crate::dialect::Action;
use crate::engine::{Event, Handler, Server, ServerHandle};
use crate::listeners::apply_actions;

/// `--webtalk` binds here unless told otherwise.
pub const DEFAULT_BIND: SocketAddr = loopback(12345);
/// `--webtalk-admin` binds here unless told otherwise.
pub const DEFAULT_ADMIN_BIND: SocketAddr = loopback(12344);

/// Settings of the admin TCP listener.
#[derive(Clone)]
pub struct AdminConfig {
    /// Default [`DEFAULT_ADMIN_BIND`] (loopback).
    pub bind: SocketAddr,
    /// When set, the first frame of every connection must be `[auth] SECRET`
    /// (§4.2). Default none.
    pub secret: Option<Vec<u8>>,
    /// Admin connections served at once; more are closed at accept. Default 64
    /// (an application keeps one or a few).
    pub max_connections: usize,
    /// A connection whose replies cannot be written for this long (the
    /// application stopped reading) is closed. Default 30 s.
    pub write_timeout: Duration,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of logs.
        f.debug_struct("AdminConfig")
            .field("bind", &self.bind)
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("max_connections", &self.max_connections)
            .field("write_timeout", &self.write_timeout)
            .finish()
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            bind: DEFAULT_ADMIN_BIND,
            secret: None,
            max_connections: 64,
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// Counters of a webtalk namespace for a status page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebtalkStats {
    /// The browser listener; `names` counts users with a logged-in browser.
    pub browsers: ListenerStats,
    /// Known users, online or not.
    pub users: u64,
    /// Channels, the global one included.
    pub channels: u64,
    /// Messages waiting in offline queues.
    pub queued: u64,
    /// Keys in the store.
    pub stored: u64,
    /// Admin TCP connections open now, and since start.
    pub admin_connections: u64,
    pub admin_connections_total: u64,
    /// Admin frames answered (`goodbye` and framing errors included), and how
    /// many of the replies were `[error]`.
    pub admin_frames: u64,
    pub admin_errors: u64,
}

#[derive(Default)]
struct AdminCounters {
    open: AtomicU64,
    total: AtomicU64,
    frames: AtomicU64,
    errors: AtomicU64,
}

struct State {
    webtalk: Mutex<Webtalk>,
    admin: AdminCounters,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Webtalk> {
        // A panic while the lock was held cannot leave the maps half-updated
        // in a way that breaks later calls, so the state stays usable.
        lock(&self.webtalk)
    }
}

/// Drives a webtalk namespace without a socket: the admin operations as
/// calls. Clone it freely; every method is safe from any thread and never
/// blocks on the network (deliveries are queued to the engine).
#[derive(Clone)]
pub struct WebtalkHandle {
    state: Arc<State>,
    server: ServerHandle,
}

impl WebtalkHandle {
    /// Runs `f` on the state and carries out the browser actions it produced,
    /// both under the lock (see the module documentation for why).
    fn with<R>(&self, f: impl FnOnce(&mut Webtalk, &mut Vec<Action>) -> R) -> R {
        let mut wt = self.state.lock();
        let mut out = Vec::new();
        let r = f(&mut wt, &mut out);
        apply_actions(&self.server, out);
        r
    }

    /// `[newuser]`: a new user in channel 1; returns its id and salt (the
    /// browser logs in with `ID!SALT`).
    pub fn create_user(&self) -> Result<(UserId, String), WebtalkError> {
        self.with(|wt, _| wt.create_user())
    }

    /// `[killuser]`: closes the user's browser with 4003, drops it from every
    /// channel, drops its queue and forgets it.
    pub fn kill_user(&self, user: UserId) -> Result<(), WebtalkError> {
        self.with(|wt, out| wt.kill_user(user, out))
    }

    /// `[whisper]`: the bytes to one user (text frame if UTF-8, else binary),
    /// queued while it is offline.
    pub fn whisper(&self, user: UserId, message: &[u8]) -> Result<(), WebtalkError> {
        self.with(|wt, out| wt.whisper(user, message, out))
    }

    /// `[newchannel]`: a new empty channel.
    pub fn create_channel(&self) -> ChannelId {
        self.with(|wt, _| wt.create_channel())
    }

    /// `[killchannel]` (channel 1 cannot be killed).
    pub fn kill_channel(&self, chan: ChannelId) -> Result<(), WebtalkError> {
        self.with(|wt, _| wt.kill_channel(chan))
    }

    /// `[shout]`: the bytes to every member of a channel.
    pub fn shout(&self, chan: ChannelId, message: &[u8]) -> Result<(), WebtalkError> {
        self.with(|wt, out| wt.shout(chan, message, out))
    }

    /// `[join]` (idempotent).
    pub fn join(&self, chan: ChannelId, user: UserId) -> Result<(), WebtalkError> {
        self.with(|wt, _| wt.join(chan, user))
    }

    /// `[leave]` (also fine for a non-member).
    pub fn leave(&self, chan: ChannelId, user: UserId) -> Result<(), WebtalkError> {
        self.with(|wt, _| wt.leave(chan, user))
    }

    /// `[store]`.
    pub fn store(&self, key: &[u8], value: &[u8]) {
        self.with(|wt, _| wt.store(key, value))
    }

    /// `[clear]` (also fine for an absent key).
    pub fn clear(&self, key: &[u8]) {
        self.with(|wt, _| wt.clear(key))
    }

    /// `[retrieve]`: a copy of the value under `key`.
    pub fn retrieve(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.with(|wt, _| wt.retrieve(key).map(<[u8]>::to_vec))
    }

    /// Runs one admin command body already split into `cmd` and `data` (as
    /// the admin listener does after framing), with the exact admin reply.
    /// `[auth]` always succeeds here.
    pub fn execute(&self, cmd: &[u8], data: &[u8]) -> Reply {
        self.with(|wt, out| admin::execute(wt, cmd, data, out))
    }

    /// Live counters.
    pub fn stats(&self) -> WebtalkStats {
        let (users, online, channels, queued, stored) = {
            let wt = self.state.lock();
            (
                wt.user_count(),
                wt.online_count(),
                wt.channel_count(),
                wt.queued_count(),
                wt.stored_count(),
            )
        };
        let a = &self.state.admin;
        WebtalkStats {
            browsers: ListenerStats::from_engine(&self.server.stats(), online as u64),
            users: users as u64,
            channels: channels as u64,
            queued: queued as u64,
            stored: stored as u64,
            admin_connections: a.open.load(Ordering::Relaxed),
            admin_connections_total: a.total.load(Ordering::Relaxed),
            admin_frames: a.frames.load(Ordering::Relaxed),
            admin_errors: a.errors.load(Ordering::Relaxed),
        }
    }

    /// The browser listener's engine handle.
    pub fn server(&self) -> &ServerHandle {
        &self.server
    }
}

struct BrowserHandler {
    state: Arc<State>,
}

impl Handler for BrowserHandler {
    fn on_event(&mut self, server: &ServerHandle, event: Event<'_>) {
        let mut wt = self.state.lock();
        let actions = match event {
            Event::Open { conn, .. } => wt.on_open(conn),
            Event::Message { conn, data, text } => wt.on_message(conn, data, text),
            Event::Close { conn, .. } => wt.on_close(conn),
            // Sent and ConnectFailed are client-role events; a listener never sees them.
            Event::Ping { .. }
            | Event::Pong { .. }
            | Event::Drain { .. }
            | Event::Sent { .. }
            | Event::ConnectFailed { .. } => return,
        };
        apply_actions(server, actions);
    }
}

/// A running webtalk namespace: the browser listener and, if configured, the
/// admin listener. Dropping it shuts both down like
/// [`WebtalkListener::shutdown`].
pub struct WebtalkListener {
    // Declared first so it stops first: no admin command runs against a
    // browser listener that is going away.
    admin: Option<AdminListener>,
    server: Server,
    handle: WebtalkHandle,
}

/// Binds and starts the browser listener and, when `admin` is given, the
/// admin listener, over a fresh namespace (channel 1, no users).
pub fn start(cfg: ListenerConfig, admin: Option<AdminConfig>) -> io::Result<WebtalkListener> {
    start_with(cfg, admin, Webtalk::new())
}

/// Like [`start`], over a namespace made by the caller (for example with
/// [`Webtalk::with_salt_source`] in tests).
pub fn start_with(cfg: ListenerConfig, admin: Option<AdminConfig>, webtalk: Webtalk) -> io::Result<WebtalkListener> {
    let state = Arc::new(State {
        webtalk: Mutex::new(webtalk),
        admin: AdminCounters::default(),
    });
    let server = Server::start(cfg.engine, BrowserHandler { state: state.clone() })?;
    let handle = WebtalkHandle {
        state,
        server: server.handle().clone(),
    };
    let admin = match admin {
        Some(a) => Some(AdminListener::start(a, handle.clone())?),
        None => None,
    };
    Ok(WebtalkListener { admin, server, handle })
}

impl WebtalkListener {
    /// The browser listener's address (the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The admin listener's address, when it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.addr)
    }

    /// The handle that drives this namespace without a socket.
    pub fn handle(&self) -> &WebtalkHandle {
        &self.handle
    }

    /// Live counters.
    pub fn stats(&self) -> WebtalkStats {
        self.handle.stats()
    }

    /// Closes the admin connections, then sends close 1001 to every browser,
    /// and joins every thread.
    pub fn shutdown(mut self) {
        if let Some(a) = self.admin.take() {
            a.shutdown();
        }
        // `self` drops here, shutting the server down.
    }
}

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);

/// Bytes read from an admin connection at once.
const READ_CHUNK: usize = 16 << 10;
/// Replies are written once this many bytes have collected, or when the
/// input holds no further complete frame.
const WRITE_BATCH: usize = 64 << 10;
/// After a closing reply, how long input is drained so that unread bytes do
/// not turn the close into a reset that could destroy the reply in flight.
const LINGER: Duration = Duration::from_secs(1);

struct AdminShared {
    handle: WebtalkHandle,
    secret: Option<Vec<u8>>,
    write_timeout: Duration,
    stopping: AtomicBool,
    /// A clone of every open connection, so shutdown can unblock its thread.
    conns: Mutex<HashMap<u64, TcpStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

struct AdminListener {
    addr: SocketAddr,
    shared: Arc<AdminShared>,
    waker: Arc<Waker>,
    accept: Option<JoinHandle<()>>,
}

impl AdminListener {
    fn start(cfg: AdminConfig, handle: WebtalkHandle) -> io::Result<AdminListener> {
        let mut listener = mio::net::TcpListener::bind(cfg.bind)?;
        let addr = listener.local_addr()?;
        let poll = Poll::new()?;
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let shared = Arc::new(AdminShared {
            handle,
            secret: cfg.secret,
            write_timeout: cfg.write_timeout,
            stopping: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let max = cfg.max_connections.max(1);
        let accept = std::thread::Builder::new()
            .name("wsb-webtalk-admin".into())
            .spawn(move || accept_loop(poll, listener, &s, max))?;
        Ok(AdminListener {
            addr,
            shared,
            waker,
            accept: Some(accept),
        })
    }

    fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        let _ = accept.join();
        for s in lock(&self.shared.conns).values() {
            let _ = s.shutdown(Shutdown::Both);
        }
        let threads = std::mem::take(&mut *lock(&self.shared.threads));
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for AdminListener {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(mut poll: Poll, listener: mio::net::TcpListener, shared: &Arc<AdminShared>, max: usize) {
    let mut events = Events::with_capacity(8);
    let mut next_id = 0u64;
    // After a failed accept (out of descriptors, say) the pending connection
    // raises no new readiness event, so retry on a timer.
    let mut retry: Option<Duration> = None;
    loop {
        if let Err(e) = poll.poll(&mut events, retry) {
            if e.kind() != io::ErrorKind::Interrupted {
                return;
            }
        }
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        retry = None;
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    let stream = std::net::TcpStream::from(stream);
                    let open = lock(&shared.conns).len();
                    if open >= max {
                        // Over the limit: closed at once, nothing is said.
                        drop(stream);
                        continue;
                    }
                    next_id += 1;
                    spawn_connection(shared, next_id, stream);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    retry = Some(Duration::from_millis(100));
                    break;
                }
            }
        }
    }
}

fn spawn_connection(shared: &Arc<AdminShared>, id: u64, stream: TcpStream) {
    let Ok(clone) = stream.try_clone() else {
        return;
    };
    lock(&shared.conns).insert(id, clone);
    // Counted here rather than in the thread, so the counters never lag
    // behind the accepts.
    let counters = &shared.handle.state.admin;
    counters.open.fetch_add(1, Ordering::Relaxed);
    counters.total.fetch_add(1, Ordering::Relaxed);
    let s = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("wsb-webtalk-admin-conn".into())
        .spawn(move || {
            serve(&s, stream);
            lock(&s.conns).remove(&id);
            s.handle.state.admin.open.fetch_sub(1, Ordering::Relaxed);
        });
    let mut threads = lock(&shared.threads);
    // Forget threads that have ended, so the list stays as short as the
    // number of live connections.
    threads.retain(|t| !t.is_finished());
    match spawned {
        Ok(t) => threads.push(t),
        Err(_) => {
            counters.open.fetch_sub(1, Ordering::Relaxed);
            if let Some(s) = lock(&shared.conns).remove(&id) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

/// The length of the first frame in `buf` once it is complete: the header
/// alone when it is `00000` or not all digits (the session answers both
/// without a body), else header and body.
fn complete_frame(buf: &[u8]) -> Option<usize> {
    let header = buf.get(..HEADER_LEN)?;
    let mut n = 0usize;
    for &b in header {
        if !b.is_ascii_digit() {
            return Some(HEADER_LEN);
        }
        n = n * 10 + usize::from(b - b'0');
    }
    let len = HEADER_LEN + n;
    (buf.len() >= len).then_some(len)
}

/// How many replies `reply` holds and how many are errors.
fn count_replies(mut reply: &[u8]) -> (u64, u64) {
    let (mut frames, mut errors) = (0, 0);
    while let Some(len) = complete_frame(reply) {
        if reply[HEADER_LEN..len].starts_with(b"[error]") {
            errors += 1;
        }
        frames += 1;
        reply = &reply[len..];
    }
    (frames, errors)
}

/// Serves one admin connection until the peer leaves, a closing reply is
/// sent, or the listener stops.
///
/// Input is cut into whole frames here and each is fed to the session on its
/// own, so the state lock is taken once per frame and the replies pending at
/// any time stay bounded (one read of small frames can ask for many large
/// `[retrieve]` replies).
fn serve(shared: &AdminShared, mut stream: TcpStream) {
    if stream.set_nonblocking(false).is_err() || stream.set_write_timeout(Some(shared.write_timeout)).is_err() {
        return;
    }
    let _ = stream.set_nodelay(true);
    let mut session = AdminSession::new(shared.secret.as_deref());
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut pending: Vec<u8> = Vec::new();
    let mut replies: Vec<u8> = Vec::new();
    let counters = &shared.handle.state.admin;
    loop {
        let n = match stream.read(&mut chunk) {
            // The peer left; in the middle of a frame that gets no reply.
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        pending.extend_from_slice(&chunk[..n]);
        let mut used = 0;
        let mut close = false;
        while let Some(len) = complete_frame(&pending[used..]) {
            let frame = &pending[used..used + len];
            used += len;
            let out = {
                let mut wt = shared.handle.state.lock();
                let mut out = session.feed(frame, &mut wt);
                apply_actions(&shared.handle.server, std::mem::take(&mut out.actions));
                out
            };
            let (frames, errors) = count_replies(&out.reply);
            counters.frames.fetch_add(frames, Ordering::Relaxed);
            counters.errors.fetch_add(errors, Ordering::Relaxed);
            replies.extend_from_slice(&out.reply);
            if out.close {
                close = true;
                break;
            }
            if replies.len() >= WRITE_BATCH {
                if stream.write_all(&replies).is_err() {
                    return;
                }
                replies.clear();
            }
        }
        pending.drain(..used);
        if !replies.is_empty() {
            if stream.write_all(&replies).is_err() {
                return;
            }
            replies.clear();
        }
        if close {
            linger_close(stream);
            return;
        }
    }
}

/// Ends the connection after a closing reply: our side is shut (the peer
/// reads the reply, then end of stream), and input is drained for a short
/// while so the kernel does not answer unread bytes with a reset.
fn linger_close(mut stream: TcpStream) {
    if stream.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER;
    let mut sink = [0u8; 4096];
    let mut drained = 0usize;
    while drained < (1 << 20) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_cut_at_their_announced_length() {
        assert_eq!(complete_frame(b"0000"), None);
        assert_eq!(complete_frame(b"00000"), Some(5));
        assert_eq!(complete_frame(b"abcde[x]"), Some(5));
        assert_eq!(complete_frame(b"00005[foo"), None);
        assert_eq!(complete_frame(b"00005[foo]00000"), Some(10));
        assert_eq!(complete_frame(b"99999"), None);
    }

    #[test]
    fn replies_are_counted() {
        let mut r = Reply {
            ok: true,
            text: b"x".to_vec(),
        }
        .encode();
        r.extend(
            Reply {
                ok: false,
                text: b"y".to_vec(),
            }
            .encode(),
        );
        assert_eq!(count_replies(&r), (2, 1));
        assert_eq!(count_replies(b""), (0, 0));
    }
}
