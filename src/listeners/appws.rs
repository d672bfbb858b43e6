//! The AppWebsocket listener (PROTOCOLS.md §5.3): the app-service endpoint
//! on the engine. Logged-in messages go to an [`AppHost`]; the default host
//! is the built-in echo.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{loopback, ListenerConfig, ListenerStats};
use crate::dialect::appws::{self as service, AppMessage, HostEvent, Login, Service, DEFAULT_APP};
use crate::dialect::{Action, SessionId};
use crate::engine::{Event, Handler, SendError, Sent, Server, ServerHandle};
use crate::listeners::apply_actions;

/// `--appws` binds here unless told otherwise.
pub const DEFAULT_BIND: SocketAddr = loopback(4011);

/// The apps (and optional per-domain passwords) a listener accepts.
#[derive(Clone, Default)]
pub struct AppWsConfig {
    /// `(app, password)` pairs. Empty means the default app `demo` with
    /// password `demo`.
    pub apps: Vec<(String, String)>,
    /// `(domain, password)` pairs, tried after the app's own password.
    pub domain_passwords: Vec<(String, String)>,
}

impl fmt::Debug for AppWsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Passwords stay out of logs.
        let names = |v: &[(String, String)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        f.debug_struct("AppWsConfig")
            .field("apps", &names(&self.apps))
            .field("domain_passwords", &names(&self.domain_passwords))
            .finish()
    }
}

impl AppWsConfig {
    /// The endpoint state for these apps.
    pub fn service(&self) -> Service {
        let mut s = Service::new();
        if self.apps.is_empty() {
            s.add_app(DEFAULT_APP.0, DEFAULT_APP.1);
        }
        for (app, password) in &self.apps {
            s.add_app(app, password);
        }
        for (domain, password) in &self.domain_passwords {
            s.add_domain_password(domain, password);
        }
        s
    }
}

/// Parses one `--appws-app NAME:PASSWORD` value: split at the first `:`, the
/// name not empty (the password may be, and may hold `:`).
pub fn parse_app(spec: &str) -> Result<(String, String), String> {
    match spec.split_once(':') {
        Some((name, password)) if !name.is_empty() => Ok((name.to_owned(), password.to_owned())),
        _ => Err(format!("expected NAME:PASSWORD, got {spec:?}")),
    }
}

/// Why a host's send was not carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyError {
    /// The reply is not a JSON object.
    InvalidJson,
    /// The engine refused it (the session is gone, closing, too slow…).
    Send(SendError),
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::InvalidJson => f.write_str("the reply is not a JSON object"),
            ReplyError::Send(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ReplyError {}

/// What a host uses to answer sessions: safe from any thread, never blocks.
/// Clone it to answer later.
#[derive(Clone)]
pub struct AppWsHandle {
    server: ServerHandle,
}

impl AppWsHandle {
    /// Answers a message: `json` (an object) with `src` set to the request's
    /// (kept in place if `json` has one, else appended); numbers keep their
    /// text.
    pub fn reply(&self, sid: SessionId, src: Option<&str>, json: &str) -> Result<Sent, ReplyError> {
        let action = service::reply(sid, src, json).map_err(|_| ReplyError::InvalidJson)?;
        self.send_action(action)
    }

    /// Sends a text frame as it is.
    pub fn send_text(&self, sid: SessionId, text: &str) -> Result<Sent, ReplyError> {
        self.server.send(sid, text.as_bytes(), true).map_err(ReplyError::Send)
    }

    /// Sends a binary frame.
    pub fn send_binary(&self, sid: SessionId, data: &[u8]) -> Result<Sent, ReplyError> {
        self.server.send(sid, data, false).map_err(ReplyError::Send)
    }

    /// Closes a session (codes ≤ 0 or not allowed on the wire go as 1000).
    pub fn close(&self, sid: SessionId, code: i32, reason: &str) -> Result<(), ReplyError> {
        self.server.close(sid, code, reason).map_err(ReplyError::Send)
    }

    /// The engine handle.
    pub fn server(&self) -> &ServerHandle {
        &self.server
    }

    fn send_action(&self, action: Action) -> Result<Sent, ReplyError> {
        match action {
            Action::Send { to, data, text } => self.server.send(to, &data, text).map_err(ReplyError::Send),
            Action::Ping { to, payload } => self.server.ping(to, &payload).map_err(ReplyError::Send),
            Action::Close { to, code, reason } => self
                .server
                .close(to, i32::from(code), &reason)
                .map(|()| Sent::Queued)
                .map_err(ReplyError::Send),
        }
    }
}

/// Receives what logged-in sessions send, in place of the built-in echo.
/// Every method runs on an I/O thread, never two at once, and must not block:
/// answer through `app` now or from another thread later.
pub trait AppHost: Send + 'static {
    /// A session logged in.
    fn on_login(&mut self, _app: &AppWsHandle, _sid: SessionId, _login: &Login) {}

    /// A text message with an `mt` the endpoint does not handle itself.
    fn on_message(&mut self, app: &AppWsHandle, msg: &AppMessage);

    /// A binary frame. Ignored by default.
    fn on_binary(&mut self, _app: &AppWsHandle, _sid: SessionId, _data: &[u8]) {}

    /// A logged-in session ended (only sessions that logged in are reported).
    fn on_close(&mut self, _app: &AppWsHandle, _sid: SessionId) {}
}

