//! The AppWebsocket client on the engine (PROTOCOLS.md §5.4, §6.5): a
//! [`crate::client::Client`] that runs the login of [`super::Client`], then
//! hands messages to the host with `mt` and `src` extracted.
//!
//! Flow control is a one-message credit: in automatic mode (the default) a
//! message completes when its callback returns, or when it is polled; in
//! manual mode only [`AppClientHandle::message_complete`] lets the next one
//! through, and the socket is not read meanwhile. Messages the client handles
//! itself (the login, `KeepAlive`) complete at once.

use crate::lock;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::queue::HostQueue;
use super::{Authentication, Client as Login, ClientEvent as LoginEvent, Credentials, Error, KEEP_ALIVE};
use crate::client::{Client, ClientConfig, ClientEvent, ClientHandle, ClientHandler};
use crate::engine::{ConnectError, PollError};
use crate::{SendError, Sent};

/// AppWebsocket client settings.
#[derive(Debug, Clone)]
pub struct AppClientConfig {
    /// The connection: URI, TLS, proxy, timeouts, engine limits. Its
    /// `reconnect`, `manual_complete` and `send_results` are not used: an
    /// AppWebsocket client connects once, and the two others are below.
    pub client: ClientConfig,
    /// The `app` of the login.
    pub app: String,
    pub credentials: Credentials,
    /// Manual flow control (the `MessageComplete` model). Default false.
    pub manual_complete: bool,
    /// Report [`AppClientEvent::Sent`] once per message sent by the host,
    /// after it is written to the socket. Default false.
    pub send_results: bool,
    /// Send `{"mt":"KeepAlive"}` after this long without sending anything
    /// (the JS library uses 60 s). Default `None`: never.
    pub keep_alive: Option<Duration>,
    /// Time allowed from the WebSocket's opening to `AppLoginResult`
    /// (authenticator mode: the host's answer included). When it passes,
    /// `LoginFailed` is reported, the client closes with 1000 and `Closed`
    /// follows. Default 10 s.
    pub login_timeout: Duration,
}

impl AppClientConfig {
    /// A client of `app` at `url` with the JS library's password login
    /// (`sip` = `app`, `guid` all zeros, `dn` `Admin`, no `info`).
    pub fn new(url: impl Into<String>, app: &str, password: &str) -> AppClientConfig {
        AppClientConfig::with_credentials(url, app, Credentials::password_login(app, password))
    }

    pub fn with_credentials(url: impl Into<String>, app: &str, credentials: Credentials) -> AppClientConfig {
        AppClientConfig {
            client: ClientConfig::new(url),
            app: app.to_owned(),
            credentials,
            manual_complete: false,
            send_results: false,
            keep_alive: None,
            login_timeout: Duration::from_secs(10),
        }
    }
}

/// What happened to an AppWebsocket client. Borrowed data lives until the
/// handler returns.
#[derive(Debug)]
pub enum AppClientEvent<'a> {
    /// Authenticator mode: the challenge arrived; answer with
    /// [`AppClientHandle::authenticate`].
    Challenge { challenge: &'a str },
    /// `AppLoginResult` with `ok:true` (ConnectComplete).
    Connected,
    /// The login failed; the client closes with 1000 and `Closed` follows.
    LoginFailed { reason: &'a str },
    /// A message after login: its JSON text as received, with `mt` and `src`
    /// when they are strings.
    Message {
        json: &'a str,
        mt: Option<&'a str>,
        src: Option<&'a str>,
    },
    /// One message sent by the host has been written to the socket (with
    /// `send_results`; in order).
    Sent,
    /// The end, exactly once per client: after `close`, a remote close, a
    /// dropped transport (`status` -1), a login failure, or a connection that
    /// never opened (`error` says why, `reason` how).
    Closed {
        status: i32,
        reason: &'a str,
        by_host: bool,
        error: Option<ConnectError>,
    },
}

/// An owned [`AppClientEvent`] (queue mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedAppClientEvent {
    Challenge {
        challenge: String,
    },
    Connected,
    LoginFailed {
        reason: String,
    },
    Message {
        json: String,
        mt: Option<String>,
        src: Option<String>,
    },
    Sent,
    Closed {
        status: i32,
        reason: String,
        by_host: bool,
        error: Option<ConnectError>,
    },
}

