//! The Achex dialect (PROTOCOLS.md §2): legacy (`setID`, `to`/`toS`/`bc`) and
//! cloud (`auth`, hubs, `echo`, `serverstat`) on one endpoint.
//!
//! Sessions are known to the engine by its connection id and to Achex clients by
//! an SID: Achex's own counter, starting at 1 and never reused. Services the host
//! runs in-process ([`AchexDialect::register_service`]) are broker sessions too,
//! with ids that have [`HOST_SESSION_BIT`] set; messages that reach them come out
//! of [`AchexDialect::take_host_items`] instead of going to a socket.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::broker::json::{self, Members, Value};
use crate::broker::{AuthMode, Broker, LoginError, Switch, Target};
use crate::dialect::{Action, SessionId, Shared};
use crate::engine::IdMap;

pub use crate::broker::{NameInfo, Role};

/// A latency probe unanswered this long gets `latency probe timed out`.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Pending probes per session. A client that keeps probing without answering
/// would otherwise grow the table for as long as it keeps sending; past this
/// many, its oldest probe is given up (and reported as timed out).
pub const MAX_PENDING_PROBES: usize = 16;

/// Set in the session ids of in-process services. Engine connection ids count up
/// from zero and never get near it, so the two id spaces cannot meet.
pub const HOST_SESSION_BIT: u64 = 1 << 63;

const PROBE_PREFIX: &[u8] = b"achex-ltcy-";

/// Probe payloads are unique in the process, so a pong can never be mistaken
/// for another listener's probe.
static NEXT_PROBE: AtomicU64 = AtomicU64::new(1);

const ROUTING_KEYS: [&str; 5] = ["toS", "tos", "to", "bc", "toH"];
const COMMAND_KEYS: [&str; 10] = [
    "setID",
    "auth",
    "serviceID",
    "cmd",
    "joinHub",
    "leaveHub",
    "echo",
    "ping",
    "latency",
    "serverstat",
];

/// Configuration of one Achex listener.
pub struct AchexConfig {
    /// Suppress every `{"error":…}` reply (`--achex-quiet`). `{"auth":"failed",…}`
    /// is still sent.
    pub quiet: bool,
    /// How user logins are checked.
    pub auth: AuthMode,
    /// Service credentials: (serviceID, password).
    pub services: Vec<(String, String)>,
    /// The `version` reported by `serverstat`.
    pub version: String,
}

// Written by hand so service passwords never reach a log.
impl std::fmt::Debug for AchexConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let services: Vec<&str> = self.services.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("AchexConfig")
            .field("quiet", &self.quiet)
            .field("auth", &self.auth)
            .field("services", &services)
            .field("version", &self.version)
            .finish()
    }
}

impl Default for AchexConfig {
    fn default() -> Self {
        AchexConfig {
            quiet: false,
            auth: AuthMode::Open,
            services: Vec::new(),
            version: concat!("wsbroker/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// An in-process service registered by the host. It is the service's SID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceHandle(u64);

impl ServiceHandle {
    /// The service's Achex SID (what clients address with `toS`).
    pub fn sid(self) -> u64 {
        self.0
    }

    fn session(self) -> SessionId {
        self.0 | HOST_SESSION_BIT
    }
}

/// Groups (`bc`) or hubs (`toH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    Group,
    Hub,
}

/// What observers are told about (see [`AchexDialect::set_events`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AchexEvent {
    Login {
        session: SessionId,
        sid: u64,
        name: String,
        service: bool,
    },
    Logout {
        session: SessionId,
        sid: u64,
        name: String,
    },
    /// A session joined a group or hub. `name` is the name it held then
    /// (`""` for none).
    Join {
        session: SessionId,
        sid: u64,
        kind: Membership,
        place: String,
        name: String,
    },
    /// A session left a group or hub, by request or because it closed.
    /// `name` is the name it held when it left (`""` for none): a session
    /// that disconnects still carries it, although it is gone by the time
    /// the host hears of it.
    Leave {
        session: SessionId,
        sid: u64,
        kind: Membership,
        place: String,
        name: String,
    },
}

/// Output for the host rather than for a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostItem {
    /// A message that reached an in-process service: the same bytes a socket
    /// recipient would get (stamped, or a `leftHub` notice).
    Message {
        service: ServiceHandle,
        from_name: String,
        from_sid: u64,
        json: Shared,
    },
    Event(AchexEvent),
}

/// Where an in-process service sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostTarget {
    /// Every session holding the name.
    Name(String),
    /// The session with this Achex SID.
    Session(u64),
    /// Every member of the group.
    Group(String),
    /// Every member of the hub but the service itself.
    Hub(String),
}

