//! Who may take a name: the authentication modes and the login failure reasons.

use std::collections::HashMap;
use std::fmt;

/// A host function deciding a user login: `Ok(())` accepts; `Err(text)` refuses
/// with `text` as the reason (an empty text reads as `rejected`).
pub type AuthCallback = Box<dyn Fn(&str, &str) -> Result<(), String> + Send>;

/// How user logins are checked. Services always use the service credentials.
#[derive(Default)]
pub enum AuthMode {
    /// The first session to claim a name sets its password; later sessions must
    /// match it; the claim ends when no session holds the name.
    #[default]
    Open,
    /// Name → password, fixed by configuration.
    Table(HashMap<String, String>),
    /// The host decides.
    Callback(AuthCallback),
}

impl fmt::Debug for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthMode::Open => f.write_str("Open"),
            // Passwords stay out of logs.
            AuthMode::Table(t) => write!(f, "Table({} names)", t.len()),
            AuthMode::Callback(_) => f.write_str("Callback"),
        }
    }
}

/// Why a login was refused. [`LoginError::reason`] gives the wire text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// The name is missing, not a string, or empty.
    InvalidName,
    /// The password is not a string.
    InvalidPassword,
    /// Open mode with another password, or a wrong service password.
    WrongPassword,
    /// Table mode refused the name and password.
    InvalidCredentials,
    /// A service holds the name (user login), or anyone holds it (service login).
    NameInUse,
    /// The service has no configured credentials.
    UnknownService,
    /// The host callback refused, with its text.
    Rejected(String),
    /// The session is not open in the broker.
    NoSuchSession,
}

impl LoginError {
    pub fn reason(&self) -> &str {
        match self {
            LoginError::InvalidName => "invalid name",
            LoginError::InvalidPassword => "invalid password",
            LoginError::WrongPassword => "wrong password",
            LoginError::InvalidCredentials => "invalid credentials",
            LoginError::NameInUse => "name in use",
            LoginError::UnknownService => "unknown service",
            LoginError::Rejected(text) => text,
            LoginError::NoSuchSession => "no such session",
        }
    }
}

impl fmt::Display for LoginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for LoginError {}

/// Compares secrets in time that depends only on their lengths, so a client
/// cannot find a password byte by byte from reply timing.
pub(crate) fn secret_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_eq_compares_whole_strings() {
        assert!(secret_eq("", ""));
        assert!(secret_eq("free", "free"));
        assert!(!secret_eq("free", "fre"));
        assert!(!secret_eq("free", "freE"));
        assert!(!secret_eq("", "x"));
    }

    #[test]
    fn reasons_are_the_wire_texts() {
        assert_eq!(LoginError::InvalidName.reason(), "invalid name");
        assert_eq!(LoginError::InvalidPassword.reason(), "invalid password");
        assert_eq!(LoginError::WrongPassword.reason(), "wrong password");
        assert_eq!(LoginError::InvalidCredentials.reason(), "invalid credentials");
        assert_eq!(LoginError::NameInUse.reason(), "name in use");
        assert_eq!(LoginError::UnknownService.reason(), "unknown service");
        assert_eq!(LoginError::Rejected("nope".into()).reason(), "nope");
    }
}
