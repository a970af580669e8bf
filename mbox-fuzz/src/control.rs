//! The control socket (mbox_core::control::server): a client's request line, answered.
//!
//! Whatever a client sends, the answer is one JSON line, `{"ok":true,"result":...}` or
//! `{"ok":false,"error":"..."}`, and so is the answer given when every serving thread is busy.

use mbox_core::control::server::{answer_line, busy_line, ControlState};
use std::sync::OnceLock;

fn state() -> &'static ControlState {
    static STATE: OnceLock<ControlState> = OnceLock::new();
    STATE.get_or_init(ControlState::idle)
}

fn check(line: &str) -> bool {
    let body = line.strip_suffix('\n').expect("an answer ends its line");
    assert!(!body.contains('\n'), "an answer of more than one line: {line:?}");
    let v: serde_json::Value = serde_json::from_str(body).expect("an answer is JSON");
    let ok = v["ok"].as_bool().expect("an answer says whether it is ok");
    if ok {
        assert!(v.get("result").is_some(), "{line}");
    } else {
        assert!(v["error"].is_string(), "{line}");
    }
    ok
}

/// A request line (what the listener hands over: up to the first newline, or all of it).
pub fn fuzz_control(data: &[u8]) {
    let ok = check(&answer_line(state(), data));
    let busy_ok = check(&busy_line(state(), data));
    assert!(!busy_ok || ok, "answered when busy but refused when not");
}
