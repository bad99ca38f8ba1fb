//! RTCP end to end against the real `switchboard` binary: a raw UDP caller (INVITE from the
//! test's SIP client, RTP from a plain socket at an even port, its RTCP socket at port + 1)
//! sends PCMU to the hotline while dropping every 10th packet. The server's RTCP must arrive
//! at the caller's RTP port + 1, from the server's RTP port + 1, as SR (it sends prompts)
//! with sane fields, a report block about the caller's stream that shows the injected loss,
//! and a BYE once the call ends. Loopback only; bounded by the 12 s of media plus timeouts.

use crate::support;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::{sdp_offer, sipp_media_port, Server, SipRequest};
use switchboard::media::rtcp::{parse_compound, RtcpPacket};
use switchboard::media::rtp::{write_header, RtpPacket};

const OUR_SSRC: u32 = 0x5EED_0001;

/// An even RTP port and its RTCP neighbour, both bound.
fn socket_pair() -> (UdpSocket, UdpSocket) {
    for _ in 0..50 {
        let p = sipp_media_port();
        if let (Ok(a), Ok(b)) = (
            UdpSocket::bind(("127.0.0.1", p)),
            UdpSocket::bind(("127.0.0.1", p + 1)),
        ) {
            return (a, b);
        }
    }
    panic!("no free even/odd port pair on loopback");
}

#[test]
fn server_sends_sr_with_the_loss_we_injected_and_bye_at_hangup() {
    let server = Server::start(&[]);
    let (rtp, rtcp) = socket_pair();
    let port = rtp.local_addr().expect("addr").port();
    let client = server.sip_client();
    let sdp = sdp_offer(port, "0 101", &["0 PCMU/8000", "101 telephone-event/8000"]);
    let req = SipRequest::new("INVITE", "hotline", &client).body("application/sdp", &sdp);
    let r = client.request(&req.bytes());
    assert_eq!(r.code, 200, "{}", r.text);
    client.send(&req.ack_for(&r).bytes());
    let server_rtp_port: u16 = r
        .text
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .expect("m=audio port in the 200");
    assert_eq!(server_rtp_port % 2, 0, "RTP on an even port");
    let server_rtp = SocketAddr::from(([127, 0, 0, 1], server_rtp_port));

    rtp.set_read_timeout(Some(Duration::from_millis(1)))
        .expect("timeout");
    rtcp.set_nonblocking(true).expect("nonblocking");
    let mut server_ssrc = None;
    // Each report with what we had sent when it arrived: RTCP intervals are randomised
    // (0.5–1.5 × 5 s, RFC 3550 §6.3.1), so the last report of the 12 s may be from ~5 s in.
    let mut reports: Vec<(Vec<u8>, SocketAddr, SystemTime, u16)> = Vec::new();
    let mut buf = [0u8; 1500];
    let start = Instant::now();
    let mut sent_highest = 0u16;
    // 12 s of 20 ms PCMU frames (silence), every 10th never sent: 10 % loss. Two reports
    // are certain by then: the first by 3.75 s, the next at most 7.5 s later.
    for k in 0..600u32 {
        let due = start + Duration::from_millis(20 * k as u64);
        while Instant::now() < due {
            if let Ok((n, _)) = rtp.recv_from(&mut buf) {
                if let Ok(p) = RtpPacket::parse(&buf[..n]) {
                    server_ssrc.get_or_insert(p.ssrc);
                }
            }
            while let Ok((n, from)) = rtcp.recv_from(&mut buf) {
                reports.push((buf[..n].to_vec(), from, SystemTime::now(), sent_highest));
            }
        }
        if k % 10 == 9 {
            continue;
        }
        let mut pkt = [0xFFu8; 12 + 160];
        write_header(&mut pkt, k == 0, 0, k as u16, k * 160, OUR_SSRC);
        rtp.send_to(&pkt, server_rtp).expect("send rtp");
        sent_highest = k as u16;
    }
    let server_ssrc = server_ssrc.expect("the server sent RTP");
    assert!(
        reports.len() >= 2,
        "at least two reports in 12 s (first after ~2.5 s, then every ~5 s): got {}\n{}",
        reports.len(),
        support::tail(&server.log(), 40)
    );
    for (bytes, from, _, _) in &reports {
        assert_eq!(
            from.port(),
            server_rtp_port + 1,
            "RTCP comes from the server's RTP port + 1"
        );
        assert!(
            parse_compound(bytes).all(|p| p.is_ok()),
            "well-formed compound"
        );
    }
    let (last, _, received_at, sent_then) = reports.last().expect("a report");
    let sent_then = *sent_then;
    let pkts: Vec<RtcpPacket> = parse_compound(last).filter_map(Result::ok).collect();
    assert!(
        matches!(pkts.get(1), Some(RtcpPacket::Sdes { count: 1, .. })),
        "SR/RR then SDES CNAME: {pkts:?}"
    );
    match pkts[0] {
        RtcpPacket::Sr {
            ssrc,
            ntp,
            packet_count,
            octet_count,
            reports,
            ..
        } => {
            assert_eq!(ssrc, server_ssrc, "SR from the SSRC of the server's RTP");
            assert!(packet_count > 100, "{packet_count} packets sent");
            assert_eq!(octet_count, 160 * packet_count, "PCMU: 160 octets each");
            // NTP time within 2 s of our wall clock at reception.
            let unix = (ntp >> 32).saturating_sub(2_208_988_800);
            let ours = received_at
                .duration_since(UNIX_EPOCH)
                .expect("clock")
                .as_secs();
            assert!(unix.abs_diff(ours) <= 2, "NTP {unix} vs wall {ours}");
            let b = reports
                .iter()
                .find(|b| b.ssrc == OUR_SSRC)
                .expect("a report block about our stream");
            // The last interval saw ~10 % loss: 25.6/256.
            assert!(
                (15..=40).contains(&b.fraction_lost),
                "fraction lost {} / 256 reflects the 10 % we dropped",
                b.fraction_lost
            );
            assert!(
                b.cumulative_lost >= 20,
                "cumulative lost {}",
                b.cumulative_lost
            );
            assert!(
                b.extended_highest_seq <= sent_then as u32
                    && b.extended_highest_seq + 100 > sent_then as u32,
                "extended highest {} vs {sent_then} sent when the report arrived (of \
                 {sent_highest})",
                b.extended_highest_seq
            );
            assert!(b.jitter < 8000, "jitter {} ticks under 1 s", b.jitter);
            assert_eq!(b.lsr, 0, "we sent no SR");
        }
        ref other => panic!("the server sends prompts, so an SR: got {other:?}"),
    }

    // Hang up: the server's last report carries a BYE for its SSRC.
    let bye = SipRequest::new("BYE", "hotline", &client)
        .header("Call-ID", req.call_id())
        .header("From", req.get("From"))
        .header("To", r.header("To").unwrap_or(""))
        .header("CSeq", "2 BYE");
    client.send(&bye.bytes());
    rtcp.set_nonblocking(false).expect("blocking");
    rtcp.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got_bye = false;
    while Instant::now() < deadline && !got_bye {
        if let Ok((n, _)) = rtcp.recv_from(&mut buf) {
            got_bye = parse_compound(&buf[..n])
                .filter_map(Result::ok)
                .any(|p| p.bye_ssrcs().any(|s| s == server_ssrc));
        }
    }
    assert!(
        got_bye,
        "RTCP BYE at hangup\n{}",
        support::tail(&server.log(), 40)
    );
}
