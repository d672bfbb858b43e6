//! Glue between the engine and the dialects: carries out a dialect's
//! [`Action`]s through a [`ServerHandle`].

pub mod achex;

use std::sync::Arc;

use crate::dialect::Action;
use crate::{ServerHandle, SharedFrame};

/// Carries out `actions` in order. A payload shared by several recipients
/// (the same `Arc`) is framed once and the frame's bytes are shared by every
/// connection. Sends to sessions that have gone meanwhile are dropped (the
/// dialect hears about the close from the engine).
pub fn apply_actions(server: &ServerHandle, actions: Vec<Action>) {
    let mut last: Option<(*const u8, bool, SharedFrame)> = None;
    for a in actions {
        match a {
            Action::Send { to, data, text } => {
                let key = Arc::as_ptr(&data) as *const u8;
                let frame = match &last {
                    Some((k, t, f)) if *k == key && *t == text => f.clone(),
                    _ => match SharedFrame::new(&data, text) {
                        Ok(f) => {
                            last = Some((key, text, f.clone()));
                            f
                        }
                        // Not UTF-8 although marked text: a dialect bug; send it as binary.
                        Err(_) => match SharedFrame::new(&data, false) {
                            Ok(f) => f,
                            Err(_) => continue,
                        },
                    },
                };
                let _ = server.send_shared(to, &frame);
            }
            Action::Ping { to, payload } => {
                let _ = server.ping(to, &payload);
            }
            Action::Close { to, code, reason } => {
                let _ = server.close(to, code as i32, &reason);
            }
        }
    }
}
