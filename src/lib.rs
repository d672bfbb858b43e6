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

/// Locks `m`; a lock poisoned by a panic elsewhere is taken over as it is.
/// The library reports a panic (at the C boundary, as a result) and goes on;
/// what it keeps behind its mutexes is never left half-updated in a way that
/// breaks later calls.
pub(crate) fn lock<T: ?Sized>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
