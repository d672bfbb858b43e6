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
use std::sync::Mutex;

use handles::{Failure, Handles, Object};

/// Runs `f`, turning a panic into `on_panic`. Unwind safety is asserted:
/// after a panic the library only reports it, and every shared structure it
/// touches is behind locks that recover from poisoning.
#[inline(always)]
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

/// The body of every export that returns a `wsb_result` and has no object
/// to look up (the object-less crypto helpers, `_new` functions): panics
/// become `WSB_RESULT_PANIC`, a failure's detail goes to `wsb_last_error`.
pub(crate) fn plain(f: impl FnOnce() -> Result<wsb_result, Failure>) -> wsb_result {
    guard(wsb_result::Panic, || match f() {
        Ok(r) => r,
        Err((r, msg)) => {
            set_last_error(msg);
            r
        }
    })
}

/// `WSB_RESULT_INVALID_ARGUMENT` with its reason.
pub(crate) fn invalid(msg: impl Into<String>) -> Failure {
    (wsb_result::InvalidArgument, msg.into())
}

/// The body of every configuration setter: `settings` picks the locked
/// settings out of the registered configuration `cfg`; NULL gives
/// `WSB_RESULT_NULL_POINTER`, a freed or unknown configuration
/// `WSB_RESULT_NOT_FOUND`, a refused value its result (usually
/// [`invalid`]) with the reason for `wsb_last_error`.
pub(crate) fn with_config<W: Object, C>(
    configs: &Handles<W>,
    cfg: *const W,
    settings: impl FnOnce(&W) -> &Mutex<C>,
    f: impl FnOnce(&mut C) -> Result<(), Failure>,
) -> wsb_result {
    configs.call(cfg, "config", |w| {
        let mut c = crate::lock(settings(w));
        f(&mut c).map(|()| wsb_result::Ok)
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

#[cfg(test)]
thread_local! {
    /// Makes the next argument parse on this thread panic, to prove that the
    /// panic is caught at the boundary.
    static PANIC_IN_ARGUMENT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The test hook behind [`PANIC_IN_ARGUMENT`]; nothing outside tests.
fn argument_hook() {
    #[cfg(test)]
    if PANIC_IN_ARGUMENT.with(|p| p.replace(false)) {
        panic!("test hook: panic while parsing an argument");
    }
}

/// Reads a NUL-terminated UTF-8 string argument. Use it with `?` inside the
/// export's guard.
///
/// # Safety
/// `p` must be NULL or a valid NUL-terminated string.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, what: &str) -> Result<&'a str, Failure> {
    argument_hook();
    if p.is_null() {
        return Err((wsb_result::NullPointer, format!("{what} is NULL")));
    }
    CStr::from_ptr(p)
        .to_str()
        .map_err(|_| invalid(format!("{what} is not valid UTF-8")))
}

/// An optional string argument: NULL gives `None`.
///
/// # Safety
/// `p` must be NULL or a valid NUL-terminated string.
pub(crate) unsafe fn opt_str_arg<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>, Failure> {
    if p.is_null() {
        argument_hook();
        Ok(None)
    } else {
        str_arg(p, what).map(Some)
    }
}

/// A subprotocol token argument (RFC 6455 token characters, no comma).
///
/// # Safety
/// `p` must be NULL or a valid NUL-terminated string.
pub(crate) unsafe fn subprotocol_arg(p: *const c_char) -> Result<String, Failure> {
    let p = str_arg(p, "protocol")?;
    if p.is_empty() || p.bytes().any(|b| b <= b' ' || b == b',' || b >= 0x7F) {
        return Err(invalid(format!("not a valid subprotocol token: {p:?}")));
    }
    Ok(p.to_owned())
}

/// Borrows `(data, len)`; NULL is allowed only with `len == 0`.
///
/// # Safety
/// `data` must point to `len` readable bytes when not NULL.
#[inline]
pub(crate) unsafe fn bytes_arg<'a>(data: *const u8, len: usize) -> Result<&'a [u8], Failure> {
    argument_hook();
    if data.is_null() {
        if len == 0 {
            return Ok(&[]);
        }
        return Err((wsb_result::NullPointer, "data is NULL with a non-zero length".into()));
    }
    Ok(std::slice::from_raw_parts(data, len))
}

/// Borrows an out-parameter; NULL gives `WSB_RESULT_NULL_POINTER`.
///
/// # Safety
/// `p` must be NULL or valid for writes.
pub(crate) unsafe fn out_arg<'a, T>(p: *mut T, what: &str) -> Result<&'a mut T, Failure> {
    argument_hook();
    p.as_mut()
        .ok_or_else(|| (wsb_result::NullPointer, format!("{what} is NULL")))
}

/// The library version as `"MAJOR.MINOR.PATCH"` (static storage; do not free).
/// Compare with `WSB_VERSION_STRING` to check that the header matches the
/// library. Safe to call from any thread.
#[no_mangle]
pub extern "C" fn wsb_version() -> *const c_char {
    guard(c"".as_ptr(), || {
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
    })
}

/// The library version as `MAJOR * 10000 + MINOR * 100 + PATCH`, comparable
/// with `WSB_VERSION_NUMBER`. Safe to call from any thread.
#[no_mangle]
pub extern "C" fn wsb_version_number() -> u32 {
    guard(0, || {
        let p = |s: &str| s.parse::<u32>().unwrap_or(0);
        p(env!("CARGO_PKG_VERSION_MAJOR")) * 10000
            + p(env!("CARGO_PKG_VERSION_MINOR")) * 100
            + p(env!("CARGO_PKG_VERSION_PATCH"))
    })
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
        let s = last_error_text();
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

    /// The `Name = value` lines of the `wsb_result` declaration.
    fn declared_results() -> Vec<(String, u32)> {
        let src = include_str!("result.rs");
        let start = src.find("pub enum wsb_result {").expect("the enum");
        let body = &src[start..src[start..].find("\n}").map(|e| start + e).expect("its end")];
        body.lines()
            .filter_map(|l| {
                let (name, value) = l.trim().trim_end_matches(',').split_once(" = ")?;
                Some((name.to_owned(), value.parse().ok()?))
            })
            .collect()
    }

    #[test]
    fn every_result_has_its_own_text() {
        let declared = declared_results();
        assert!(declared.len() > 20, "the parse found {declared:?}");
        let text = |r: u32| {
            // SAFETY: wsb_result_str always returns a static NUL-terminated string.
            unsafe { CStr::from_ptr(result::wsb_result_str(r)) }
                .to_str()
                .unwrap()
                .to_owned()
        };
        let texts: Vec<String> = declared.iter().map(|(_, v)| text(*v)).collect();
        for ((name, value), t) in declared.iter().zip(&texts) {
            assert_ne!(t, "unknown result", "{name} = {value} has no text in wsb_result_str");
        }
        let mut uniq = texts.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), texts.len(), "two results share a text: {texts:?}");
        // Values are 0, 1, 2, … with no gap, and the lookup table has them all.
        let values: Vec<u32> = declared.iter().map(|(_, v)| *v).collect();
        assert_eq!(values, (0..declared.len() as u32).collect::<Vec<_>>());
        assert_eq!(wsb_result::ALL.iter().map(|r| *r as u32).collect::<Vec<_>>(), values);
        assert_eq!(text(declared.len() as u32), "unknown result");
        assert_eq!(text(9999), "unknown result");
    }

    /// Calls that panic while parsing their arguments, each under the test
    /// hook, must come back as `WSB_RESULT_PANIC`.
    #[test]
    fn a_panic_while_parsing_arguments_becomes_a_result() {
        let arm = || PANIC_IN_ARGUMENT.with(|p| p.set(true));
        // SAFETY: every pointer passed is valid or NULL where allowed.
        unsafe {
            let cfg = server::wsb_server_config_new();
            arm();
            assert_eq!(
                server::wsb_server_config_set_bind(cfg, c"127.0.0.1:0".as_ptr()),
                wsb_result::Panic
            );
            arm();
            assert_eq!(
                server::wsb_server_config_set_path(cfg, std::ptr::null()),
                wsb_result::Panic
            );
            // The configuration still works after it.
            assert_eq!(
                server::wsb_server_config_set_bind(cfg, c"127.0.0.1:0".as_ptr()),
                wsb_result::Ok
            );
            let mut s = std::ptr::null_mut();
            arm();
            assert_eq!(
                server::wsb_server_new(cfg, None, std::ptr::null_mut(), None, &mut s),
                wsb_result::Panic
            );
            assert!(s.is_null());
            assert_eq!(
                server::wsb_server_new(cfg, None, std::ptr::null_mut(), None, &mut s),
                wsb_result::Ok
            );
            arm();
            assert_eq!(
                server::wsb_server_write(s, 1, b"x".as_ptr(), 1, true),
                wsb_result::Panic
            );
            let mut ev: server::wsb_event = std::mem::zeroed();
            arm();
            assert_eq!(server::wsb_server_poll(s, 0, &mut ev), wsb_result::Panic);
            assert_eq!(server::wsb_server_poll(s, 0, &mut ev), wsb_result::Timeout);
            assert_eq!(server::wsb_server_free(s), wsb_result::Ok);
            server::wsb_server_config_free(cfg);

            let ccfg = client::wsb_client_config_new(c"ws://127.0.0.1:1/".as_ptr());
            arm();
            assert_eq!(
                client::wsb_client_config_add_header(ccfg, c"X-A".as_ptr(), c"b".as_ptr()),
                wsb_result::Panic
            );
            client::wsb_client_config_free(ccfg);
            let mut out = [0 as c_char; 65];
            arm();
            assert_eq!(
                appws::wsb_appws_session_key(c"c".as_ptr(), c"p".as_ptr(), out.as_mut_ptr(), out.len()),
                wsb_result::Panic
            );
            let bcfg = broker::wsb_broker_config_new();
            arm();
            assert_eq!(
                broker::wsb_broker_config_add_credentials(bcfg, c"n".as_ptr(), c"p".as_ptr()),
                wsb_result::Panic
            );
            broker::wsb_broker_config_free(bcfg);
        }
    }

    /// The source of every file in `src/ffi/` with comments and the contents
    /// of string and character literals blanked out (offsets kept).
    fn ffi_sources() -> Vec<(String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ffi");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "rs"))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p).unwrap();
                (p.file_name().unwrap().to_string_lossy().into_owned(), blank(&text))
            })
            .collect()
    }

    fn blank(src: &str) -> String {
        let c: Vec<char> = src.chars().collect();
        let mut out = c.clone();
        let mut i = 0;
        while i < c.len() {
            let next = c.get(i + 1).copied();
            if c[i] == '/' && next == Some('/') {
                while i < c.len() && c[i] != '\n' {
                    out[i] = ' ';
                    i += 1;
                }
            } else if c[i] == '/' && next == Some('*') {
                while i < c.len() && !(c[i] == '*' && c.get(i + 1) == Some(&'/')) {
                    out[i] = ' ';
                    i += 1;
                }
                out[i] = ' ';
                out[i + 1] = ' ';
                i += 2;
            } else if c[i] == '"' || (c[i] == '\'' && (next == Some('\\') || c.get(i + 2) == Some(&'\''))) {
                // A string or character literal (not a lifetime).
                let quote = c[i];
                i += 1;
                while i < c.len() && c[i] != quote {
                    if c[i] == '\\' {
                        out[i] = ' ';
                        i += 1;
                    }
                    out[i] = ' ';
                    i += 1;
                }
                i += 1;
            } else {
                i += 1;
            }
        }
        out.into_iter().collect()
    }

    /// Every function with a body: (name, is an export, body without braces).
    fn functions(src: &str) -> Vec<(String, bool, String)> {
        let b = src.as_bytes();
        let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        let mut found = Vec::new();
        let mut from = 0;
        while let Some(k) = src[from..].find("fn ") {
            let at = from + k;
            from = at + 3;
            if at > 0 && ident(b[at - 1]) {
                continue;
            }
            let name: String = src[at + 3..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if name.is_empty() {
                continue;
            }
            // `#[no_mangle]` on this very item (no `;` or `}` in between).
            let export = src[..at]
                .rfind("#[no_mangle]")
                .is_some_and(|m| !src[m..at].contains([';', '}']));
            // The body is the first `{` at bracket depth 0 (a `;` first: none).
            let mut depth = 0i32;
            let mut j = at;
            let open = loop {
                match b[j] {
                    b'(' | b'[' => depth += 1,
                    b')' | b']' => depth -= 1,
                    b';' if depth == 0 => break None,
                    b'{' if depth == 0 => break Some(j),
                    _ => {}
                }
                j += 1;
            };
            let Some(open) = open else { continue };
            let close = matching(b, open);
            found.push((name, export, src[open + 1..close].to_owned()));
        }
        found
    }

    fn matching(b: &[u8], open: usize) -> usize {
        let (o, c) = (b[open], if b[open] == b'{' { b'}' } else { b')' });
        let mut depth = 0;
        for (k, &x) in b.iter().enumerate().skip(open) {
            if x == o {
                depth += 1;
            } else if x == c {
                depth -= 1;
                if depth == 0 {
                    return k;
                }
            }
        }
        panic!("unbalanced source");
    }

    /// The callee when `body` is exactly one call (`path(…)` or `x.method(…)`):
    /// its last path segment, with a leading `.` for a method.
    fn single_call(body: &str) -> Option<String> {
        let t = body.trim();
        let paren = t.find('(')?;
        let path = &t[..paren];
        if path.is_empty()
            || !path
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == ':' || c == '.')
        {
            return None;
        }
        let close = matching(t.as_bytes(), paren);
        if !t[close + 1..].trim().is_empty() {
            return None;
        }
        Some(match path.rfind('.') {
            Some(d) => path[d..].to_owned(),
            None => path.rsplit("::").next().unwrap().to_owned(),
        })
    }

    /// DESIGN.md §3: no panic crosses the boundary. Each export's whole body
    /// is one call to a guarded entry (`guard`, `plain`, `Handles::call` or
    /// `Handles::free`, or a helper whose own body is one such call), so its
    /// argument parsing runs under the guard too; and no handle is a raw
    /// address (`Box::into_raw` and friends live in handles.rs only).
    #[test]
    fn every_export_runs_entirely_inside_one_guard() {
        let sources = ffi_sources();
        let all: Vec<(String, bool, String)> = sources.iter().flat_map(|(_, s)| functions(s)).collect();
        let mut guarded: Vec<String> = ["guard", "plain", ".call", ".free"].map(String::from).to_vec();
        loop {
            let before = guarded.len();
            for (name, export, body) in &all {
                if !export && !guarded.contains(name) && single_call(body).is_some_and(|c| guarded.contains(&c)) {
                    guarded.push(name.clone());
                }
            }
            if guarded.len() == before {
                break;
            }
        }
        let exports: Vec<_> = all.iter().filter(|f| f.1).collect();
        assert!(exports.len() > 100, "found only {} exports", exports.len());
        let bad: Vec<&str> = exports
            .iter()
            .filter(|(_, _, body)| !single_call(body).is_some_and(|c| guarded.contains(&c)))
            .map(|(name, _, _)| name.as_str())
            .collect();
        assert!(
            bad.is_empty(),
            "exports whose body is not one guarded call (parse arguments inside it): {bad:?}"
        );
        for (file, src) in &sources {
            if file == "handles.rs" {
                continue;
            }
            for raw in [
                "Box::into_raw",
                "Box::from_raw",
                "Arc::into_raw",
                "Arc::from_raw",
                "Arc::as_ptr",
            ] {
                assert!(
                    !src.contains(raw),
                    "{file} uses {raw}: register objects in a Handles registry instead"
                );
            }
        }
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
