//! App-service messages: replies are JSON objects, and no input logs in
//! without the right digest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsbroker::broker::json::{self, Json};
use wsbroker::dialect::appws::{echo, HostEvent, Service};
use wsbroker::dialect::Action;

fuzz_target!(|data: &[u8]| {
    let mut s = Service::new();
    s.add_app("demo", "demo");
    s.set_challenge_source(|| Ok("5802914736501248".to_owned()));
    s.on_open(1);
    for (i, frame) in data.split(|&b| b == 0xff).enumerate() {
        let text = i % 5 != 4;
        let out = s.on_message(1, frame, text);
        let mut actions = out.actions;
        if let Some(h) = &out.host {
            if let HostEvent::LoggedIn { .. } = h {
                // Only reachable with the digest for the fixed challenge.
                assert!(frame.windows(64).any(|w| w.iter().all(u8::is_ascii_hexdigit)));
            }
            actions.extend(echo(h));
        }
        for a in actions {
            if let Action::Send { data, text: true, .. } = a {
                assert!(matches!(json::parse(&data), Ok(Json::Object(_))));
            }
        }
    }
    s.on_close(1);
});