impl OwnedAppClientEvent {
    /// Copies a borrowed event.
    pub fn from_event(e: &AppClientEvent<'_>) -> OwnedAppClientEvent {
        let own = |s: Option<&str>| s.map(str::to_owned);
        match *e {
            AppClientEvent::Challenge { challenge } => OwnedAppClientEvent::Challenge {
                challenge: challenge.to_owned(),
            },
            AppClientEvent::Connected => OwnedAppClientEvent::Connected,
            AppClientEvent::LoginFailed { reason } => OwnedAppClientEvent::LoginFailed {
                reason: reason.to_owned(),
            },
            AppClientEvent::Message { json, mt, src } => OwnedAppClientEvent::Message {
                json: json.to_owned(),
                mt: own(mt),
                src: own(src),
            },
            AppClientEvent::Sent => OwnedAppClientEvent::Sent,
            AppClientEvent::Closed {
                status,
                reason,
                by_host,
                error,
            } => OwnedAppClientEvent::Closed {
                status,
                reason: reason.to_owned(),
                by_host,
                error,
            },
        }
    }

    /// Borrows it as an [`AppClientEvent`].
    pub fn as_event(&self) -> AppClientEvent<'_> {
        match self {
            OwnedAppClientEvent::Challenge { challenge } => AppClientEvent::Challenge { challenge },
            OwnedAppClientEvent::Connected => AppClientEvent::Connected,
            OwnedAppClientEvent::LoginFailed { reason } => AppClientEvent::LoginFailed { reason },
            OwnedAppClientEvent::Message { json, mt, src } => AppClientEvent::Message {
                json,
                mt: mt.as_deref(),
                src: src.as_deref(),
            },
            OwnedAppClientEvent::Sent => AppClientEvent::Sent,
            OwnedAppClientEvent::Closed {
                status,
                reason,
                by_host,
                error,
            } => AppClientEvent::Closed {
                status: *status,
                reason,
                by_host: *by_host,
                error: *error,
            },
        }
    }
}

/// Receives an AppWebsocket client's events on its engine thread.
pub trait AppClientHandler: Send + 'static {
    fn on_event(&mut self, client: &AppClientHandle, event: AppClientEvent<'_>);
}

impl<F> AppClientHandler for F
where
    F: FnMut(&AppClientHandle, AppClientEvent<'_>) + Send + 'static,
{
    fn on_event(&mut self, client: &AppClientHandle, event: AppClientEvent<'_>) {
        self(client, event)
    }
}

/// Why a send was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppSendError {
    /// Not logged in (yet, or any more).
    NotConnected,
    /// `send_json` was given text that is not one JSON value.
    InvalidJson,
    /// The engine refused it.
    Send(SendError),
}

