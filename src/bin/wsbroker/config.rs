//! The daemon's settings: defaults, then the `--config` TOML file, then the
//! command line (PROTOCOLS.md §1). Every flag has a TOML key of the same name.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use wsbroker::listeners::{DEFAULT_MAX_MESSAGE_SIZE, MAX_MESSAGE_LIMIT};

use crate::log::Level;

/// The listeners, in the order PROTOCOLS.md §1 lists them (also the order of
/// the start-up lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Achex,
    Wschat,
    Webtalk,
    WebtalkAdmin,
    Appws,
    Http,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Achex,
        Kind::Wschat,
        Kind::Webtalk,
        Kind::WebtalkAdmin,
        Kind::Appws,
        Kind::Http,
    ];

    /// The flag without `--`, which is also the name printed at start-up.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Achex => "achex",
            Kind::Wschat => "wschat",
            Kind::Webtalk => "webtalk",
            Kind::WebtalkAdmin => "webtalk-admin",
            Kind::Appws => "appws",
            Kind::Http => "http",
        }
    }

    pub fn default_addr(self) -> SocketAddr {
        let port = match self {
            Kind::Achex => 4010,
            Kind::Wschat => 9876,
            Kind::Webtalk => 12345,
            Kind::WebtalkAdmin => 12344,
            Kind::Appws => 4011,
            Kind::Http => 8080,
        };
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// `NAME:PASSWORD` pairs (`--achex-service`, `--appws-app`).
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub name: String,
    pub password: String,
}

// Passwords stay out of logs.
impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:***", self.name)
    }
}

impl Credential {
    /// Every value of a repeatable `NAME:PASSWORD` flag (none given: none).
    fn parse_all(flag: &str, values: Option<Vec<String>>) -> Result<Vec<Credential>, String> {
        values
            .unwrap_or_default()
            .iter()
            .map(|s| Credential::parse(flag, s))
            .collect()
    }

    fn parse(flag: &str, s: &str) -> Result<Credential, String> {
        // The name cannot hold a colon; the password may.
        match s.split_once(':') {
            Some((name, password)) if !name.is_empty() => Ok(Credential {
                name: name.to_owned(),
                password: password.to_owned(),
            }),
            _ => Err(format!("{flag}: expected NAME:PASSWORD, got {s:?}")),
        }
    }
}

/// `--tls-cert` and `--tls-key`, read and checked while the settings are
/// resolved, so a bad file is a usage error before anything binds.
#[derive(Clone)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub config: Arc<rustls::ServerConfig>,
}

// Equal when they name the same files (the loaded configuration has no `==`).
impl PartialEq for Tls {
    fn eq(&self, other: &Tls) -> bool {
        self.cert == other.cert && self.key == other.key
    }
}

impl Eq for Tls {}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cert {} key {}", self.cert.display(), self.key.display())
    }
}

impl Tls {
    fn load(cert: Option<String>, key: Option<String>) -> Result<Option<Tls>, String> {
        let (cert, key) = match (cert, key) {
            (None, None) => return Ok(None),
            (Some(c), Some(k)) => (PathBuf::from(c), PathBuf::from(k)),
            _ => return Err("tls-cert and tls-key go together: give both or neither".into()),
        };
        let config = wsbroker::tls::server_config(&cert, &key).map_err(|e| format!("tls: {e}"))?;
        Ok(Some(Tls { cert, key, config }))
    }
}

/// The effective settings.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    /// Indexed by [`Kind`]; `None` = off.
    binds: [Option<SocketAddr>; 6],
    pub webtalk_admin_secret: Option<String>,
    pub achex_services: Vec<Credential>,
    pub achex_quiet: bool,
    /// `--achex-user`: when not empty, Achex user logins are checked against
    /// these (table mode, PROTOCOLS.md §2.1) instead of open claims.
    pub achex_users: Vec<Credential>,
    /// `--max-message`: the message limit of every WebSocket listener.
    pub max_message: usize,
    /// Never empty: with none configured, app `demo`, password `demo`.
    pub appws_apps: Vec<Credential>,
    pub log: Level,
    /// Lines for the info log at start-up: settings the daemon derived
    /// rather than read (e.g. webtalk-admin off because webtalk is).
    pub notes: Vec<String>,
    /// Every WebSocket listener serves `wss://` with this.
    pub tls: Option<Tls>,
}

