//! webtalk (PROTOCOLS.md §4): an application drives users and channels over
//! the admin TCP protocol (or directly through this Rust API); browsers log in
//! once with `ID!SALT` and then only receive.
//!
//! [`Webtalk`] is the shared state of one listener pair: users, channels, the
//! key/value store, offline queues and the browser sessions. [`admin`] turns
//! admin frames into calls on it; [`framing`] cuts the admin byte stream.

pub mod admin;
pub mod framing;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use super::{Action, SessionId, Shared};

pub type UserId = u64;
pub type ChannelId = u64;

/// Channel 1 exists from the start, every new user joins it, and it cannot be
/// killed.
pub const GLOBAL_CHANNEL: ChannelId = 1;
/// An offline user's queue holds at most this many messages…
pub const QUEUE_MAX_MESSAGES: usize = 1000;
/// …and at most this many bytes of message payload.
pub const QUEUE_MAX_BYTES: usize = 1 << 20;
/// Salts are this many decimal digits.
pub const SALT_LEN: usize = 20;

/// Close sent to a browser whose login failed.
pub const CLOSE_LOGIN_FAILED: (u16, &str) = (4001, "login failed");
/// Close sent to the older browser when the same user logs in again.
pub const CLOSE_REPLACED: (u16, &str) = (4002, "replaced");
/// Close sent to the browser of a killed user.
pub const CLOSE_USER_KILLED: (u16, &str) = (4003, "user killed");

/// Produces a salt, or `None` when no randomness is available.
pub type SaltSource = Box<dyn FnMut() -> Option<[u8; SALT_LEN]> + Send>;

/// Why a webtalk operation failed. `Display` gives the exact admin error text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebtalkError {
    UnknownUser(UserId),
    UnknownChannel(ChannelId),
    /// The message was dropped for this user (the first one, for a shout).
    QueueFull(UserId),
    /// Channel 1 cannot be killed.
    GlobalChannel,
    /// The operating system's random source failed; no user was created.
    NoRandomness,
}

impl fmt::Display for WebtalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebtalkError::UnknownUser(id) => write!(f, "Unknown User: {id}"),
            WebtalkError::UnknownChannel(id) => write!(f, "Unknown Channel: {id}"),
            WebtalkError::QueueFull(id) => write!(f, "Queue full for user {id}"),
            WebtalkError::GlobalChannel => f.write_str("Cannot kill the global channel"),
            WebtalkError::NoRandomness => f.write_str("Salt generation failed"),
        }
    }
}

impl std::error::Error for WebtalkError {}

struct User {
    salt: [u8; SALT_LEN],
    /// The logged-in browser, if any.
    browser: Option<SessionId>,
    channels: BTreeSet<ChannelId>,
    /// Messages waiting for a login, oldest first, with their text flag.
    queue: VecDeque<(Shared, bool)>,
    queued_bytes: usize,
}

impl User {
    /// Sends to the bound browser, or queues while there is room.
    fn deliver(&mut self, data: &Shared, text: bool, out: &mut Vec<Action>) -> Result<(), QueueFull> {
        if let Some(to) = self.browser {
            out.push(Action::Send {
                to,
                data: data.clone(),
                text,
            });
            return Ok(());
        }
        if self.queue.len() >= QUEUE_MAX_MESSAGES || self.queued_bytes + data.len() > QUEUE_MAX_BYTES {
            return Err(QueueFull);
        }
        self.queued_bytes += data.len();
        self.queue.push_back((data.clone(), text));
        Ok(())
    }
}

struct QueueFull;

/// Where a browser session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Browser {
    /// Open; its first message is the login.
    AwaitingLogin,
    LoggedIn(UserId),
    /// Login failed, replaced or killed: a close was asked for and anything it
    /// still sends is discarded.
    Done,
}

