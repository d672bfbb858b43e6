//! Every pointer↔object conversion of the C boundary happens here.
//!
//! A pointer handed to C (`wsb_server *`, `wsb_client_config *`, …) is not an
//! address but a *token*: drawn from one process-wide counter, never reused,
//! and mapped to its object by the registry of that object kind. So a NULL,
//! freed, foreign or wrong-kind pointer is recognised (`WSB_RESULT_NULL_POINTER`
//! or `WSB_RESULT_NOT_FOUND`) instead of being dereferenced, freeing twice is
//! a result rather than a crash, and a stale pointer can never reach a newer
//! object that happens to live at the old address.
//!
//! The rules for code in `ffi/` (checked by `ffi::tests`):
//! * create with [`Handles::add`], or [`Handles::reserve`] + [`Reservation::commit`]
//!   when a callback handler must know its object before the engine starts
//!   (it gets an [`Owner`], which waits for the commit on its first event);
//! * reach objects only through [`Handles::call`] (or [`Handles::with`]) and
//!   free them with [`Handles::free`];
//! * hold a host's `userdata` in a [`Userdata`], whose drop calls
//!   `userdata_free` exactly once.

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::c_void;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};

use super::server::wsb_userdata_free_cb;
use super::{guard, set_last_error, wsb_result};

/// A failed call: its result code and the detail for `_last_error`.
pub(crate) type Failure = (wsb_result, String);

/// What the registry needs to know about an object kind. Every method has a
/// default, so configurations implement it with an empty block.
pub(crate) trait Object: Send + Sync + 'static {
    /// Where the detail of the object's last failed call is kept for its
    /// `_last_error`, if it has one.
    fn last_error(&self) -> Option<&Mutex<String>> {
        None
    }

    /// True on one of the object's own threads, where freeing it would wait
    /// for itself.
    fn on_own_thread(&self) -> bool {
        false
    }

    /// Stops the object once it has left the registry: its threads are
    /// joined (no callback runs afterwards), then its userdata is released.
    fn shutdown(&self) {}
}

/// The first token, and the distance between two. The values are far from
/// small integers and, on 64-bit hosts, not canonical addresses, so a token
/// never collides with a made-up pointer and a host that dereferences one
/// faults at once.
const FIRST_TOKEN: usize = if usize::BITS >= 64 {
    0x5753_4200_0000_0000_u64 as usize
} else {
    0x5753_0000
};
const TOKEN_STEP: usize = 16;

static NEXT_TOKEN: AtomicUsize = AtomicUsize::new(FIRST_TOKEN);

/// A new token, shared by no object of any kind before or after.
fn new_token() -> Result<usize, Failure> {
    NEXT_TOKEN
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| t.checked_add(TOKEN_STEP))
        .map_err(|_| (wsb_result::InvalidState, "no handle values left in this process".into()))
}

pub(crate) struct Handles<T> {
    map: RwLock<HashMap<usize, Arc<T>>>,
}

