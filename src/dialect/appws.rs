//! The innovaphone AppWebsocket app-service endpoint (PROTOCOLS.md §5.3): the
//! challenge/digest login, `KeepAlive`, `AppInfo`, and hand-over of every
//! other message to the host once a session is logged in.

use super::{Action, SessionId};
use crate::appws::{self, js_stringify, member_span, Envelope};
use crate::broker::json::{self, Json};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// The daemon's app and password when none is configured.
pub const DEFAULT_APP: (&str, &str) = ("demo", "demo");

/// Failed logins a session may make; the last one closes it.
pub const MAX_LOGIN_FAILURES: u32 = 3;

/// Close code and reason after [`MAX_LOGIN_FAILURES`].
pub const LOGIN_FAILED_CLOSE: (u16, &str) = (4001, "login failed");

/// Who a session logged in as. `Debug` leaves the session key out.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub app: String,
    pub domain: String,
    pub sip: String,
    pub guid: String,
    pub dn: String,
    /// The `info` member in `JSON.stringify` form, when the login had one.
    pub info: Option<String>,
    /// Derived from the challenge and the password that matched.
    pub session_key: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("app", &self.app)
            .field("domain", &self.domain)
            .field("sip", &self.sip)
            .field("guid", &self.guid)
            .field("dn", &self.dn)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// A message for the host from a logged-in session.
#[derive(Debug, Clone, PartialEq)]
pub struct AppMessage {
    pub sid: SessionId,
    pub mt: String,
    pub src: Option<String>,
    /// The frame's text as received.
    pub json: String,
    /// The same message parsed, members in received order.
    pub body: Map<String, Value>,
}

/// What the host learns from one event, besides the actions.
#[derive(Debug, Clone, PartialEq)]
pub enum HostEvent {
    /// The session logged in; its identity stays available through
    /// [`Service::login`] until it closes.
    LoggedIn { sid: SessionId, login: Login },
    /// A text message after login (any `mt` not handled here).
    Message(AppMessage),
    /// A binary frame after login.
    Binary { sid: SessionId, data: Vec<u8> },
}

/// The result of one event: actions for the engine to carry out in order,
/// then at most one event for the host.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Output {
    pub actions: Vec<Action>,
    pub host: Option<HostEvent>,
}

impl Output {
    fn send(to: SessionId, reply: Map<String, Value>) -> Output {
        Output {
            actions: vec![send_object(to, reply)],
            host: None,
        }
    }
}

#[derive(Debug, Default)]
struct Session {
    challenge: Option<String>,
    failures: u32,
    login: Option<Login>,
}

/// Where challenges come from: the CSPRNG, or a fixed sequence in tests.
type ChallengeSource = Box<dyn FnMut() -> Result<String, appws::Error> + Send>;

/// The endpoint's state: configured passwords and one entry per open session.
pub struct Service {
    apps: HashMap<String, String>,
    domains: HashMap<String, String>,
    sessions: HashMap<SessionId, Session>,
    challenges: ChallengeSource,
}

impl std::fmt::Debug for Service {
    // Passwords stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("apps", &self.apps.keys().collect::<Vec<_>>())
            .field("domains", &self.domains.keys().collect::<Vec<_>>())
            .field("sessions", &self.sessions.len())
            .finish()
    }
}

impl Default for Service {
    fn default() -> Service {
        Service::new()
    }
}

impl Service {
    /// An endpoint with no apps: every login fails until [`Service::add_app`].
    pub fn new() -> Service {
        Service {
            apps: HashMap::new(),
            domains: HashMap::new(),
            sessions: HashMap::new(),
            challenges: Box::new(appws::challenge),
        }
    }

    /// Accepts logins to `app` with `password` (replacing an earlier one).
    pub fn add_app(&mut self, app: &str, password: &str) {
        self.apps.insert(app.to_owned(), password.to_owned());
    }

    /// Also accepts, for any configured app, logins whose `domain` is `domain`
    /// with this password; tried after the app's own password.
    pub fn add_domain_password(&mut self, domain: &str, password: &str) {
        self.domains.insert(domain.to_owned(), password.to_owned());
    }

    /// Replaces the CSPRNG as the source of challenges, so tests can replay a
    /// transcript. Production code has no reason to call this.
    pub fn set_challenge_source(&mut self, source: impl FnMut() -> Result<String, appws::Error> + Send + 'static) {
        self.challenges = Box::new(source);
    }

    /// Who `sid` logged in as, if it did.
    pub fn login(&self, sid: SessionId) -> Option<&Login> {
        self.sessions.get(&sid)?.login.as_ref()
    }

    pub fn on_open(&mut self, sid: SessionId) -> Output {
        self.sessions.insert(sid, Session::default());
        Output::default()
    }

    pub fn on_close(&mut self, sid: SessionId) -> Output {
        self.sessions.remove(&sid);
        Output::default()
    }

