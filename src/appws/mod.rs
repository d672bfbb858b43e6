//! innovaphone AppWebsocket core (PROTOCOLS.md §5, §6.5): the login digest, the
//! session key, Encrypt/Decrypt/Hash, a `JSON.stringify`-compatible serializer
//! and the client login state machine. No sockets: the engine carries the
//! frames, and the app-service state machine lives in [`crate::dialect::appws`].
//! [`AppClient`] and [`AppService`] run them on the engine.

mod client;
mod crypto;
mod json;
mod queue;
mod service;
mod session;

pub use client::{message, Authentication, Client, ClientEvent, Credentials, KEEP_ALIVE};
pub use crypto::{
    challenge, decrypt, decrypt_into, digest, digest_eq, encrypt, encrypt_into, hash, hash_into, session_key,
    CHALLENGE_DIGITS,
};
pub use json::{js_stringify, member_span, Envelope};
pub use service::{
    AppService, AppServiceConfig, AppServiceEvent, AppServiceHandle, AppServiceHandler, OwnedAppServiceEvent,
};
pub use session::{
    AppClient, AppClientConfig, AppClientEvent, AppClientHandle, AppClientHandler, AppSendError, OwnedAppClientEvent,
};

use std::fmt;

/// Every way an AppWebsocket call can fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A C output buffer cannot hold the result and its NUL; `needed` includes
    /// the NUL.
    BufferTooSmall { needed: usize },
    /// Decrypt input of odd length or with a non-hex character.
    InvalidHex,
    /// A text that should hold one JSON value does not.
    InvalidJson,
    /// The operating system's CSPRNG failed.
    Random,
    /// The call does not fit the client's state (for example `authenticate`
    /// before a challenge arrived, or Encrypt before login).
    WrongState,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BufferTooSmall { needed } => {
                write!(f, "output buffer too small ({needed} bytes needed)")
            }
            Error::InvalidHex => f.write_str("invalid hex"),
            Error::InvalidJson => f.write_str("invalid JSON"),
            Error::Random => f.write_str("random number generator failed"),
            Error::WrongState => f.write_str("not allowed in this state"),
        }
    }
}

impl std::error::Error for Error {}
