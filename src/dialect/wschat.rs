//! WSChat (SocialVP): nickname chat with broadcast and private messages
//! (PROTOCOLS.md §3).
//!
//! One JSON object per frame, `command` in and `type` out. Every reply is
//! compact UTF-8 JSON with its members in the order the spec shows.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::{Action, SessionId, Shared};
use crate::broker::json::{self, Json, Object};

/// Sent on open; the typo is the original's and clients may match on it.
const INIT: &str = r#"{"type":"init","message":"Please identify to recieve messages."}"#;

/// Names longer than this many characters (Unicode scalar values) are refused.
const MAX_NAME_CHARS: usize = 256;

/// The state of one WSChat listener: who is connected and under which name.
#[derive(Debug, Default)]
pub struct WsChat {
    /// Every open session and its current name. A `BTreeMap` keeps broadcast
    /// and quit fan-out in a stable order (oldest connection first).
    sessions: BTreeMap<SessionId, Option<String>>,
    /// Identified names and the session holding each.
    names: HashMap<String, SessionId>,
}

impl WsChat {
    pub fn new() -> WsChat {
        WsChat::default()
    }

    /// A connection opened: it is told to identify.
    pub fn on_open(&mut self, sid: SessionId) -> Vec<Action> {
        self.sessions.insert(sid, None);
        vec![Action::text(sid, INIT)]
    }

    /// One complete message from `sid`. Replies go to `sid`; deliveries go to
    /// other sessions.
    pub fn on_message(&mut self, sid: SessionId, data: &[u8], is_text: bool) -> Vec<Action> {
        // A message from a session the engine never announced is still
        // handled, as a fresh unidentified client.
        self.sessions.entry(sid).or_insert(None);

        // Rule 1: binary frames are invalid input whatever they hold.
        // Relayed values go through `broker::json`, which keeps number text
        // and accepts exactly the 128 levels of nesting the spec allows.
        let obj = match is_text.then(|| json::parse(data).ok()).flatten() {
            Some(Json::Object(obj)) => obj,
            _ => return outcome(sid, false, "Invalid message: expected a JSON object!", 400),
        };
        // Rule 2.
        let Some(command) = obj.get("command") else {
            return outcome(sid, false, "Missing 'command' field!", 400);
        };
        if command.as_str() == Some("identify") {
            return self.identify(sid, &obj);
        }
        // Rule 7.
        let Some(from) = self.sessions.get(&sid).cloned().flatten() else {
            return outcome(sid, false, "Please identify yourself!", 10);
        };
        match command.as_str() {
            Some("broadcast") => self.broadcast(sid, &from, &obj),
            Some("message") => self.private(sid, &from, &obj),
            // Rule 13: a non-string command is shown as JSON.
            Some(other) => unknown_command(sid, other),
            None => unknown_command(sid, &command.to_string()),
        }
    }

    /// A connection closed. If it was identified, the others learn it quit.
    pub fn on_close(&mut self, sid: SessionId) -> Vec<Action> {
        let Some(Some(name)) = self.sessions.remove(&sid) else {
            return Vec::new();
        };
        self.names.remove(&name);
        let msg = format!(r#"{{"type":"quit","who":{}}}"#, json::quote(&name));
        self.fan_out(sid, shared(msg.into_bytes()))
    }

    /// How many clients currently hold a name (for the status page).
    pub fn identified_count(&self) -> usize {
        self.names.len()
    }

    /// How many sessions are open, identified or not (for the status page).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The name `sid` identified as, if any.
    pub fn name_of(&self, sid: SessionId) -> Option<&str> {
        self.sessions.get(&sid)?.as_deref()
    }

    /// Rules 3 to 6.
    fn identify(&mut self, sid: SessionId, obj: &Object) -> Vec<Action> {
        let Some(name) = obj.get("name") else {
            return outcome(sid, false, "Missing 'name' field!", 400);
        };
        let name = match name.as_str() {
            Some(n) if !n.is_empty() && n.chars().count() <= MAX_NAME_CHARS => n,
            _ => return outcome(sid, false, "Invalid 'name' field!", 400),
        };
        // Rule 5 covers both another holder and the client's own current name.
        if self.names.contains_key(name) {
            return outcome(sid, false, "Client with that name already exists!", 305);
        }
        let slot = self.sessions.entry(sid).or_insert(None);
        // Deviation: the original leaked the old name; it is released here,
        // silently (no quit, PROTOCOLS.md §7 row 8).
        if let Some(old) = slot.replace(name.to_owned()) {
            self.names.remove(&old);
        }
        self.names.insert(name.to_owned(), sid);
        outcome(sid, true, "Identified successfully!", 300)
    }

    /// Rules 8 and 9: everyone identified except the sender; no reply.
    fn broadcast(&self, sid: SessionId, from: &str, obj: &Object) -> Vec<Action> {
        let Some(message) = obj.get("message") else {
            return outcome(sid, false, "Missing 'message' field!", 400);
        };
        self.fan_out(sid, delivery("broadcast", from, message))
    }

    /// Rules 10 to 12: one named recipient, possibly the sender; no reply.
    fn private(&self, sid: SessionId, from: &str, obj: &Object) -> Vec<Action> {
        let Some(message) = obj.get("message") else {
            return outcome(sid, false, "Missing 'message' field!", 400);
        };
        let Some(to) = obj.get("to") else {
            return outcome(sid, false, "Missing 'to' field!", 400);
        };
        let Some(&target) = to.as_str().and_then(|t| self.names.get(t)) else {
            return outcome(sid, false, "No client with that name is currently connected!", 404);
        };
        vec![Action::Send {
            to: target,
            data: delivery("message", from, message),
            text: true,
        }]
    }

    /// Sends `msg` to every identified session but `except`, formatted once.
    fn fan_out(&self, except: SessionId, data: Shared) -> Vec<Action> {
        self.sessions
            .iter()
            .filter(|(&to, name)| to != except && name.is_some())
            .map(|(&to, _)| Action::Send {
                to,
                data: data.clone(),
                text: true,
            })
            .collect()
    }
}

/// `{"type":KIND,"from":FROM,"message":M}`, formatted once for every recipient.
fn delivery(kind: &str, from: &str, message: &Json) -> Shared {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(br#"{"type":"#);
    json::write_str(kind, &mut out);
    out.extend_from_slice(br#","from":"#);
    json::write_str(from, &mut out);
    out.extend_from_slice(br#","message":"#);
    message.write(&mut out);
    out.push(b'}');
    shared(out)
}

fn unknown_command(sid: SessionId, shown: &str) -> Vec<Action> {
    outcome(sid, false, &format!("Unknown command '{shown}'!"), 400)
}

fn outcome(sid: SessionId, success: bool, message: &str, code: u16) -> Vec<Action> {
    let msg = format!(
        r#"{{"type":"outcome","success":{success},"message":{},"code":{code}}}"#,
        json::quote(message)
    );
    vec![Action::Send {
        to: sid,
        data: shared(msg.into_bytes()),
        text: true,
    }]
}

fn shared(bytes: Vec<u8>) -> Shared {
    Arc::from(bytes.into_boxed_slice())
}

#[cfg(test)]
pub(crate) mod tests;
