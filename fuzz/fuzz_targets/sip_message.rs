//! SIP message parser, accessors, serializer round trip, stream framing and the
//! 400-for-unparsable-request builder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::sip::message::{error_response_for_unparsed, frame_stream, Framing, Message};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(data, Framing::Datagram) {
        let _ = m.validate_request();
        let _ = m.validate_response();
        let _ = m.top_via();
        let _ = m.from_header();
        let _ = m.to_header();
        let _ = m.cseq();
        let _ = m.contact();
        let _ = m.max_forwards();

        // Our serializer must always produce a message that parses again, with the same
        // method / status code and the same body (Content-Length is rewritten from the body).
        let bytes = m.to_bytes();
        let again = match Message::parse(&bytes, Framing::Datagram) {
            Ok(again) => again,
            Err(e) => panic!(
                "serialized message does not parse again: {e:?}\n{}",
                String::from_utf8_lossy(&bytes)
            ),
        };
        assert_eq!(
            again.method(),
            m.method(),
            "method changed in the round trip"
        );
        assert_eq!(
            again.status(),
            m.status(),
            "status changed in the round trip"
        );
        assert_eq!(again.body, m.body, "body changed in the round trip");
    }

    let _ = frame_stream(data);

    if let Some(resp) = error_response_for_unparsed(data, 400, "x") {
        match Message::parse(&resp, Framing::Datagram) {
            Ok(r) => assert_eq!(r.status(), Some(400), "error response is not a 400"),
            Err(e) => panic!(
                "error_response_for_unparsed output does not parse: {e:?}\n{}",
                String::from_utf8_lossy(&resp)
            ),
        }
    }
});
