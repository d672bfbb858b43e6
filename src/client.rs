//! The WebSocket client: `ws://` and `wss://` URIs, extra headers,
//! subprotocols, connect timeout, HTTP proxies (CONNECT), automatic
//! reconnection with exponential backoff and jitter, manual flow control
//! (the innovaphone `MessageComplete` model) and per-message send results.
//!
//! A client runs on its own engine thread. Events reach a [`ClientHandler`]
//! on that thread, or wait in a bounded queue for [`Client::poll`] (the Achex
//! C++ client model). Sends are safe from any thread and never block.

use crate::lock;
use std::collections::VecDeque;
use std::net::ToSocketAddrs;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::engine::{ConnectError, DialTarget, PollError, ProxyTunnel};
use crate::tls::ClientTls;
use crate::{Config, ConnId, Event, Handler, SendError, Sent, Server, ServerHandle};

/// A parsed `ws://` or `wss://` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub secure: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
}

impl Url {
    /// Parses `ws[s]://host[:port][/path][?query]` (IPv6 hosts in brackets).
    pub fn parse(s: &str) -> Result<Url, String> {
        let (secure, rest) = if let Some(r) = s.strip_prefix("wss://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("ws://") {
            (false, r)
        } else {
            return Err(format!("{s:?} is not a ws:// or wss:// URI"));
        };
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.contains('@') {
            return Err("user information in WebSocket URIs is not supported".into());
        }
        let (host, port) = if let Some(h) = authority.strip_prefix('[') {
            let end = h.find(']').ok_or_else(|| format!("unclosed [ in {s:?}"))?;
            let host = &h[..end];
            let after = &h[end + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(format!("unexpected {after:?} after the host in {s:?}")),
            };
            (host.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (authority.to_owned(), None),
            }
        };
        if host.is_empty() {
            return Err(format!("no host in {s:?}"));
        }
        let port = match port {
            Some(p) => p.parse::<u16>().map_err(|_| format!("bad port {p:?} in {s:?}"))?,
            None if secure => 443,
            None => 80,
        };
        let path = if path.is_empty() {
            "/".to_owned()
        } else if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        if path.bytes().any(|b| b <= b' ' || b == 0x7F) {
            return Err(format!("the path of {s:?} contains spaces or control characters"));
        }
        Ok(Url {
            secure,
            host,
            port,
            path,
        })
    }
}

/// Automatic reconnection: exponential backoff with jitter.
#[derive(Debug, Clone)]
pub struct Reconnect {
    /// First delay. Default 500 ms.
    pub initial: Duration,
    /// Largest delay. Default 30 s.
    pub max: Duration,
    /// Growth per attempt. Default 2.
    pub factor: f64,
    /// Random part of each delay, 0.0–1.0 (0.2 = ±20 %). Default 0.2.
    pub jitter: f64,
    /// Give up after this many attempts in a row; 0 = never. Default 0.
    pub max_attempts: u32,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            factor: 2.0,
            jitter: 0.2,
            max_attempts: 0,
        }
    }
}

impl Reconnect {
    /// The delay before attempt `n` (1-based), jitter included.
    pub fn delay(&self, n: u32) -> Duration {
        let base = self.initial.as_secs_f64() * self.factor.max(1.0).powi(n.saturating_sub(1).min(60) as i32);
        let base = base.min(self.max.as_secs_f64());
        let j = self.jitter.clamp(0.0, 1.0);
        let r = random_unit() * 2.0 - 1.0;
        Duration::from_secs_f64((base * (1.0 + j * r)).max(0.0))
    }
}

fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    let _ = getrandom::getrandom(&mut b);
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// Client settings. Only the URL is required.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub url: String,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// Subprotocols to offer.
    pub protocols: Vec<String>,
    /// Time allowed for TCP connect, proxy, TLS and upgrade. Default 10 s.
    pub connect_timeout: Duration,
    pub tls: ClientTls,
    /// `[http://][user:password@]host[:port]` of a proxy to tunnel through
    /// with CONNECT (no scheme means `http://`, as with curl). `None`
    /// (default): the `https_proxy`/`http_proxy` environment variables (and
    /// `no_proxy`) decide; loopback hosts never use an environment proxy.
    pub proxy: Option<String>,
    /// Ignore the proxy environment variables. Default false.
    pub no_env_proxy: bool,
    /// Reconnect automatically. Default off.
    pub reconnect: Option<Reconnect>,
    /// Deliver one message at a time: the next only after
    /// [`Client::message_complete`]. Default false (automatic).
    pub manual_complete: bool,
    /// Report each message written out ([`ClientEvent::Sent`]). Default false.
    pub send_results: bool,
    /// Engine limits (message size, ping interval, outbound limits…).
    pub engine: Config,
    /// Queue mode: events waiting before reading pauses. Default 16,384.
    pub queue_capacity: usize,
}

