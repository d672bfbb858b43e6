//! The Achex listener: an engine server whose [`Handler`] feeds an
//! [`AchexDialect`] and carries out what it answers.
//!
//! The dialect sits behind a mutex shared by the engine's handler and the
//! [`AchexListener`], so the host (the daemon's status page, or a C API driving
//! in-process services) can reach it from any thread. Actions are carried out
//! while that lock is held: whoever causes them, they reach the engine in the
//! order the dialect produced them, which is what keeps per-sender ordering.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::dialect::achex::{
    AchexConfig, AchexDialect, AchexStats, HostError, HostItem, HostTarget, Membership, NameInfo, ServiceHandle,
};
use crate::dialect::Action;
use crate::listeners::apply_actions_from;
use crate::{Config, Event, Handler, Server, ServerHandle, Stats};

/// The message size limit of dialect listeners (PROTOCOLS.md §1): larger gets
/// close 1009.
pub const DIALECT_MAX_MESSAGE: usize = super::DEFAULT_MAX_MESSAGE_SIZE;

/// Receives what the dialect has for the host: messages addressed to
/// in-process services, and login/logout/join/leave events when enabled.
/// Called on whichever thread caused the item (an I/O thread, or the thread
/// of a host call), never twice at once, with no listener lock held, so it may
/// call the listener's service methods. It must not call
/// [`AchexListener::set_host_sink`].
pub type HostSink = Box<dyn FnMut(HostItem) + Send>;

/// A snapshot for status pages: the `serverstat` counts and the listings,
/// each cut to the limit asked for (the counts are never cut).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AchexStatus {
    pub stats: AchexStats,
    pub names: Vec<NameInfo>,
    pub groups: Vec<(String, usize)>,
    pub hubs: Vec<(String, usize)>,
}

struct Core {
    dialect: Mutex<AchexDialect>,
    sink: Mutex<Option<HostSink>>,
    /// Whether `sink` holds one, readable without its lock (which the sink
    /// itself holds while it runs).
    has_sink: AtomicBool,
}

thread_local! {
    /// Set while this thread runs the host sink: items a sink call produces
    /// are picked up by the loop already running below it, which keeps them
    /// in order and avoids taking the sink lock twice.
    static IN_SINK: Cell<bool> = const { Cell::new(false) };
}

impl Core {
    fn dialect(&self) -> MutexGuard<'_, AchexDialect> {
        // A panic inside the dialect is a bug, but the state it left is still
        // the best there is; refusing all further traffic would be worse.
        crate::lock(&self.dialect)
    }

    /// Runs `f` on the dialect and carries out the actions it returns, under
    /// one lock; then hands any host items to the sink.
    fn run<R>(&self, server: &ServerHandle, f: impl FnOnce(&mut AchexDialect) -> (R, Vec<Action>)) -> R {
        let r = {
            let mut d = self.dialect();
            let (r, mut actions) = f(&mut d);
            apply_actions_from(server, &mut actions);
            // Back to the dialect, so the next message's actions need no
            // new list.
            d.recycle(actions);
            r
        };
        self.flush();
        r
    }

    fn flush(&self) {
        // Without a sink the dialect queues nothing for the host, so there
        // is nothing to hand over and no lock to take after every event.
        // (`set_host_sink` flushes once itself after setting one.)
        if IN_SINK.with(Cell::get) || !self.has_sink.load(Ordering::Acquire) {
            return;
        }
        let mut sink = crate::lock(&self.sink);
        let Some(sink) = sink.as_mut() else {
            return;
        };
        let _guard = SinkGuard::enter();
        loop {
            let items = self.dialect().take_host_items();
            if items.is_empty() {
                break;
            }
            for item in items {
                sink(item);
            }
        }
    }
}

/// Marks this thread as running the sink until dropped, even if the sink panics.
struct SinkGuard;

impl SinkGuard {
    fn enter() -> SinkGuard {
        IN_SINK.with(|f| f.set(true));
        SinkGuard
    }
}

impl Drop for SinkGuard {
    fn drop(&mut self) {
        IN_SINK.with(|f| f.set(false));
    }
}

struct AchexHandler {
    core: Arc<Core>,
}

impl Handler for AchexHandler {
    fn on_event(&mut self, server: &ServerHandle, event: Event<'_>) {
        let now = Instant::now();
        self.core.run(server, |d| {
            let actions = match event {
                Event::Open { conn, .. } => d.on_open(conn),
                Event::Message { conn, data, text } => d.on_message_at(conn, data, text, now),
                Event::Pong { conn, data } => d.on_pong_at(conn, data, now),
                Event::Close { conn, .. } => d.on_close(conn),
                // Sent and ConnectFailed are client-role events; a listener never sees them.
                Event::Ping { .. } | Event::Drain { .. } | Event::Sent { .. } | Event::ConnectFailed { .. } => {
                    Vec::new()
                }
            };
            ((), actions)
        });
    }

    fn on_tick(&mut self, server: &ServerHandle) {
        let now = Instant::now();
        self.core.run(server, |d| {
            let due = d.next_deadline().is_some_and(|t| t <= now);
            ((), if due { d.on_tick(now) } else { Vec::new() })
        });
    }
}

/// A running Achex listener. Every method is safe to call from any thread.
pub struct AchexListener {
    server: Mutex<Option<Server>>,
    handle: ServerHandle,
    core: Arc<Core>,
}

