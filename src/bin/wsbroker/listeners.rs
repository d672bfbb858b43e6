//! The daemon's dialect listeners behind one small trait, so the status page,
//! the metrics and the shutdown treat them alike. [`start`] is the one place a
//! listener is built from the settings: a new dialect plugs in there.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use wsbroker::broker::{AuthMode, Role};
use wsbroker::dialect::achex::AchexConfig;
use wsbroker::listeners::achex::AchexListener;
use wsbroker::listeners::appws::{AppWsConfig, AppWsListener};
use wsbroker::listeners::webtalk::{AdminConfig, WebtalkListener};
use wsbroker::listeners::wschat::WsChatListener;
use wsbroker::listeners::{ListenerConfig, ListenerStats};
use wsbroker::Stats;

use crate::config::{Kind, Settings};

/// Routing state for the status page. Listings are cut to the limit asked
/// for; the counts are not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerView {
    pub sessions: usize,
    pub users: usize,
    pub groups: usize,
    pub hubs: usize,
    /// (name, "user" or "service", sessions holding it)
    pub name_list: Vec<(String, &'static str, usize)>,
    /// (group, members)
    pub group_list: Vec<(String, usize)>,
    /// (hub, members)
    pub hub_list: Vec<(String, usize)>,
}

/// A running listener.
pub trait Listener: Send + Sync {
    fn kind(&self) -> Kind;
    fn local_addr(&self) -> SocketAddr;
    /// The engine's counters; `None` for listeners without a WebSocket engine
    /// (the webtalk admin TCP listener).
    fn engine_stats(&self) -> Option<Stats>;
    /// Names, groups and hubs, where the dialect has them.
    fn broker(&self, limit: usize) -> Option<BrokerView>;
    /// Closes every client (1001 on WebSocket listeners) and stops. Later calls
    /// do nothing.
    fn stop(&self);
}

/// What later listeners need from earlier ones: the webtalk admin socket is
/// part of the webtalk listener (they share one state).
#[derive(Default)]
pub struct Started {
    webtalk: Option<Arc<Mutex<Option<WebtalkListener>>>>,
}

/// Starts the listener `kind` at `bind`. `Ok(None)`: nothing to start here
/// (the status server is started by main.rs).
pub fn start(
    kind: Kind,
    bind: SocketAddr,
    settings: &Settings,
    started: &mut Started,
) -> io::Result<Option<Box<dyn Listener>>> {
    let mut ws = ListenerConfig::new(bind).max_message_size(settings.max_message);
    ws.engine.tls = tls(settings);
    match kind {
        Kind::Achex => {
            let cfg = AchexConfig {
                quiet: settings.achex_quiet,
                auth: if settings.achex_users.is_empty() {
                    AuthMode::Open
                } else {
                    AuthMode::Table(
                        settings
                            .achex_users
                            .iter()
                            .map(|c| (c.name.clone(), c.password.clone()))
                            .collect(),
                    )
                },
                services: settings
                    .achex_services
                    .iter()
                    .map(|c| (c.name.clone(), c.password.clone()))
                    .collect(),
                ..AchexConfig::default()
            };
            let l = AchexListener::start(ws.engine, cfg)?;
            Ok(Some(Box::new(Achex(l))))
        }
        Kind::Wschat => {
            let l = wsbroker::listeners::wschat::start(ws)?;
            Ok(Some(Box::new(Dialect {
                kind,
                inner: Mutex::new(Some(Inner::WsChat(l))),
                addr: bind,
            })))
        }
        Kind::Webtalk => {
            // The admin socket belongs to this listener: it is started here,
            // and announced by its own `Kind::WebtalkAdmin` entry.
            let admin = settings.bind(Kind::WebtalkAdmin).map(|a| AdminConfig {
                bind: a,
                secret: settings.webtalk_admin_secret.as_ref().map(|s| s.as_bytes().to_vec()),
                ..AdminConfig::default()
            });
            let l = wsbroker::listeners::webtalk::start(ws, admin)?;
            let shared = Arc::new(Mutex::new(Some(l)));
            started.webtalk = Some(shared.clone());
            Ok(Some(Box::new(Webtalk { shared, admin: false })))
        }
        Kind::WebtalkAdmin => match &started.webtalk {
            Some(shared) => Ok(Some(Box::new(Webtalk {
                shared: shared.clone(),
                admin: true,
            }))),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "webtalk-admin drives the webtalk listener's users: it needs --webtalk on",
            )),
        },
        Kind::Appws => {
            let apps = AppWsConfig {
                apps: settings
                    .appws_apps
                    .iter()
                    .map(|c| (c.name.clone(), c.password.clone()))
                    .collect(),
                domain_passwords: Vec::new(),
            };
            let l = wsbroker::listeners::appws::start(ws, &apps)?;
            Ok(Some(Box::new(Dialect {
                kind,
                inner: Mutex::new(Some(Inner::AppWs(l))),
                addr: bind,
            })))
        }
        // Not a dialect: main.rs starts the status server itself.
        Kind::Http => Ok(None),
    }
}