impl ClientConfig {
    pub fn new(url: impl Into<String>) -> ClientConfig {
        ClientConfig {
            url: url.into(),
            headers: Vec::new(),
            protocols: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            tls: ClientTls::default(),
            proxy: None,
            no_env_proxy: false,
            reconnect: None,
            manual_complete: false,
            send_results: false,
            engine: Config::default(),
            queue_capacity: 16_384,
        }
    }
}

/// What happened to a client.
#[derive(Debug)]
pub enum ClientEvent<'a> {
    /// The upgrade completed (`protocol`: the subprotocol the server chose).
    Connected {
        protocol: Option<&'a str>,
    },
    /// A complete message; the byte after `data` is 0.
    Message {
        data: &'a [u8],
        text: bool,
    },
    Pong {
        data: &'a [u8],
    },
    /// One message has been written to the socket (with `send_results`).
    Sent,
    /// The outbound buffer fell back under the soft limit.
    Drain,
    /// The connection ended: the server's close code (0 without one), the
    /// code wsbroker sent when it failed the connection, the host's own code
    /// when `by_host`, or -1 when the transport dropped.
    Closed {
        status: i32,
        reason: &'a str,
        by_host: bool,
    },
    /// A connection attempt failed before it opened.
    Error {
        error: ConnectError,
        message: &'a str,
    },
    /// Auto-reconnect: attempt `attempt` starts after `delay`.
    Reconnecting {
        attempt: u32,
        delay: Duration,
    },
    /// Auto-reconnect has stopped: `attempts` attempts in a row failed (the
    /// configured `max_attempts`). No further attempt is made; the client
    /// stays disconnected.
    GaveUp {
        attempts: u32,
    },
}

/// An owned [`ClientEvent`] (queue mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedClientEvent {
    Connected {
        protocol: Option<String>,
    },
    /// `data` carries the payload followed by one 0 byte.
    Message {
        data: Vec<u8>,
        text: bool,
    },
    Pong {
        data: Vec<u8>,
    },
    Sent,
    Drain,
    Closed {
        status: i32,
        reason: String,
        by_host: bool,
    },
    Error {
        error: ConnectError,
        message: String,
    },
    Reconnecting {
        attempt: u32,
        delay: Duration,
    },
    GaveUp {
        attempts: u32,
    },
}

impl OwnedClientEvent {
    fn from_event(e: &ClientEvent<'_>) -> OwnedClientEvent {
        let nul = |d: &[u8]| {
            let mut v = Vec::with_capacity(d.len() + 1);
            v.extend_from_slice(d);
            v.push(0);
            v
        };
        match *e {
            ClientEvent::Connected { protocol } => OwnedClientEvent::Connected {
                protocol: protocol.map(str::to_owned),
            },
            ClientEvent::Message { data, text } => OwnedClientEvent::Message { data: nul(data), text },
            ClientEvent::Pong { data } => OwnedClientEvent::Pong { data: nul(data) },
            ClientEvent::Sent => OwnedClientEvent::Sent,
            ClientEvent::Drain => OwnedClientEvent::Drain,
            ClientEvent::Closed {
                status,
                reason,
                by_host,
            } => OwnedClientEvent::Closed {
                status,
                reason: reason.to_owned(),
                by_host,
            },
            ClientEvent::Error { error, message } => OwnedClientEvent::Error {
                error,
                message: message.to_owned(),
            },
            ClientEvent::Reconnecting { attempt, delay } => OwnedClientEvent::Reconnecting { attempt, delay },
            ClientEvent::GaveUp { attempts } => OwnedClientEvent::GaveUp { attempts },
        }
    }

    /// Message or pong payload without the trailing 0.
    pub fn payload(&self) -> &[u8] {
        match self {
            OwnedClientEvent::Message { data, .. } | OwnedClientEvent::Pong { data } => &data[..data.len() - 1],
            _ => &[],
        }
    }
}

/// Receives a client's events on its engine thread.
pub trait ClientHandler: Send + 'static {
    fn on_event(&mut self, client: &ClientHandle, event: ClientEvent<'_>);

    /// Called about every 100 ms on the engine thread (never at the same time
    /// as `on_event`), for the handler's own timers. Does nothing by default.
    fn on_tick(&mut self, _client: &ClientHandle) {}
}

