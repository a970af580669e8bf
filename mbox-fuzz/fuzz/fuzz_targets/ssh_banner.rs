//! libFuzzer target `ssh_banner`: see `mbox_fuzz::ssh::fuzz_ssh_banner`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mbox_fuzz::ssh::fuzz_ssh_banner(data));