    /// One complete message from `sid`; `text` tells text from binary.
    pub fn on_message(&mut self, sid: SessionId, data: &[u8], text: bool) -> Output {
        // A session the engine did not announce is treated as just opened.
        let logged_in = self.sessions.entry(sid).or_default().login.is_some();
        if !text {
            if !logged_in {
                return Output::default();
            }
            return Output {
                actions: Vec::new(),
                host: Some(HostEvent::Binary {
                    sid,
                    data: data.to_vec(),
                }),
            };
        }
        // The engine only delivers valid UTF-8 text; anything else is ignored
        // like any frame that is not a JSON object with an `mt`.
        let Ok(raw) = std::str::from_utf8(data) else {
            return Output::default();
        };
        let Some(env) = Envelope::parse(raw) else {
            return Output::default();
        };
        let Some(mt) = env.mt.as_deref() else {
            return Output::default();
        };
        match (mt, logged_in) {
            ("KeepAlive", _) => Output::default(),
            ("AppChallenge" | "AppLogin", true) => Output::default(),
            ("AppChallenge", false) => self.challenge(sid, &env),
            ("AppLogin", false) => self.app_login(sid, raw, &env),
            ("AppInfo", true) => {
                let app = match env.body.get("app") {
                    Some(Value::String(a)) => a.clone(),
                    _ => self.login(sid).map(|l| l.app.clone()).unwrap_or_default(),
                };
                let mut info = Map::new();
                info.insert("hidden".into(), Value::Bool(false));
                info.insert("apis".into(), Value::Object(Map::new()));
                let mut r = result("AppInfo");
                r.insert("app".into(), Value::String(app));
                r.insert("info".into(), Value::Object(info));
                Output::send(sid, with_src(r, &env.src))
            }
            (_, true) => Output {
                actions: Vec::new(),
                host: Some(HostEvent::Message(AppMessage {
                    sid,
                    mt: mt.to_owned(),
                    src: env.src,
                    json: raw.to_owned(),
                    body: env.body,
                })),
            },
            (_, false) => {
                let mut r = result(mt);
                r.insert("error".into(), Value::from("not logged in"));
                Output::send(sid, with_src(r, &env.src))
            }
        }
    }

    fn challenge(&mut self, sid: SessionId, env: &Envelope) -> Output {
        let mut r = result("AppChallenge");
        match (self.challenges)() {
            Ok(ch) => {
                r.insert("challenge".into(), Value::from(ch.as_str()));
                if let Some(s) = self.sessions.get_mut(&sid) {
                    s.challenge = Some(ch);
                }
            }
            // Without a challenge the client cannot log in; it reports a
            // login failure when the result has no `challenge` (§5.4).
            Err(_) => {
                r.insert("error".into(), Value::from("internal error"));
            }
        }
        Output::send(sid, with_src(r, &env.src))
    }

    fn app_login(&mut self, sid: SessionId, raw: &str, env: &Envelope) -> Output {
        let Some(session) = self.sessions.get_mut(&sid) else {
            return Output::default();
        };
        let login = session
            .challenge
            .as_deref()
            .and_then(|ch| check_login(&self.apps, &self.domains, ch, raw, &env.body));
        let mut r = result("AppLogin");
        match login {
            Some(login) => {
                r.insert("ok".into(), Value::Bool(true));
                session.login = Some(login.clone());
                Output {
                    actions: vec![send_object(sid, with_src(r, &env.src))],
                    host: Some(HostEvent::LoggedIn { sid, login }),
                }
            }
            None => {
                session.failures = session.failures.saturating_add(1);
                r.insert("ok".into(), Value::Bool(false));
                r.insert("error".into(), Value::from("login failed"));
                let mut out = Output::send(sid, with_src(r, &env.src));
                if session.failures >= MAX_LOGIN_FAILURES {
                    out.actions.push(Action::Close {
                        to: sid,
                        code: LOGIN_FAILED_CLOSE.0,
                        reason: LOGIN_FAILED_CLOSE.1.to_owned(),
                    });
                }
                out
            }
        }
    }
}

/// Checks an `AppLogin` against `challenge`. The `info` pre-image is tried in
/// `JSON.stringify` form first, then as the raw received text; the app's
/// password first, then the login domain's. `domain`, `sip`, `guid` and `dn`
/// count as `""` when absent or null and fail the login when of another type;
/// `"info":null` is present (its pre-image is `null`). Every candidate is
/// computed and compared in constant time, so the time taken does not tell
/// which matched.
fn check_login(
    apps: &HashMap<String, String>,
    domains: &HashMap<String, String>,
    challenge: &str,
    raw: &str,
    body: &Map<String, Value>,
) -> Option<Login> {
    let text = |name: &str| match body.get(name) {
        None | Some(Value::Null) => Some(String::new()),
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => None,
    };
    let app = body.get("app")?.as_str()?;
    let digest = body.get("digest")?.as_str()?;
    let (domain, sip, guid, dn) = (text("domain")?, text("sip")?, text("guid")?, text("dn")?);
    let info = body.get("info").map(js_stringify);
    let mut infos = vec![info.clone()];
    if let Some(r) = member_span(raw, "info") {
        if info.as_deref() != Some(r) {
            infos.push(Some(r.to_owned()));
        }
    }
    let mut passwords = vec![apps.get(app)?];
    passwords.extend(domains.get(&domain));

    let mut matched = None;
    for password in &passwords {
        for info_json in &infos {
            let want = appws::digest(
                app,
                &domain,
                &sip,
                &guid,
                &dn,
                info_json.as_deref(),
                challenge,
                password,
            );
            if appws::digest_eq(&want, digest) && matched.is_none() {
                matched = Some(*password);
            }
        }
    }
    Some(Login {
        app: app.to_owned(),
        session_key: appws::session_key(challenge, matched?),
        domain,
        sip,
        guid,
        dn,
        info,
    })
}