impl<F> ClientHandler for F
where
    F: FnMut(&ClientHandle, ClientEvent<'_>) + Send + 'static,
{
    fn on_event(&mut self, client: &ClientHandle, event: ClientEvent<'_>) {
        self(client, event)
    }
}

/// Connection state shared between the client's threads.
struct State {
    /// The current connection attempt or connection.
    conn: Option<ConnId>,
    connected: bool,
    /// The host closed the client: no reconnection.
    closing: bool,
    attempts: u32,
    next_attempt: Option<Instant>,
    /// Attempts started; the one resolving its host name now, and when its
    /// connect timeout ends (name resolution counts against it).
    attempt_seq: u64,
    resolving: Option<(u64, Instant)>,
    /// Queue mode / manual mode bookkeeping.
    user_completed: bool,
    delivered_unfinished: bool,
}

struct QueueState {
    events: VecDeque<OwnedClientEvent>,
    interrupted: bool,
    closed: bool,
    /// A message completion is owed to the engine once the queue has room.
    owed: bool,
}

struct Inner {
    cfg: ClientConfig,
    url: Url,
    target: DialTarget,
    state: Mutex<State>,
    queue: Option<(Mutex<QueueState>, Condvar)>,
    handle: Mutex<Option<ServerHandle>>,
}

/// A cheap handle to a client for sending and querying, from any thread.
#[derive(Clone)]
pub struct ClientHandle {
    inner: Arc<Inner>,
}

impl ClientHandle {
    fn engine(&self) -> Option<ServerHandle> {
        lock(&self.inner.handle).clone()
    }

    fn current(&self) -> Result<(ServerHandle, ConnId), SendError> {
        let st = lock(&self.inner.state);
        let id = match (st.conn, st.connected) {
            (Some(id), true) => id,
            _ => return Err(SendError::Closed),
        };
        drop(st);
        Ok((self.engine().ok_or(SendError::ShutDown)?, id))
    }

    /// Sends one message (text must be UTF-8). Never blocks; safe from any thread.
    pub fn send(&self, data: &[u8], text: bool) -> Result<Sent, SendError> {
        let (e, id) = self.current()?;
        e.send(id, data, text)
    }

    /// Sends a ping (payload ≤ 125 bytes).
    pub fn ping(&self, payload: &[u8]) -> Result<Sent, SendError> {
        let (e, id) = self.current()?;
        e.ping(id, payload)
    }

    /// Closes the connection (code ≤ 0 or not allowed on the wire: 1000) and
    /// stops reconnecting. `Closed` follows.
    pub fn close(&self, code: i32, reason: &str) -> Result<(), SendError> {
        let mut st = lock(&self.inner.state);
        st.closing = true;
        st.resolving = None;
        st.next_attempt = None;
        let id = st.conn;
        let connected = st.connected;
        drop(st);
        match (id, connected, self.engine()) {
            (Some(id), true, Some(e)) => e.close(id, code, reason),
            _ => Err(SendError::Closed),
        }
    }

    /// Manual flow control: the host is done with the last message; the next
    /// one may come.
    pub fn message_complete(&self) {
        let id = {
            let mut st = lock(&self.inner.state);
            if !st.delivered_unfinished {
                st.user_completed = true;
                return;
            }
            st.delivered_unfinished = false;
            st.conn
        };
        if let (Some(id), Some(e)) = (id, self.engine()) {
            self.grant(&e, id);
        }
    }

    /// Gives the engine the next-message credit, unless the poll queue is full
    /// (then `poll` gives it once there is room).
    fn grant(&self, e: &ServerHandle, id: ConnId) {
        if let Some((q, _)) = &self.inner.queue {
            let mut g = lock(q);
            if g.events.len() >= self.inner.cfg.queue_capacity {
                g.owed = true;
                return;
            }
        }
        e.message_complete(id);
    }

    /// True between `Connected` and the end of that connection.
    pub fn is_connected(&self) -> bool {
        lock(&self.inner.state).connected
    }

    /// Queue mode: waits up to `timeout` (`None` = forever) for the next event.
    pub fn poll(&self, timeout: Option<Duration>) -> Result<OwnedClientEvent, PollError> {
        let Some((q, cv)) = &self.inner.queue else {
            return Err(PollError::Closed);
        };
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut g = lock(q);
        loop {
            if g.interrupted {
                g.interrupted = false;
                return Err(PollError::Interrupted);
            }
            if let Some(e) = g.events.pop_front() {
                let owe = g.owed && g.events.len() < self.inner.cfg.queue_capacity / 2;
                if owe {
                    g.owed = false;
                }
                drop(g);
                if owe {
                    let id = lock(&self.inner.state).conn;
                    if let (Some(id), Some(eng)) = (id, self.engine()) {
                        eng.message_complete(id);
                    }
                }
                return Ok(e);
            }
            if g.closed {
                return Err(PollError::Closed);
            }
            g = match deadline {
                None => cv.wait(g).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(PollError::Timeout);
                    }
                    cv.wait_timeout(g, d - now).unwrap_or_else(|e| e.into_inner()).0
                }
            };
        }
    }

    /// Makes one pending or future `poll` return `Interrupted`.
    pub fn interrupt(&self) {
        if let Some((q, cv)) = &self.inner.queue {
            lock(q).interrupted = true;
            cv.notify_all();
        }
    }

    /// True in queue mode.
    pub fn is_queued(&self) -> bool {
        self.inner.queue.is_some()
    }

    /// The parsed URL.
    pub fn url(&self) -> &Url {
        &self.inner.url
    }
}