/// The state of one webtalk namespace (a browser listener and its admin
/// listener).
pub struct Webtalk {
    users: HashMap<UserId, User>,
    /// Members are kept sorted, so "the first full member" of a shout is the
    /// lowest user id.
    channels: BTreeMap<ChannelId, BTreeSet<UserId>>,
    store: HashMap<Vec<u8>, Vec<u8>>,
    browsers: HashMap<SessionId, Browser>,
    next_user: UserId,
    next_channel: ChannelId,
    salt_source: SaltSource,
}

impl fmt::Debug for Webtalk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Salts stay out of logs.
        f.debug_struct("Webtalk")
            .field("users", &self.users.len())
            .field("channels", &self.channels.len())
            .field("stored", &self.store.len())
            .field("browsers", &self.browsers.len())
            .finish()
    }
}

impl Default for Webtalk {
    fn default() -> Self {
        Webtalk::new()
    }
}

impl Webtalk {
    /// A fresh namespace with channel 1 and no users; salts come from the OS
    /// CSPRNG.
    pub fn new() -> Webtalk {
        Webtalk::with_salt_source(Box::new(os_salt))
    }

    /// Like [`Webtalk::new`] with salts from `source` (for reproducible tests;
    /// never use a predictable source in production).
    pub fn with_salt_source(source: SaltSource) -> Webtalk {
        Webtalk {
            users: HashMap::new(),
            channels: BTreeMap::from([(GLOBAL_CHANNEL, BTreeSet::new())]),
            store: HashMap::new(),
            browsers: HashMap::new(),
            next_user: 1,
            next_channel: GLOBAL_CHANNEL + 1,
            salt_source: source,
        }
    }

    // ----- application API (the admin commands) -----

    /// `[newuser]`: a new user in channel 1. Returns its id and salt; the
    /// browser logs in with `ID!SALT`.
    pub fn create_user(&mut self) -> Result<(UserId, String), WebtalkError> {
        let salt = (self.salt_source)().ok_or(WebtalkError::NoRandomness)?;
        let id = self.next_user;
        self.next_user = self.next_user.saturating_add(1);
        self.users.insert(
            id,
            User {
                salt,
                browser: None,
                channels: BTreeSet::from([GLOBAL_CHANNEL]),
                queue: VecDeque::new(),
                queued_bytes: 0,
            },
        );
        self.channels.entry(GLOBAL_CHANNEL).or_default().insert(id);
        Ok((id, String::from_utf8_lossy(&salt).into_owned()))
    }

    /// `[killuser]`: closes the user's browser (4003), removes it from every
    /// channel, drops its queue and forgets it.
    pub fn kill_user(&mut self, user: UserId, out: &mut Vec<Action>) -> Result<(), WebtalkError> {
        let u = self.users.remove(&user).ok_or(WebtalkError::UnknownUser(user))?;
        if let Some(sid) = u.browser {
            self.browsers.insert(sid, Browser::Done);
            out.push(close(sid, CLOSE_USER_KILLED));
        }
        for chan in u.channels {
            if let Some(members) = self.channels.get_mut(&chan) {
                members.remove(&user);
            }
        }
        Ok(())
    }

    /// `[whisper]`: `message` to one user, as is (text frame when it is UTF-8,
    /// binary otherwise), or into its queue while it is offline.
    pub fn whisper(&mut self, user: UserId, message: &[u8], out: &mut Vec<Action>) -> Result<(), WebtalkError> {
        let u = self.users.get_mut(&user).ok_or(WebtalkError::UnknownUser(user))?;
        let (data, text) = payload(message);
        u.deliver(&data, text, out)
            .map_err(|QueueFull| WebtalkError::QueueFull(user))
    }

    /// `[newchannel]`: a new empty channel.
    pub fn create_channel(&mut self) -> ChannelId {
        let id = self.next_channel;
        self.next_channel = self.next_channel.saturating_add(1);
        self.channels.insert(id, BTreeSet::new());
        id
    }