/// Why a host call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// The handle is not (or no longer) registered.
    UnknownService,
    /// The message is not a JSON object.
    NotAnObject,
    /// No session holds the name.
    NoSuchUser,
    /// No session has the SID.
    NoSuchSession,
    /// Registration refused the name.
    Login(LoginError),
    /// Nobody receives host items (a listener without a host sink): a
    /// service registered now could never get a message.
    NoReceiver,
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostError::UnknownService => f.write_str("unknown service handle"),
            HostError::NotAnObject => f.write_str("invalid message: expected a JSON object"),
            HostError::NoSuchUser => f.write_str("no such user"),
            HostError::NoSuchSession => f.write_str("no such session"),
            HostError::Login(e) => write!(f, "{e}"),
            HostError::NoReceiver => f.write_str("nobody receives what reaches an in-process service"),
        }
    }
}

impl std::error::Error for HostError {}

/// The `serverstat` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AchexStats {
    /// Open connections (in-process services are not connections).
    pub sessions: usize,
    /// Distinct logged-in names, services included.
    pub users: usize,
    /// Groups with members.
    pub groups: usize,
    /// Hubs with members.
    pub hubs: usize,
    pub uptime_s: u64,
}

#[derive(Debug)]
struct Conn {
    sid: u64,
    /// Pending probe ids, oldest first.
    probes: VecDeque<u64>,
}

/// One Achex listener's state. Pure: no sockets, no threads, no clock reads
/// except in the convenience wrappers that pass `Instant::now()`.
#[derive(Debug)]
pub struct AchexDialect {
    quiet: bool,
    version: String,
    broker: Broker,
    conns: IdMap<Conn>,
    by_sid: IdMap<SessionId>,
    next_sid: u64,
    host_services: usize,
    /// Probe id → (session, sent at).
    probes: BTreeMap<u64, (SessionId, Instant)>,
    started: Instant,
    host_items: VecDeque<HostItem>,
    events: bool,
    /// Whether someone takes the host items. Without a receiver nothing is
    /// queued: messages to in-process services are not routed (a direct one
    /// gets the sender the same error as an unknown name) and events are
    /// not recorded, so the queue cannot grow unread.
    host_receiver: bool,
    /// Scratch for routing: the recipients of the message being routed, and
    /// its stamped text. Kept so the per-message path allocates neither.
    recipients: Vec<SessionId>,
    stamp_buf: Vec<u8>,
    /// An emptied action list handed back by [`AchexDialect::recycle`], for
    /// the next message's actions.
    spare: Vec<Action>,
}

impl AchexDialect {
    pub fn new(config: AchexConfig) -> AchexDialect {
        AchexDialect::new_at(config, Instant::now())
    }

    /// As [`AchexDialect::new`], with the start time `serverstat` measures uptime from.
    pub fn new_at(config: AchexConfig, started: Instant) -> AchexDialect {
        let mut broker = Broker::new(config.auth);
        for (name, password) in &config.services {
            broker.set_service_credentials(name, password);
        }
        AchexDialect {
            quiet: config.quiet,
            version: config.version,
            broker,
            conns: IdMap::default(),
            by_sid: IdMap::default(),
            next_sid: 1,
            host_services: 0,
            probes: BTreeMap::new(),
            started,
            host_items: VecDeque::new(),
            events: false,
            host_receiver: true,
            recipients: Vec::new(),
            stamp_buf: Vec::new(),
            spare: Vec::new(),
        }
    }

    /// A new connection: it is given the next SID and told it.
    pub fn on_open(&mut self, session: SessionId) -> Vec<Action> {
        if session & HOST_SESSION_BIT != 0 {
            return Vec::new();
        }
        match self.add_session(session) {
            Some(sid) => vec![Action::text(session, format!("{{\"SID\":{sid}}}"))],
            None => Vec::new(),
        }
    }

    fn add_session(&mut self, session: SessionId) -> Option<u64> {
        if self.conns.contains_key(&session) || !self.broker.open(session) {
            return None;
        }
        let sid = self.next_sid;
        self.next_sid += 1;
        self.conns.insert(
            session,
            Conn {
                sid,
                probes: VecDeque::new(),
            },
        );
        self.by_sid.insert(sid, session);
        Some(sid)
    }