/// A client. Dropping it closes the connection (1000 if open) and stops its
/// engine thread.
pub struct Client {
    handle: ClientHandle,
    engine: Option<Server>,
}

struct Bridge {
    client: ClientHandle,
    user: Option<Box<dyn ClientHandler>>,
}

impl Bridge {
    fn emit(&mut self, e: ClientEvent<'_>) {
        if let Some(u) = self.user.as_mut() {
            u.on_event(&self.client, e);
        } else if let Some((q, cv)) = &self.client.inner.queue {
            lock(q).events.push_back(OwnedClientEvent::from_event(&e));
            cv.notify_one();
        }
    }

    /// After a connection ends or fails: schedule the next attempt, if any.
    fn ended(&mut self) {
        let inner = &self.client.inner;
        let Some(rc) = inner.cfg.reconnect.clone() else { return };
        let mut st = lock(&inner.state);
        if st.closing {
            return;
        }
        st.attempts += 1;
        if rc.max_attempts > 0 && st.attempts > rc.max_attempts {
            drop(st);
            self.emit(ClientEvent::GaveUp {
                attempts: rc.max_attempts,
            });
            return;
        }
        let attempt = st.attempts;
        let delay = rc.delay(attempt);
        st.next_attempt = Some(Instant::now() + delay);
        drop(st);
        self.emit(ClientEvent::Reconnecting { attempt, delay });
    }
}

impl Handler for Bridge {
    fn on_event(&mut self, _s: &ServerHandle, ev: Event<'_>) {
        let inner = self.client.inner.clone();
        let current = lock(&inner.state).conn;
        let conn = match &ev {
            Event::Open { conn, .. }
            | Event::Message { conn, .. }
            | Event::Ping { conn, .. }
            | Event::Pong { conn, .. }
            | Event::Drain { conn }
            | Event::Close { conn, .. }
            | Event::Sent { conn }
            | Event::ConnectFailed { conn, .. } => *conn,
        };
        if current != Some(conn) {
            return; // an earlier attempt
        }
        match ev {
            Event::Open { protocol, .. } => {
                {
                    let mut st = lock(&inner.state);
                    st.connected = true;
                    st.attempts = 0;
                }
                self.emit(ClientEvent::Connected { protocol });
            }
            Event::Message { data, text, .. } => {
                self.emit(ClientEvent::Message { data, text });
                // The engine holds the next message until completion; in
                // automatic mode it is granted here, when the host is done.
                let manual = inner.cfg.manual_complete;
                let grant = {
                    let mut st = lock(&inner.state);
                    if manual && !st.user_completed {
                        st.delivered_unfinished = true;
                        false
                    } else {
                        st.user_completed = false;
                        true
                    }
                };
                if grant {
                    if let Some(e) = self.client.engine() {
                        self.client.grant(&e, conn);
                    }
                }
            }
            Event::Pong { data, .. } => self.emit(ClientEvent::Pong { data }),
            Event::Ping { .. } => {}
            Event::Drain { .. } => self.emit(ClientEvent::Drain),
            Event::Sent { .. } => self.emit(ClientEvent::Sent),
            Event::Close {
                status,
                reason,
                by_host,
                ..
            } => {
                {
                    let mut st = lock(&inner.state);
                    st.connected = false;
                    st.delivered_unfinished = false;
                    st.user_completed = false;
                }
                self.emit(ClientEvent::Closed {
                    status,
                    reason,
                    by_host,
                });
                self.ended();
            }
            Event::ConnectFailed { error, message, .. } => {
                self.emit(ClientEvent::Error { error, message });
                self.ended();
            }
        }
    }

