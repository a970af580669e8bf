//! libFuzzer target `http_response`: see `mbox_fuzz::http::fuzz_http_response`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mbox_fuzz::http::fuzz_http_response(data));