/// The built-in echo (§5.3): each message comes back with `mt`+`Result`,
/// members in order and `src` unchanged; binary frames come back as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

impl AppHost for Echo {
    fn on_message(&mut self, app: &AppWsHandle, msg: &AppMessage) {
        let _ = app.send_action(service::echo_message(msg));
    }

    fn on_binary(&mut self, app: &AppWsHandle, sid: SessionId, data: &[u8]) {
        let _ = app.send_binary(sid, data);
    }
}

struct AppHandler {
    service: Service,
    host: Box<dyn AppHost>,
    app: Option<AppWsHandle>,
    logged_in: Arc<AtomicU64>,
}

impl Handler for AppHandler {
    fn on_event(&mut self, server: &ServerHandle, event: Event<'_>) {
        let app = self.app.get_or_insert_with(|| AppWsHandle { server: server.clone() });
        match event {
            Event::Open { conn, .. } => apply_actions(server, self.service.on_open(conn).actions),
            Event::Message { conn, data, text } => {
                let out = self.service.on_message(conn, data, text);
                apply_actions(server, out.actions);
                match out.host {
                    Some(HostEvent::LoggedIn { sid, login }) => {
                        self.logged_in.fetch_add(1, Ordering::Relaxed);
                        self.host.on_login(app, sid, &login);
                    }
                    Some(HostEvent::Message(m)) => self.host.on_message(app, &m),
                    Some(HostEvent::Binary { sid, data }) => self.host.on_binary(app, sid, &data),
                    None => {}
                }
            }
            Event::Close { conn, .. } => {
                if self.service.login(conn).is_some() {
                    self.logged_in.fetch_sub(1, Ordering::Relaxed);
                    self.host.on_close(app, conn);
                }
                apply_actions(server, self.service.on_close(conn).actions);
            }
            // Sent and ConnectFailed are client-role events; a listener never sees them.
            Event::Ping { .. }
            | Event::Pong { .. }
            | Event::Drain { .. }
            | Event::Sent { .. }
            | Event::ConnectFailed { .. } => {}
        }
    }
}

/// A running AppWebsocket listener. Dropping it shuts it down like
/// [`AppWsListener::shutdown`].
pub struct AppWsListener {
    server: Server,
    logged_in: Arc<AtomicU64>,
}

/// Binds and starts a listener for `apps`, answered by the built-in echo.
pub fn start(cfg: ListenerConfig, apps: &AppWsConfig) -> io::Result<AppWsListener> {
    start_with(cfg, apps.service(), Box::new(Echo))
}

/// Binds and starts a listener over a prepared endpoint state, with `host`
/// receiving what logged-in sessions send.
pub fn start_with(cfg: ListenerConfig, service: Service, host: Box<dyn AppHost>) -> io::Result<AppWsListener> {
    let logged_in = Arc::new(AtomicU64::new(0));
    let handler = AppHandler {
        service,
        host,
        app: None,
        logged_in: logged_in.clone(),
    };
    let server = Server::start(cfg.engine, handler)?;
    Ok(AppWsListener { server, logged_in })
}

impl AppWsListener {
    /// The address listened on (the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Live counters; `names` counts logged-in sessions.
    pub fn stats(&self) -> ListenerStats {
        ListenerStats::from_engine(&self.server.handle().stats(), self.logged_in.load(Ordering::Relaxed))
    }

    /// A handle for answering sessions from outside a host callback.
    pub fn handle(&self) -> AppWsHandle {
        AppWsHandle {
            server: self.server.handle().clone(),
        }
    }

    /// Sends close 1001 to every session and joins the I/O threads.
    pub fn shutdown(self) {
        self.server.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_specs() {
        assert_eq!(parse_app("demo:demo"), Ok(("demo".into(), "demo".into())));
        assert_eq!(parse_app("a:b:c"), Ok(("a".into(), "b:c".into())));
        assert_eq!(parse_app("a:"), Ok(("a".into(), String::new())));
        assert!(parse_app(":pw").is_err());
        assert!(parse_app("nocolon").is_err());
    }

    #[test]
    fn default_app_only_without_apps() {
        let dbg = format!("{:?}", AppWsConfig::default().service());
        assert!(dbg.contains("\"demo\""), "{dbg}");
        let cfg = AppWsConfig {
            apps: vec![("x".into(), "secret".into())],
            domain_passwords: Vec::new(),
        };
        let dbg = format!("{:?}", cfg.service());
        assert!(
            !dbg.contains("demo") && dbg.contains("\"x\"") && !dbg.contains("secret"),
            "{dbg}"
        );
        assert!(!format!("{cfg:?}").contains("secret"));
    }
}