impl std::fmt::Display for AppSendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppSendError::NotConnected => f.write_str("not logged in"),
            AppSendError::InvalidJson => f.write_str("not a JSON value"),
            AppSendError::Send(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for AppSendError {}

#[derive(Debug, Default)]
struct State {
    /// The WebSocket is open (the login may still be running).
    open: bool,
    /// When it opened, while the login runs (for the login timeout).
    login_started: Option<Instant>,
    /// Logged in.
    connected: bool,
    /// `close` came before the WebSocket opened: close as soon as it does.
    close_requested: bool,
    /// `Closed` was reported.
    ended: bool,
    /// With send results: one entry per message written to the engine, true
    /// for the host's, so the client's own sends are not reported.
    unsent: VecDeque<bool>,
    last_send: Option<Instant>,
}

struct Shared {
    login: Mutex<Login>,
    state: Mutex<State>,
    manual: bool,
    send_results: bool,
    keep_alive: Option<Duration>,
    login_timeout: Duration,
    queue: Option<HostQueue<OwnedAppClientEvent>>,
    conn: OnceLock<ClientHandle>,
    /// The owner is shutting the client down: nothing more is reported.
    stopped: AtomicBool,
}

/// A cheap handle to an AppWebsocket client, usable from any thread.
#[derive(Clone)]
pub struct AppClientHandle {
    shared: Arc<Shared>,
}

impl AppClientHandle {
    fn conn(&self) -> Option<&ClientHandle> {
        self.shared.conn.get()
    }

    /// Sends one text frame and books it for the send results. The state lock
    /// is held across the engine call so the bookings keep the write order.
    fn send_frame(&self, st: &mut State, text: &str, by_host: bool) -> Result<Sent, AppSendError> {
        let conn = self.conn().ok_or(AppSendError::NotConnected)?;
        let r = conn.send(text.as_bytes(), true).map_err(|e| match e {
            SendError::Closed => AppSendError::NotConnected,
            e => AppSendError::Send(e),
        })?;
        if self.shared.send_results {
            st.unsent.push_back(by_host);
        }
        st.last_send = Some(Instant::now());
        Ok(r)
    }

    fn send_own(&self, text: &str) {
        let mut st = lock(&self.shared.state);
        // A refused login or keep-alive means the connection is going away;
        // its Closed event tells the host.
        let _ = self.send_frame(&mut st, text, false);
    }

    /// Sends one message as given (any text). Never blocks; safe from any
    /// thread. Fails with `NotConnected` before `Connected` or after `Closed`.
    pub fn send_text(&self, text: &str) -> Result<Sent, AppSendError> {
        let mut st = lock(&self.shared.state);
        if !st.connected {
            return Err(AppSendError::NotConnected);
        }
        self.send_frame(&mut st, text, true)
    }

    /// Sends one JSON message, checked to be one JSON value first.
    pub fn send_json(&self, json: &str) -> Result<Sent, AppSendError> {
        if serde_json::from_str::<Value>(json).is_err() {
            return Err(AppSendError::InvalidJson);
        }
        self.send_text(json)
    }

    /// Manual mode: the host is done with the last message; the next may come.
    /// Harmless in automatic mode. Safe from any thread.
    pub fn message_complete(&self) {
        if let Some(c) = self.conn() {
            c.message_complete();
        }
    }

    /// Authenticator mode: answers the `Challenge` event with the identity,
    /// digest and session key; sends the `AppLogin`. `WrongState` when no
    /// challenge is waiting, `InvalidJson` for an `info` that is not JSON.
    pub fn authenticate(&self, auth: Authentication) -> Result<(), Error> {
        let frame = lock(&self.shared.login).authenticate(auth)?;
        self.send_own(&frame);
        Ok(())
    }

    /// Closes with 1000; `Closed` follows (also when this comes before the
    /// WebSocket opened). `NotConnected` when it has ended already.
    pub fn close(&self) -> Result<(), AppSendError> {
        let mut st = lock(&self.shared.state);
        if st.ended {
            return Err(AppSendError::NotConnected);
        }
        st.connected = false;
        if !st.open {
            st.close_requested = true;
            return Ok(());
        }
        drop(st);
        match self.conn().map(|c| c.close(1000, "")) {
            Some(Ok(())) | Some(Err(SendError::Closed)) => Ok(()),
            Some(Err(e)) => Err(AppSendError::Send(e)),
            None => Err(AppSendError::NotConnected),
        }
    }

    /// True from `Connected` until the connection ends or `close`.
    pub fn is_connected(&self) -> bool {
        lock(&self.shared.state).connected
    }

    /// Runs `f` with the session key (after login), e.g. for
    /// [`super::encrypt_into`].
    pub fn with_key<R>(&self, f: impl FnOnce(&str) -> R) -> Result<R, Error> {
        let login = lock(&self.shared.login);
        Ok(f(login.key()?))
    }

    /// §5.2 Encrypt with the session key.
    pub fn encrypt(&self, seed: &[u8], data: &[u8]) -> Result<String, Error> {
        lock(&self.shared.login).encrypt(seed, data)
    }

    /// §5.2 Decrypt with the session key.
    pub fn decrypt(&self, seed: &[u8], hex: &[u8]) -> Result<Vec<u8>, Error> {
        lock(&self.shared.login).decrypt(seed, hex)
    }

    /// §5.2 Hash with the session key.
    pub fn hash(&self, seed: &[u8], data: &[u8]) -> Result<String, Error> {
        lock(&self.shared.login).hash(seed, data)
    }

    /// Queue mode: waits up to `timeout` (`None`: forever) for the next
    /// event. In automatic flow control, polling a message completes it.
    pub fn poll(&self, timeout: Option<Duration>) -> Result<OwnedAppClientEvent, PollError> {
        let q = self.shared.queue.as_ref().ok_or(PollError::Closed)?;
        let e = q.poll(timeout)?;
        if !self.shared.manual && matches!(e, OwnedAppClientEvent::Message { .. }) {
            self.message_complete();
        }
        Ok(e)
    }

    /// Queue mode: makes one pending or future `poll` return `Interrupted`.
    pub fn interrupt(&self) {
        if let Some(q) = &self.shared.queue {
            q.interrupt();
        }
    }

    /// True in queue mode.
    pub fn is_queued(&self) -> bool {
        self.shared.queue.is_some()
    }
}

/// An AppWebsocket client. Dropping it closes the connection (1000) and
/// stops its engine thread; no event is reported from then on.
pub struct AppClient {
    client: Option<Client>,
    handle: AppClientHandle,
}

struct Bridge {
    app: AppClientHandle,
    user: Option<Box<dyn AppClientHandler>>,
}

impl Bridge {
    fn emit(&mut self, e: AppClientEvent<'_>) {
        if self.app.shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        match (&mut self.user, &self.app.shared.queue) {
            (Some(u), _) => u.on_event(&self.app, e),
            (None, Some(q)) => q.push(OwnedAppClientEvent::from_event(&e)),
            (None, None) => {}
        }
    }

    fn closed(&mut self, status: i32, reason: &str, by_host: bool, error: Option<ConnectError>) {
        {
            let mut st = lock(&self.app.shared.state);
            if st.ended {
                return;
            }
            *st = State {
                ended: true,
                ..State::default()
            };
        }
        let e = AppClientEvent::Closed {
            status,
            reason,
            by_host,
            error,
        };
        match (&self.user, &self.app.shared.queue) {
            (None, Some(q)) if !self.app.shared.stopped.load(Ordering::SeqCst) => {
                q.push_last(OwnedAppClientEvent::from_event(&e))
            }
            _ => self.emit(e),
        }
    }

    fn on_text(&mut self, conn: &ClientHandle, text: &str) {
        let ev = lock(&self.app.shared.login).on_text(text);
        match ev {
            LoginEvent::Send(frame) => self.app.send_own(&frame),
            LoginEvent::Challenge(challenge) => self.emit(AppClientEvent::Challenge { challenge: &challenge }),
            LoginEvent::Connected => {
                {
                    let mut st = lock(&self.app.shared.state);
                    st.connected = true;
                    st.login_started = None;
                }
                self.emit(AppClientEvent::Connected);
            }
            LoginEvent::LoginFailed(reason) => {
                self.emit(AppClientEvent::LoginFailed { reason: &reason });
                let _ = conn.close(1000, "");
            }
            LoginEvent::Message { json, mt, src } => {
                self.emit(AppClientEvent::Message {
                    json: &json,
                    mt: mt.as_deref(),
                    src: src.as_deref(),
                });
                // Automatic mode: done when the callback returns; in queue
                // mode when polled (see `poll`).
                if self.app.shared.manual || self.user.is_none() {
                    return;
                }
            }
            LoginEvent::Drop => {}
        }
        conn.message_complete();
    }
}

impl Bridge {
    /// A login that has not finished within the login timeout fails: a
    /// service that never answers must not leave the host waiting forever.
    fn check_login_deadline(&mut self, conn: &ClientHandle) {
        let limit = self.app.shared.login_timeout;
        {
            let mut st = lock(&self.app.shared.state);
            match st.login_started {
                Some(t) if !st.ended && t.elapsed() >= limit => st.login_started = None,
                _ => return,
            }
        }
        let Some(waiting) = lock(&self.app.shared.login).abandon() else {
            return;
        };
        let reason = format!("login timed out: no {waiting} within {} ms", limit.as_millis());
        self.emit(AppClientEvent::LoginFailed { reason: &reason });
        let _ = conn.close(1000, "");
    }
}

impl ClientHandler for Bridge {
    fn on_event(&mut self, conn: &ClientHandle, ev: ClientEvent<'_>) {
        // The first event may come before `start` has stored the handle.
        let _ = self.app.shared.conn.get_or_init(|| conn.clone());
        match ev {
            ClientEvent::Connected { .. } => {
                let close_now = {
                    let mut st = lock(&self.app.shared.state);
                    st.open = true;
                    st.login_started = Some(Instant::now());
                    st.close_requested
                };
                if close_now {
                    let _ = conn.close(1000, "");
                    return;
                }
                let hello = lock(&self.app.shared.login).on_open();
                self.app.send_own(hello);
            }
            ClientEvent::Message { data, text } => match (text, std::str::from_utf8(data)) {
                (true, Ok(t)) => self.on_text(conn, t),
                // Binary frames have no place in §5.4; they are dropped.
                _ => conn.message_complete(),
            },
            ClientEvent::Sent => {
                let by_host = lock(&self.app.shared.state).unsent.pop_front();
                if by_host == Some(true) {
                    self.emit(AppClientEvent::Sent);
                }
            }
            ClientEvent::Closed {
                status,
                reason,
                by_host,
            } => self.closed(status, reason, by_host, None),
            ClientEvent::Error { error, message } => self.closed(-1, message, false, Some(error)),
            ClientEvent::Pong { .. }
            | ClientEvent::Drain
            | ClientEvent::Reconnecting { .. }
            | ClientEvent::GaveUp { .. } => {}
        }
    }

    fn on_tick(&mut self, conn: &ClientHandle) {
        self.check_login_deadline(conn);
        let Some(idle) = self.app.shared.keep_alive else { return };
        let due = {
            let st = lock(&self.app.shared.state);
            // Only while nothing is waiting for its send result: a keep-alive
            // written from this thread could otherwise overtake a host send
            // still travelling to the engine, and take its Sent event.
            st.connected && st.unsent.is_empty() && st.last_send.is_none_or(|t| t.elapsed() >= idle)
        };
        if due {
            self.app.send_own(KEEP_ALIVE);
        }
    }
}

impl AppClient {
    /// Connects in callback mode: events go to `handler` on the client's
    /// engine thread. Returns at once; the login runs in the background.
    /// Fails for a bad URL or TLS file, or `info` that is not JSON.
    pub fn connect(cfg: AppClientConfig, handler: impl AppClientHandler) -> Result<AppClient, String> {
        Self::start(cfg, Some(Box::new(handler)))
    }

    /// Connects in queue mode: events wait for [`AppClientHandle::poll`].
    pub fn connect_queued(cfg: AppClientConfig) -> Result<AppClient, String> {
        Self::start(cfg, None)
    }

    fn start(cfg: AppClientConfig, user: Option<Box<dyn AppClientHandler>>) -> Result<AppClient, String> {
        let login = Login::new(&cfg.app, cfg.credentials).map_err(|e| format!("info: {e}"))?;
        let queued = user.is_none();
        let handle = AppClientHandle {
            shared: Arc::new(Shared {
                login: Mutex::new(login),
                state: Mutex::new(State::default()),
                manual: cfg.manual_complete,
                send_results: cfg.send_results,
                keep_alive: cfg.keep_alive.filter(|d| !d.is_zero()),
                login_timeout: cfg.login_timeout,
                queue: queued.then(HostQueue::new),
                conn: OnceLock::new(),
                stopped: AtomicBool::new(false),
            }),
        };
        let mut cc = cfg.client;
        cc.reconnect = None;
        // The bridge completes every message itself, when its time has come.
        cc.manual_complete = true;
        cc.send_results = cfg.send_results;
        let bridge = Bridge {
            app: handle.clone(),
            user,
        };
        let client = Client::connect(cc, bridge)?;
        let _ = handle.shared.conn.set(client.handle().clone());
        Ok(AppClient {
            client: Some(client),
            handle,
        })
    }

    /// The handle for other threads.
    pub fn handle(&self) -> &AppClientHandle {
        &self.handle
    }

    /// Closes (1000) and stops the engine thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.handle.shared.stopped.store(true, Ordering::SeqCst);
        if let Some(c) = self.client.take() {
            c.shutdown();
        }
        if let Some(q) = &self.handle.shared.queue {
            q.close();
        }
    }
}

impl std::ops::Deref for AppClient {
    type Target = AppClientHandle;
    fn deref(&self) -> &AppClientHandle {
        &self.handle
    }
}

impl Drop for AppClient {
    fn drop(&mut self) {
        self.stop();
    }
}
