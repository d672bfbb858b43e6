//! The AppWebsocket app-service endpoint on the engine (PROTOCOLS.md §5.3): a
//! [`Server`] whose connections run the challenge/digest login of
//! [`crate::dialect::appws::Service`]; logged-in sessions' messages go to the
//! host with `mt` and `src` extracted, or to the built-in echo.
//!
//! Flow control is the client's: a one-message credit per connection,
//! completed when the callback returns or the message is polled (automatic),
//! or by [`AppServiceHandle::message_complete`] (manual).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::queue::HostQueue;
use crate::dialect::appws::{self as dialect, HostEvent, Login, Service};
use crate::engine::PollError;
use crate::listeners::apply_actions;
use crate::{Config, ConnId, Event, Handler, SendError, Sent, Server, ServerHandle};

use super::session::AppSendError;

/// App-service settings.
#[derive(Debug, Clone)]
pub struct AppServiceConfig {
    /// Listener and limits (`manual_complete` is taken from below).
    pub engine: Config,
    /// `(app, password)` pairs; a login names one of these apps.
    pub apps: Vec<(String, String)>,
    /// `(domain, password)` pairs tried after the app's own password.
    pub domain_passwords: Vec<(String, String)>,
    /// Manual flow control. Default false.
    pub manual_complete: bool,
    /// Answer every message with the built-in echo (§5.3) instead of
    /// reporting it; logins and closes are still reported. Default false.
    pub echo: bool,
}

impl AppServiceConfig {
    /// A service on 127.0.0.1 (ephemeral port) with no apps, 64 KiB
    /// messages (the dialect limit of DESIGN.md §6).
    pub fn new() -> AppServiceConfig {
        let engine = Config {
            max_message_size: 64 << 10,
            max_frame_size: 64 << 10,
            ..Config::default()
        };
        AppServiceConfig {
            engine,
            apps: Vec::new(),
            domain_passwords: Vec::new(),
            manual_complete: false,
            echo: false,
        }
    }
}

impl Default for AppServiceConfig {
    fn default() -> Self {
        AppServiceConfig::new()
    }
}

/// What happened on the service. Borrowed data lives until the handler returns.
#[derive(Debug)]
pub enum AppServiceEvent<'a> {
    /// A session logged in.
    Login { conn: ConnId, login: &'a Login },
    /// A text message from a logged-in session (any `mt` the service does not
    /// answer itself).
    Message {
        conn: ConnId,
        mt: &'a str,
        src: Option<&'a str>,
        json: &'a str,
    },
    /// A binary frame from a logged-in session.
    Binary { conn: ConnId, data: &'a [u8] },
    /// A session that had logged in has ended (status as for the server's
    /// close event).
    Closed {
        conn: ConnId,
        status: i32,
        reason: &'a str,
        by_host: bool,
    },
}

/// An owned [`AppServiceEvent`] (queue mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedAppServiceEvent {
    Login {
        conn: ConnId,
        login: Login,
    },
    Message {
        conn: ConnId,
        mt: String,
        src: Option<String>,
        json: String,
    },
    Binary {
        conn: ConnId,
        data: Vec<u8>,
    },
    Closed {
        conn: ConnId,
        status: i32,
        reason: String,
        by_host: bool,
    },
}

impl OwnedAppServiceEvent {
    /// Copies a borrowed event.
    pub fn from_event(e: &AppServiceEvent<'_>) -> OwnedAppServiceEvent {
        match *e {
            AppServiceEvent::Login { conn, login } => OwnedAppServiceEvent::Login {
                conn,
                login: login.clone(),
            },
            AppServiceEvent::Message { conn, mt, src, json } => OwnedAppServiceEvent::Message {
                conn,
                mt: mt.to_owned(),
                src: src.map(str::to_owned),
                json: json.to_owned(),
            },
            AppServiceEvent::Binary { conn, data } => OwnedAppServiceEvent::Binary {
                conn,
                data: data.to_vec(),
            },
            AppServiceEvent::Closed {
                conn,
                status,
                reason,
                by_host,
            } => OwnedAppServiceEvent::Closed {
                conn,
                status,
                reason: reason.to_owned(),
                by_host,
            },
        }
    }

