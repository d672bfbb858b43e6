//! Ready-to-start listeners: a dialect on top of the engine, one namespace
//! each (PROTOCOLS.md §1). The daemon starts them from its flags; a host
//! application may start them from Rust (or, later, from C).
//!
//! * [`wschat`]: the WSChat relay (§3).
//! * [`webtalk`]: the webtalk browser listener and its admin TCP listener,
//!   sharing one state that is also drivable without a socket (§4).
//! * [`appws`]: the innovaphone AppWebsocket app-service endpoint (§5.3).
//! * [`achex`]: the Achex relay with in-process services (§2).
//!
//! [`apply_actions`] is the glue every listener shares: it carries out a
//! dialect's actions through the engine.
//!
//! Every `start` binds before it returns (port 0 gets an ephemeral port; ask
//! the handle's `local_addr`), and every handle's `shutdown` sends close 1001
//! to the WebSocket sessions, closes admin TCP connections and joins threads.

pub mod achex;
pub mod appws;
pub mod webtalk;
pub mod wschat;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use std::sync::Arc;

use crate::dialect::Action;
use crate::engine::{Config, Stats};
use crate::{ServerHandle, SharedFrame};

/// The size limit of a dialect listener's messages unless configured:
/// 64 KiB, larger gets close 1009 (PROTOCOLS.md §1, §7 row 14).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 << 10;

/// The largest message limit a listener may be given (1 GiB): a bound on
/// what one connection can make the process buffer, and a guard against a
/// mistyped setting.
pub const MAX_MESSAGE_LIMIT: usize = 1 << 30;

/// A loopback address with this port (every default binds 127.0.0.1).
pub const fn loopback(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

/// Settings of one WebSocket listener: the engine's, with the dialect
/// defaults (64 KiB messages) in place of the raw server's.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Every engine setting; see [`Config`] for each default. `bind`, the
    /// message size and the frame size are set by [`ListenerConfig::new`].
    pub engine: Config,
}

impl ListenerConfig {
    /// A listener on `bind` with messages (and frames) up to
    /// [`DEFAULT_MAX_MESSAGE_SIZE`] and the engine's other defaults.
    pub fn new(bind: SocketAddr) -> ListenerConfig {
        let engine = Config {
            bind,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_frame_size: DEFAULT_MAX_MESSAGE_SIZE,
            ..Config::default()
        };
        ListenerConfig { engine }
    }

    /// Sets the largest message (and frame) accepted; larger gets close 1009.
    pub fn max_message_size(mut self, bytes: usize) -> ListenerConfig {
        self.engine.max_message_size = bytes;
        self.engine.max_frame_size = bytes;
        self
    }
}

/// What a status page shows for every listener.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenerStats {
    /// Sessions open now (WebSocket connections past the handshake).
    pub sessions: u64,
    /// Sessions holding an identity: WSChat names, webtalk browsers logged in
    /// as a user, AppWebsocket sessions logged in to an app.
    pub names: u64,
    /// WebSocket messages received and sent since start.
    pub messages_in: u64,
    pub messages_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Sessions opened since start.
    pub sessions_total: u64,
}

impl ListenerStats {
    fn from_engine(s: &Stats, names: u64) -> ListenerStats {
        ListenerStats {
            sessions: s.connections_open,
            names,
            messages_in: s.messages_in,
            messages_out: s.messages_out,
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            sessions_total: s.connections_total,
        }
    }
}

/// Carries out `actions` in order. A payload shared by several recipients
/// (the same `Arc`) is framed once and the frame's bytes are shared by every
/// connection. Sends to sessions that have gone meanwhile are dropped (the
/// dialect hears about the close from the engine).
pub fn apply_actions(server: &ServerHandle, actions: Vec<Action>) {
    let mut last: Option<(*const u8, bool, SharedFrame)> = None;
    for a in actions {
        match a {
            Action::Send { to, data, text } => {
                let key = Arc::as_ptr(&data) as *const u8;
                let frame = match &last {
                    Some((k, t, f)) if *k == key && *t == text => f.clone(),
                    _ => match SharedFrame::new(&data, text) {
                        Ok(f) => {
                            last = Some((key, text, f.clone()));
                            f
                        }
                        // Not UTF-8 although marked text: a dialect bug; send it as binary.
                        Err(_) => match SharedFrame::new(&data, false) {
                            Ok(f) => f,
                            Err(_) => continue,
                        },
                    },
                };
                let _ = server.send_shared(to, &frame);
            }
            Action::Ping { to, payload } => {
                let _ = server.ping(to, &payload);
            }
            Action::Close { to, code, reason } => {
                let _ = server.close(to, code as i32, &reason);
            }
        }
    }
}
