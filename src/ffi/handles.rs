//! Every pointer↔object conversion of the C boundary happens here.
//!
//! Objects handed to C live in a registry keyed by address, so a freed or
//! foreign pointer is recognised (`WSB_RESULT_NOT_FOUND`) instead of being
//! dereferenced, and freeing twice is an error code, not a crash.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use super::{guard, set_last_error, wsb_result};

/// A failed call: its result code and the detail for `_last_error`.
pub(crate) type Failure = (wsb_result, String);

/// Objects that keep the detail of their last failed call.
pub(crate) trait LastError {
    fn last_error(&self) -> &Mutex<String>;
}

pub(crate) struct Handles<T> {
    map: RwLock<HashMap<usize, Arc<T>>>,
}

thread_local! {
    /// The object whose callback is running on this thread (address), so calls
    /// made from inside a callback skip the registry lock.
    static IN_CALLBACK: Cell<usize> = const { Cell::new(0) };
}

impl<T> Handles<T> {
    pub(crate) fn new() -> Handles<T> {
        Handles {
            map: RwLock::new(HashMap::new()),
        }
    }

    pub(crate) fn add(&self, obj: Arc<T>) -> *mut T {
        let p = Arc::as_ptr(&obj) as *mut T;
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(p as usize, obj);
        p
    }

    pub(crate) fn get(&self, p: *const T) -> Option<Arc<T>> {
        if p.is_null() {
            return None;
        }
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(p as usize))
            .cloned()
    }

    pub(crate) fn remove(&self, p: *const T) -> Option<Arc<T>> {
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(p as usize))
    }

    /// Runs `f` with the live object behind `p`, or returns None.
    pub(crate) fn with<R>(&self, p: *const T, f: impl FnOnce(&T) -> R) -> Option<R> {
        if !p.is_null() && IN_CALLBACK.with(|c| c.get()) == p as usize {
            // SAFETY: the object's callback is running on this thread; freeing
            // it waits for its I/O threads (and so for this callback) before
            // the last reference is dropped, so it is alive for this call.
            return Some(f(unsafe { &*p }));
        }
        self.get(p).map(|o| f(&o))
    }
}

impl<T: LastError> Handles<T> {
    /// The body of every `wsb_<object>_*` call: NULL and unknown pointers
    /// become results, panics become `WSB_RESULT_PANIC`, and a failure is
    /// recorded both for `wsb_last_error` (this thread) and for the object's
    /// own `_last_error`. `what` names the object in messages.
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
                    set_last_error(msg.clone());
                    *obj.last_error().lock().unwrap_or_else(|e| e.into_inner()) = msg;
                    r
                }
            })
            .unwrap_or_else(|| {
                set_last_error(format!("unknown {what} (already freed?)"));
                wsb_result::NotFound
            })
        })
    }
}

/// Marks `p` as the object whose callback runs on this thread, for the
/// duration of `f`.
pub(crate) fn in_callback<R>(p: usize, f: impl FnOnce() -> R) -> R {
    // One thread-local lookup for both the set and the reset: in a shared
    // library each lookup is a call.
    IN_CALLBACK.with(|c| {
        let prev = c.replace(p);
        let r = f();
        c.set(prev);
        r
    })
}

/// True when `p`'s callback is running on this thread.
pub(crate) fn is_in_callback(p: usize) -> bool {
    IN_CALLBACK.with(|c| c.get()) == p
}

/// A raw pointer that may cross threads: the host promised (by registering
/// it) that its userdata may be used from the library's threads.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub *mut std::ffi::c_void);
// SAFETY: see the type's documentation; the library never dereferences it.
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}