    fn on_tick(&mut self, _s: &ServerHandle) {
        // A name lookup that outlives the connect timeout fails the attempt
        // now; its late answer is dropped (the attempt number moved on).
        let late = {
            let mut st = lock(&self.client.inner.state);
            match st.resolving {
                Some((_, deadline)) if Instant::now() >= deadline => {
                    st.resolving = None;
                    true
                }
                _ => false,
            }
        };
        if late {
            let inner = &self.client.inner;
            let message = format!(
                "resolving {} did not finish within the connect timeout ({} ms)",
                inner.url.host,
                inner.cfg.connect_timeout.as_millis()
            );
            self.emit(ClientEvent::Error {
                error: ConnectError::Timeout,
                message: &message,
            });
            self.ended();
        }
        if let Some(u) = self.user.as_mut() {
            u.on_tick(&self.client);
        }
        let due = {
            let mut st = lock(&self.client.inner.state);
            match st.next_attempt {
                Some(t) if Instant::now() >= t && !st.closing => {
                    st.next_attempt = None;
                    true
                }
                _ => false,
            }
        };
        if due {
            start_attempt(&self.client);
        }
    }
}

/// Resolves and dials on a short-lived thread, so name resolution never
/// blocks the engine.
fn start_attempt(client: &ClientHandle) {
    let (seq, deadline) = {
        let mut st = lock(&client.inner.state);
        st.attempt_seq += 1;
        let deadline = Instant::now() + client.inner.cfg.connect_timeout;
        st.resolving = Some((st.attempt_seq, deadline));
        (st.attempt_seq, deadline)
    };
    let c = client.clone();
    let spawned = std::thread::Builder::new()
        .name("wsb-resolve".into())
        .spawn(move || attempt(&c, seq, deadline));
    if spawned.is_err() {
        attempt(client, seq, deadline);
    }
}

/// Takes over attempt `seq` from name resolution, unless it timed out or the
/// client closed meanwhile.
fn claim(st: &mut State, seq: u64) -> bool {
    if st.closing || st.resolving.map(|r| r.0) != Some(seq) {
        return false;
    }
    st.resolving = None;
    true
}

fn attempt(client: &ClientHandle, seq: u64, deadline: Instant) {
    let inner = &client.inner;
    let Some(engine) = client.engine() else { return };
    let mut target = inner.target.clone();
    let (host, port) = match proxy_for(&inner.cfg, &inner.url) {
        Ok(Some((h, p, auth))) => {
            target.proxy = Some(ProxyTunnel { authorization: auth });
            (h, p)
        }
        Ok(None) => (inner.url.host.clone(), inner.url.port),
        Err(msg) => {
            fail_without_conn(client, &engine, seq, ConnectError::Proxy, &msg);
            return;
        }
    };
    match (host.as_str(), port).to_socket_addrs() {
        Ok(addrs) => {
            target.addrs = addrs.collect();
            // The dial gets what is left of the connect timeout.
            target.connect_timeout = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            let mut st = lock(&inner.state);
            if !claim(&mut st, seq) {
                return;
            }
            let id = engine.dial(target);
            st.conn = Some(id);
        }
        Err(e) => {
            let msg = format!("cannot resolve {host}: {e}");
            fail_without_conn(client, &engine, seq, ConnectError::Resolve, &msg);
        }
    }
}

/// Reports a failure found before the engine had a connection through the
/// engine, so it reaches the host on the engine thread, in order.
fn fail_without_conn(client: &ClientHandle, engine: &ServerHandle, seq: u64, error: ConnectError, message: &str) {
    let mut target = client.inner.target.clone();
    target.error = Some((error, message.to_owned()));
    let mut st = lock(&client.inner.state);
    if !claim(&mut st, seq) {
        return;
    }
    st.conn = Some(engine.dial(target));
}

/// The proxy to use for `url`: `(host, port, Proxy-Authorization)`.
fn proxy_for(cfg: &ClientConfig, url: &Url) -> Result<Option<(String, u16, Option<String>)>, String> {
    let spec = match &cfg.proxy {
        Some(p) => p.clone(),
        None if cfg.no_env_proxy => return Ok(None),
        None => match env_proxy(url, |k| std::env::var(k).ok()) {
            Some(p) => p,
            None => return Ok(None),
        },
    };
    parse_proxy(&spec).map(Some)
}

