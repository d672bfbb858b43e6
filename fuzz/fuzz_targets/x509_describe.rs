//! Certificates a server might send: the one-line description never panics,
//! stays bounded, and holds no control character (it goes into log lines).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = wsbroker::tls::describe_certificate(data);
    assert!(s.len() <= 1024, "{} bytes", s.len());
    assert!(!s.chars().any(char::is_control), "{s:?}");
});
