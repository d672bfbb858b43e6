//! The WSChat listener (PROTOCOLS.md §3): the [`WsChat`] dialect on the engine.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{loopback, ListenerConfig, ListenerStats};
use crate::dialect::wschat::WsChat;
use crate::engine::{Event, Handler, Server, ServerHandle};
use crate::listeners::apply_actions;

/// `--wschat` binds here unless told otherwise.
pub const DEFAULT_BIND: SocketAddr = loopback(9876);

/// Identified names, updated by the I/O thread after every event so a status
/// page can read it without waiting for the dialect.
#[derive(Default)]
struct Counters {
    identified: AtomicU64,
}

struct ChatHandler {
    chat: WsChat,
    counters: Arc<Counters>,
}

impl Handler for ChatHandler {
    fn on_event(&mut self, server: &ServerHandle, event: Event<'_>) {
        let actions = match event {
            Event::Open { conn, .. } => self.chat.on_open(conn),
            Event::Message { conn, data, text } => self.chat.on_message(conn, data, text),
            Event::Close { conn, .. } => self.chat.on_close(conn),
            // Sent and ConnectFailed are client-role events; a listener never sees them.
            Event::Ping { .. }
            | Event::Pong { .. }
            | Event::Drain { .. }
            | Event::Sent { .. }
            | Event::ConnectFailed { .. } => return,
        };
        apply_actions(server, actions);
        let n = self.chat.identified_count() as u64;
        self.counters.identified.store(n, Ordering::Relaxed);
    }
}

/// A running WSChat listener. Dropping it shuts it down like
/// [`WsChatListener::shutdown`].
pub struct WsChatListener {
    server: Server,
    counters: Arc<Counters>,
}

/// Binds and starts a WSChat listener.
pub fn start(cfg: ListenerConfig) -> io::Result<WsChatListener> {
    let counters = Arc::new(Counters::default());
    let handler = ChatHandler {
        chat: WsChat::new(),
        counters: counters.clone(),
    };
    let server = Server::start(cfg.engine, handler)?;
    Ok(WsChatListener { server, counters })
}

impl WsChatListener {
    /// The address listened on (the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Live counters; `names` counts identified clients.
    pub fn stats(&self) -> ListenerStats {
        let names = self.counters.identified.load(Ordering::Relaxed);
        ListenerStats::from_engine(&self.server.handle().stats(), names)
    }

    /// The engine handle (raw sends, engine counters).
    pub fn server(&self) -> &ServerHandle {
        self.server.handle()
    }

    /// Sends close 1001 to every session and joins the I/O threads.
    pub fn shutdown(self) {
        self.server.shutdown();
    }
}