/// The environment's proxy for `url` (`get` reads a variable): `https_proxy`
/// for `wss://`, `http_proxy` for `ws://`, then `all_proxy`, lower case
/// before upper case, empty values skipped; none for loopback hosts or hosts
/// `no_proxy` (or `NO_PROXY`) names.
fn env_proxy(url: &Url, get: impl Fn(&str) -> Option<String>) -> Option<String> {
    let loopback = url.host.eq_ignore_ascii_case("localhost")
        || url.host.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback());
    let no_proxy = get("no_proxy").or_else(|| get("NO_PROXY")).unwrap_or_default();
    if loopback || no_proxy_matches(&url.host, &no_proxy) {
        return None;
    }
    let keys: &[&str] = if url.secure {
        &["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]
    } else {
        &["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]
    };
    keys.iter().find_map(|k| get(k).filter(|v| !v.trim().is_empty()))
}

/// True when the comma-separated `no_proxy` list names `host`: `*`, the host
/// itself, or a domain it is in (`example.com` and `.example.com` both cover
/// `a.example.com`). Case does not matter; a `:port` on an entry is ignored.
fn no_proxy_matches(host: &str, list: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    list.split(',').map(str::trim).filter(|s| !s.is_empty()).any(|entry| {
        if entry == "*" {
            return true;
        }
        let entry = match entry.rsplit_once(':') {
            // `host:port` or `[v6]:port`; a bare IPv6 address has colons too.
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && (!h.contains(':') || h.ends_with(']')) => h,
            _ => entry,
        };
        let entry = entry
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_start_matches('.')
            .to_ascii_lowercase();
        !entry.is_empty() && (host == entry || host.ends_with(&format!(".{entry}")))
    })
}

/// Parses a proxy as curl does: `[http://][user:password@]host[:port][/]`,
/// without a scheme meaning `http://`; port 80 when none is given. Only
/// HTTP proxies (CONNECT) are supported. Returns `(host, port,
/// Proxy-Authorization)`.
pub(crate) fn parse_proxy(spec: &str) -> Result<(String, u16, Option<String>), String> {
    let trimmed = spec.trim();
    let rest = match trimmed.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some(_) => {
            return Err(format!(
                "unsupported proxy {spec:?}: only http:// proxies (CONNECT) are supported"
            ))
        }
        None => trimmed,
    };
    let rest = rest.trim_end_matches('/');
    let (auth, hostport) = match rest.rsplit_once('@') {
        Some((userinfo, hp)) => (Some(format!("Basic {}", base64(userinfo.as_bytes()))), hp),
        None => (None, rest),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        // A bare IPv6 address has colons too: a port follows `]` only.
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => (
            h.trim_start_matches('[').trim_end_matches(']').to_owned(),
            p.parse::<u16>().map_err(|_| format!("bad port in proxy {spec:?}"))?,
        ),
        _ => (hostport.trim_start_matches('[').trim_end_matches(']').to_owned(), 80),
    };
    if host.is_empty() || host.contains(['/', '?', '#', ' ']) {
        return Err(format!("no proxy host in {spec:?}"));
    }
    Ok((host, port, auth))
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
        for i in 0..4 {
            out.push(if i <= c.len() {
                T[(n >> (18 - 6 * i)) as usize & 63] as char
            } else {
                '='
            });
        }
    }
    out
}

impl Client {
    /// Connects in callback mode: events go to `handler` on the client's
    /// engine thread. Returns at once; `Connected` or `Error` follows.
    pub fn connect(cfg: ClientConfig, handler: impl ClientHandler) -> Result<Client, String> {
        Self::start(cfg, Some(Box::new(handler)))
    }

    /// Connects in queue mode: events wait for [`Client::poll`].
    pub fn connect_queued(cfg: ClientConfig) -> Result<Client, String> {
        Self::start(cfg, None)
    }

