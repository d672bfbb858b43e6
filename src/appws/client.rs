//! The client side of the AppWebsocket login (PROTOCOLS.md §5.4, §6.5) as a
//! state machine: the engine feeds it the connection's text frames and sends
//! what it returns.

use super::json::{js_stringify, Envelope};
use super::{crypto, Error};
use serde_json::{Map, Value};
use std::fmt;

/// The text of a keep-alive message, for hosts that send one after an idle
/// time (the JS library uses 60 s; wsbroker sends none unless asked).
pub const KEEP_ALIVE: &str = r#"{"mt":"KeepAlive"}"#;

const APP_CHALLENGE: &str = r#"{"mt":"AppChallenge"}"#;

/// How the client proves who it is. `Debug` leaves the password out.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// The client computes the digest and session key itself.
    Password {
        password: String,
        domain: String,
        sip: String,
        guid: String,
        dn: String,
        /// The `info` object as JSON text, or `None` to send no `info`.
        info: Option<String>,
    },
    /// The host (for example a PBX login) supplies the identity, digest and
    /// session key once the challenge is known, through
    /// [`Client::authenticate`].
    Authenticator,
}

impl Credentials {
    /// The JS library's password login: `sip` = `app`, `domain` empty,
    /// `guid` all zeros, `dn` `Admin`, no `info` (PROTOCOLS.md §5.1).
    pub fn password_login(app: &str, password: &str) -> Credentials {
        Credentials::Password {
            password: password.to_owned(),
            domain: String::new(),
            sip: app.to_owned(),
            guid: "00000000000000000000000000000000".to_owned(),
            dn: "Admin".to_owned(),
            info: None,
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Password {
                domain,
                sip,
                guid,
                dn,
                info,
                ..
            } => f
                .debug_struct("Password")
                .field("domain", domain)
                .field("sip", sip)
                .field("guid", guid)
                .field("dn", dn)
                .field("info", info)
                .finish_non_exhaustive(),
            Credentials::Authenticator => f.write_str("Authenticator"),
        }
    }
}

/// What an authenticator hands back for one challenge. `Debug` leaves the
/// session key out.
#[derive(Clone, PartialEq, Eq)]
pub struct Authentication {
    pub domain: String,
    pub sip: String,
    pub guid: String,
    pub dn: String,
    /// JSON text, sent as given (surrounding whitespace trimmed) so the server
    /// sees the exact text the digest may have been computed over.
    pub info: Option<String>,
    pub digest: String,
    pub session_key: String,
}

impl fmt::Debug for Authentication {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authentication")
            .field("domain", &self.domain)
            .field("sip", &self.sip)
            .field("guid", &self.guid)
            .field("dn", &self.dn)
            .field("info", &self.info)
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

/// What a received text frame means to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// Send this text frame (the `AppLogin`).
    Send(String),
    /// Authenticator mode: the challenge arrived; answer with
    /// [`Client::authenticate`].
    Challenge(String),
    /// `AppLoginResult` with `ok:true`: ConnectComplete.
    Connected,
    /// The login failed with this reason; the engine closes with 1000 and
    /// reports Closed.
    LoginFailed(String),
    /// A message for the host after login: its JSON text as received, with
    /// `mt` and `src` when they are strings.
    Message {
        json: String,
        mt: Option<String>,
        src: Option<String>,
    },
    /// Nothing to do: a `KeepAlive`, a message before login, or a frame that is
    /// not JSON.
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not opened yet, or `AppChallenge` sent and no result yet.
    AwaitChallenge,
    /// Authenticator mode, waiting for the host.
    AwaitAuthenticator,
    AwaitLoginResult,
    Connected,
    Failed,
}

/// One client connection's login and message state. `Debug` shows neither
/// the password nor the session key.
#[derive(Clone)]
pub struct Client {
    app: String,
    credentials: Credentials,
    /// `info` from password credentials in `JSON.stringify` form.
    info_js: Option<String>,
    state: State,
    challenge: String,
    /// Derived (or supplied) when `AppLogin` is sent, exposed once connected.
    session_key: Option<String>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("app", &self.app)
            .field("credentials", &self.credentials)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `app`. Fails with [`Error::InvalidJson`] when the
    /// password credentials' `info` is not JSON.
    pub fn new(app: &str, credentials: Credentials) -> Result<Client, Error> {
        let info_js = match &credentials {
            Credentials::Password { info: Some(t), .. } => Some(js_stringify(
                &serde_json::from_str::<Value>(t).map_err(|_| Error::InvalidJson)?,
            )),
            _ => None,
        };
        Ok(Client {
            app: app.to_owned(),
            credentials,
            info_js,
            state: State::AwaitChallenge,
            challenge: String::new(),
            session_key: None,
        })
    }