    /// One complete message from a connection.
    pub fn on_message(&mut self, session: SessionId, data: &[u8], is_text: bool) -> Vec<Action> {
        self.on_message_at(session, data, is_text, Instant::now())
    }

    /// As [`AchexDialect::on_message`], at time `now` (probe start, uptime).
    pub fn on_message_at(&mut self, session: SessionId, data: &[u8], is_text: bool, now: Instant) -> Vec<Action> {
        let mut out = std::mem::take(&mut self.spare);
        // Host sessions never speak through here, and unknown ids have no SID.
        if session & HOST_SESSION_BIT != 0 || !self.conns.contains_key(&session) {
            return out;
        }
        if !is_text {
            self.error(&mut out, session, "binary frames are not supported");
            return out;
        }
        if data == b"ping" || data == b"latency" {
            self.probe(&mut out, session, now);
            return out;
        }
        // Parsed borrowing from `data`: a routed message is written back out
        // of this tree once, so copying its strings first would be waste.
        let obj = match json::parse_borrowed(data) {
            Ok(Value::Object(obj)) => obj,
            _ => {
                self.error(&mut out, session, "invalid message: expected a JSON object");
                return out;
            }
        };
        if let Some(key) = ROUTING_KEYS.into_iter().find(|k| obj.contains_key(k)) {
            self.route(&mut out, session, key, &obj, data.len());
            return out;
        }
        let Some(key) = COMMAND_KEYS.into_iter().find(|k| obj.contains_key(k)) else {
            self.error(&mut out, session, "no routing key in message");
            return out;
        };
        match key {
            "setID" | "auth" => self.login_user(&mut out, session, key, &obj),
            "serviceID" => self.login_service(&mut out, session, &obj),
            "ping" | "latency" => self.probe(&mut out, session, now),
            "serverstat" => {
                let body = self.serverstat(now);
                out.push(Action::text(session, body));
            }
            _ => {
                if self.broker.name_of(session).is_none() {
                    self.error(&mut out, session, "not authenticated");
                    return out;
                }
                match key {
                    "cmd" => self.cmd(&mut out, session, &obj),
                    "joinHub" | "leaveHub" => self.hub_cmd(&mut out, session, key, &obj),
                    _ => self.echo(&mut out, session, &obj, data.len()),
                }
            }
        }
        out
    }

    /// Hands back a list [`AchexDialect::on_message`] returned, once its
    /// actions are carried out, so the next message's actions reuse its
    /// memory instead of allocating a list per message. Optional.
    pub fn recycle(&mut self, mut actions: Vec<Action>) {
        // A list grown by a very large fan-out is not kept.
        if actions.capacity() <= MAX_SPARE_ACTIONS {
            actions.clear();
            self.spare = actions;
        }
    }

    /// A pong from a connection; answers the latency probe it matches.
    pub fn on_pong(&mut self, session: SessionId, payload: &[u8]) -> Vec<Action> {
        self.on_pong_at(session, payload, Instant::now())
    }