fn result(mt: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("mt".into(), Value::String(format!("{mt}Result")));
    m
}

/// Every reply copies the request's `src` as its last member.
fn with_src(mut m: Map<String, Value>, src: &Option<String>) -> Map<String, Value> {
    if let Some(src) = src {
        m.insert("src".into(), Value::from(src.as_str()));
    }
    m
}

fn send_object(to: SessionId, m: Map<String, Value>) -> Action {
    Action::text(to, Value::Object(m).to_string())
}

/// The daemon's built-in responder (§5.3 "Built-in echo"): a text message comes
/// back with `mt` changed to `mt`+`Result`, all members in their order and
/// `src` unchanged; a binary frame comes back as it is.
pub fn echo(event: &HostEvent) -> Vec<Action> {
    match event {
        HostEvent::Message(m) => vec![echo_message(m)],
        HostEvent::Binary { sid, data } => vec![Action::Send {
            to: *sid,
            data: Arc::from(data.as_slice()),
            text: false,
        }],
        HostEvent::LoggedIn { .. } => Vec::new(),
    }
}

/// The echo of one text message. The received text is re-read with
/// `broker::json`, which keeps every number's text (serde_json would turn
/// `1E5` into `1e+5`).
pub fn echo_message(m: &AppMessage) -> Action {
    let result = format!("{}Result", m.mt);
    match json::parse(m.json.as_bytes()) {
        Ok(Json::Object(mut o)) => {
            o.insert("mt", Json::String(result));
            send_bytes(m.sid, o.to_bytes())
        }
        // Not reached for a message serde_json accepted, but the parsed body
        // is still a faithful echo apart from number spelling.
        _ => {
            let mut body = m.body.clone();
            body.insert("mt".into(), Value::String(result));
            send_object(m.sid, body)
        }
    }
}

/// The host's reply to a message: `json` (a JSON object) with the request's
/// `src` set, keeping its place if `json` already has one, else appended.
/// Numbers keep their text. Fails with [`appws::Error::InvalidJson`] when
/// `json` is not an object.
pub fn reply(to: SessionId, src: Option<&str>, json: &str) -> Result<Action, appws::Error> {
    let Ok(Json::Object(mut o)) = json::parse(json.as_bytes()) else {
        return Err(appws::Error::InvalidJson);
    };
    if let Some(src) = src {
        o.insert("src", Json::String(src.to_owned()));
    }
    Ok(send_bytes(to, o.to_bytes()))
}