impl AchexListener {
    /// The engine settings of a dialect listener bound to `bind`: the defaults,
    /// with the 64 KiB message limit.
    pub fn engine_config(bind: SocketAddr) -> Config {
        Config {
            bind,
            max_message_size: DIALECT_MAX_MESSAGE,
            max_frame_size: DIALECT_MAX_MESSAGE,
            ..Config::default()
        }
    }

    /// Binds and starts serving. `engine.bind` may ask for port 0; see
    /// [`AchexListener::local_addr`] for the real one.
    pub fn start(engine: Config, achex: AchexConfig) -> io::Result<AchexListener> {
        let mut dialect = AchexDialect::new(achex);
        // Until a sink is set nobody takes host items, so none are queued.
        dialect.set_host_receiver(false);
        let core = Arc::new(Core {
            dialect: Mutex::new(dialect),
            sink: Mutex::new(None),
            has_sink: AtomicBool::new(false),
        });
        let server = Server::start(engine, AchexHandler { core: core.clone() })?;
        let handle = server.handle().clone();
        Ok(AchexListener {
            server: Mutex::new(Some(server)),
            handle,
            core,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }

    /// The engine handle (sends, closes and counters of the connections).
    pub fn handle(&self) -> &ServerHandle {
        &self.handle
    }

    /// The engine's counters (connections, messages, bytes).
    pub fn engine_stats(&self) -> Stats {
        self.handle.stats()
    }

    /// The `serverstat` counts.
    pub fn stats(&self) -> AchexStats {
        self.core.dialect().stats()
    }

    /// Counts and listings; each listing holds at most `limit` entries.
    pub fn status(&self, limit: usize) -> AchexStatus {
        let d = self.core.dialect();
        let mut names = d.names();
        let mut groups = d.groups();
        let mut hubs = d.hubs();
        names.truncate(limit);
        groups.truncate(limit);
        hubs.truncate(limit);
        AchexStatus {
            stats: d.stats(),
            names,
            groups,
            hubs,
        }
    }

    /// Read access to the dialect, for views not offered here. Hold it briefly:
    /// the listener's I/O waits for it.
    pub fn inspect<R>(&self, f: impl FnOnce(&AchexDialect) -> R) -> R {
        f(&self.core.dialect())
    }

    /// Sets (or, with `None`, removes) the receiver of host items. Without a
    /// sink nothing is queued for the host (see
    /// [`AchexDialect::set_host_receiver`]): in-process services cannot be
    /// registered, those already registered get no messages (a `to`/`toS`
    /// naming one gets the sender an error), events are not recorded, and
    /// removing the sink drops what was not delivered yet.
    pub fn set_host_sink(&self, sink: Option<HostSink>) {
        {
            let mut slot = crate::lock(&self.core.sink);
            // Same lock order as `Core::flush`: the sink, then the dialect.
            self.core.dialect().set_host_receiver(sink.is_some());
            self.core.has_sink.store(sink.is_some(), Ordering::Release);
            *slot = sink;
        }
        self.core.flush();
    }

    /// True while a host sink is set. Safe to call from inside the sink.
    pub fn has_host_sink(&self) -> bool {
        self.core.has_sink.load(Ordering::Acquire)
    }

    /// Whether login, logout, join and leave events reach the host sink
    /// (never without one).
    pub fn set_events(&self, on: bool) {
        self.core.dialect().set_events(on);
    }

    /// Adds or replaces credentials for `serviceID` logins.
    pub fn set_service_credentials(&self, service: &str, password: &str) {
        self.core.dialect().set_service_credentials(service, password);
    }

    pub fn remove_service_credentials(&self, service: &str) -> bool {
        self.core.dialect().remove_service_credentials(service)
    }

    /// Registers an in-process service under an exclusive name; what clients
    /// send to it reaches the host sink as [`HostItem::Message`]. Without a
    /// sink: [`HostError::NoReceiver`].
    pub fn register_service(&self, name: &str) -> Result<ServiceHandle, HostError> {
        self.core.run(&self.handle, |d| (d.register_service(name), Vec::new()))
    }

    /// Removes an in-process service as if it had disconnected (its hubs are told).
    pub fn unregister_service(&self, service: ServiceHandle) -> Result<(), HostError> {
        self.core.run(&self.handle, |d| split(d.unregister_service(service)))
    }

    /// Sends a JSON object from an in-process service, stamped like a client's.
    pub fn service_send(&self, service: ServiceHandle, target: &HostTarget, message: &[u8]) -> Result<(), HostError> {
        self.core
            .run(&self.handle, |d| split(d.service_send(service, target, message)))
    }

    /// Adds an in-process service to a group or hub; true if it was not a member.
    pub fn service_join(&self, service: ServiceHandle, kind: Membership, place: &str) -> Result<bool, HostError> {
        self.core
            .run(&self.handle, |d| (d.service_join(service, kind, place), Vec::new()))
    }

    /// Removes an in-process service from a group or hub.
    pub fn service_leave(&self, service: ServiceHandle, kind: Membership, place: &str) -> Result<(), HostError> {
        self.core
            .run(&self.handle, |d| split(d.service_leave(service, kind, place)))
    }

    /// Sends close 1001 to every connection, waits briefly for the closing
    /// handshakes and stops the I/O threads. Later calls do nothing.
    pub fn shutdown(&self) {
        let server = crate::lock(&self.server).take();
        if let Some(s) = server {
            s.shutdown();
        }
    }
}

impl Drop for AchexListener {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn split(r: Result<Vec<Action>, HostError>) -> (Result<(), HostError>, Vec<Action>) {
    match r {
        Ok(actions) => (Ok(()), actions),
        Err(e) => (Err(e), Vec::new()),
    }
}

#[cfg(test)]
mod tests;
