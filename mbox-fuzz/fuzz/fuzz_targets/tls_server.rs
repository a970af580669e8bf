//! libFuzzer target `tls_server`: see `mbox_fuzz::tls::fuzz_tls_server`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mbox_fuzz::tls::fuzz_tls_server(data));
