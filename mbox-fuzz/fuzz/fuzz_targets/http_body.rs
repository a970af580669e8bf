//! libFuzzer target `http_body`: see `mbox_fuzz::http::fuzz_http_body`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mbox_fuzz::http::fuzz_http_body(data));