    fn start(cfg: ClientConfig, user: Option<Box<dyn ClientHandler>>) -> Result<Client, String> {
        let url = Url::parse(&cfg.url)?;
        let (tls, client_cert) = match url.secure {
            true => {
                let (tls, client_cert) = cfg.tls.build_described()?;
                (Some(tls), client_cert)
            }
            false => (None, None),
        };
        if cfg.queue_capacity < 2 {
            return Err("queue capacity must be at least 2".into());
        }
        let queued = user.is_none();
        let target = DialTarget {
            addrs: Vec::new(),
            host: url.host.clone(),
            port: url.port,
            path: url.path.clone(),
            tls,
            client_cert,
            proxy: None,
            headers: cfg.headers.clone(),
            protocols: cfg.protocols.clone(),
            connect_timeout: cfg.connect_timeout,
            send_results: cfg.send_results,
            // The engine always holds each message until it is granted, so
            // both manual mode and a full poll queue can stop the reading.
            manual_complete: true,
            error: None,
        };
        for (k, v) in &cfg.headers {
            if k.is_empty() || k.bytes().any(|b| b <= b' ' || b == b':') || v.bytes().any(|b| b == b'\r' || b == b'\n')
            {
                return Err(format!("invalid header {k:?}"));
            }
        }
        let inner = Arc::new(Inner {
            url,
            target,
            state: Mutex::new(State {
                conn: None,
                connected: false,
                closing: false,
                attempts: 0,
                next_attempt: None,
                attempt_seq: 0,
                resolving: None,
                user_completed: false,
                delivered_unfinished: false,
            }),
            queue: queued.then(|| {
                (
                    Mutex::new(QueueState {
                        events: VecDeque::new(),
                        interrupted: false,
                        closed: false,
                        owed: false,
                    }),
                    Condvar::new(),
                )
            }),
            handle: Mutex::new(None),
            cfg,
        });
        let handle = ClientHandle { inner };
        let bridge = Bridge {
            client: handle.clone(),
            user,
        };
        let engine =
            Server::start_client(handle.inner.cfg.engine.clone(), bridge).map_err(|e| format!("cannot start: {e}"))?;
        *lock(&handle.inner.handle) = Some(engine.handle().clone());
        start_attempt(&handle);
        Ok(Client {
            handle,
            engine: Some(engine),
        })
    }

    /// The handle for sending from other threads.
    pub fn handle(&self) -> &ClientHandle {
        &self.handle
    }

    /// Closes (1000) and stops the engine thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.handle.close(1000, "");
        if let Some(e) = self.engine.take() {
            e.shutdown();
        }
        *lock(&self.handle.inner.handle) = None;
        if let Some((q, cv)) = &self.handle.inner.queue {
            lock(q).closed = true;
            cv.notify_all();
        }
    }
}

impl std::ops::Deref for Client {
    type Target = ClientHandle;
    fn deref(&self) -> &ClientHandle {
        &self.handle
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parsing() {
        let u = Url::parse("wss://example.com/a/b?x=1").unwrap();
        assert_eq!(
            (u.secure, u.host.as_str(), u.port, u.path.as_str()),
            (true, "example.com", 443, "/a/b?x=1")
        );
        let u = Url::parse("ws://127.0.0.1:4010").unwrap();
        assert_eq!((u.secure, u.port, u.path.as_str()), (false, 4010, "/"));
        let u = Url::parse("ws://[::1]:9000?q").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("::1", 9000, "/?q"));
        assert!(Url::parse("http://x").is_err());
        assert!(Url::parse("ws://:80/").is_err());
        assert!(Url::parse("ws://x:99999/").is_err());
        assert!(Url::parse("ws://u:p@x/").is_err());
        assert!(Url::parse("ws://x/a b").is_err());
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let mut r = Reconnect {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            factor: 2.0,
            jitter: 0.0,
            max_attempts: 0,
        };
        // Without jitter the delays are exact: doubling, then capped.
        let exact: Vec<Duration> = (1..=6).chain([10, 1000]).map(|n| r.delay(n)).collect();
        let ms = |v: &[u64]| v.iter().map(|&m| Duration::from_millis(m)).collect::<Vec<_>>();
        assert_eq!(exact, ms(&[100, 200, 400, 800, 1000, 1000, 1000, 1000]));

        // With ±20 % every delay stays in its window, and the delays spread
        // over it (200 uniform draws cover far more than half of it).
        r.jitter = 0.2;
        for (n, base) in [(1u32, 0.1f64), (3, 0.4), (10, 1.0)] {
            let d: Vec<f64> = (0..200).map(|_| r.delay(n).as_secs_f64()).collect();
            let (lo, hi) = d
                .iter()
                .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
            assert!(
                lo >= base * 0.8 - 1e-9 && hi <= base * 1.2 + 1e-9,
                "attempt {n}: {lo}..{hi}"
            );
            assert!(hi - lo > base * 0.2, "attempt {n}: jitter does not spread: {lo}..{hi}");
        }
    }

    #[test]
    fn proxy_selection() {
        let mut cfg = ClientConfig::new("ws://example.com/");
        let url = Url::parse(&cfg.url).unwrap();
        cfg.proxy = Some("http://user:pw@proxy.local:3128".into());
        let (h, p, a) = proxy_for(&cfg, &url).unwrap().unwrap();
        assert_eq!((h.as_str(), p), ("proxy.local", 3128));
        assert_eq!(a.as_deref(), Some("Basic dXNlcjpwdw=="));
        cfg.proxy = Some("socks5://x:1".into());
        assert!(proxy_for(&cfg, &url).is_err());
    }

