//! wsbroker: a WebSocket engine and message broker with a C ABI.
//!
//! The Rust API is usable on its own (the daemon uses it that way): start a
//! [`Server`] with a [`Handler`] (callback mode) or poll its [`EventQueue`]
//! (queue mode), and send through its [`ServerHandle`] from any thread.

pub mod appws;
pub mod broker;
pub mod client;
pub mod dialect;
pub mod engine;
pub mod ffi;
pub mod listeners;
pub mod tls;

pub use engine::{
    Config, ConnId, Event, EventQueue, Handler, OverflowPolicy, OwnedEvent, SendError, Sent, Server, ServerHandle,
    SharedFrame, Stats,
};

/// The library version, `MAJOR.MINOR.PATCH`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