    /// As [`AchexDialect::on_pong`], at time `now`.
    pub fn on_pong_at(&mut self, session: SessionId, payload: &[u8], now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let id = payload
            .strip_prefix(PROBE_PREFIX)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| d.parse::<u64>().ok());
        let Some(id) = id else {
            return out;
        };
        // Pongs for someone else's probe, or unsolicited ones, are ignored.
        let Some(&(owner, sent)) = self.probes.get(&id) else {
            return out;
        };
        if owner != session {
            return out;
        }
        self.forget_probe(id);
        let rtt = now.saturating_duration_since(sent);
        let ms = (rtt.as_nanos() + 500_000) / 1_000_000;
        out.push(Action::text(session, format!("{{\"ltcy\":\"{ms}ms\"}}")));
        out
    }

    /// Timer: reports latency probes unanswered for [`PROBE_TIMEOUT`].
    pub fn on_tick(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let expired: Vec<(u64, SessionId)> = self
            .probes
            .iter()
            .filter(|(_, (_, sent))| now.saturating_duration_since(*sent) >= PROBE_TIMEOUT)
            .map(|(&id, &(s, _))| (id, s))
            .collect();
        for (id, session) in expired {
            self.forget_probe(id);
            self.error(&mut out, session, "latency probe timed out");
        }
        out
    }

    /// The earliest time [`AchexDialect::on_tick`] has something to do, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.probes.values().map(|&(_, sent)| sent + PROBE_TIMEOUT).min()
    }

    /// A connection ended: its name, groups and hubs are released, and the
    /// remaining members of its hubs are told.
    pub fn on_close(&mut self, session: SessionId) -> Vec<Action> {
        let mut out = Vec::new();
        if session & HOST_SESSION_BIT == 0 {
            self.remove_session(&mut out, session);
        }
        out
    }

    fn remove_session(&mut self, out: &mut Vec<Action>, session: SessionId) {
        let Some(conn) = self.conns.remove(&session) else {
            return;
        };
        for id in &conn.probes {
            self.probes.remove(id);
        }
        self.by_sid.remove(&conn.sid);
        let Some(gone) = self.broker.close(session) else {
            return;
        };
        let name = gone.name.unwrap_or_default();
        for group in gone.groups {
            self.event(|| AchexEvent::Leave {
                session,
                sid: conn.sid,
                kind: Membership::Group,
                place: group,
                name: name.clone(),
            });
        }
        for (hub, remaining) in gone.hubs {
            self.left_hub(out, &hub, remaining, &name, conn.sid);
            self.event(|| AchexEvent::Leave {
                session,
                sid: conn.sid,
                kind: Membership::Hub,
                place: hub,
                name: name.clone(),
            });
        }
        if !name.is_empty() {
            self.event(|| AchexEvent::Logout {
                session,
                sid: conn.sid,
                name,
            });
        }
    }

    fn error(&self, out: &mut Vec<Action>, to: SessionId, text: &str) {
        if !self.quiet {
            out.push(Action::text(to, format!("{{\"error\":{}}}", json::quote(text))));
        }
    }

    fn event(&mut self, make: impl FnOnce() -> AchexEvent) {
        if self.events && self.host_receiver {
            self.host_items.push_back(HostItem::Event(make()));
        }
    }

    fn sid(&self, session: SessionId) -> u64 {
        self.conns.get(&session).map_or(0, |c| c.sid)
    }

    fn route(&mut self, out: &mut Vec<Action>, session: SessionId, key: &str, obj: &Members<'_>, size: usize) {
        // Every routed message needs a recipient list, so one is kept
        // between messages rather than allocated for each.
        let mut to = std::mem::take(&mut self.recipients);
        to.clear();
        if self.find_recipients(out, session, key, obj, &mut to) {
            let sid = self.sid(session);
            // `find_recipients` only says yes to a logged-in sender.
            let name = self.broker.name_of(session).unwrap_or("");
            let data = stamp(&mut self.stamp_buf, obj, name, sid, size);
            push_sends(out, &to, &data);
            if to.iter().any(|&s| s & HOST_SESSION_BIT != 0) {
                let name = name.to_owned();
                self.queue_host(&to, &data, &name, sid);
            }
        }
        self.recipients = to;
    }

    /// Puts the recipients of a routed message in `to`. False when there
    /// are none, after the error reply if one is due.
    fn find_recipients(
        &self,
        out: &mut Vec<Action>,
        session: SessionId,
        key: &str,
        obj: &Members<'_>,
        to: &mut Vec<SessionId>,
    ) -> bool {
        if self.broker.name_of(session).is_none() {
            self.error(out, session, "not authenticated");
            return false;
        }
        let Some(value) = obj.get(key) else {
            return false;
        };
        match key {
            "toS" | "tos" => match session_number(value).and_then(|n| self.by_sid.get(&n)) {
                Some(&s) if self.reachable(s) => to.push(s),
                _ => {
                    let text = format!("no such session: {}", value_text(value));
                    self.error(out, session, &text);
                    return false;
                }
            },
            "to" => {
                if let Value::String(n) = value {
                    self.broker.recipients_into(Target::Name(n), to);
                }
                to.retain(|&s| self.reachable(s));
                if to.is_empty() {
                    let text = format!("no such user: {}", value_text(value));
                    self.error(out, session, &text);
                    return false;
                }
            }
            _ => {
                let Some(place) = place_name(value) else {
                    self.error(out, session, &format!("invalid value for {key}"));
                    return false;
                };
                let target = if key == "bc" {
                    Target::Group(place)
                } else {
                    Target::HubExcept(place, session)
                };
                self.broker.recipients_into(target, to);
            }
        }
        !to.is_empty()
    }

    fn send_all(
        &mut self,
        out: &mut Vec<Action>,
        recipients: &[SessionId],
        data: &Shared,
        from_name: &str,
        from_sid: u64,
    ) {
        push_sends(out, recipients, data);
        self.queue_host(recipients, data, from_name, from_sid);
    }

    /// The in-process services among `recipients` get `data` as host items
    /// (none while nobody takes them).
    fn queue_host(&mut self, recipients: &[SessionId], data: &Shared, from_name: &str, from_sid: u64) {
        if !self.host_receiver {
            return;
        }
        for &to in recipients.iter().filter(|&&to| to & HOST_SESSION_BIT != 0) {
            self.host_items.push_back(HostItem::Message {
                service: ServiceHandle(to & !HOST_SESSION_BIT),
                from_name: from_name.to_owned(),
                from_sid,
                json: data.clone(),
            });
        }
    }

    /// False for an in-process service while nobody takes host items.
    fn reachable(&self, to: SessionId) -> bool {
        to & HOST_SESSION_BIT == 0 || self.host_receiver
    }

    fn auth_failed(out: &mut Vec<Action>, session: SessionId, e: &LoginError) {
        out.push(Action::text(
            session,
            format!("{{\"auth\":\"failed\",\"error\":{}}}", json::quote(e.reason())),
        ));
    }

    fn login_user(&mut self, out: &mut Vec<Action>, session: SessionId, key: &str, obj: &Members<'_>) {
        let result = match (name_field(obj.get(key)), password_field(obj)) {
            (Err(e), _) | (_, Err(e)) => Err(e),
            (Ok(name), Ok(password)) => self
                .broker
                .login_user(session, name, password)
                .map(|sw| (sw, name.to_owned())),
        };
        match result {
            Ok((sw, name)) => {
                self.announce_login(session, sw, name, false);
                let reply = if key == "auth" {
                    format!("{{\"auth\":\"OK\",\"SID\":{}}}", self.sid(session))
                } else {
                    "{\"auth\":\"ok\"}".to_owned()
                };
                out.push(Action::text(session, reply));
            }
            Err(e) => Self::auth_failed(out, session, &e),
        }
    }

    fn login_service(&mut self, out: &mut Vec<Action>, session: SessionId, obj: &Members<'_>) {
        let service = name_field(obj.get("serviceID"));
        let name = match (&service, obj.get("idtag")) {
            (Ok(s), None) => Ok(*s),
            (_, Some(tag)) => name_field(Some(tag)),
            (Err(e), None) => Err(e.clone()),
        };
        let result = match (service, name, password_field(obj)) {
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => Err(e),
            (Ok(service), Ok(name), Ok(password)) => self
                .broker
                .login_service(session, service, password, name)
                .map(|sw| (sw, name.to_owned())),
        };
        match result {
            Ok((sw, name)) => {
                self.announce_login(session, sw, name, true);
                out.push(Action::text(session, "{\"auth\":\"ok\"}"));
            }
            Err(e) => Self::auth_failed(out, session, &e),
        }
    }

    fn announce_login(&mut self, session: SessionId, sw: Switch, name: String, service: bool) {
        if !sw.changed {
            return;
        }
        let sid = self.sid(session);
        if let Some(old) = sw.previous {
            self.event(|| AchexEvent::Logout {
                session,
                sid,
                name: old,
            });
        }
        self.event(|| AchexEvent::Login {
            session,
            sid,
            name,
            service,
        });
    }

    fn cmd(&mut self, out: &mut Vec<Action>, session: SessionId, obj: &Members<'_>) {
        let Some(cmd) = obj.get("cmd") else {
            return;
        };
        let join = match cmd.as_str() {
            Some("register_broadcast") => true,
            Some("unregister_broadcast") => false,
            _ => {
                let text = format!("unknown cmd: {}", value_text(cmd));
                self.error(out, session, &text);
                return;
            }
        };
        let Some(bid) = obj.get("bid") else {
            self.error(out, session, "missing bid");
            return;
        };
        let Some(group) = place_name(bid) else {
            self.error(out, session, "invalid value for bid");
            return;
        };
        if join {
            self.join(session, Membership::Group, group);
        } else {
            self.leave(out, session, Membership::Group, group);
        }
    }

    fn hub_cmd(&mut self, out: &mut Vec<Action>, session: SessionId, key: &str, obj: &Members<'_>) {
        let Some(hub) = obj.get(key).and_then(place_name) else {
            self.error(out, session, &format!("invalid value for {key}"));
            return;
        };
        if key == "joinHub" {
            self.join(session, Membership::Hub, hub);
            out.push(Action::text(session, "{\"joinHub\":\"OK\"}"));
        } else {
            out.push(Action::text(session, "{\"leaveHub\":\"OK\"}"));
            self.leave(out, session, Membership::Hub, hub);
        }
    }

    fn join(&mut self, session: SessionId, kind: Membership, place: &str) -> bool {
        let joined = match kind {
            Membership::Group => self.broker.join_group(session, place),
            Membership::Hub => self.broker.join_hub(session, place),
        };
        if joined {
            let sid = self.sid(session);
            let name = self.broker.name_of(session).unwrap_or("").to_owned();
            self.event(|| AchexEvent::Join {
                session,
                sid,
                kind,
                place: place.to_owned(),
                name,
            });
        }
        joined
    }

    fn leave(&mut self, out: &mut Vec<Action>, session: SessionId, kind: Membership, place: &str) -> bool {
        let sid = self.sid(session);
        let name = self.broker.name_of(session).unwrap_or("").to_owned();
        let left = match kind {
            Membership::Group => self.broker.leave_group(session, place),
            Membership::Hub => match self.broker.leave_hub(session, place) {
                Some(remaining) => {
                    self.left_hub(out, place, remaining, &name, sid);
                    true
                }
                None => false,
            },
        };
        if left {
            self.event(|| AchexEvent::Leave {
                session,
                sid,
                kind,
                place: place.to_owned(),
                name,
            });
        }
        left
    }

    fn left_hub(&mut self, out: &mut Vec<Action>, hub: &str, remaining: Vec<SessionId>, name: &str, sid: u64) {
        if remaining.is_empty() {
            return;
        }
        let notice = format!(
            "{{\"leftHub\":{},\"user\":{},\"sID\":{sid}}}",
            json::quote(hub),
            json::quote(name)
        );
        let data: Shared = Arc::from(notice.into_bytes());
        self.send_all(out, &remaining, &data, name, sid);
    }

    fn echo(&mut self, out: &mut Vec<Action>, session: SessionId, obj: &Members<'_>, size: usize) {
        let sid = self.sid(session);
        let name = self.broker.name_of(session).unwrap_or("");
        let data = stamp(&mut self.stamp_buf, obj, name, sid, size);
        out.push(Action::Send {
            to: session,
            data,
            text: true,
        });
    }

    fn probe(&mut self, out: &mut Vec<Action>, session: SessionId, now: Instant) {
        let evicted = match self.conns.get(&session) {
            Some(c) if c.probes.len() >= MAX_PENDING_PROBES => c.probes.front().copied(),
            Some(_) => None,
            None => return,
        };
        if let Some(old) = evicted {
            self.forget_probe(old);
            self.error(out, session, "latency probe timed out");
        }
        let id = NEXT_PROBE.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.conns.get_mut(&session) {
            c.probes.push_back(id);
        }
        self.probes.insert(id, (session, now));
        let mut payload = PROBE_PREFIX.to_vec();
        payload.extend_from_slice(id.to_string().as_bytes());
        out.push(Action::Ping { to: session, payload });
    }

    fn forget_probe(&mut self, id: u64) {
        if let Some((session, _)) = self.probes.remove(&id) {
            if let Some(c) = self.conns.get_mut(&session) {
                c.probes.retain(|&p| p != id);
            }
        }
    }

    fn serverstat(&self, now: Instant) -> String {
        let s = self.stats_at(now);
        format!(
            "{{\"serverstat\":{{\"version\":{},\"sessions\":{},\"users\":{},\"groups\":{},\"hubs\":{},\"uptime_s\":{}}}}}",
            json::quote(&self.version),
            s.sessions,
            s.users,
            s.groups,
            s.hubs,
            s.uptime_s
        )
    }

    // ---- views for status pages ----

    pub fn stats(&self) -> AchexStats {
        self.stats_at(Instant::now())
    }

    pub fn stats_at(&self, now: Instant) -> AchexStats {
        let b = self.broker.stats();
        AchexStats {
            sessions: b.sessions.saturating_sub(self.host_services),
            users: b.names,
            groups: b.groups,
            hubs: b.hubs,
            uptime_s: now.saturating_duration_since(self.started).as_secs(),
        }
    }

    /// Logged-in names (users and services), sorted.
    pub fn names(&self) -> Vec<NameInfo> {
        self.broker.names()
    }

    /// Groups with their member counts, sorted.
    pub fn groups(&self) -> Vec<(String, usize)> {
        self.broker.groups()
    }

    /// Hubs with their member counts, sorted.
    pub fn hubs(&self) -> Vec<(String, usize)> {
        self.broker.hubs()
    }

    /// The Achex SID of an engine session.
    pub fn sid_of(&self, session: SessionId) -> Option<u64> {
        self.conns.get(&session).map(|c| c.sid)
    }

    /// The engine session of an Achex SID (in-process services have
    /// [`HOST_SESSION_BIT`] set).
    pub fn session_of(&self, sid: u64) -> Option<SessionId> {
        self.by_sid.get(&sid).copied()
    }

    pub fn name_of(&self, session: SessionId) -> Option<&str> {
        self.broker.name_of(session)
    }

    // ---- host API ----

    /// Sets whether login, logout, join and leave events are queued for
    /// [`AchexDialect::take_host_items`]. Off by default, so nobody has to drain
    /// a queue they never asked for; without a host receiver
    /// ([`AchexDialect::set_host_receiver`]) none are queued either way.
    pub fn set_events(&mut self, on: bool) {
        self.events = on;
    }

    /// Everything queued for the host since the last call, in order.
    pub fn take_host_items(&mut self) -> Vec<HostItem> {
        self.host_items.drain(..).collect()
    }

    /// Items queued for the host and not taken yet.
    pub fn pending_host_items(&self) -> usize {
        self.host_items.len()
    }

    /// Says whether someone takes the host items (true for a new dialect,
    /// whose owner calls [`AchexDialect::take_host_items`]). While false,
    /// nothing is queued: [`AchexDialect::register_service`] fails with
    /// [`HostError::NoReceiver`], events are not recorded, and messages to
    /// in-process services already registered are not routed (a `to` or
    /// `toS` naming one gets the sender `no such user`/`no such session`,
    /// a group or hub delivers to its other members). Turning it off drops
    /// what is queued.
    pub fn set_host_receiver(&mut self, on: bool) {
        self.host_receiver = on;
        if !on {
            self.host_items.clear();
        }
    }

    /// Adds or replaces credentials for `serviceID` logins.
    pub fn set_service_credentials(&mut self, service: &str, password: &str) {
        self.broker.set_service_credentials(service, password);
    }

    pub fn remove_service_credentials(&mut self, service: &str) -> bool {
        self.broker.remove_service_credentials(service)
    }

    /// Registers an in-process service under an exclusive name. It gets an SID
    /// and counts as a logged-in service; messages to it are queued as
    /// [`HostItem::Message`].
    pub fn register_service(&mut self, name: &str) -> Result<ServiceHandle, HostError> {
        if !self.host_receiver {
            return Err(HostError::NoReceiver);
        }
        if name.is_empty() {
            return Err(HostError::Login(LoginError::InvalidName));
        }
        if !self.broker.recipients(Target::Name(name)).is_empty() {
            return Err(HostError::Login(LoginError::NameInUse));
        }
        let sid = self.next_sid;
        let handle = ServiceHandle(sid);
        let session = handle.session();
        if self.add_session(session).is_none() {
            return Err(HostError::UnknownService);
        }
        match self.broker.claim_service(session, name) {
            Ok(sw) => {
                self.host_services += 1;
                self.announce_login(session, sw, name.to_owned(), true);
                Ok(handle)
            }
            Err(e) => {
                self.conns.remove(&session);
                self.by_sid.remove(&sid);
                self.broker.close(session);
                Err(HostError::Login(e))
            }
        }
    }

    /// Removes an in-process service as if it had disconnected.
    pub fn unregister_service(&mut self, service: ServiceHandle) -> Result<Vec<Action>, HostError> {
        let session = self.host_session(service)?;
        let mut out = Vec::new();
        self.remove_session(&mut out, session);
        self.host_services = self.host_services.saturating_sub(1);
        Ok(out)
    }

    fn host_session(&self, service: ServiceHandle) -> Result<SessionId, HostError> {
        let session = service.session();
        if self.conns.contains_key(&session) {
            Ok(session)
        } else {
            Err(HostError::UnknownService)
        }
    }

    /// Sends a JSON object from an in-process service, stamped with its name and
    /// SID like any client message.
    pub fn service_send(
        &mut self,
        service: ServiceHandle,
        target: &HostTarget,
        message: &[u8],
    ) -> Result<Vec<Action>, HostError> {
        let session = self.host_session(service)?;
        let Ok(Value::Object(obj)) = json::parse_borrowed(message) else {
            return Err(HostError::NotAnObject);
        };
        let recipients = match target {
            HostTarget::Name(n) => {
                let mut r = self.broker.recipients(Target::Name(n));
                r.retain(|&s| self.reachable(s));
                if r.is_empty() {
                    return Err(HostError::NoSuchUser);
                }
                r
            }
            HostTarget::Session(sid) => match self.by_sid.get(sid) {
                Some(&s) if self.reachable(s) => vec![s],
                _ => return Err(HostError::NoSuchSession),
            },
            HostTarget::Group(g) => self.broker.recipients(Target::Group(g)),
            HostTarget::Hub(h) => self.broker.recipients(Target::HubExcept(h, session)),
        };
        let mut out = Vec::new();
        if recipients.is_empty() {
            return Ok(out);
        }
        let name = self.broker.name_of(session).unwrap_or("").to_owned();
        let data = stamp(&mut self.stamp_buf, &obj, &name, service.sid(), message.len());
        self.send_all(&mut out, &recipients, &data, &name, service.sid());
        Ok(out)
    }

    /// Adds an in-process service to a group or hub. Returns true if it was not
    /// a member yet.
    pub fn service_join(&mut self, service: ServiceHandle, kind: Membership, place: &str) -> Result<bool, HostError> {
        let session = self.host_session(service)?;
        Ok(self.join(session, kind, place))
    }

    /// Removes an in-process service from a group or hub; leaving a hub tells
    /// its remaining members.
    pub fn service_leave(
        &mut self,
        service: ServiceHandle,
        kind: Membership,
        place: &str,
    ) -> Result<Vec<Action>, HostError> {
        let session = self.host_session(service)?;
        let mut out = Vec::new();
        self.leave(&mut out, session, kind, place);
        Ok(out)
    }
}