// The admin secret stays out of logs.
impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("binds", &self.binds)
            .field(
                "webtalk_admin_secret",
                &self.webtalk_admin_secret.as_ref().map(|_| "***"),
            )
            .field("achex_services", &self.achex_services)
            .field("achex_quiet", &self.achex_quiet)
            .field("achex_users", &self.achex_users)
            .field("max_message", &self.max_message)
            .field("appws_apps", &self.appws_apps)
            .field("log", &self.log)
            .field("tls", &self.tls)
            .finish()
    }
}

impl Settings {
    pub fn bind(&self, kind: Kind) -> Option<SocketAddr> {
        self.binds[kind.index()]
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(Box<Settings>),
    Help,
    Version,
}

/// One layer of settings: the file, or the command line. `None` = not given.
/// Keys are the flag names, so the file reads like the command line.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Layer {
    achex: Option<String>,
    wschat: Option<String>,
    webtalk: Option<String>,
    webtalk_admin: Option<String>,
    appws: Option<String>,
    http: Option<String>,
    webtalk_admin_secret: Option<String>,
    achex_service: Option<Vec<String>>,
    achex_quiet: Option<bool>,
    achex_user: Option<Vec<String>>,
    max_message: Option<u64>,
    appws_app: Option<Vec<String>>,
    log: Option<String>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
}

impl Layer {
    fn bind_mut(&mut self, kind: Kind) -> &mut Option<String> {
        match kind {
            Kind::Achex => &mut self.achex,
            Kind::Wschat => &mut self.wschat,
            Kind::Webtalk => &mut self.webtalk,
            Kind::WebtalkAdmin => &mut self.webtalk_admin,
            Kind::Appws => &mut self.appws,
            Kind::Http => &mut self.http,
        }
    }

    /// Values given here win over `base`; lists given here replace `base`'s.
    fn over(self, base: Layer) -> Layer {
        Layer {
            achex: self.achex.or(base.achex),
            wschat: self.wschat.or(base.wschat),
            webtalk: self.webtalk.or(base.webtalk),
            webtalk_admin: self.webtalk_admin.or(base.webtalk_admin),
            appws: self.appws.or(base.appws),
            http: self.http.or(base.http),
            webtalk_admin_secret: self.webtalk_admin_secret.or(base.webtalk_admin_secret),
            achex_service: self.achex_service.or(base.achex_service),
            achex_quiet: self.achex_quiet.or(base.achex_quiet),
            achex_user: self.achex_user.or(base.achex_user),
            max_message: self.max_message.or(base.max_message),
            appws_app: self.appws_app.or(base.appws_app),
            log: self.log.or(base.log),
            tls_cert: self.tls_cert.or(base.tls_cert),
            tls_key: self.tls_key.or(base.tls_key),
        }
    }

    fn resolve(mut self) -> Result<Settings, String> {
        let mut binds = [None; 6];
        for kind in Kind::ALL {
            binds[kind.index()] = match self.bind_mut(kind).take() {
                None => Some(kind.default_addr()),
                Some(v) => parse_bind(kind, &v)?,
            };
        }
        let achex_services = Credential::parse_all("achex-service", self.achex_service)?;
        let achex_users = Credential::parse_all("achex-user", self.achex_user)?;
        for (i, u) in achex_users.iter().enumerate() {
            if achex_users[..i].iter().any(|v| v.name == u.name) {
                return Err(format!("achex-user: {:?} is given twice", u.name));
            }
        }
        let max_message = match self.max_message {
            None => DEFAULT_MAX_MESSAGE_SIZE,
            Some(n) => match usize::try_from(n) {
                Ok(n) if (1..=MAX_MESSAGE_LIMIT).contains(&n) => n,
                _ => return Err(format!("max-message: expected 1 to {MAX_MESSAGE_LIMIT} bytes, got {n}")),
            },
        };
        let mut appws_apps = Credential::parse_all("appws-app", self.appws_app)?;
        if appws_apps.is_empty() {
            appws_apps.push(Credential {
                name: "demo".into(),
                password: "demo".into(),
            });
        }
        let log = match self.log {
            None => Level::Info,
            Some(l) => l.parse().map_err(|e| format!("log: {e}"))?,
        };
        let tls = Tls::load(self.tls_cert, self.tls_key)?;
        Ok(Settings {
            binds,
            webtalk_admin_secret: self.webtalk_admin_secret,
            achex_services,
            achex_quiet: self.achex_quiet.unwrap_or(false),
            achex_users,
            max_message,
            appws_apps,
            log,
            notes: Vec::new(),
            tls,
        })
    }
}