thread_local! {
    /// The object whose callback is running on this thread: (token, address),
    /// so calls made from inside a callback skip the registry lock.
    static IN_CALLBACK: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

impl<T: Object> Handles<T> {
    pub(crate) fn new() -> Handles<T> {
        Handles {
            map: RwLock::new(HashMap::new()),
        }
    }

    /// Registers `obj`; the result is the pointer C gets.
    pub(crate) fn add(&'static self, obj: Arc<T>) -> Result<*mut T, Failure> {
        Ok(self.reserve()?.commit(obj))
    }

    /// Draws the token of an object still to be made, so that a callback
    /// handler can be given its [`Owner`] before the engine starts.
    pub(crate) fn reserve(&'static self) -> Result<Reservation<T>, Failure> {
        Ok(Reservation {
            handles: self,
            token: new_token()?,
            slot: Arc::new(Slot::default()),
            committed: false,
        })
    }

    fn get(&self, p: *const T) -> Option<Arc<T>> {
        if p.is_null() {
            return None;
        }
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(p as usize))
            .cloned()
    }

    fn remove(&self, p: *const T) -> Option<Arc<T>> {
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(p as usize))
    }

    /// Runs `f` with the live object behind `p`, or returns None.
    #[inline]
    pub(crate) fn with<R>(&self, p: *const T, f: impl FnOnce(&T) -> R) -> Option<R> {
        let (token, addr) = IN_CALLBACK.with(|c| c.get());
        if !p.is_null() && token == p as usize && addr != 0 {
            // SAFETY: tokens are unique across kinds, so `addr` is this
            // token's `T`; its callback is running on this thread, and freeing
            // it waits for its threads (and so for this callback) before the
            // last reference goes, so it is alive for this call.
            return Some(f(unsafe { &*(addr as *const T) }));
        }
        self.get(p).map(|o| f(&o))
    }

    /// Runs `f` with the object behind `p`, inside an export's guard (e.g. a
    /// `_new` reading its configuration): NULL and unknown pointers are
    /// failures.
    pub(crate) fn lookup<R>(&self, p: *const T, what: &str, f: impl FnOnce(&T) -> R) -> Result<R, Failure> {
        if p.is_null() {
            return Err((wsb_result::NullPointer, format!("{what} is NULL")));
        }
        self.with(p, f)
            .ok_or_else(|| (wsb_result::NotFound, format!("unknown {what} (already freed?)")))
    }

    /// The body of every `wsb_<object>_*` call: NULL and unknown pointers
    /// become results, panics become `WSB_RESULT_PANIC`, and a failure is
    /// recorded both for `wsb_last_error` (this thread) and for the object's
    /// own `_last_error`. `what` names the object in messages. Parse the
    /// call's other arguments inside `f` (`str_arg(..)?`), so that they are
    /// under the same guard.
    #[inline]
    pub(crate) fn call(
        &self,
        p: *const T,
        what: &str,
        f: impl FnOnce(&T) -> Result<wsb_result, Failure>,
    ) -> wsb_result {
        guard(wsb_result::Panic, || {
            if p.is_null() {
                set_last_error(format!("{what} is NULL"));
                return wsb_result::NullPointer;
            }
            self.with(p, |obj| match f(obj) {
                Ok(r) => r,
                Err((r, msg)) => {
                    if let Some(m) = obj.last_error() {
                        *crate::lock(m) = msg.clone();
                    }
                    set_last_error(msg);
                    r
                }
            })
            .unwrap_or_else(|| {
                set_last_error(format!("unknown {what} (already freed?)"));
                wsb_result::NotFound
            })
        })
    }

    /// The body of every `wsb_<object>_free`: NULL is a no-op (`OK`); from
    /// the object's own callback or thread `REENTRANT` (nothing is freed);
    /// an unknown or already freed pointer `NOT_FOUND`; otherwise the object
    /// leaves the registry, then [`Object::shutdown`] runs with no lock held.
    pub(crate) fn free(&self, p: *mut T, what: &str) -> wsb_result {
        guard(wsb_result::Panic, || {
            if p.is_null() {
                return wsb_result::Ok;
            }
            if is_in_callback(p as usize) {
                set_last_error(format!("the {what} cannot be freed from its own callback"));
                return wsb_result::Reentrant;
            }
            let unknown = || {
                set_last_error(format!("unknown {what} (already freed?)"));
                wsb_result::NotFound
            };
            let Some(obj) = self.get(p) else {
                return unknown();
            };
            if obj.on_own_thread() {
                set_last_error(format!("the {what} cannot be freed from its own thread"));
                return wsb_result::Reentrant;
            }
            // Two threads freeing at once: only the one that removes it goes on.
            if self.remove(p).is_none() {
                return unknown();
            }
            obj.shutdown();
            wsb_result::Ok
        })
    }
}

/// Where a reservation's object becomes known to its [`Owner`]s.
#[derive(Default)]
struct Slot {
    /// None while pending; Some(address) once committed, Some(0) if the
    /// object was never made.
    state: Mutex<Option<usize>>,
    ready: Condvar,
}

impl Slot {
    fn publish(&self, addr: usize) {
        *crate::lock(&self.state) = Some(addr);
        self.ready.notify_all();
    }

