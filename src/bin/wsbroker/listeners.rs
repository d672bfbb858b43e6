//! The daemon's dialect listeners behind one small trait, so the status page,
//! the metrics and the shutdown treat them alike. [`start`] is the one place a
//! listener is built from the settings: a new dialect plugs in there.

use std::io;
use std::net::SocketAddr;

use wsbroker::broker::Role;
use wsbroker::dialect::achex::AchexConfig;
use wsbroker::listener::achex::AchexListener;
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

/// Starts the listener `kind` at `bind`. `Ok(None)`: this daemon has no
/// implementation of that listener yet.
pub fn start(kind: Kind, bind: SocketAddr, settings: &Settings) -> io::Result<Option<Box<dyn Listener>>> {
    match kind {
        Kind::Achex => {
            let cfg = AchexConfig {
                quiet: settings.achex_quiet,
                services: settings
                    .achex_services
                    .iter()
                    .map(|c| (c.name.clone(), c.password.clone()))
                    .collect(),
                ..AchexConfig::default()
            };
            let l = AchexListener::start(AchexListener::engine_config(bind), cfg)?;
            Ok(Some(Box::new(Achex(l))))
        }
        // Plug-in point for the listeners of later issues: build it from
        // `settings` here and wrap it in a `Listener`.
        Kind::Wschat | Kind::Webtalk | Kind::WebtalkAdmin | Kind::Appws => Ok(None),
        // Not a dialect: main.rs starts the status server itself.
        Kind::Http => Ok(None),
    }
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