    /// `[killchannel]`: forgets a channel and its memberships.
    pub fn kill_channel(&mut self, chan: ChannelId) -> Result<(), WebtalkError> {
        if chan == GLOBAL_CHANNEL {
            return Err(WebtalkError::GlobalChannel);
        }
        let members = self.channels.remove(&chan).ok_or(WebtalkError::UnknownChannel(chan))?;
        for user in members {
            if let Some(u) = self.users.get_mut(&user) {
                u.channels.remove(&chan);
            }
        }
        Ok(())
    }

    /// `[shout]`: `message` to every member, formatted once. A full queue drops
    /// the message for that member only; the error names the first such member
    /// after everyone else got it.
    pub fn shout(&mut self, chan: ChannelId, message: &[u8], out: &mut Vec<Action>) -> Result<(), WebtalkError> {
        let members = self.channels.get(&chan).ok_or(WebtalkError::UnknownChannel(chan))?;
        let (data, text) = payload(message);
        let mut first_full = None;
        for &user in members {
            let Some(u) = self.users.get_mut(&user) else {
                continue;
            };
            if u.deliver(&data, text, out).is_err() && first_full.is_none() {
                first_full = Some(user);
            }
        }
        first_full.map_or(Ok(()), |user| Err(WebtalkError::QueueFull(user)))
    }

    /// `[join]`: idempotent.
    pub fn join(&mut self, chan: ChannelId, user: UserId) -> Result<(), WebtalkError> {
        let (members, u) = self.membership(chan, user)?;
        members.insert(user);
        u.channels.insert(chan);
        Ok(())
    }

    /// `[leave]`: also succeeds for a non-member.
    pub fn leave(&mut self, chan: ChannelId, user: UserId) -> Result<(), WebtalkError> {
        let (members, u) = self.membership(chan, user)?;
        members.remove(&user);
        u.channels.remove(&chan);
        Ok(())
    }

    /// `[store]`: sets `key` to `value`.
    pub fn store(&mut self, key: &[u8], value: &[u8]) {
        self.store.insert(key.to_vec(), value.to_vec());
    }

    /// `[clear]`: removes `key`, present or not.
    pub fn clear(&mut self, key: &[u8]) {
        self.store.remove(key);
    }

    /// `[retrieve]`: the value stored under `key`.
    pub fn retrieve(&self, key: &[u8]) -> Option<&[u8]> {
        self.store.get(key).map(Vec::as_slice)
    }

    // ----- views (status page) -----

    /// Known users, online or not.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Users with a logged-in browser.
    pub fn online_count(&self) -> usize {
        self.users.values().filter(|u| u.browser.is_some()).count()
    }

    /// Channels, the global one included.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Messages waiting in all offline queues.
    pub fn queued_count(&self) -> usize {
        self.users.values().map(|u| u.queue.len()).sum()
    }

    /// Keys in the store.
    pub fn stored_count(&self) -> usize {
        self.store.len()
    }

    /// Whether `user` is a member of `chan`.
    pub fn is_member(&self, chan: ChannelId, user: UserId) -> bool {
        self.channels.get(&chan).is_some_and(|m| m.contains(&user))
    }

    /// The browser session `user` is logged in with.
    pub fn browser_of(&self, user: UserId) -> Option<SessionId> {
        self.users.get(&user)?.browser
    }

    // ----- browser side -----

    /// A browser connected. Nothing is sent: it must log in first, and there
    /// is no login timeout.
    pub fn on_open(&mut self, sid: SessionId) -> Vec<Action> {
        self.browsers.insert(sid, Browser::AwaitingLogin);
        Vec::new()
    }