fn parse_bind(kind: Kind, v: &str) -> Result<Option<SocketAddr>, String> {
    if v == "off" {
        return Ok(None);
    }
    v.parse::<SocketAddr>()
        .map(Some)
        .map_err(|_| format!("{}: expected IP:PORT or off, got {v:?}", kind.name()))
}

/// Parses the arguments (without the program name); reads `--config` if given.
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let mut cli = Layer::default();
    let mut config: Option<PathBuf> = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let Some(flag) = arg.strip_prefix("--") else {
            return Err(format!("unexpected argument {arg:?}"));
        };
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) => (f, Some(v.to_owned())),
            None => (flag, None),
        };
        match flag {
            "help" => return Ok(Command::Help),
            "version" => return Ok(Command::Version),
            "achex-quiet" => {
                cli.achex_quiet = Some(match inline.as_deref() {
                    None | Some("true") => true,
                    Some("false") => false,
                    Some(v) => return Err(format!("achex-quiet: expected true or false, got {v:?}")),
                })
            }
            _ => {
                let mut value = || match inline.clone() {
                    Some(v) => Ok(v),
                    None => args.next().ok_or_else(|| format!("--{flag} needs a value")),
                };
                if let Some(kind) = Kind::ALL.into_iter().find(|k| k.name() == flag) {
                    *cli.bind_mut(kind) = Some(value()?);
                    continue;
                }
                match flag {
                    "webtalk-admin-secret" => cli.webtalk_admin_secret = Some(value()?),
                    "achex-service" => cli.achex_service.get_or_insert_with(Vec::new).push(value()?),
                    "achex-user" => cli.achex_user.get_or_insert_with(Vec::new).push(value()?),
                    "max-message" => {
                        let v = value()?;
                        let n = v
                            .parse()
                            .map_err(|_| format!("max-message: expected a number of bytes, got {v:?}"))?;
                        cli.max_message = Some(n);
                    }
                    "appws-app" => cli.appws_app.get_or_insert_with(Vec::new).push(value()?),
                    "log" => cli.log = Some(value()?),
                    "tls-cert" => cli.tls_cert = Some(value()?),
                    "tls-key" => cli.tls_key = Some(value()?),
                    "config" => config = Some(PathBuf::from(value()?)),
                    _ => return Err(format!("unknown flag --{flag} (see --help)")),
                }
            }
        }
    }
    let file = match config {
        None => Layer::default(),
        Some(path) => {
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            parse_file(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
    };
    // Where the webtalk and webtalk-admin values come from: 0 default,
    // 1 the file, 2 the command line.
    let given = |c: bool, f: bool| if c { 2 } else { u8::from(f) };
    let webtalk_from = given(cli.webtalk.is_some(), file.webtalk.is_some());
    let admin_from = given(cli.webtalk_admin.is_some(), file.webtalk_admin.is_some());
    let mut settings = cli.over(file).resolve()?;
    settings.webtalk_admin_needs_webtalk(webtalk_from, admin_from)?;
    Ok(Command::Run(Box::new(settings)))
}

impl Settings {
    /// The admin socket drives the webtalk listener's users, so it cannot run
    /// without it. `off` only disables: webtalk off turns the admin socket
    /// off too when its address is the default, or comes from a weaker
    /// source (the file, with webtalk off on the command line). An address
    /// given as explicitly as webtalk's `off` contradicts it: an error, before
    /// anything is bound.
    fn webtalk_admin_needs_webtalk(&mut self, webtalk_from: u8, admin_from: u8) -> Result<(), String> {
        let (None, Some(admin)) = (self.bind(Kind::Webtalk), self.bind(Kind::WebtalkAdmin)) else {
            return Ok(());
        };
        if admin_from >= webtalk_from {
            return Err(format!(
                "webtalk-admin {admin} needs the webtalk listener, which is off: \
                 set webtalk-admin to off too, or turn webtalk on"
            ));
        }
        self.binds[Kind::WebtalkAdmin.index()] = None;
        self.notes
            .push("webtalk-admin is off because webtalk is off".to_owned());
        Ok(())
    }
}

fn parse_file(text: &str) -> Result<Layer, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}