/// `bytes` come from the JSON writer, so they are UTF-8 text.
fn send_bytes(to: SessionId, bytes: Vec<u8>) -> Action {
    Action::Send {
        to,
        data: Arc::from(bytes.into_boxed_slice()),
        text: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appws::{Client, ClientEvent, Credentials};
    use std::collections::VecDeque;

    const CH: &str = "5802914736501248";

    fn demo_service(challenges: &[&str]) -> Service {
        let mut s = Service::new();
        s.add_app(DEFAULT_APP.0, DEFAULT_APP.1);
        let mut queue: VecDeque<String> = challenges.iter().map(|c| c.to_string()).collect();
        s.set_challenge_source(move || queue.pop_front().ok_or(appws::Error::Random));
        s
    }

    fn texts(out: &Output) -> Vec<String> {
        out.actions
            .iter()
            .map(|a| match a {
                Action::Send { data, text, .. } => {
                    assert!(*text);
                    String::from_utf8(data.to_vec()).unwrap()
                }
                other => format!("{other:?}"),
            })
            .collect()
    }

    fn send(s: &mut Service, sid: SessionId, text: &str) -> Output {
        s.on_message(sid, text.as_bytes(), true)
    }

    fn login_frame(digest: &str) -> String {
        format!(
            r#"{{"mt":"AppLogin","app":"demo","domain":"","sip":"demo","guid":"00000000000000000000000000000000","dn":"Admin","digest":"{digest}","pbxObj":"demo"}}"#
        )
    }

    const GOOD: &str = "61e967938b756f7d5362a8ba449ff17d30b404e5ad57c53add7fb0d97c065ef0";
    const WRONG: &str = "42043ba6410ab17798e8f8336cea1068af466142c5b19d1fdbab74f6a0bbec6a";

    #[test]
    fn transcript() {
        let mut s = demo_service(&[CH]);
        assert_eq!(s.on_open(7), Output::default());
        let steps: [(&str, &[&str]); 5] = [
            (
                r#"{"mt":"GetObject","api":"PbxAdminApi","src":"a1"}"#,
                &[r#"{"mt":"GetObjectResult","error":"not logged in","src":"a1"}"#],
            ),
            (
                r#"{"mt":"AppChallenge"}"#,
                &[r#"{"mt":"AppChallengeResult","challenge":"5802914736501248"}"#],
            ),
            (&login_frame(GOOD), &[r#"{"mt":"AppLoginResult","ok":true}"#]),
            (
                r#"{"mt":"AppInfo","app":"demo","src":"s1"}"#,
                &[r#"{"mt":"AppInfoResult","app":"demo","info":{"hidden":false,"apis":{}},"src":"s1"}"#],
            ),
            (r#"{"mt":"KeepAlive"}"#, &[]),
        ];
        for (input, want) in steps {
            let out = send(&mut s, 7, input);
            assert_eq!(texts(&out), want, "after {input}");
            assert!(out.actions.iter().all(|a| matches!(a, Action::Send { to: 7, .. })));
        }
        let login = s.login(7).unwrap();
        assert_eq!(
            login.session_key,
            "5e3c32a16b37ea7f7a843bff5bb924fb64d4924d9ff0e889b63d9122d926c6cf"
        );
        assert_eq!((login.app.as_str(), login.dn.as_str()), ("demo", "Admin"));
        assert_eq!(login.info, None);

        let out = send(&mut s, 7, r#"{"mt":"Hello","src":"x7","text":"hi"}"#);
        assert!(out.actions.is_empty());
        let host = out.host.unwrap();
        let HostEvent::Message(m) = &host else {
            panic!("{host:?}")
        };
        assert_eq!((m.sid, m.mt.as_str(), m.src.as_deref()), (7, "Hello", Some("x7")));
        assert_eq!(m.json, r#"{"mt":"Hello","src":"x7","text":"hi"}"#);
        let echoed = Output {
            actions: echo(&host),
            host: None,
        };
        assert_eq!(texts(&echoed), [r#"{"mt":"HelloResult","src":"x7","text":"hi"}"#]);
        assert_eq!(send(&mut s, 7, r#"{"mt":"KeepAlive"}"#), Output::default());
    }

    #[test]
    fn login_event_reports_identity() {
        let mut s = demo_service(&[CH]);
        s.on_open(1);
        send(&mut s, 1, r#"{"mt":"AppChallenge","src":"c"}"#);
        let out = send(&mut s, 1, &login_frame(&GOOD.to_uppercase()));
        assert_eq!(texts(&out), [r#"{"mt":"AppLoginResult","ok":true}"#]);
        let Some(HostEvent::LoggedIn { sid: 1, login }) = out.host else {
            panic!("no login event")
        };
        assert_eq!(Some(&login), s.login(1));
        assert_eq!(login.sip, "demo");
        s.on_close(1);
        assert_eq!(s.login(1), None);
    }

    #[test]
    fn replies_copy_src() {
        let mut s = demo_service(&["1111222233334444"]);
        s.on_open(1);
        assert_eq!(
            texts(&send(&mut s, 1, r#"{"src":"q","mt":"AppChallenge"}"#)),
            [r#"{"mt":"AppChallengeResult","challenge":"1111222233334444","src":"q"}"#]
        );
        assert_eq!(
            texts(&send(
                &mut s,
                1,
                r#"{"mt":"AppLogin","app":"demo","digest":"00","src":"r"}"#
            )),
            [r#"{"mt":"AppLoginResult","ok":false,"error":"login failed","src":"r"}"#]
        );
        // A non-string src is not a correlation token and is not copied.
        assert_eq!(
            texts(&send(&mut s, 1, r#"{"mt":"AppInfo","src":5}"#)),
            [r#"{"mt":"AppInfoResult","error":"not logged in"}"#]
        );
    }

    #[test]
    fn three_failures_close() {
        let mut s = demo_service(&[CH]);
        s.on_open(3);
        let fail = r#"{"mt":"AppLoginResult","ok":false,"error":"login failed"}"#;
        // No challenge yet.
        assert_eq!(texts(&send(&mut s, 3, &login_frame(GOOD))), [fail]);
        send(&mut s, 3, r#"{"mt":"AppChallenge"}"#);
        // The digest made with the wrong password.
        assert_eq!(texts(&send(&mut s, 3, &login_frame(WRONG))), [fail]);
        assert!(s.login(3).is_none());
        let out = send(&mut s, 3, r#"{"mt":"AppLogin","app":"demo"}"#);
        assert_eq!(out.actions.len(), 2);
        assert_eq!(texts(&out)[0], fail);
        assert_eq!(
            out.actions[1],
            Action::Close {
                to: 3,
                code: 4001,
                reason: "login failed".into()
            }
        );
    }

    #[test]
    fn failures_do_not_spill_over_sessions() {
        let mut s = demo_service(&[CH, CH]);
        for sid in [1, 2] {
            s.on_open(sid);
            send(&mut s, sid, r#"{"mt":"AppChallenge"}"#);
        }
        for _ in 0..2 {
            assert_eq!(send(&mut s, 1, &login_frame(WRONG)).actions.len(), 1);
        }
        // Session 2 still has its three tries; session 1 logs in on its third.
        assert_eq!(send(&mut s, 2, &login_frame(WRONG)).actions.len(), 1);
        let out = send(&mut s, 1, &login_frame(GOOD));
        assert_eq!(texts(&out), [r#"{"mt":"AppLoginResult","ok":true}"#]);
    }

    #[test]
    fn bad_logins() {
        let mut s = demo_service(&[CH]);
        s.on_open(1);
        send(&mut s, 1, r#"{"mt":"AppChallenge"}"#);
        let cases = [
            // Unknown app, though the digest fits its password.
            login_frame(&appws::digest(
                "other",
                "",
                "demo",
                "00000000000000000000000000000000",
                "Admin",
                None,
                CH,
                "demo",
            ))
            .replace(r#""app":"demo""#, r#""app":"other""#),
            // No digest.
            r#"{"mt":"AppLogin","app":"demo","sip":"demo"}"#.to_owned(),
            // A non-string field.
            login_frame(GOOD).replace(r#""dn":"Admin""#, r#""dn":5"#),
        ];
        for frame in &cases[..2] {
            assert_eq!(
                texts(&send(&mut s, 1, frame)),
                [r#"{"mt":"AppLoginResult","ok":false,"error":"login failed"}"#],
                "{frame}"
            );
        }
        assert_eq!(send(&mut s, 1, &cases[2]).actions.len(), 2);
    }

    #[test]
    fn missing_fields_count_as_empty() {
        let mut s = demo_service(&[CH]);
        s.on_open(1);
        send(&mut s, 1, r#"{"mt":"AppChallenge"}"#);
        let d = appws::digest("demo", "", "", "", "", None, CH, "demo");
        let out = send(
            &mut s,
            1,
            &format!(r#"{{"mt":"AppLogin","app":"demo","domain":null,"digest":"{d}"}}"#),
        );
        assert_eq!(texts(&out), [r#"{"mt":"AppLoginResult","ok":true}"#]);
    }

    fn login_with_info(info_text: &str, digest_info: &str) -> Output {
        let mut s = demo_service(&[CH]);
        s.on_open(1);
        send(&mut s, 1, r#"{"mt":"AppChallenge"}"#);
        let d = appws::digest("demo", "", "", "", "", Some(digest_info), CH, "demo");
        send(
            &mut s,
            1,
            &format!(r#"{{"mt":"AppLogin","app":"demo","info":{info_text},"digest":"{d}"}}"#),
        )
    }

    #[test]
    fn info_in_javascript_form_or_raw() {
        let ok = [r#"{"mt":"AppLoginResult","ok":true}"#];
        // Signed over JSON.stringify of the value, sent with other spacing.
        let out = login_with_info(r#" { "a" : 1.0 , "u" : "x\/y" } "#, r#"{"a":1,"u":"x/y"}"#);
        assert_eq!(texts(&out), ok);
        let Some(HostEvent::LoggedIn { login, .. }) = out.host else {
            panic!()
        };
        assert_eq!(login.info.as_deref(), Some(r#"{"a":1,"u":"x/y"}"#));
        // Signed over the exact text sent.
        let raw = r#"{"a":1.0,"u":"x\/y"}"#;
        assert_eq!(texts(&login_with_info(raw, raw)), ok);
        // `{}` is present: signing without the info segment does not fit.
        let mut s = demo_service(&[CH]);
        s.on_open(1);
        send(&mut s, 1, r#"{"mt":"AppChallenge"}"#);
        let d = appws::digest("demo", "", "", "", "", None, CH, "demo");
        let out = send(
            &mut s,
            1,
            &format!(r#"{{"mt":"AppLogin","app":"demo","info":{{}},"digest":"{d}"}}"#),
        );
        assert_eq!(
            texts(&out),
            [r#"{"mt":"AppLoginResult","ok":false,"error":"login failed"}"#]
        );
        // Neither form: a digest over some third spelling.
        assert_eq!(
            texts(&login_with_info(r#"{"a":1.0}"#, r#"{"a":1.00}"#)),
            [r#"{"mt":"AppLoginResult","ok":false,"error":"login failed"}"#]
        );
    }

    #[test]
    fn domain_password_is_tried_second() {
        let mut s = demo_service(&[CH, CH]);
        s.add_domain_password("example.com", "dompw");
        for (sid, pw) in [(1, "dompw"), (2, "demo")] {
            s.on_open(sid);
            send(&mut s, sid, r#"{"mt":"AppChallenge"}"#);
            let d = appws::digest("demo", "example.com", "u", "", "", None, CH, pw);
            let out = send(
                &mut s,
                sid,
                &format!(r#"{{"mt":"AppLogin","app":"demo","domain":"example.com","sip":"u","digest":"{d}"}}"#),
            );
            assert_eq!(texts(&out), [r#"{"mt":"AppLoginResult","ok":true}"#]);
            assert_eq!(s.login(sid).unwrap().session_key, appws::session_key(CH, pw));
        }
        // The domain password only serves its own domain.
        let mut s3 = demo_service(&[CH]);
        s3.add_domain_password("example.com", "dompw");
        s3.on_open(3);
        send(&mut s3, 3, r#"{"mt":"AppChallenge"}"#);
        let d = appws::digest("demo", "other.com", "u", "", "", None, CH, "dompw");
        let out = send(
            &mut s3,
            3,
            &format!(r#"{{"mt":"AppLogin","app":"demo","domain":"other.com","sip":"u","digest":"{d}"}}"#),
        );
        assert_eq!(out.actions.len(), 1);
        assert!(s3.login(3).is_none());
    }

    #[test]
    fn latest_challenge_counts() {
        let mut s = demo_service(&[CH, "1234567890123456"]);
        s.on_open(1);
        send(&mut s, 1, r#"{"mt":"AppChallenge"}"#);
        send(&mut s, 1, r#"{"mt":"AppChallenge"}"#);
        assert!(send(&mut s, 1, &login_frame(GOOD)).host.is_none());
        let d = appws::digest(
            "demo",
            "",
            "demo",
            "00000000000000000000000000000000",
            "Admin",
            None,
            "1234567890123456",
            "demo",
        );
        assert!(send(&mut s, 1, &login_frame(&d)).host.is_some());
    }

    #[test]
    fn challenge_source_failure_yields_no_challenge() {
        let mut s = demo_service(&[]);
        s.on_open(1);
        assert_eq!(
            texts(&send(&mut s, 1, r#"{"mt":"AppChallenge"}"#)),
            [r#"{"mt":"AppChallengeResult","error":"internal error"}"#]
        );
    }

    #[test]
    fn default_challenges_are_fresh_digits() {
        let mut s = Service::new();
        s.on_open(1);
        let a = texts(&send(&mut s, 1, r#"{"mt":"AppChallenge"}"#));
        let b = texts(&send(&mut s, 1, r#"{"mt":"AppChallenge"}"#));
        assert_ne!(a, b);
        let v: Value = serde_json::from_str(&a[0]).unwrap();
        let ch = v["challenge"].as_str().unwrap();
        assert_eq!(ch.len(), 16);
        assert!(ch.bytes().all(|c| c.is_ascii_digit()));
    }

    #[test]
    fn ignored_input() {
        let mut s = demo_service(&[CH]);
        s.on_open(1);
        for frame in ["", "nope", "[1]", r#""AppChallenge""#, r#"{"src":"a"}"#, r#"{"mt":1}"#] {
            assert_eq!(send(&mut s, 1, frame), Output::default(), "{frame}");
        }
        assert_eq!(s.on_message(1, &[0xff, 0xfe], true), Output::default());
        assert_eq!(s.on_message(1, b"bin", false), Output::default());
        // Before login, CheckBuild and AppInfo get the generic error (§7 row 13).
        assert_eq!(
            texts(&send(&mut s, 1, r#"{"mt":"CheckBuild","url":"x"}"#)),
            [r#"{"mt":"CheckBuildResult","error":"not logged in"}"#]
        );
    }

    fn logged_in(sid: SessionId) -> Service {
        let mut s = demo_service(&[CH]);
        s.on_open(sid);
        send(&mut s, sid, r#"{"mt":"AppChallenge"}"#);
        assert!(send(&mut s, sid, &login_frame(GOOD)).host.is_some());
        s
    }

    #[test]
    fn after_login() {
        let mut s = logged_in(4);
        // Challenge and login are ignored once logged in.
        assert_eq!(send(&mut s, 4, r#"{"mt":"AppChallenge"}"#), Output::default());
        assert_eq!(send(&mut s, 4, &login_frame(WRONG)), Output::default());
        assert!(s.login(4).is_some());
        // AppInfo without `app` names the logged-in app.
        assert_eq!(
            texts(&send(&mut s, 4, r#"{"mt":"AppInfo"}"#)),
            [r#"{"mt":"AppInfoResult","app":"demo","info":{"hidden":false,"apis":{}}}"#]
        );
        // Binary goes to the host and echoes back unchanged.
        let out = s.on_message(4, b"\x00\x01", false);
        let host = out.host.unwrap();
        assert_eq!(
            host,
            HostEvent::Binary {
                sid: 4,
                data: vec![0, 1]
            }
        );
        assert_eq!(
            echo(&host),
            [Action::Send {
                to: 4,
                data: Arc::from(&b"\x00\x01"[..]),
                text: false
            }]
        );
        // Messages without src and with numbers keep their form in the echo.
        let out = send(&mut s, 4, r#"{"n":1.50,"mt":"PbxInfo","x":"a/é"}"#);
        let echoed = Output {
            actions: echo(&out.host.unwrap()),
            host: None,
        };
        assert_eq!(texts(&echoed), [r#"{"n":1.50,"mt":"PbxInfoResult","x":"a/é"}"#]);
    }

    #[test]
    fn echo_and_reply_keep_number_text() {
        let mut s = logged_in(4);
        let out = send(&mut s, 4, r#"{"mt":"Hello","n":1E5,"m":-2.50e-3,"src":"q"}"#);
        let echoed = Output {
            actions: echo(&out.host.unwrap()),
            host: None,
        };
        assert_eq!(
            texts(&echoed),
            [r#"{"mt":"HelloResult","n":1E5,"m":-2.50e-3,"src":"q"}"#]
        );
        let a = reply(4, Some("q"), r#"{"mt":"R","n":1E+5}"#).unwrap();
        assert_eq!(a, Action::text(4, r#"{"mt":"R","n":1E+5,"src":"q"}"#));
    }

    #[test]
    fn reply_helper() {
        let a = reply(9, Some("x7"), r#"{"mt":"HelloResult","n":2.0}"#).unwrap();
        assert_eq!(a, Action::text(9, r#"{"mt":"HelloResult","n":2.0,"src":"x7"}"#));
        let a = reply(9, Some("x7"), r#"{"src":"old","mt":"R"}"#).unwrap();
        assert_eq!(a, Action::text(9, r#"{"src":"x7","mt":"R"}"#));
        assert_eq!(
            reply(9, None, r#"{"mt":"R"}"#).unwrap(),
            Action::text(9, r#"{"mt":"R"}"#)
        );
        assert_eq!(reply(9, None, "[1]"), Err(appws::Error::InvalidJson));
        assert_eq!(reply(9, None, "{"), Err(appws::Error::InvalidJson));
    }

    #[test]
    fn client_logs_in_to_service() {
        for creds in [
            Credentials::password_login("demo", "demo"),
            Credentials::Password {
                password: "demo".into(),
                domain: "example.com".into(),
                sip: "alice".into(),
                guid: "0123456789abcdef0123456789abcdef".into(),
                dn: "Alice Ä".into(),
                info: Some(r#"{"cn":"A \"B\"","n":1e2,"u":"http://x/"}"#.into()),
            },
        ] {
            let mut s = Service::new();
            s.add_app("demo", "demo");
            let mut c = Client::new("demo", creds).unwrap();
            s.on_open(1);
            let mut to_service = vec![c.on_open().to_owned()];
            let mut events = Vec::new();
            let mut logins = Vec::new();
            // Bounded: the login takes two round trips.
            for _ in 0..4 {
                let mut to_client = Vec::new();
                for frame in to_service.drain(..) {
                    let out = s.on_message(1, frame.as_bytes(), true);
                    to_client.extend(texts(&out));
                    logins.extend(out.host);
                }
                for frame in to_client {
                    match c.on_text(&frame) {
                        ClientEvent::Send(f) => to_service.push(f),
                        ev => events.push(ev),
                    }
                }
            }
            assert_eq!(events, [ClientEvent::Connected]);
            let [HostEvent::LoggedIn { login, .. }] = &logins[..] else {
                panic!("{logins:?}")
            };
            assert_eq!(c.session_key(), Some(login.session_key.as_str()));

            // A message round trip through the echo, and the shared key.
            let msg = appws::message("Hello", None, Some("m1"), Map::new());
            let out = s.on_message(1, msg.as_bytes(), true);
            let echoed = texts(&Output {
                actions: echo(&out.host.unwrap()),
                host: None,
            });
            assert_eq!(
                c.on_text(&echoed[0]),
                ClientEvent::Message {
                    json: r#"{"mt":"HelloResult","src":"m1"}"#.into(),
                    mt: Some("HelloResult".into()),
                    src: Some("m1".into())
                }
            );
            let secret = c.encrypt(b"seed", b"secret").unwrap();
            assert_eq!(appws::decrypt("seed", &secret, &login.session_key).unwrap(), b"secret");
        }
    }

    #[test]
    fn client_with_wrong_password_fails_after_one_try() {
        let mut s = demo_service(&[CH]);
        let mut c = Client::new("demo", Credentials::password_login("demo", "wrong")).unwrap();
        s.on_open(1);
        let ch = texts(&send(&mut s, 1, c.on_open()));
        let ClientEvent::Send(login) = c.on_text(&ch[0]) else {
            panic!()
        };
        assert!(login.contains(WRONG));
        let res = texts(&send(&mut s, 1, &login));
        assert_eq!(c.on_text(&res[0]), ClientEvent::LoginFailed("login failed".into()));
    }

    /// xorshift64: deterministic, so a failure replays.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
    }

    /// What a session should be, from the replies it got so far.
    #[derive(Default)]
    struct Model {
        challenged: bool,
        failures: u32,
        logged_in: bool,
    }

    #[test]
    fn randomized_frames_get_json_replies_and_log_in_only_with_the_digest() {
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        // The same challenge every time, so GOOD is the right digest.
        let mut s = Service::new();
        s.add_app("demo", "demo");
        s.set_challenge_source(|| Ok(CH.to_owned()));
        let mut sessions: HashMap<SessionId, Model> = HashMap::new();
        let mut next_sid = 1;
        let mut flipped = GOOD.as_bytes().to_vec();
        flipped[10] = if flipped[10] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        let upper = GOOD.to_uppercase();
        let digests = [GOOD, WRONG, flipped.as_str(), upper.as_str(), "", "zz", &GOOD[..63]];
        let mts = [
            "AppChallenge",
            "AppLogin",
            "AppInfo",
            "KeepAlive",
            "Hello",
            "",
            "AppLoginResult",
        ];
        let pieces = [
            "{",
            "}",
            "\"mt\"",
            ":",
            ",",
            "\"AppLogin\"",
            "\"src\"",
            "1",
            "null",
            "[",
            "]",
            "\"\u{e9}\"",
            "\\",
        ];
        let (mut frames, mut logins, mut closes) = (0, 0, 0);
        while frames < 10_000 {
            if sessions.is_empty() || rng.below(25) == 0 {
                s.on_open(next_sid);
                sessions.insert(next_sid, Model::default());
                next_sid += 1;
                continue;
            }
            let mut ids: Vec<SessionId> = sessions.keys().copied().collect();
            ids.sort_unstable();
            let sid = ids[rng.below(ids.len())];
            if rng.below(40) == 0 {
                s.on_close(sid);
                sessions.remove(&sid);
                continue;
            }
            frames += 1;
            let src = (rng.below(2) == 0).then(|| format!("s{}", rng.below(100)));
            let src_member = src.as_ref().map(|v| format!(r#","src":"{v}""#)).unwrap_or_default();
            // (bytes, text, a login with the right digest for app demo)
            let (input, text, right_login): (Vec<u8>, bool, bool) = match rng.below(5) {
                0 | 1 => {
                    let app = rng.pick(&["demo", "demo", "other"]);
                    let digest = digests[rng.below(digests.len())];
                    let frame = if rng.below(8) == 0 {
                        format!(r#"{{"mt":"AppLogin","app":"{app}"{src_member}}}"#)
                    } else {
                        format!(
                            r#"{{"mt":"AppLogin","app":"{app}","domain":"","sip":"demo","guid":"00000000000000000000000000000000","dn":"Admin","digest":"{digest}"{src_member}}}"#
                        )
                    };
                    let right = app == "demo" && digest.eq_ignore_ascii_case(GOOD) && frame.contains("digest");
                    (frame.into_bytes(), true, right)
                }
                2 => {
                    let mt = rng.pick(&mts);
                    (
                        format!(r#"{{"mt":"{mt}","x":[1,{{"k":null}}]{src_member}}}"#).into_bytes(),
                        true,
                        false,
                    )
                }
                3 => {
                    let soup: String = (0..rng.below(10)).map(|_| rng.pick(&pieces)).collect();
                    (soup.into_bytes(), true, false)
                }
                _ => {
                    let bytes = (0..rng.below(40)).map(|_| rng.next() as u8).collect();
                    (bytes, rng.below(2) == 0, false)
                }
            };
            let out = s.on_message(sid, &input, text);
            let m = sessions.get_mut(&sid).unwrap();
            let is_login_frame = text && input.starts_with(br#"{"mt":"AppLogin""#);
            let mut closed = false;
            for a in &out.actions {
                match a {
                    Action::Send { to, data, text: true } => {
                        assert_eq!(*to, sid);
                        let Ok(Json::Object(o)) = json::parse(data) else {
                            panic!("not a JSON object: {:?}", String::from_utf8_lossy(data));
                        };
                        // Every reply carries the request's src.
                        if let Some(v) = &src {
                            if input.starts_with(b"{\"mt\"") {
                                assert_eq!(o.get("src"), Some(&Json::String(v.clone())), "{o:?}");
                            }
                        }
                        if o.get("mt") == Some(&Json::String("AppChallengeResult".into())) {
                            m.challenged = true;
                        }
                        if o.get("mt") == Some(&Json::String("AppLoginResult".into())) {
                            assert!(is_login_frame && !m.logged_in);
                            if o.get("ok") == Some(&Json::Bool(true)) {
                                assert!(right_login && m.challenged, "logged in without the digest");
                            } else {
                                assert!(!(right_login && m.challenged), "the right digest refused");
                                m.failures += 1;
                            }
                        }
                    }
                    Action::Close { to, code, reason } => {
                        assert_eq!((*to, *code, reason.as_str()), (sid, 4001, "login failed"));
                        assert_eq!(m.failures, MAX_LOGIN_FAILURES, "4001 only after the 3rd failure");
                        closed = true;
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            match &out.host {
                Some(HostEvent::LoggedIn { sid: who, .. }) => {
                    assert_eq!(*who, sid);
                    assert!(right_login && m.challenged && !m.logged_in);
                    m.logged_in = true;
                    logins += 1;
                }
                Some(HostEvent::Message(msg)) => {
                    assert!(m.logged_in, "a message before login reached the host");
                    assert_eq!(msg.sid, sid);
                    // The built-in echo answers with a JSON object.
                    for a in echo(out.host.as_ref().unwrap()) {
                        let Action::Send { data, .. } = a else { panic!() };
                        assert!(matches!(json::parse(&data), Ok(Json::Object(_))));
                    }
                }
                Some(HostEvent::Binary { sid: who, .. }) => assert!(m.logged_in && *who == sid && !text),
                None => {}
            }
            // The third failure closes, in the same output.
            assert_eq!(closed, m.failures == MAX_LOGIN_FAILURES, "failures {}", m.failures);
            if closed {
                // The engine closes the connection: the session ends here.
                closes += 1;
                s.on_close(sid);
                sessions.remove(&sid);
            }
        }
        // The run went through every path it checks.
        assert!(logins > 20 && closes > 20, "logins {logins}, closes {closes}");
    }
}