    /// The frame to send once the WebSocket is open. Calling it again (a new
    /// connection) starts the login over.
    pub fn on_open(&mut self) -> &'static str {
        self.state = State::AwaitChallenge;
        self.challenge.clear();
        self.session_key = None;
        APP_CHALLENGE
    }

    /// True after `AppLoginResult` `ok:true`. Binary frames are for the host
    /// only then; before, they are dropped like every other message.
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// The session key, once connected.
    pub fn session_key(&self) -> Option<&str> {
        match self.state {
            State::Connected => self.session_key.as_deref(),
            _ => None,
        }
    }

    /// Handles one received text frame.
    pub fn on_text(&mut self, text: &str) -> ClientEvent {
        if self.state == State::Connected {
            return self.message(text);
        }
        let Some(env) = Envelope::parse(text) else {
            return ClientEvent::Drop;
        };
        match (self.state, env.mt.as_deref()) {
            (State::AwaitChallenge, Some("AppChallengeResult")) => {
                let Some(ch) = env.body.get("challenge").and_then(Value::as_str) else {
                    self.state = State::Failed;
                    return ClientEvent::LoginFailed("no challenge".to_owned());
                };
                self.challenge = ch.to_owned();
                self.login()
            }
            (State::AwaitLoginResult, Some("AppLoginResult")) => {
                if env.body.get("ok") == Some(&Value::Bool(true)) {
                    self.state = State::Connected;
                    ClientEvent::Connected
                } else {
                    self.state = State::Failed;
                    self.session_key = None;
                    let reason = env.body.get("error").and_then(Value::as_str);
                    ClientEvent::LoginFailed(reason.unwrap_or("login failed").to_owned())
                }
            }
            _ => ClientEvent::Drop,
        }
    }

    fn login(&mut self) -> ClientEvent {
        let Credentials::Password {
            password,
            domain,
            sip,
            guid,
            dn,
            ..
        } = &self.credentials
        else {
            self.state = State::AwaitAuthenticator;
            return ClientEvent::Challenge(self.challenge.clone());
        };
        let digest = crypto::digest(
            &self.app,
            domain,
            sip,
            guid,
            dn,
            self.info_js.as_deref(),
            &self.challenge,
            password,
        );
        let frame = app_login(&self.app, [domain, sip, guid, dn], self.info_js.as_deref(), &digest);
        self.session_key = Some(crypto::session_key(&self.challenge, password));
        self.state = State::AwaitLoginResult;
        ClientEvent::Send(frame)
    }

    /// Gives the login up (the host's login timeout): later frames are
    /// dropped. Returns what was still awaited, or `None` when the login had
    /// already succeeded or failed.
    pub fn abandon(&mut self) -> Option<&'static str> {
        let waiting = match self.state {
            State::AwaitChallenge => "AppChallengeResult",
            State::AwaitAuthenticator => "the authenticator's answer to the challenge",
            State::AwaitLoginResult => "AppLoginResult",
            State::Connected | State::Failed => return None,
        };
        self.state = State::Failed;
        self.session_key = None;
        Some(waiting)
    }

    /// Authenticator mode: the host's answer to [`ClientEvent::Challenge`].
    /// Returns the `AppLogin` frame to send. Fails with
    /// [`Error::WrongState`] when no challenge is waiting, and with
    /// [`Error::InvalidJson`] when `info` is not JSON.
    pub fn authenticate(&mut self, auth: Authentication) -> Result<String, Error> {
        if self.state != State::AwaitAuthenticator {
            return Err(Error::WrongState);
        }
        let info = auth.info.as_deref().map(str::trim);
        if let Some(t) = info {
            serde_json::from_str::<Value>(t).map_err(|_| Error::InvalidJson)?;
        }
        let frame = app_login(
            &self.app,
            [&auth.domain, &auth.sip, &auth.guid, &auth.dn],
            info,
            &auth.digest,
        );
        self.session_key = Some(auth.session_key);
        self.state = State::AwaitLoginResult;
        Ok(frame)
    }

    fn message(&self, text: &str) -> ClientEvent {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            return ClientEvent::Drop;
        };
        let field = |name: &str| v.get(name).and_then(Value::as_str).map(str::to_owned);
        let mt = field("mt");
        if mt.as_deref() == Some("KeepAlive") {
            return ClientEvent::Drop;
        }
        ClientEvent::Message {
            json: text.to_owned(),
            mt,
            src: field("src"),
        }
    }

    /// §5.2 Encrypt with this connection's session key.
    pub fn encrypt(&self, seed: &[u8], data: &[u8]) -> Result<String, Error> {
        Ok(crypto::encrypt(seed, data, self.key()?))
    }

    /// §5.2 Decrypt with this connection's session key.
    pub fn decrypt(&self, seed: &[u8], hex: &[u8]) -> Result<Vec<u8>, Error> {
        crypto::decrypt(seed, hex, self.key()?)
    }

    /// §5.2 Hash with this connection's session key.
    pub fn hash(&self, seed: &[u8], data: &[u8]) -> Result<String, Error> {
        Ok(crypto::hash(seed, data, self.key()?))
    }

    /// The session key for the C-buffer functions
    /// ([`encrypt_into`](super::encrypt_into) and friends);
    /// [`Error::WrongState`] before login.
    pub fn key(&self) -> Result<&str, Error> {
        self.session_key().ok_or(Error::WrongState)
    }
}