    /// Borrows it as an [`AppServiceEvent`].
    pub fn as_event(&self) -> AppServiceEvent<'_> {
        match self {
            OwnedAppServiceEvent::Login { conn, login } => AppServiceEvent::Login { conn: *conn, login },
            OwnedAppServiceEvent::Message { conn, mt, src, json } => AppServiceEvent::Message {
                conn: *conn,
                mt,
                src: src.as_deref(),
                json,
            },
            OwnedAppServiceEvent::Binary { conn, data } => AppServiceEvent::Binary { conn: *conn, data },
            OwnedAppServiceEvent::Closed {
                conn,
                status,
                reason,
                by_host,
            } => AppServiceEvent::Closed {
                conn: *conn,
                status: *status,
                reason,
                by_host: *by_host,
            },
        }
    }

    /// The connection the event is about.
    pub fn conn(&self) -> ConnId {
        match self {
            OwnedAppServiceEvent::Login { conn, .. }
            | OwnedAppServiceEvent::Message { conn, .. }
            | OwnedAppServiceEvent::Binary { conn, .. }
            | OwnedAppServiceEvent::Closed { conn, .. } => *conn,
        }
    }
}

/// Receives the service's events on an I/O thread (never two at once).
pub trait AppServiceHandler: Send + 'static {
    fn on_event(&mut self, service: &AppServiceHandle, event: AppServiceEvent<'_>);
}

