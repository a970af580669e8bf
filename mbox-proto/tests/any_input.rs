//! Every parser on arbitrary bytes: an answer, never a panic.

use mbox_proto::{dns, http, ssh, tls};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn parsers_take_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600), prefix in 0usize..4) {
        // Give some inputs a plausible start, so the parsers get past their first check.
        let starts: [&[u8]; 4] = [b"", b"GET / HTTP/1.1\r\n", b"\x16\x03\x01\x01\x00\x01\x00\x00\xfc\x03\x03", b"SSH-2.0-"];
        let mut input = starts[prefix].to_vec();
        input.extend_from_slice(&bytes);
        let _ = http::request_head(&input);
        let _ = http::response_head(&input, false);
        let mut d = http::BodyDecoder::new(http::BodyLength::Chunked);
        let _ = d.feed(&bytes, &mut |_| {});
        let _ = tls::client_hello(&input);
        let _ = ssh::banner(&input);
        let _ = dns::for_each_question(&bytes, |_| {});
        let _ = dns::tcp_messages(&bytes, |m| { let _ = dns::for_each_question(m, |_| {}); });
    }
}