/// `AppLogin` with its members in the order of PROTOCOLS.md §5.4. `info` is
/// JSON text and goes in verbatim.
fn app_login(app: &str, ids: [&str; 4], info: Option<&str>, digest: &str) -> String {
    let mut s = String::from(r#"{"mt":"AppLogin""#);
    for (name, value) in [
        ("app", app),
        ("domain", ids[0]),
        ("sip", ids[1]),
        ("guid", ids[2]),
        ("dn", ids[3]),
    ] {
        push_member(&mut s, name, &Value::from(value));
    }
    if let Some(info) = info {
        s.push_str(r#","info":"#);
        s.push_str(info);
    }
    push_member(&mut s, "digest", &Value::from(digest));
    s.push('}');
    s
}

fn push_member(s: &mut String, name: &str, value: &Value) {
    s.push(',');
    s.push_str(&js_stringify(&Value::from(name)));
    s.push(':');
    s.push_str(&js_stringify(value));
}

/// An outgoing message: `mt`, then `api` and `src` when given, then `members`
/// in their order. A member named `mt`, `api` or `src` replaces that value in
/// place. Numbers keep their text.
pub fn message(mt: &str, api: Option<&str>, src: Option<&str>, members: Map<String, Value>) -> String {
    let mut m = Map::new();
    m.insert("mt".to_owned(), Value::from(mt));
    if let Some(api) = api {
        m.insert("api".to_owned(), Value::from(api));
    }
    if let Some(src) = src {
        m.insert("src".to_owned(), Value::from(src));
    }
    m.extend(members);
    Value::Object(m).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CH: &str = "5802914736501248";
    const GUID: &str = "00000000000000000000000000000000";

    fn demo() -> Client {
        Client::new("demo", Credentials::password_login("demo", "demo")).unwrap()
    }

    #[test]
    fn password_login_matches_transcript() {
        let mut c = demo();
        assert_eq!(c.on_open(), r#"{"mt":"AppChallenge"}"#);
        let ev = c.on_text(&format!(r#"{{"mt":"AppChallengeResult","challenge":"{CH}"}}"#));
        assert_eq!(
            ev,
            ClientEvent::Send(format!(
                r#"{{"mt":"AppLogin","app":"demo","domain":"","sip":"demo","guid":"{GUID}","dn":"Admin","digest":"61e967938b756f7d5362a8ba449ff17d30b404e5ad57c53add7fb0d97c065ef0"}}"#
            ))
        );
        assert_eq!(c.session_key(), None);
        assert!(!c.is_connected());
        assert_eq!(
            c.on_text(r#"{"mt":"AppLoginResult","ok":true}"#),
            ClientEvent::Connected
        );
        assert!(c.is_connected());
        assert_eq!(
            c.session_key(),
            Some("5e3c32a16b37ea7f7a843bff5bb924fb64d4924d9ff0e889b63d9122d926c6cf")
        );
    }

    #[test]
    fn info_is_signed_and_sent_in_javascript_form() {
        let creds = Credentials::Password {
            password: "pwd".into(),
            domain: "example.com".into(),
            sip: "administrator".into(),
            guid: "0123456789abcdef0123456789abcdef".into(),
            dn: "Administrator User".into(),
            info: Some(
                r#" { "appobj" : "users", "apps":[{"name":"users"},{"name":"profile"}],"appurl":"https:\/\/1.2.3.4/example.com/usersapp/innovaphone-users","unlicensed":true } "#
                    .into(),
            ),
        };
        let mut c = Client::new("innovaphone-users", creds).unwrap();
        c.on_open();
        let ClientEvent::Send(login) = c.on_text(r#"{"mt":"AppChallengeResult","challenge":"0123456789abcdef"}"#)
        else {
            panic!("no login")
        };
        assert_eq!(
            login,
            r#"{"mt":"AppLogin","app":"innovaphone-users","domain":"example.com","sip":"administrator","guid":"0123456789abcdef0123456789abcdef","dn":"Administrator User","info":{"appobj":"users","apps":[{"name":"users"},{"name":"profile"}],"appurl":"https://1.2.3.4/example.com/usersapp/innovaphone-users","unlicensed":true},"digest":"ef1b811ffaa8f9255c39c653d8fb26b4687b2d8c4d9ac91b4821bff6bae3ff44"}"#
        );
    }

    #[test]
    fn bad_info_is_refused_up_front() {
        let creds = Credentials::Password {
            password: "p".into(),
            domain: String::new(),
            sip: String::new(),
            guid: String::new(),
            dn: String::new(),
            info: Some("{nope".into()),
        };
        assert_eq!(Client::new("a", creds).unwrap_err(), Error::InvalidJson);
    }

    #[test]
    fn failures() {
        let mut c = demo();
        c.on_open();
        assert_eq!(
            c.on_text(r#"{"mt":"AppChallengeResult","challenge":5}"#),
            ClientEvent::LoginFailed("no challenge".into())
        );
        // Nothing more happens on a failed connection.
        assert_eq!(c.on_text(r#"{"mt":"AppLoginResult","ok":true}"#), ClientEvent::Drop);

        for (result, reason) in [
            (
                r#"{"mt":"AppLoginResult","ok":false,"error":"login failed"}"#,
                "login failed",
            ),
            (r#"{"mt":"AppLoginResult","error":"bad"}"#, "bad"),
            (r#"{"mt":"AppLoginResult","ok":"true"}"#, "login failed"),
        ] {
            let mut c = demo();
            c.on_open();
            c.on_text(r#"{"mt":"AppChallengeResult","challenge":"1"}"#);
            assert_eq!(c.on_text(result), ClientEvent::LoginFailed(reason.into()));
            assert_eq!(c.session_key(), None);
            assert_eq!(c.key(), Err(Error::WrongState));
        }
    }

    #[test]
    fn abandoned_login_ignores_late_results() {
        let mut c = demo();
        c.on_open();
        assert_eq!(c.abandon(), Some("AppChallengeResult"));
        assert_eq!(
            c.on_text(r#"{"mt":"AppChallengeResult","challenge":"1"}"#),
            ClientEvent::Drop
        );
        assert_eq!(c.abandon(), None);

        let mut c = demo();
        c.on_open();
        c.on_text(r#"{"mt":"AppChallengeResult","challenge":"1"}"#);
        assert_eq!(c.abandon(), Some("AppLoginResult"));
        assert_eq!(c.on_text(r#"{"mt":"AppLoginResult","ok":true}"#), ClientEvent::Drop);
        assert!(!c.is_connected() && c.key().is_err());

        let mut c = Client::new("a", Credentials::Authenticator).unwrap();
        c.on_open();
        c.on_text(r#"{"mt":"AppChallengeResult","challenge":"1"}"#);
        assert!(c.abandon().unwrap().contains("authenticator"));

        let mut c = demo();
        c.on_open();
        c.on_text(r#"{"mt":"AppChallengeResult","challenge":"1"}"#);
        c.on_text(r#"{"mt":"AppLoginResult","ok":true}"#);
        assert_eq!(c.abandon(), None, "a finished login is not abandoned");
        assert!(c.is_connected());
    }

    #[test]
    fn messages_before_and_after_login() {
        let mut c = demo();
        c.on_open();
        let early = r#"{"mt":"PbxInfo","src":"1"}"#;
        assert_eq!(c.on_text(early), ClientEvent::Drop);
        assert_eq!(
            c.on_text(r#"{"mt":"AppLoginResult","ok":true}"#),
            ClientEvent::Drop,
            "a result before the login was sent is not a login"
        );
        c.on_text(r#"{"mt":"AppChallengeResult","challenge":"1"}"#);
        assert_eq!(c.on_text("not json"), ClientEvent::Drop);
        c.on_text(r#"{"mt":"AppLoginResult","ok":true}"#);
        assert_eq!(c.on_text(KEEP_ALIVE), ClientEvent::Drop);
        assert_eq!(
            c.on_text(early),
            ClientEvent::Message {
                json: early.into(),
                mt: Some("PbxInfo".into()),
                src: Some("1".into())
            }
        );
        assert_eq!(
            c.on_text("[1]"),
            ClientEvent::Message {
                json: "[1]".into(),
                mt: None,
                src: None
            }
        );
        assert_eq!(c.on_text("{\"mt\""), ClientEvent::Drop);
    }

    #[test]
    fn authenticator_mode() {
        let mut c = Client::new("pbxadminapi", Credentials::Authenticator).unwrap();
        let auth = Authentication {
            domain: "d".into(),
            sip: "s".into(),
            guid: "g".into(),
            dn: "n".into(),
            info: Some(" {\"cn\": \"Test User\"} ".into()),
            digest: "abc".into(),
            session_key: "KEY".into(),
        };
        assert_eq!(c.authenticate(auth.clone()), Err(Error::WrongState));
        c.on_open();
        assert_eq!(
            c.on_text(r#"{"mt":"AppChallengeResult","challenge":"77"}"#),
            ClientEvent::Challenge("77".into())
        );
        let bad = Authentication {
            info: Some("{".into()),
            ..auth.clone()
        };
        assert_eq!(c.authenticate(bad), Err(Error::InvalidJson));
        assert_eq!(
            c.authenticate(auth.clone()).unwrap(),
            r#"{"mt":"AppLogin","app":"pbxadminapi","domain":"d","sip":"s","guid":"g","dn":"n","info":{"cn": "Test User"},"digest":"abc"}"#
        );
        assert_eq!(c.authenticate(auth), Err(Error::WrongState));
        c.on_text(r#"{"mt":"AppLoginResult","ok":true}"#);
        assert_eq!(c.session_key(), Some("KEY"));
        assert_eq!(c.hash(b"s", b"d").unwrap(), crypto::hash("s", "d", "KEY"));
    }

    #[test]
    fn crypto_uses_the_session_key() {
        let mut c = Client::new("a", Credentials::password_login("a", "pwd")).unwrap();
        assert_eq!(c.encrypt(b"seed1", b"hello"), Err(Error::WrongState));
        c.on_open();
        c.on_text(r#"{"mt":"AppChallengeResult","challenge":"0123456789abcdef"}"#);
        c.on_text(r#"{"mt":"AppLoginResult","ok":true}"#);
        assert_eq!(c.encrypt(b"seed1", b"hello").unwrap(), "970a852834");
        assert_eq!(c.decrypt(b"seed1", b"970a852834").unwrap(), b"hello");
        assert_eq!(
            c.hash(b"seed1", b"hello").unwrap(),
            "f677f09a186944407a62adc3b8b7dae0a421233bfc63b20a33b7cc9cde95d533"
        );
        // A new connection logs in afresh.
        c.on_open();
        assert_eq!(c.key(), Err(Error::WrongState));
    }

    #[test]
    fn debug_hides_secrets() {
        let mut c = Client::new("a", Credentials::password_login("a", "s3cret")).unwrap();
        c.on_open();
        c.on_text(r#"{"mt":"AppChallengeResult","challenge":"1"}"#);
        c.on_text(r#"{"mt":"AppLoginResult","ok":true}"#);
        let key = c.key().unwrap().to_owned();
        let shown = format!("{c:?}");
        assert!(shown.contains("Admin") && !shown.contains("s3cret") && !shown.contains(&key));
        let auth = Authentication {
            domain: String::new(),
            sip: String::new(),
            guid: String::new(),
            dn: String::new(),
            info: None,
            digest: "d".into(),
            session_key: "KEY".into(),
        };
        assert!(!format!("{auth:?}").contains("KEY"));
    }

    #[test]
    fn message_builder() {
        let mut members = Map::new();
        members.insert("n".into(), serde_json::from_str("1.50").unwrap());
        members.insert("src".into(), Value::from("override"));
        assert_eq!(
            message("GetObject", Some("PbxAdminApi"), Some("a1"), members),
            r#"{"mt":"GetObject","api":"PbxAdminApi","src":"override","n":1.50}"#
        );
        assert_eq!(message("X", None, None, Map::new()), r#"{"mt":"X"}"#);
    }
}