/// `--tls-cert`/`--tls-key`: every WebSocket listener serves `wss://`.
fn tls(settings: &Settings) -> Option<Arc<rustls::ServerConfig>> {
    settings.tls.as_ref().map(|t| t.config.clone())
}

struct Achex(AchexListener);

impl Listener for Achex {
    fn kind(&self) -> Kind {
        Kind::Achex
    }

    fn local_addr(&self) -> SocketAddr {
        self.0.local_addr()
    }

    fn engine_stats(&self) -> Option<Stats> {
        Some(self.0.engine_stats())
    }

    fn broker(&self, limit: usize) -> Option<BrokerView> {
        let s = self.0.status(limit);
        Some(BrokerView {
            sessions: s.stats.sessions,
            users: s.stats.users,
            groups: s.stats.groups,
            hubs: s.stats.hubs,
            name_list: s
                .names
                .into_iter()
                .map(|n| {
                    let role = match n.role {
                        Role::User => "user",
                        Role::Service => "service",
                    };
                    (n.name, role, n.sessions)
                })
                .collect(),
            group_list: s.groups,
            hub_list: s.hubs,
        })
    }

    fn stop(&self) {
        self.0.shutdown();
    }
}

enum Inner {
    WsChat(WsChatListener),
    AppWs(AppWsListener),
}

/// WSChat and AppWebsocket: a WebSocket listener with a count of identified sessions.
struct Dialect {
    kind: Kind,
    inner: Mutex<Option<Inner>>,
    addr: SocketAddr,
}

impl Dialect {
    fn with<R>(&self, f: impl FnOnce(&Inner) -> R) -> Option<R> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(f)
    }
}

fn view(s: ListenerStats) -> BrokerView {
    BrokerView {
        sessions: s.sessions as usize,
        users: s.names as usize,
        ..BrokerView::default()
    }
}

impl Listener for Dialect {
    fn kind(&self) -> Kind {
        self.kind
    }

    fn local_addr(&self) -> SocketAddr {
        self.with(|i| match i {
            Inner::WsChat(l) => l.local_addr(),
            Inner::AppWs(l) => l.local_addr(),
        })
        .unwrap_or(self.addr)
    }

    fn engine_stats(&self) -> Option<Stats> {
        self.with(|i| match i {
            Inner::WsChat(l) => l.server().stats(),
            Inner::AppWs(l) => l.handle().server().stats(),
        })
    }

    fn broker(&self, _limit: usize) -> Option<BrokerView> {
        self.with(|i| match i {
            Inner::WsChat(l) => view(l.stats()),
            Inner::AppWs(l) => view(l.stats()),
        })
    }

    fn stop(&self) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner()).take();
        match inner {
            Some(Inner::WsChat(l)) => l.shutdown(),
            Some(Inner::AppWs(l)) => l.shutdown(),
            None => {}
        }
    }
}

/// The webtalk browser listener, or (with `admin`) its admin TCP socket.
struct Webtalk {
    shared: Arc<Mutex<Option<WebtalkListener>>>,
    admin: bool,
}

impl Listener for Webtalk {
    fn kind(&self) -> Kind {
        if self.admin {
            Kind::WebtalkAdmin
        } else {
            Kind::Webtalk
        }
    }

    fn local_addr(&self) -> SocketAddr {
        let g = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        match g.as_ref() {
            Some(l) if self.admin => l.admin_addr().unwrap_or_else(|| Kind::WebtalkAdmin.default_addr()),
            Some(l) => l.local_addr(),
            None => self.kind().default_addr(),
        }
    }

    fn engine_stats(&self) -> Option<Stats> {
        if self.admin {
            return None;
        }
        let g = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        g.as_ref().map(|l| l.handle().server().stats())
    }

    fn broker(&self, _limit: usize) -> Option<BrokerView> {
        if self.admin {
            return None;
        }
        let g = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        g.as_ref().map(|l| {
            let s = l.stats();
            BrokerView {
                sessions: s.browsers.sessions as usize,
                users: s.users as usize,
                groups: s.channels as usize,
                ..BrokerView::default()
            }
        })
    }

    fn stop(&self) {
        // The browser entry stops both (close 1001 to browsers, admin sockets closed).
        let l = self.shared.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(l) = l {
            l.shutdown();
        }
    }
}