/// Socket recipients get one send each, all sharing `data`; in-process
/// services are left to [`AchexDialect::queue_host`].
fn push_sends(out: &mut Vec<Action>, recipients: &[SessionId], data: &Shared) {
    out.reserve(recipients.len());
    for &to in recipients {
        if to & HOST_SESSION_BIT == 0 {
            out.push(Action::Send {
                to,
                data: data.clone(),
                text: true,
            });
        }
    }
}

/// The largest action list [`AchexDialect::recycle`] keeps (about 160 KiB).
const MAX_SPARE_ACTIONS: usize = 4096;

/// A stamping buffer grown past this by a big message is dropped rather than
/// kept for the small ones that follow.
const STAMP_BUF_KEEP: usize = 64 << 10;

/// Client `FROM`/`sID` are dropped and the sender's appended; everything else
/// keeps its place. Written once, straight from the parsed message, into
/// `buf` (kept between messages), then copied into the one allocation every
/// recipient shares. `size` is the message's length: its compact form is
/// never longer, so the buffer rarely has to grow.
fn stamp(buf: &mut Vec<u8>, obj: &Members<'_>, name: &str, sid: u64, size: usize) -> Shared {
    buf.clear();
    buf.reserve(size + name.len() + 32);
    buf.push(b'{');
    for (k, v) in obj.iter().filter(|(k, _)| !matches!(*k, "FROM" | "sID")) {
        json::write_member(k, v, buf);
        buf.push(b',');
    }
    buf.extend_from_slice(b"\"FROM\":");
    json::write_str(name, buf);
    buf.extend_from_slice(b",\"sID\":");
    json::write_u64(sid, buf);
    buf.push(b'}');
    let data = Shared::from(&buf[..]);
    if buf.capacity() > STAMP_BUF_KEEP {
        *buf = Vec::new();
    }
    data
}

/// Error texts show a string as-is and anything else as compact JSON.
fn value_text(v: &Value<'_>) -> String {
    match v {
        Value::String(s) => s.to_string(),
        other => other.to_string(),
    }
}

/// Group and hub names: a string, or a number taken as its text.
fn place_name<'v>(v: &'v Value<'_>) -> Option<&'v str> {
    match v {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n),
        _ => None,
    }
}

/// `toS` values: a JSON number or a string of ASCII digits.
fn session_number(v: &Value<'_>) -> Option<u64> {
    let digits: &str = match v {
        Value::Number(n) => n,
        Value::String(s) => s,
        _ => return None,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn name_field<'v>(v: Option<&'v Value<'_>>) -> Result<&'v str, LoginError> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        _ => Err(LoginError::InvalidName),
    }
}

fn password_field<'v>(obj: &'v Members<'_>) -> Result<&'v str, LoginError> {
    match obj.get("passwd") {
        None => Ok(""),
        Some(Value::String(p)) => Ok(p),
        Some(_) => Err(LoginError::InvalidPassword),
    }
}

#[cfg(test)]
mod tests;