    #[test]
    fn proxy_without_a_scheme_is_http_like_curl() {
        let ok = |s: &str| parse_proxy(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(ok("proxy:3128"), ("proxy".into(), 3128, None));
        assert_eq!(ok("http://proxy:3128/"), ("proxy".into(), 3128, None));
        assert_eq!(ok("HTTP://proxy:3128"), ("proxy".into(), 3128, None));
        assert_eq!(ok(" proxy.example "), ("proxy.example".into(), 80, None));
        assert_eq!(ok("u:p@proxy:8080"), ("proxy".into(), 8080, Some("Basic dTpw".into())));
        assert_eq!(ok("[::1]:3128"), ("::1".into(), 3128, None));
        assert_eq!(ok("http://[fe80::1]"), ("fe80::1".into(), 80, None));
        for bad in [
            "https://proxy:3128",
            "socks5://proxy:1080",
            "proxy:99999",
            "proxy:port",
            "http://",
            ":3128",
        ] {
            assert!(parse_proxy(bad).is_err(), "{bad}");
        }
        assert!(parse_proxy("socks5://x").unwrap_err().contains("only http://"));
    }

    #[test]
    fn no_proxy_matching() {
        let m = no_proxy_matches;
        assert!(m("example.com", "example.com"));
        assert!(m("a.example.com", "example.com"));
        assert!(m("a.example.com", ".example.com"));
        assert!(m("example.com", ".example.com"));
        assert!(!m("notexample.com", "example.com"), "a suffix is not a subdomain");
        assert!(!m("example.com.evil", "example.com"));
        assert!(m("A.Example.COM", "example.com"), "case does not matter");
        assert!(m("host", " other , host "), "spaces around entries");
        assert!(m("host", "*"));
        assert!(!m("host", ""));
        assert!(!m("host", ",,"));
        assert!(!m("host", "."), "a lone dot names nothing");
        assert!(m("host", "host:8080"), "the port of an entry is ignored");
        assert!(m("10.1.2.3", "10.1.2.3"));
        assert!(!m("10.1.2.30", "10.1.2.3"));
        assert!(m("::1", "::1"));
        assert!(m("[fe80::1]", "[fe80::1]:443"));
    }

    #[test]
    fn environment_proxy_selection() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let ws = Url::parse("ws://example.com/").unwrap();
        let wss = Url::parse("wss://example.com/").unwrap();
        let all = env(&[("http_proxy", "h:1"), ("https_proxy", "s:2"), ("all_proxy", "a:3")]);
        assert_eq!(env_proxy(&ws, all).as_deref(), Some("h:1"));
        assert_eq!(env_proxy(&wss, all).as_deref(), Some("s:2"));
        // Upper case when lower case is absent or empty; all_proxy last.
        let upper = env(&[("http_proxy", ""), ("HTTP_PROXY", "H:1"), ("ALL_PROXY", "A:3")]);
        assert_eq!(env_proxy(&ws, upper).as_deref(), Some("H:1"));
        assert_eq!(env_proxy(&wss, upper).as_deref(), Some("A:3"));
        assert_eq!(
            env_proxy(&wss, env(&[("http_proxy", "h:1")])),
            None,
            "http_proxy is for ws:// only"
        );
        // Loopback hosts never use one; no_proxy (then NO_PROXY) names exceptions.
        for host in ["ws://localhost/", "ws://127.0.0.1/", "ws://[::1]/", "ws://LOCALHOST:1/"] {
            assert_eq!(env_proxy(&Url::parse(host).unwrap(), all), None, "{host}");
        }
        let np = env(&[("http_proxy", "h:1"), ("no_proxy", "other.org,.example.com")]);
        assert_eq!(env_proxy(&ws, np), None);
        let np = env(&[("http_proxy", "h:1"), ("NO_PROXY", "example.com")]);
        assert_eq!(env_proxy(&ws, np), None);
        let np = env(&[
            ("http_proxy", "h:1"),
            ("no_proxy", "other.org"),
            ("NO_PROXY", "example.com"),
        ]);
        assert_eq!(
            env_proxy(&ws, np).as_deref(),
            Some("h:1"),
            "no_proxy wins over NO_PROXY"
        );
        // The environment's value goes through the same parser as a configured one.
        let mut cfg = ClientConfig::new("ws://example.com/");
        cfg.proxy = Some("proxy:3128".into());
        assert_eq!(proxy_for(&cfg, &ws).unwrap(), Some(("proxy".into(), 3128, None)));
        cfg.no_env_proxy = true;
        cfg.proxy = None;
        assert_eq!(proxy_for(&cfg, &ws).unwrap(), None);
    }
}