    fn wait(&self) -> usize {
        let mut s = crate::lock(&self.state);
        loop {
            if let Some(addr) = *s {
                return addr;
            }
            s = self.ready.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// A token drawn for an object not made yet. Dropping it without
/// [`Reservation::commit`] tells its owners the object will never exist.
pub(crate) struct Reservation<T: Object> {
    handles: &'static Handles<T>,
    token: usize,
    slot: Arc<Slot>,
    committed: bool,
}

impl<T: Object> Reservation<T> {
    /// The identity to give the object's callback handler.
    pub(crate) fn owner(&self) -> Owner<T> {
        Owner {
            token: self.token,
            slot: self.slot.clone(),
            addr: OnceLock::new(),
            _kind: PhantomData,
        }
    }

    /// Registers the object under the reserved token and wakes the handlers
    /// waiting for it; returns the pointer C gets.
    pub(crate) fn commit(mut self, obj: Arc<T>) -> *mut T {
        let addr = Arc::as_ptr(&obj) as usize;
        self.handles
            .map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(self.token, obj);
        self.slot.publish(addr);
        self.committed = true;
        self.token as *mut T
    }
}

impl<T: Object> Drop for Reservation<T> {
    fn drop(&mut self) {
        if !self.committed {
            self.slot.publish(0);
        }
    }
}

/// A callback handler's view of its object: the pointer to pass to the
/// host's callback, known from the start, and the object behind it, known
/// once committed.
pub(crate) struct Owner<T> {
    token: usize,
    slot: Arc<Slot>,
    addr: OnceLock<usize>,
    _kind: PhantomData<fn() -> T>,
}

impl<T> Owner<T> {
    /// Runs `f` (the host's callback) with the object's pointer, marked as
    /// the object whose callback runs on this thread. An event that comes
    /// before the object is registered waits for it, so every callback sees
    /// a pointer every `wsb_` call accepts; if the object was never made (its
    /// `_new` failed), `f` does not run.
    #[inline]
    pub(crate) fn enter<R>(&self, f: impl FnOnce(*mut T) -> R) -> Option<R> {
        let addr = *self.addr.get_or_init(|| self.slot.wait());
        if addr == 0 {
            return None;
        }
        Some(in_callback(self.token, addr, || f(self.token as *mut T)))
    }
}

/// Marks (`token`, `addr`) as the object whose callback runs on this thread,
/// for the duration of `f`.
#[inline]
fn in_callback<R>(token: usize, addr: usize, f: impl FnOnce() -> R) -> R {
    // One thread-local lookup for both the set and the reset: in a shared
    // library each lookup is a call.
    IN_CALLBACK.with(|c| {
        let prev = c.replace((token, addr));
        let r = f();
        c.set(prev);
        r
    })
}

/// True when the callback of the object behind `token` runs on this thread.
pub(crate) fn is_in_callback(token: usize) -> bool {
    IN_CALLBACK.with(|c| c.get().0) == token
}

/// A raw pointer that may cross threads: the host promised (by registering
/// it) that its userdata may be used from the library's threads.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub *mut c_void);
// SAFETY: see the type's documentation; the library never dereferences it.
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}

/// A host's `userdata` and its `userdata_free`, called exactly once: when
/// this is dropped. Whoever holds the registration (a callback handler, a
/// queue-mode object until its free, a failed `_new` on its way out) holds
/// one of these; nothing calls `userdata_free` by hand.
pub(crate) struct Userdata {
    ptr: SendPtr,
    free: wsb_userdata_free_cb,
}

impl Userdata {
    pub(crate) fn new(ptr: *mut c_void, free: wsb_userdata_free_cb) -> Userdata {
        Userdata {
            ptr: SendPtr(ptr),
            free,
        }
    }

    /// The pointer to pass to the host's callbacks.
    pub(crate) fn get(&self) -> *mut c_void {
        self.ptr.0
    }
}

impl Drop for Userdata {
    fn drop(&mut self) {
        if let Some(f) = self.free {
            // SAFETY: registered by the host for exactly this call, made once.
            unsafe { f(self.ptr.0) }
        }
    }
}

/// Releases a queue-mode object's userdata: taken out under the lock,
/// dropped (so `userdata_free` runs) after it, so that a `userdata_free`
/// that frees other objects cannot deadlock.
pub(crate) fn release(held: &Mutex<Option<Userdata>>) {
    let ud = crate::lock(held).take();
    drop(ud);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::LazyLock;

    struct Thing(u32);
    impl Object for Thing {}

    static THINGS: LazyLock<Handles<Thing>> = LazyLock::new(Handles::new);

    fn is(t: &Thing, n: u32) -> wsb_result {
        if t.0 == n {
            wsb_result::Ok
        } else {
            wsb_result::InvalidArgument
        }
    }

    #[test]
    fn a_freed_token_is_never_handed_out_again() {
        let a = THINGS.add(Arc::new(Thing(1))).unwrap();
        assert_eq!(THINGS.free(a, "thing"), wsb_result::Ok);
        // Allocate many objects of the same size: the allocator reuses the
        // address, the registry never reuses the token.
        let later: Vec<_> = (0..100).map(|i| THINGS.add(Arc::new(Thing(i))).unwrap()).collect();
        assert!(later.iter().all(|&b| b != a));
        assert_eq!(THINGS.free(a, "thing"), wsb_result::NotFound);
        for b in later {
            assert_eq!(THINGS.call(b, "thing", |_| Ok(wsb_result::Ok)), wsb_result::Ok);
            assert_eq!(THINGS.free(b, "thing"), wsb_result::Ok);
        }
    }

    #[test]
    fn a_panic_inside_a_call_becomes_a_result() {
        let a = THINGS.add(Arc::new(Thing(7))).unwrap();
        let r = THINGS.call(a, "thing", |t| {
            if t.0 == 7 {
                panic!("a bug");
            }
            Ok(wsb_result::Ok)
        });
        assert_eq!(r, wsb_result::Panic);
        // The registry still works after it.
        assert_eq!(THINGS.call(a, "thing", |t| Ok(is(t, 7))), wsb_result::Ok);
        assert_eq!(THINGS.free(a, "thing"), wsb_result::Ok);
    }

    #[test]
    fn an_owner_waits_for_the_commit_and_gives_up_on_an_abandoned_reservation() {
        let r = THINGS.reserve().unwrap();
        let owner = r.owner();
        let waiter = std::thread::spawn(move || {
            owner.enter(|p| {
                // Inside, the object is reachable through its pointer.
                THINGS.call(p, "thing", |t| Ok(is(t, 5)))
            })
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        let p = r.commit(Arc::new(Thing(5)));
        assert_eq!(waiter.join().unwrap(), Some(wsb_result::Ok));
        assert_eq!(THINGS.free(p, "thing"), wsb_result::Ok);

        let r = THINGS.reserve().unwrap();
        let owner = r.owner();
        drop(r);
        assert_eq!(owner.enter(|_| ()), None);
    }
}
