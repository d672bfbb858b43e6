//! The process-visible part of each connection: its state and buffer sizes,
//! readable from any thread so that `write`, `is_valid` and backpressure answer
//! at once without asking the I/O thread.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// State 0 (the default) is "handshake in progress".
pub(crate) const ST_OPEN: u8 = 1;
pub(crate) const ST_CLOSING: u8 = 2;

#[derive(Default)]
pub(crate) struct ConnShared {
    state: AtomicU8,
    /// Bytes in the I/O thread's outbound buffer, as last published by it.
    buffered: AtomicUsize,
    /// Bytes sent from other threads and not yet taken in by the I/O thread.
    pub(crate) pending: AtomicUsize,
    /// A write reported backpressure; a drain event is owed.
    pub(crate) over_soft: AtomicBool,
}

impl ConnShared {
    pub(crate) fn is_open(&self) -> bool {
        self.state.load(Ordering::Acquire) == ST_OPEN
    }
    pub(crate) fn state(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }
    pub(crate) fn set_state(&self, s: u8) {
        self.state.store(s, Ordering::Release)
    }
    pub(crate) fn buffered(&self) -> usize {
        self.buffered.load(Ordering::Relaxed) + self.pending.load(Ordering::Relaxed)
    }
    pub(crate) fn publish_buffered(&self, n: usize) {
        self.buffered.store(n, Ordering::Relaxed)
    }
}

/// A multiplicative hasher: connection ids are sequential integers, so
/// SipHash's protection buys nothing here and costs on every lookup.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub(crate) type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

const SHARDS: usize = 16;

pub(crate) struct Registry {
    shards: Vec<Mutex<IdMap<Arc<ConnShared>>>>,
}

impl Registry {
    pub(crate) fn new() -> Registry {
        Registry {
            shards: (0..SHARDS).map(|_| Mutex::new(IdMap::default())).collect(),
        }
    }
    fn shard(&self, id: u64) -> std::sync::MutexGuard<'_, IdMap<Arc<ConnShared>>> {
        crate::lock(&self.shards[(id as usize / 64) % SHARDS])
    }
    pub(crate) fn insert(&self, id: u64, c: Arc<ConnShared>) {
        self.shard(id).insert(id, c);
    }
    pub(crate) fn remove(&self, id: u64) {
        self.shard(id).remove(&id);
    }
    pub(crate) fn get(&self, id: u64) -> Option<Arc<ConnShared>> {
        self.shard(id).get(&id).cloned()
    }
}
