//! Dialects: pure translators between WebSocket frames and broker operations.
//!
//! A dialect holds no sockets and no threads. The engine feeds it events for a
//! listener (open, message, pong, close, timer tick) and carries out the
//! [`Action`]s it returns, in order. Everything here is unit-testable with byte
//! strings.

use std::sync::Arc;

/// A session is one WebSocket connection; its id is the engine's connection id
/// (never reused within a process).
pub type SessionId = u64;

/// Bytes shared by every recipient of one delivery: a message is formatted once
/// and the same allocation is handed to each connection.
pub type Shared = Arc<[u8]>;

/// What a dialect asks the engine to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send one message to a session (text when `text` is true, else binary).
    Send { to: SessionId, data: Shared, text: bool },
    /// Send a WebSocket ping with this payload (at most 125 bytes).
    Ping { to: SessionId, payload: Vec<u8> },
    /// Close a session with a code and a reason.
    Close { to: SessionId, code: u16, reason: String },
}

impl Action {
    /// A text message to one session.
    pub fn text(to: SessionId, s: impl Into<String>) -> Action {
        let s: String = s.into();
        Action::Send {
            to,
            data: Arc::from(s.into_bytes().into_boxed_slice()),
            text: true,
        }
    }
}

pub mod achex;
pub mod appws;
pub mod webtalk;
pub mod wschat;
