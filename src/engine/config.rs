//! Server configuration with documented defaults.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// What a write does when it would take a connection's outbound buffer over
/// the hard limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverflowPolicy {
    /// Close the connection with 1008 "slow consumer" (the default).
    Close,
    /// Refuse the write (`WouldOverflow`) and keep the connection.
    Refuse,
}

/// Server settings. Every field has a default, listed on the field.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:0` (port 0 = ephemeral; ask the
    /// server for the real port).
    pub bind: SocketAddr,
    /// Number of I/O threads. Default 1. Callbacks of one server never run two
    /// at once, whatever this number.
    pub threads: usize,
    /// Largest message accepted, after reassembly of fragments. Default 16 MiB;
    /// larger gets close 1009.
    pub max_message_size: usize,
    /// Largest single frame accepted. Default 16 MiB; larger gets close 1009.
    pub max_frame_size: usize,
    /// Time allowed from TCP accept to a complete upgrade request. Default 10 s.
    pub handshake_timeout: Duration,
    /// Largest upgrade request accepted. Default 16 KiB (larger gets 431).
    pub max_handshake_size: usize,
    /// A ping is sent after this long without traffic from the peer. Default
    /// 30 s; zero disables.
    pub ping_interval: Duration,
    /// A connection that has received nothing (not even a pong) for this long
    /// is dropped. Default 60 s; zero disables.
    pub idle_timeout: Duration,
    /// After a close frame is sent, how long to wait for the peer's before the
    /// TCP connection is closed anyway. Default 5 s.
    pub close_timeout: Duration,
    /// Connections beyond this number are refused with HTTP 503. Default 100,000.
    pub max_connections: usize,
    /// Outbound buffer size above which writes report backpressure and a drain
    /// event follows. Default 1 MiB.
    pub outbound_soft_limit: usize,
    /// Outbound buffer size that is never exceeded (see `overflow`). Default 64 MiB.
    pub outbound_hard_limit: usize,
    /// What happens at the hard limit. Default [`OverflowPolicy::Close`].
    pub overflow: OverflowPolicy,
    /// If not empty, only upgrade requests whose `Origin` is one of these are
    /// accepted (others get 403). Default empty: any origin.
    pub allowed_origins: Vec<String>,
    /// Subprotocols the server speaks, in order of preference. The first one the
    /// client also offers is selected. Default empty: none is ever selected.
    pub subprotocols: Vec<String>,
    /// If set, only this request path (query string ignored) is accepted;
    /// others get 404. Default `None`: any path.
    pub path: Option<String>,
    /// Queue mode only: reading from sockets pauses while this many events wait
    /// to be polled, and resumes below half. Default 16,384.
    pub event_queue_capacity: usize,
    /// Serve `wss://` with this TLS configuration (see [`crate::tls`]).
    /// Default `None`: plain `ws://`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Manual flow control for accepted connections: after each message the
    /// connection delivers nothing more (and is not read) until
    /// [`ServerHandle::message_complete`](crate::ServerHandle::message_complete).
    /// Default false.
    pub manual_complete: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            threads: 1,
            max_message_size: 16 << 20,
            max_frame_size: 16 << 20,
            handshake_timeout: Duration::from_secs(10),
            max_handshake_size: 16 << 10,
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            close_timeout: Duration::from_secs(5),
            max_connections: 100_000,
            outbound_soft_limit: 1 << 20,
            outbound_hard_limit: 64 << 20,
            overflow: OverflowPolicy::Close,
            allowed_origins: Vec::new(),
            subprotocols: Vec::new(),
            path: None,
            event_queue_capacity: 16_384,
            tls: None,
            manual_complete: false,
        }
    }
}

impl Config {
    /// Checks the settings for contradictions.
    pub fn validate(&self) -> Result<(), String> {
        if self.threads == 0 || self.threads > 64 {
            return Err(format!("threads must be between 1 and 64, not {}", self.threads));
        }
        if self.max_message_size == 0 || self.max_frame_size == 0 {
            return Err("max message and frame sizes must be positive".into());
        }
        if self.outbound_soft_limit > self.outbound_hard_limit {
            return Err(format!(
                "outbound soft limit ({}) is above the hard limit ({})",
                self.outbound_soft_limit, self.outbound_hard_limit
            ));
        }
        if self.max_connections == 0 {
            return Err("max connections must be positive".into());
        }
        if self.event_queue_capacity < 2 {
            return Err("event queue capacity must be at least 2".into());
        }
        Ok(())
    }
}
