//! The C boundary: the only place with `extern "C"`, raw pointers and casts.
//!
//! Conventions (stated once in the README): every fallible function returns a
//! [`wsb_result`]; out-parameters are written only on success; `_free(NULL)` is
//! a no-op; no panic crosses the boundary (each export runs inside
//! [`guard`]); connections are ids, so a stale id gives
//! `WSB_RESULT_NOT_FOUND`, never a crash.

#![allow(non_camel_case_types)]

pub mod appws;
pub mod broker;
pub mod client;
pub mod result;
pub mod server;

mod handles;
mod poll_gate;

pub use result::wsb_result;

use std::cell::RefCell;
use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f`, turning a panic into `on_panic`. Unwind safety is asserted:
/// after a panic the library only reports it, and every shared structure it
/// touches is behind locks that recover from poisoning.
pub(crate) fn guard<T>(on_panic: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(on_panic)
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records the detail of a failure for `wsb_last_error` on this thread.
pub(crate) fn set_last_error(msg: impl Into<String>) {
    LAST_ERROR.with(|e| *e.borrow_mut() = msg.into());
}

/// The detail recorded by the last failure on this thread.
pub(crate) fn last_error_text() -> String {
    LAST_ERROR.with(|e| e.borrow().clone())
}

/// The body of every configuration setter: NULL gives
/// `WSB_RESULT_NULL_POINTER`, a refused value `WSB_RESULT_INVALID_ARGUMENT`
/// with its reason for `wsb_last_error`.
///
/// # Safety
/// `cfg` must be NULL or point to a live `C` that no other thread uses.
pub(crate) unsafe fn with_config<C>(cfg: *mut C, f: impl FnOnce(&mut C) -> Result<(), String>) -> wsb_result {
    guard(wsb_result::Panic, || {
        // SAFETY: per the caller's contract.
        let Some(c) = (unsafe { cfg.as_mut() }) else {
            set_last_error("config is NULL");
            return wsb_result::NullPointer;
        };
        match f(c) {
            Ok(()) => wsb_result::Ok,
            Err(e) => {
                set_last_error(e);
                wsb_result::InvalidArgument
            }
        }
    })
}

/// Copies `s` into a caller buffer with NUL; reports the size needed.
///
/// # Safety
/// `buf` must be NULL or point to `len` writable bytes; `needed` NULL or valid.
pub(crate) unsafe fn copy_out(s: &str, buf: *mut c_char, len: usize, needed: *mut usize) -> wsb_result {
    let need = s.len() + 1;
    if !needed.is_null() {
        *needed = need;
    }
    if buf.is_null() || len < need {
        if !buf.is_null() && len > 0 {
            *buf = 0;
        }
        return wsb_result::BufferTooSmall;
    }
    std::ptr::copy_nonoverlapping(s.as_ptr(), buf as *mut u8, s.len());
    *buf.add(s.len()) = 0;
    wsb_result::Ok
}

/// Reads a NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `p` must be NULL or a valid NUL-terminated string.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str, wsb_result> {
    if p.is_null() {
        set_last_error(format!("{what} is NULL"));
        return Err(wsb_result::NullPointer);
    }
    CStr::from_ptr(p).to_str().map_err(|_| {
        set_last_error(format!("{what} is not valid UTF-8"));
        wsb_result::InvalidArgument
    })
}

/// Borrows `(data, len)`; NULL is allowed only with `len == 0`.
///
/// # Safety
/// `data` must point to `len` readable bytes when not NULL.
pub(crate) unsafe fn bytes_arg<'a>(data: *const u8, len: usize) -> Result<&'a [u8], wsb_result> {
    if data.is_null() {
        if len == 0 {
            return Ok(&[]);
        }
        set_last_error("data is NULL with a non-zero length");
        return Err(wsb_result::NullPointer);
    }
    Ok(std::slice::from_raw_parts(data, len))
}

/// The library version as `"MAJOR.MINOR.PATCH"` (static storage; do not free).
/// Compare with `WSB_VERSION_STRING` to check that the header matches the
/// library. Safe to call from any thread.
#[no_mangle]
pub extern "C" fn wsb_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

/// The library version as `MAJOR * 10000 + MINOR * 100 + PATCH`, comparable
/// with `WSB_VERSION_NUMBER`. Safe to call from any thread.
#[no_mangle]
pub extern "C" fn wsb_version_number() -> u32 {
    let p = |s: &str| s.parse::<u32>().unwrap_or(0);
    p(env!("CARGO_PKG_VERSION_MAJOR")) * 10000
        + p(env!("CARGO_PKG_VERSION_MINOR")) * 100
        + p(env!("CARGO_PKG_VERSION_PATCH"))
}

/// Copies the detail of the most recent failure of a `wsb_` call on the
/// calling thread (for example why `wsb_server_new` could not bind) into
/// `buf`, NUL-terminated. `*needed` (if not NULL) receives the size needed,
/// NUL included. Returns `WSB_RESULT_BUFFER_TOO_SMALL` (writing `""` when
/// `len` ≥ 1) if `len` is too small. Safe to call from any thread.
///
/// # Safety
/// `buf` must be NULL or point to `len` writable bytes; `needed` NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn wsb_last_error(buf: *mut c_char, len: usize, needed: *mut usize) -> wsb_result {
    guard(wsb_result::Panic, || {
        let s = LAST_ERROR.with(|e| e.borrow().clone());
        // SAFETY: forwarded caller contract.
        unsafe { copy_out(&s, buf, len, needed) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_header_matches_a_fresh_generation() {
        let fresh = include_str!(concat!(env!("OUT_DIR"), "/wsbroker.h"));
        let committed = include_str!("../../include/wsbroker.h");
        assert!(
            fresh == committed,
            "include/wsbroker.h differs from a fresh cbindgen generation: run `make header` and commit it"
        );
    }

    #[test]
    fn runtime_version_matches_the_header_macros() {
        let h = include_str!("../../include/wsbroker.h");
        // SAFETY: wsb_version returns a static NUL-terminated string.
        let v = unsafe { CStr::from_ptr(wsb_version()) }.to_str().unwrap();
        assert!(h.contains(&format!("#define WSB_VERSION_STRING \"{v}\"")));
        assert!(h.contains(&format!("#define WSB_VERSION_NUMBER {}", wsb_version_number())));
    }

    #[test]
    fn every_result_has_its_own_text() {
        let texts: Vec<&str> = (0..=27)
            // SAFETY: wsb_result_str always returns a static NUL-terminated string.
            .map(|r| unsafe { CStr::from_ptr(result::wsb_result_str(r)) }.to_str().unwrap())
            .collect();
        let mut uniq = texts.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), texts.len());
        // SAFETY: as above.
        let unknown = unsafe { CStr::from_ptr(result::wsb_result_str(9999)) };
        assert_eq!(unknown.to_str().unwrap(), "unknown result");
    }

    #[test]
    fn copy_out_reports_the_size_needed() {
        let mut buf = [1 as c_char; 4];
        let mut need = 0usize;
        // SAFETY: buf has 4 bytes.
        let r = unsafe { copy_out("hello", buf.as_mut_ptr(), 4, &mut need) };
        assert_eq!(r, wsb_result::BufferTooSmall);
        assert_eq!(need, 6);
        assert_eq!(buf[0], 0);
        let mut big = [1 as c_char; 8];
        // SAFETY: big has 8 bytes.
        assert_eq!(
            unsafe { copy_out("hello", big.as_mut_ptr(), 8, &mut need) },
            wsb_result::Ok
        );
        // SAFETY: copy_out NUL-terminated it.
        assert_eq!(unsafe { CStr::from_ptr(big.as_ptr()) }.to_str().unwrap(), "hello");
    }
}