impl<F> AppServiceHandler for F
where
    F: FnMut(&AppServiceHandle, AppServiceEvent<'_>) + Send + 'static,
{
    fn on_event(&mut self, service: &AppServiceHandle, event: AppServiceEvent<'_>) {
        self(service, event)
    }
}

struct Shared {
    manual: bool,
    queue: Option<HostQueue<OwnedAppServiceEvent>>,
}

/// A cheap handle to the service, usable from any thread.
#[derive(Clone)]
pub struct AppServiceHandle {
    server: ServerHandle,
    shared: Arc<Shared>,
}

fn send_error(e: SendError) -> AppSendError {
    AppSendError::Send(e)
}

impl AppServiceHandle {
    /// Answers a message: `json` (a JSON object) with the request's `src`
    /// set (kept in place if `json` has one, else appended). Never blocks;
    /// safe from any thread.
    pub fn reply(&self, conn: ConnId, src: Option<&str>, json: &str) -> Result<Sent, AppSendError> {
        let action = dialect::reply(conn, src, json).map_err(|_| AppSendError::InvalidJson)?;
        match action {
            crate::dialect::Action::Send { data, text, .. } => self.server.send(conn, &data, text).map_err(send_error),
            _ => Err(AppSendError::InvalidJson),
        }
    }

    /// Sends one message (text must be UTF-8) as given.
    pub fn send(&self, conn: ConnId, data: &[u8], text: bool) -> Result<Sent, AppSendError> {
        self.server.send(conn, data, text).map_err(send_error)
    }

    /// Closes a session (code ≤ 0 or not allowed on the wire: 1000).
    pub fn close(&self, conn: ConnId, code: i32, reason: &str) -> Result<(), AppSendError> {
        self.server.close(conn, code, reason).map_err(send_error)
    }

    /// Manual mode: the host is done with `conn`'s last message. Harmless
    /// otherwise (and for stale ids).
    pub fn message_complete(&self, conn: ConnId) {
        self.server.message_complete(conn);
    }

    /// The listening address (with the real port).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The engine underneath (stats, validity of ids).
    pub fn server(&self) -> &ServerHandle {
        &self.server
    }

    /// Queue mode: waits up to `timeout` (`None`: forever) for the next event.
    /// In automatic flow control, polling a message completes it.
    pub fn poll(&self, timeout: Option<Duration>) -> Result<OwnedAppServiceEvent, PollError> {
        let q = self.shared.queue.as_ref().ok_or(PollError::Closed)?;
        let e = q.poll(timeout)?;
        if !self.shared.manual
            && matches!(
                e,
                OwnedAppServiceEvent::Message { .. } | OwnedAppServiceEvent::Binary { .. }
            )
        {
            self.message_complete(e.conn());
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

/// A running app service. Dropping it closes every session with 1001 and
/// joins the I/O threads.
pub struct AppService {
    server: Option<Server>,
    handle: AppServiceHandle,
}

struct Bridge {
    service: Service,
    user: Option<Box<dyn AppServiceHandler>>,
    echo: bool,
    shared: Arc<Shared>,
    handle: Option<AppServiceHandle>,
}

impl Bridge {
    fn handle(&mut self, s: &ServerHandle) -> AppServiceHandle {
        self.handle
            .get_or_insert_with(|| AppServiceHandle {
                server: s.clone(),
                shared: self.shared.clone(),
            })
            .clone()
    }

    /// Reports `e`; true when the host now owes the message's completion.
    fn emit(&mut self, s: &ServerHandle, e: AppServiceEvent<'_>) -> bool {
        let h = self.handle(s);
        match (&mut self.user, &self.shared.queue) {
            (Some(u), _) => {
                u.on_event(&h, e);
                self.shared.manual
            }
            (None, Some(q)) => {
                q.push(OwnedAppServiceEvent::from_event(&e));
                true
            }
            (None, None) => false,
        }
    }
}

impl Handler for Bridge {
    fn on_event(&mut self, s: &ServerHandle, ev: Event<'_>) {
        match ev {
            Event::Open { conn, .. } => {
                self.service.on_open(conn);
            }
            Event::Message { conn, data, text } => {
                let out = self.service.on_message(conn, data, text);
                apply_actions(s, out.actions);
                let owed = match out.host {
                    Some(HostEvent::LoggedIn { sid, login }) => {
                        self.emit(
                            s,
                            AppServiceEvent::Login {
                                conn: sid,
                                login: &login,
                            },
                        );
                        false
                    }
                    Some(ev) if self.echo => {
                        apply_actions(s, dialect::echo(&ev));
                        false
                    }
                    Some(HostEvent::Message(m)) => self.emit(
                        s,
                        AppServiceEvent::Message {
                            conn: m.sid,
                            mt: &m.mt,
                            src: m.src.as_deref(),
                            json: &m.json,
                        },
                    ),
                    Some(HostEvent::Binary { sid, data }) => {
                        self.emit(s, AppServiceEvent::Binary { conn: sid, data: &data })
                    }
                    None => false,
                };
                if !owed {
                    s.message_complete(conn);
                }
            }
            Event::Close {
                conn,
                status,
                reason,
                by_host,
            } => {
                let was_in = self.service.login(conn).is_some();
                self.service.on_close(conn);
                if was_in {
                    self.emit(
                        s,
                        AppServiceEvent::Closed {
                            conn,
                            status,
                            reason,
                            by_host,
                        },
                    );
                }
            }
            Event::Ping { .. } | Event::Pong { .. } | Event::Drain { .. } => {}
            Event::Sent { .. } | Event::ConnectFailed { .. } => {}
        }
    }
}

impl AppService {
    /// Binds and starts in callback mode (or echo mode with `cfg.echo`, where
    /// the handler sees only logins and closes).
    pub fn start(cfg: AppServiceConfig, handler: impl AppServiceHandler) -> std::io::Result<AppService> {
        Self::start_inner(cfg, Some(Box::new(handler)))
    }

    /// Binds and starts in queue mode: events wait for [`AppServiceHandle::poll`].
    pub fn start_queued(cfg: AppServiceConfig) -> std::io::Result<AppService> {
        Self::start_inner(cfg, None)
    }

    /// Binds and starts the built-in echo with nobody listening: the daemon's
    /// mode when no host is attached.
    pub fn start_echo(mut cfg: AppServiceConfig) -> std::io::Result<AppService> {
        cfg.echo = true;
        Self::start_inner(cfg, Some(Box::new(|_: &AppServiceHandle, _: AppServiceEvent<'_>| {})))
    }

    fn start_inner(cfg: AppServiceConfig, user: Option<Box<dyn AppServiceHandler>>) -> std::io::Result<AppService> {
        let mut service = Service::new();
        for (app, pw) in &cfg.apps {
            service.add_app(app, pw);
        }
        for (domain, pw) in &cfg.domain_passwords {
            service.add_domain_password(domain, pw);
        }
        let shared = Arc::new(Shared {
            manual: cfg.manual_complete,
            queue: user.is_none().then(HostQueue::new),
        });
        let mut engine = cfg.engine;
        // The bridge completes every message itself, when its time has come.
        engine.manual_complete = true;
        let bridge = Bridge {
            service,
            user,
            echo: cfg.echo,
            shared: shared.clone(),
            handle: None,
        };
        let server = Server::start(engine, bridge)?;
        let handle = AppServiceHandle {
            server: server.handle().clone(),
            shared,
        };
        Ok(AppService {
            server: Some(server),
            handle,
        })
    }

    /// The handle for other threads.
    pub fn handle(&self) -> &AppServiceHandle {
        &self.handle
    }

    /// Stops the service (see the type's documentation).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
        if let Some(q) = &self.handle.shared.queue {
            q.close();
        }
    }
}

impl std::ops::Deref for AppService {
    type Target = AppServiceHandle;
    fn deref(&self) -> &AppServiceHandle {
        &self.handle
    }
}

impl Drop for AppService {
    fn drop(&mut self) {
        self.stop();
    }
}
