//! libFuzzer target `http_request`: see `mbox_fuzz::http::fuzz_http_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mbox_fuzz::http::fuzz_http_request(data));
