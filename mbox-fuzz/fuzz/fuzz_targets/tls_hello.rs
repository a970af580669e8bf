//! libFuzzer target `tls_hello`: see `mbox_fuzz::tls::fuzz_tls_hello`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mbox_fuzz::tls::fuzz_tls_hello(data));