    /// A browser message. The first one is the login `ID!SALT`; later ones are
    /// discarded.
    pub fn on_message(&mut self, sid: SessionId, data: &[u8], is_text: bool) -> Vec<Action> {
        let state = *self.browsers.entry(sid).or_insert(Browser::AwaitingLogin);
        if state != Browser::AwaitingLogin {
            return Vec::new();
        }
        let Some(user) = is_text.then(|| self.check_login(data)).flatten() else {
            // Only the new socket is closed: a wrong salt must not kick the
            // browser already bound.
            self.browsers.insert(sid, Browser::Done);
            return vec![close(sid, CLOSE_LOGIN_FAILED)];
        };
        self.browsers.insert(sid, Browser::LoggedIn(user));
        let mut out = Vec::new();
        let Some(u) = self.users.get_mut(&user) else {
            return out;
        };
        if let Some(old) = u.browser.replace(sid) {
            self.browsers.insert(old, Browser::Done);
            out.push(close(old, CLOSE_REPLACED));
        }
        // Queued messages go first, so they arrive before anything newer.
        u.queued_bytes = 0;
        out.extend(
            u.queue
                .drain(..)
                .map(|(data, text)| Action::Send { to: sid, data, text }),
        );
        out
    }

    /// A browser disconnected. Its user stays known and may log in again.
    pub fn on_close(&mut self, sid: SessionId) -> Vec<Action> {
        if let Some(Browser::LoggedIn(user)) = self.browsers.remove(&sid) {
            if let Some(u) = self.users.get_mut(&user) {
                if u.browser == Some(sid) {
                    u.browser = None;
                }
            }
        }
        Vec::new()
    }

    /// The user named by a login `ID!SALT`, if the salt matches.
    fn check_login(&self, login: &[u8]) -> Option<UserId> {
        let (id, salt) = split_once(login)?;
        let user = parse_id(id)?;
        let u = self.users.get(&user)?;
        ct_eq(&u.salt, salt).then_some(user)
    }

    /// Both sides of a membership, checking the channel before the user.
    fn membership(
        &mut self,
        chan: ChannelId,
        user: UserId,
    ) -> Result<(&mut BTreeSet<UserId>, &mut User), WebtalkError> {
        let members = self.channels.get_mut(&chan).ok_or(WebtalkError::UnknownChannel(chan))?;
        let u = self.users.get_mut(&user).ok_or(WebtalkError::UnknownUser(user))?;
        Ok((members, u))
    }
}

/// A message as delivered: its bytes unchanged, in a text frame when they are
/// UTF-8 (text frames must be) and a binary frame otherwise.
fn payload(message: &[u8]) -> (Shared, bool) {
    let text = std::str::from_utf8(message).is_ok();
    (Arc::from(message), text)
}

fn close(to: SessionId, (code, reason): (u16, &str)) -> Action {
    Action::Close {
        to,
        code,
        reason: reason.to_owned(),
    }
}

/// Splits at the first `!`.
pub(crate) fn split_once(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = data.iter().position(|&b| b == b'!')?;
    Some((&data[..at], &data[at + 1..]))
}

/// An id: one or more ASCII digits (leading zeros allowed) that fit in u64.
pub(crate) fn parse_id(text: &[u8]) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    text.iter().try_fold(0u64, |n, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// Compares a secret with a candidate in time that depends only on the
/// candidate's length, so a guesser learns nothing from how long a wrong
/// guess took.
pub(crate) fn ct_eq(secret: &[u8], candidate: &[u8]) -> bool {
    let mut diff = u8::from(secret.len() != candidate.len());
    for (i, &c) in candidate.iter().enumerate() {
        diff |= secret.get(i).copied().unwrap_or(!c) ^ c;
    }
    std::hint::black_box(diff) == 0
}

/// 20 uniform decimal digits from the OS CSPRNG.
fn os_salt() -> Option<[u8; SALT_LEN]> {
    let mut salt = [0u8; SALT_LEN];
    let mut filled = 0;
    let mut bytes = [0u8; 32];
    while filled < SALT_LEN {
        getrandom::getrandom(&mut bytes).ok()?;
        // Bytes of 250 and above are rejected so each digit is uniform.
        for &b in bytes.iter().filter(|&&b| b < 250) {
            if filled == SALT_LEN {
                break;
            }
            salt[filled] = b'0' + b % 10;
            filled += 1;
        }
    }
    Some(salt)
}

#[cfg(test)]
mod tests;
