//! The engine's UTF-8 check of text frames (ASCII words first, then the
//! standard validator) accepts exactly what `std::str::from_utf8` accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    assert_eq!(
        wsbroker::engine::frame::is_utf8(data),
        std::str::from_utf8(data).is_ok(),
        "{data:?}"
    );
});