pub const HELP: &str = "\
wsbroker: a WebSocket message broker (Achex, WSChat, webtalk, AppWebsocket)

Usage: wsbroker [FLAGS]

Listeners (each IP:PORT, or off to disable):
  --achex ADDR                 Achex JSON relay            [127.0.0.1:4010]
  --wschat ADDR                WSChat nickname chat        [127.0.0.1:9876]
  --webtalk ADDR               webtalk browsers            [127.0.0.1:12345]
  --webtalk-admin ADDR         webtalk admin (TCP)         [127.0.0.1:12344]
  --appws ADDR                 innovaphone AppWebsocket    [127.0.0.1:4011]
  --http ADDR                  status page, /stats, /metrics [127.0.0.1:8080]

Options:
  --webtalk-admin-secret TEXT  secret of the webtalk admin login
  --achex-service NAME:PASSWORD  credentials of an Achex service (repeatable)
  --achex-quiet                no {\"error\":...} replies on the Achex listener
  --achex-user NAME:PASSWORD   an Achex user (repeatable); any given: only these
                               may log in (table mode) [open claims]
  --max-message BYTES          message limit of every WebSocket listener
                               (1 to 1073741824; larger gets close 1009) [65536]
  --appws-app NAME:PASSWORD    an AppWebsocket app (repeatable) [demo:demo]
  --log LEVEL                  off, error, warn, info, debug or trace [info]
  --tls-cert FILE              PEM certificate chain: every WebSocket listener serves wss://
  --tls-key FILE               PEM private key of --tls-cert (both or neither)
  --config FILE                TOML file; keys are the flag names; flags win
  --help, --version

Each listener prints `<name> listening on <ip:port>` on stdout once it is up.
With --webtalk off, the webtalk admin socket (which drives its users) is off too.
SIGINT or SIGTERM closes every client with 1001 and exits 0.
";

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Settings, String> {
        match parse_args(args.iter().map(|s| s.to_string()))? {
            Command::Run(s) => Ok(*s),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn defaults_follow_protocols_section_1() {
        let s = run(&[]).unwrap();
        let want = [
            (Kind::Achex, "127.0.0.1:4010"),
            (Kind::Wschat, "127.0.0.1:9876"),
            (Kind::Webtalk, "127.0.0.1:12345"),
            (Kind::WebtalkAdmin, "127.0.0.1:12344"),
            (Kind::Appws, "127.0.0.1:4011"),
            (Kind::Http, "127.0.0.1:8080"),
        ];
        for (k, a) in want {
            assert_eq!(s.bind(k), Some(a.parse().unwrap()), "{}", k.name());
        }
        assert!(!s.achex_quiet);
        assert_eq!(s.log, Level::Info);
        assert_eq!(
            s.appws_apps,
            vec![Credential {
                name: "demo".into(),
                password: "demo".into()
            }]
        );
        assert!(s.achex_services.is_empty());
        assert_eq!(s.webtalk_admin_secret, None);
        assert!(s.achex_users.is_empty());
        assert_eq!(s.max_message, 65536);
        assert!(s.notes.is_empty());
    }

    #[test]
    fn flags_in_both_forms_and_off() {
        let s = run(&[
            "--achex",
            "0.0.0.0:1",
            "--http=off",
            "--wschat",
            "[::1]:0",
            "--achex-service",
            "svc:p:w",
            "--achex-service=two:",
            "--achex-quiet",
            "--appws-app",
            "app:pw",
            "--log",
            "debug",
            "--webtalk-admin-secret",
            "s3",
            "--achex-user",
            "ann:pw:x",
            "--achex-user=bo:",
            "--max-message",
            "1000",
        ])
        .unwrap();
        assert_eq!(s.achex_users.len(), 2);
        assert_eq!(
            (s.achex_users[0].name.as_str(), s.achex_users[0].password.as_str()),
            ("ann", "pw:x")
        );
        assert_eq!(
            (s.achex_users[1].name.as_str(), s.achex_users[1].password.as_str()),
            ("bo", "")
        );
        assert_eq!(s.max_message, 1000);
        assert!(!format!("{s:?}").contains("pw:x"));
        assert_eq!(s.bind(Kind::Achex), Some("0.0.0.0:1".parse().unwrap()));
        assert_eq!(s.bind(Kind::Http), None);
        assert_eq!(s.bind(Kind::Wschat), Some("[::1]:0".parse().unwrap()));
        assert_eq!(s.achex_services.len(), 2);
        assert_eq!(s.achex_services[0].name, "svc");
        assert_eq!(s.achex_services[0].password, "p:w");
        assert_eq!(s.achex_services[1].password, "");
        assert!(s.achex_quiet);
        assert_eq!(s.appws_apps[0].name, "app");
        assert_eq!(s.appws_apps.len(), 1);
        assert_eq!(s.log, Level::Debug);
        assert_eq!(s.webtalk_admin_secret.as_deref(), Some("s3"));
        // The secret is not shown by Debug.
        assert!(!format!("{s:?}").contains("s3"));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for args in [
            &["--achex", "localhost:4010"][..],
            &["--achex"],
            &["--nope"],
            &["stray"],
            &["--achex-service", "nopassword"],
            &["--achex-service", ":pw"],
            &["--log", "loud"],
            &["--achex-quiet=maybe"],
            &["--max-message", "0"],
            &["--max-message", "-1"],
            &["--max-message", "64k"],
            &["--max-message", "1073741825"],
            &["--max-message"],
            &["--achex-user", "nopassword"],
            &["--achex-user", "a:1", "--achex-user", "a:2"],
            &["--config", "/nonexistent/wsbroker.toml"],
        ] {
            assert!(run(args).is_err(), "{args:?}");
        }
        assert!(matches!(parse_args(["--help".to_string()]), Ok(Command::Help)));
        assert!(matches!(parse_args(["--version".to_string()]), Ok(Command::Version)));
    }

    #[test]
    fn every_flag_has_a_toml_key_and_flags_win() {
        let dir = std::env::temp_dir().join(format!("wsbroker-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            r#"
achex = "127.0.0.1:5000"
wschat = "off"
webtalk = "127.0.0.1:5001"
webtalk-admin = "127.0.0.1:5002"
appws = "127.0.0.1:5003"
http = "127.0.0.1:5004"
webtalk-admin-secret = "sec"
achex-service = ["a:1", "b:2"]
achex-quiet = true
appws-app = ["x:y"]
log = "warn"
achex-user = ["u:p"]
max-message = 2000
"#,
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let s = run(&["--config", p]).unwrap();
        assert_eq!(s.bind(Kind::Achex), Some("127.0.0.1:5000".parse().unwrap()));
        assert_eq!(s.bind(Kind::Wschat), None);
        assert_eq!(s.bind(Kind::WebtalkAdmin), Some("127.0.0.1:5002".parse().unwrap()));
        assert_eq!(s.bind(Kind::Http), Some("127.0.0.1:5004".parse().unwrap()));
        assert_eq!(s.achex_services.len(), 2);
        assert!(s.achex_quiet);
        assert_eq!(s.appws_apps[0].name, "x");
        assert_eq!(s.log, Level::Warn);
        assert_eq!(s.webtalk_admin_secret.as_deref(), Some("sec"));
        assert_eq!(s.achex_users[0].name, "u");
        assert_eq!(s.max_message, 2000);

        // Flags given before or after --config win; a repeated flag replaces the file's list.
        let s = run(&[
            "--achex",
            "off",
            "--config",
            p,
            "--achex-service",
            "c:3",
            "--achex-quiet=false",
            "--log",
            "error",
        ])
        .unwrap();
        assert_eq!(s.bind(Kind::Achex), None);
        assert_eq!(s.bind(Kind::Webtalk), Some("127.0.0.1:5001".parse().unwrap()));
        assert_eq!(s.achex_services.len(), 1);
        assert_eq!(s.achex_services[0].name, "c");
        assert!(!s.achex_quiet);
        assert_eq!(s.log, Level::Error);

        std::fs::write(&path, "achex = \"127.0.0.1:1\"\nunknown = 1\n").unwrap();
        assert!(run(&["--config", p]).unwrap_err().contains("unknown"));
        std::fs::write(&path, "achex = 4010\n").unwrap();
        assert!(run(&["--config", p]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A self-signed certificate and its key, made by openssl, in `dir`.
    fn self_signed(dir: &std::path::Path) -> (String, String) {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let out = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .args(["-days", "1", "-subj", "/CN=localhost"])
            .output()
            .expect("openssl runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (cert.to_str().unwrap().to_owned(), key.to_str().unwrap().to_owned())
    }

    #[test]
    fn tls_flags_and_keys() {
        let dir = std::env::temp_dir().join(format!("wsbroker-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = self_signed(&dir);
        assert_eq!(run(&[]).unwrap().tls, None);

        let s = run(&["--tls-cert", &cert, "--tls-key", &key]).unwrap();
        let t = s.tls.as_ref().expect("TLS on");
        assert_eq!(
            (t.cert.to_str().unwrap(), t.key.to_str().unwrap()),
            (&cert[..], &key[..])
        );

        let path = dir.join("tls.toml");
        std::fs::write(&path, format!("tls-cert = {cert:?}\ntls-key = {key:?}\n")).unwrap();
        assert_eq!(run(&["--config", path.to_str().unwrap()]).unwrap().tls, s.tls);

        // One without the other, and files that cannot serve, are usage errors naming the file.
        let e = run(&["--tls-cert", &cert]).unwrap_err();
        assert!(e.contains("tls-key"), "{e}");
        let e = run(&["--tls-key", &key]).unwrap_err();
        assert!(e.contains("tls-cert"), "{e}");
        let missing = dir.join("missing.pem");
        let e = run(&["--tls-cert", missing.to_str().unwrap(), "--tls-key", &key]).unwrap_err();
        assert!(e.contains("missing.pem") && e.contains("cannot read"), "{e}");
        // Swapped: the key file holds no certificate.
        let e = run(&["--tls-cert", &key, "--tls-key", &cert]).unwrap_err();
        assert!(e.contains("no certificate found in"), "{e}");
        let other = dir.join("other");
        std::fs::create_dir_all(&other).unwrap();
        let (_, other_key) = self_signed(&other);
        let e = run(&["--tls-cert", &cert, "--tls-key", &other_key]).unwrap_err();
        assert!(e.contains("does not belong to the certificate"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn webtalk_off_turns_the_admin_socket_off_unless_it_was_asked_for() {
        let admin = "127.0.0.1:1";
        // The default admin address follows webtalk.
        let s = run(&["--webtalk", "off"]).unwrap();
        assert_eq!(s.bind(Kind::Webtalk), None);
        assert_eq!(s.bind(Kind::WebtalkAdmin), None);
        assert_eq!(s.notes, ["webtalk-admin is off because webtalk is off"]);
        let s = run(&["--webtalk", "off", "--webtalk-admin", "off"]).unwrap();
        assert_eq!(s.bind(Kind::WebtalkAdmin), None);
        assert!(s.notes.is_empty());
        // An address given as explicitly as the off contradicts it.
        let e = run(&["--webtalk", "off", "--webtalk-admin", admin]).unwrap_err();
        assert!(
            e.contains("webtalk-admin 127.0.0.1:1 needs the webtalk listener"),
            "{e}"
        );

        let dir = std::env::temp_dir().join(format!("wsbroker-wt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        let p = path.to_str().unwrap();
        // The file's admin address yields to webtalk off on the command line...
        std::fs::write(&path, format!("webtalk-admin = \"{admin}\"\n")).unwrap();
        let s = run(&["--config", p, "--webtalk", "off"]).unwrap();
        assert_eq!(s.bind(Kind::WebtalkAdmin), None);
        assert_eq!(s.notes.len(), 1);
        // ...but not within the file, nor on the command line against the file.
        std::fs::write(&path, format!("webtalk = \"off\"\nwebtalk-admin = \"{admin}\"\n")).unwrap();
        assert!(run(&["--config", p]).is_err());
        std::fs::write(&path, "webtalk = \"off\"\n").unwrap();
        assert!(run(&["--config", p, "--webtalk-admin", admin]).is_err());
        assert_eq!(run(&["--config", p]).unwrap().bind(Kind::WebtalkAdmin), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_example_file_parses() {
        let text = include_str!("../../../examples/wsbroker.toml");
        let layer = parse_file(text).unwrap();
        layer.resolve().unwrap();
    }
}
