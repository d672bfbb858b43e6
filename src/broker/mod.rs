//! The dialect-independent routing core: which session holds which name, who is
//! in which group or hub, and where a message goes.
//!
//! One [`Broker`] serves one listener namespace. It knows no wire format: a
//! dialect decides what to send, formats it once, and asks the broker for the
//! recipients; [`Broker::deliver`] then hands every recipient the same bytes.
//! Recipients come back in a fixed order (ascending session id, which is
//! connection order), and nothing is queued here, so one sender's messages reach
//! each recipient in the order the dialect handled them.

pub mod auth;
pub mod json;

use std::collections::{BTreeMap, BTreeSet, HashMap};

pub use auth::{AuthCallback, AuthMode, LoginError};

use crate::dialect::{Action, SessionId, Shared};
use crate::engine::IdMap;
use auth::secret_eq;

/// What kind of party holds a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Any number of sessions may share a user name.
    User,
    /// A service name is exclusive: one session at a time.
    Service,
}

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// One open session, logged in or not.
    Session(SessionId),
    /// Every session holding the name.
    Name(&'a str),
    /// Every member of the group.
    Group(&'a str),
    /// Every member of the hub.
    Hub(&'a str),
    /// Every member of the hub except this session (usually the sender).
    HubExcept(&'a str, SessionId),
}

/// The outcome of a successful login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switch {
    /// The name the session held before, if it held one and now holds another.
    pub previous: Option<String>,
    /// False when the session already held this name in this role.
    pub changed: bool,
}

/// What a closing session left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Departure {
    /// The name it held.
    pub name: Option<String>,
    /// The groups it was in.
    pub groups: Vec<String>,
    /// The hubs it was in, each with the members that remain.
    pub hubs: Vec<(String, Vec<SessionId>)>,
}

/// Counts for status pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Open sessions.
    pub sessions: usize,
    /// Distinct names held (users and services).
    pub names: usize,
    /// Groups with at least one member.
    pub groups: usize,
    /// Hubs with at least one member.
    pub hubs: usize,
}

/// A held name, for status pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameInfo {
    pub name: String,
    pub role: Role,
    pub sessions: usize,
}

#[derive(Debug, Default)]
struct Session {
    name: Option<String>,
    groups: BTreeSet<String>,
    hubs: BTreeSet<String>,
}

struct NameEntry {
    role: Role,
    /// Open mode: the password set by the first claimer.
    password: Option<String>,
    sessions: BTreeSet<SessionId>,
}

/// Routing state of one namespace.
#[derive(Default)]
pub struct Broker {
    auth: AuthMode,
    service_credentials: HashMap<String, String>,
    // Looked up several times per routed message; the ids are handed out
    // by the process, so the engine's cheap id hasher is safe here.
    sessions: IdMap<Session>,
    // Every direct message looks its target up here, among all the names
    // held, so a hash map (the default hasher: clients choose names); the
    // status listing sorts its copy instead.
    names: HashMap<String, NameEntry>,
    // Ordered maps so status listings come out sorted without extra work.
    groups: BTreeMap<String, BTreeSet<SessionId>>,
    hubs: BTreeMap<String, BTreeSet<SessionId>>,
}

