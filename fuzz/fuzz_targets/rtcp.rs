//! RTCP compound parser (SR, RR, SDES, BYE, others skipped): never panics, every view it
//! yields stays inside the datagram.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::media::rtcp::{parse_compound, RtcpPacket};

fuzz_target!(|data: &[u8]| {
    for p in parse_compound(data).flatten() {
        match p {
            RtcpPacket::Sr { reports, .. } | RtcpPacket::Rr { reports, .. } => {
                assert!(reports.len() * 24 <= data.len());
                for b in reports.iter() {
                    assert!((-0x80_0000..0x80_0000).contains(&b.cumulative_lost));
                }
            }
            RtcpPacket::Sdes { body, .. } => assert!(body.len() <= data.len()),
            RtcpPacket::Bye { ssrcs } => assert!(ssrcs.len() <= data.len()),
            RtcpPacket::Other { .. } => {}
        }
        let _ = p.bye_ssrcs().count();
    }
});