// Written by hand so open-mode and service passwords never reach a log.
impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("auth", &self.auth)
            .field("services", &self.service_credentials.len())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Broker {
    pub fn new(auth: AuthMode) -> Broker {
        Broker {
            auth,
            ..Broker::default()
        }
    }

    /// Replaces the user authentication mode. Names already held stay held.
    pub fn set_auth_mode(&mut self, auth: AuthMode) {
        self.auth = auth;
    }

    /// Adds or replaces the credentials a service logs in with.
    pub fn set_service_credentials(&mut self, service: &str, password: &str) {
        self.service_credentials.insert(service.to_owned(), password.to_owned());
    }

    /// Forgets a service's credentials; sessions already logged in keep their name.
    pub fn remove_service_credentials(&mut self, service: &str) -> bool {
        self.service_credentials.remove(service).is_some()
    }

    /// Registers a new session. Returns false if the id is already open.
    pub fn open(&mut self, sid: SessionId) -> bool {
        if self.sessions.contains_key(&sid) {
            return false;
        }
        self.sessions.insert(sid, Session::default());
        true
    }

    pub fn is_open(&self, sid: SessionId) -> bool {
        self.sessions.contains_key(&sid)
    }

    /// Removes a session from everything it was part of.
    pub fn close(&mut self, sid: SessionId) -> Option<Departure> {
        let session = self.sessions.remove(&sid)?;
        if let Some(name) = &session.name {
            self.release_name(sid, name);
        }
        for g in &session.groups {
            remove_member(&mut self.groups, g, sid);
        }
        let hubs = session
            .hubs
            .iter()
            .map(|h| {
                remove_member(&mut self.hubs, h, sid);
                (h.clone(), members_of(&self.hubs, h))
            })
            .collect();
        Some(Departure {
            name: session.name,
            groups: session.groups.into_iter().collect(),
            hubs,
        })
    }

    /// The name a session holds.
    pub fn name_of(&self, sid: SessionId) -> Option<&str> {
        self.sessions.get(&sid)?.name.as_deref()
    }

    /// The role of the name a session holds.
    pub fn role_of(&self, sid: SessionId) -> Option<Role> {
        let name = self.name_of(sid)?;
        self.names.get(name).map(|e| e.role)
    }

    /// Logs a session in as a user, checked by the authentication mode. On
    /// failure the session keeps its previous identity.
    pub fn login_user(&mut self, sid: SessionId, name: &str, password: &str) -> Result<Switch, LoginError> {
        if !self.sessions.contains_key(&sid) {
            return Err(LoginError::NoSuchSession);
        }
        if name.is_empty() {
            return Err(LoginError::InvalidName);
        }
        let entry = self.names.get(name);
        if let Some(e) = entry {
            if e.role == Role::Service && held_by_other(e, sid) {
                return Err(LoginError::NameInUse);
            }
        }
        match &self.auth {
            AuthMode::Open => {
                // A service entry held only by this session is replaced below,
                // so only a user claim has a password to match.
                if let Some(NameEntry {
                    role: Role::User,
                    password: Some(p),
                    ..
                }) = entry
                {
                    if !secret_eq(p, password) {
                        return Err(LoginError::WrongPassword);
                    }
                }
            }
            AuthMode::Table(table) => match table.get(name) {
                Some(p) if secret_eq(p, password) => {}
                _ => return Err(LoginError::InvalidCredentials),
            },
            AuthMode::Callback(decide) => {
                if let Err(text) = decide(name, password) {
                    let text = if text.is_empty() { "rejected".to_owned() } else { text };
                    return Err(LoginError::Rejected(text));
                }
            }
        }
        let claim = matches!(self.auth, AuthMode::Open).then(|| password.to_owned());
        Ok(self.switch(sid, name, Role::User, claim))
    }

    /// Logs a session in as a service: `service` with `password` must match the
    /// service credentials, and `name` (its `idtag`, or `service` itself) must
    /// be held by no other session.
    pub fn login_service(
        &mut self,
        sid: SessionId,
        service: &str,
        password: &str,
        name: &str,
    ) -> Result<Switch, LoginError> {
        if !self.sessions.contains_key(&sid) {
            return Err(LoginError::NoSuchSession);
        }
        if service.is_empty() || name.is_empty() {
            return Err(LoginError::InvalidName);
        }
        match self.service_credentials.get(service) {
            None => return Err(LoginError::UnknownService),
            Some(p) if !secret_eq(p, password) => return Err(LoginError::WrongPassword),
            Some(_) => {}
        }
        self.claim_service(sid, name)
    }

    /// Gives a session an exclusive service name without checking credentials:
    /// for services the host runs in-process.
    pub fn claim_service(&mut self, sid: SessionId, name: &str) -> Result<Switch, LoginError> {
        if !self.sessions.contains_key(&sid) {
            return Err(LoginError::NoSuchSession);
        }
        if name.is_empty() {
            return Err(LoginError::InvalidName);
        }
        if self.names.get(name).is_some_and(|e| held_by_other(e, sid)) {
            return Err(LoginError::NameInUse);
        }
        Ok(self.switch(sid, name, Role::Service, None))
    }

    fn switch(&mut self, sid: SessionId, name: &str, role: Role, claim: Option<String>) -> Switch {
        let current = self.sessions.get(&sid).and_then(|s| s.name.clone());
        if current.as_deref() == Some(name) && self.names.get(name).map(|e| e.role) == Some(role) {
            return Switch {
                previous: None,
                changed: false,
            };
        }
        if let Some(old) = &current {
            self.release_name(sid, old);
        }
        let entry = self.names.entry(name.to_owned()).or_insert(NameEntry {
            role,
            password: claim,
            sessions: BTreeSet::new(),
        });
        entry.sessions.insert(sid);
        if let Some(s) = self.sessions.get_mut(&sid) {
            s.name = Some(name.to_owned());
        }
        Switch {
            previous: current,
            changed: true,
        }
    }

    fn release_name(&mut self, sid: SessionId, name: &str) {
        if let Some(e) = self.names.get_mut(name) {
            e.sessions.remove(&sid);
            // The claim (and its open-mode password) ends with the last holder.
            if e.sessions.is_empty() {
                self.names.remove(name);
            }
        }
    }

    /// Adds a session to a group. Returns true if it was not a member yet.
    pub fn join_group(&mut self, sid: SessionId, group: &str) -> bool {
        join(&mut self.sessions, &mut self.groups, sid, group, |s| &mut s.groups)
    }

    /// Removes a session from a group. Returns true if it was a member.
    pub fn leave_group(&mut self, sid: SessionId, group: &str) -> bool {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return false;
        };
        if !s.groups.remove(group) {
            return false;
        }
        remove_member(&mut self.groups, group, sid);
        true
    }

    /// Adds a session to a hub. Returns true if it was not a member yet.
    pub fn join_hub(&mut self, sid: SessionId, hub: &str) -> bool {
        join(&mut self.sessions, &mut self.hubs, sid, hub, |s| &mut s.hubs)
    }

    /// Removes a session from a hub. When it was a member, returns the members
    /// that remain (to be told who left).
    pub fn leave_hub(&mut self, sid: SessionId, hub: &str) -> Option<Vec<SessionId>> {
        let s = self.sessions.get_mut(&sid)?;
        if !s.hubs.remove(hub) {
            return None;
        }
        remove_member(&mut self.hubs, hub, sid);
        Some(members_of(&self.hubs, hub))
    }

    /// The sessions a message to `target` reaches, in ascending id order.
    pub fn recipients(&self, target: Target<'_>) -> Vec<SessionId> {
        let mut out = Vec::new();
        self.recipients_into(target, &mut out);
        out
    }

    /// As [`Broker::recipients`], appended to `out`: a caller routing many
    /// messages keeps one list rather than allocating one per message.
    pub fn recipients_into(&self, target: Target<'_>, out: &mut Vec<SessionId>) {
        match target {
            Target::Session(sid) => {
                if self.sessions.contains_key(&sid) {
                    out.push(sid);
                }
            }
            Target::Name(name) => {
                if let Some(e) = self.names.get(name) {
                    out.extend(e.sessions.iter().copied());
                }
            }
            Target::Group(g) => {
                if let Some(m) = self.groups.get(g) {
                    out.extend(m.iter().copied());
                }
            }
            Target::Hub(h) => {
                if let Some(m) = self.hubs.get(h) {
                    out.extend(m.iter().copied());
                }
            }
            Target::HubExcept(h, except) => {
                if let Some(m) = self.hubs.get(h) {
                    out.extend(m.iter().copied().filter(|&s| s != except));
                }
            }
        }
    }

    /// One send per recipient, all sharing `data`.
    pub fn deliver(&self, target: Target<'_>, data: &Shared, text: bool) -> Vec<Action> {
        self.recipients(target)
            .into_iter()
            .map(|to| Action::Send {
                to,
                data: data.clone(),
                text,
            })
            .collect()
    }

    pub fn groups_of(&self, sid: SessionId) -> Vec<String> {
        self.sessions
            .get(&sid)
            .map(|s| s.groups.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn hubs_of(&self, sid: SessionId) -> Vec<String> {
        self.sessions
            .get(&sid)
            .map(|s| s.hubs.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn stats(&self) -> Stats {
        Stats {
            sessions: self.sessions.len(),
            names: self.names.len(),
            groups: self.groups.len(),
            hubs: self.hubs.len(),
        }
    }

    /// Held names, sorted.
    pub fn names(&self) -> Vec<NameInfo> {
        let mut names: Vec<NameInfo> = self
            .names
            .iter()
            .map(|(name, e)| NameInfo {
                name: name.clone(),
                role: e.role,
                sessions: e.sessions.len(),
            })
            .collect();
        names.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        names
    }

    /// Groups with their member counts, sorted by name.
    pub fn groups(&self) -> Vec<(String, usize)> {
        self.groups.iter().map(|(g, m)| (g.clone(), m.len())).collect()
    }

    /// Hubs with their member counts, sorted by name.
    pub fn hubs(&self) -> Vec<(String, usize)> {
        self.hubs.iter().map(|(h, m)| (h.clone(), m.len())).collect()
    }
}

fn members_of(map: &BTreeMap<String, BTreeSet<SessionId>>, key: &str) -> Vec<SessionId> {
    map.get(key).map(|m| m.iter().copied().collect()).unwrap_or_default()
}

fn held_by_other(e: &NameEntry, sid: SessionId) -> bool {
    e.sessions.iter().any(|&s| s != sid)
}

fn join(
    sessions: &mut IdMap<Session>,
    map: &mut BTreeMap<String, BTreeSet<SessionId>>,
    sid: SessionId,
    key: &str,
    set: impl Fn(&mut Session) -> &mut BTreeSet<String>,
) -> bool {
    let Some(s) = sessions.get_mut(&sid) else {
        return false;
    };
    if !set(s).insert(key.to_owned()) {
        return false;
    }
    map.entry(key.to_owned()).or_default().insert(sid);
    true
}

/// Removes a member and drops the group or hub once empty, so counts only
/// include those with members.
fn remove_member(map: &mut BTreeMap<String, BTreeSet<SessionId>>, key: &str, sid: SessionId) {
    if let Some(m) = map.get_mut(key) {
        m.remove(&sid);
        if m.is_empty() {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests;
