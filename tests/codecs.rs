//! Codec negotiation end to end against the real `switchboard` binary: an INVITE offering
//! Opus, G.722, or several codecs to the hotline; the 200's SDP must pick what our
//! preference order says, and the server's RTP (captured on a plain UDP socket at the
//! offered port) must carry that payload type, advance timestamps at the codec's RTP clock
//! (960 per 20 ms for Opus at 48000, 160 for G.722 at 8000 — RFC 7587 §4.1, RFC 3551
//! §4.5.2) and decode to the greeting prompt, not to silence or noise. RFC 4733 digits sent
//! at 48000 on the Opus call drive the menu. The same with SIPp as the caller
//! (`sip-test/uac_wideband_offer.xml`, whose own regular expressions check the answer).

use crate::support;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use crate::support::{
    free_port, repo_root, sdp_offer, sipp_media_port, Server, SipRequest, SippProcess,
};
use switchboard::media::codec::{Codec, Decoder, MAX_DECODED_8K};
use switchboard::media::rtp::{write_header, RtpPacket};

struct Captured {
    seq: u16,
    ts: u32,
    pt: u8,
    payload: Vec<u8>,
}

fn capture(sock: &UdpSocket, for_how_long: Duration) -> Vec<Captured> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1500];
    let end = Instant::now() + for_how_long;
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    while Instant::now() < end {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            if let Ok(p) = RtpPacket::parse(&buf[..n]) {
                out.push(Captured {
                    seq: p.sequence,
                    ts: p.timestamp,
                    pt: p.payload_type,
                    payload: p.payload.to_vec(),
                });
            }
        }
    }
    out
}

/// Offer `formats`/`maps`, return (the 200's SDP, the RTP socket, the INVITE, the 200).
fn call(
    server: &Server,
    formats: &str,
    maps: &[&str],
) -> (
    String,
    UdpSocket,
    SipRequest,
    support::SipResponse,
    support::SipClient,
) {
    let rtp = UdpSocket::bind("127.0.0.1:0").expect("rtp socket");
    let port = rtp.local_addr().expect("addr").port();
    let client = server.sip_client();
    let sdp = sdp_offer(port, formats, maps);
    let req = SipRequest::new("INVITE", "hotline", &client).body("application/sdp", &sdp);
    let r = client.request(&req.bytes());
    assert_eq!(r.code, 200, "{}", r.text);
    client.send(&req.ack_for(&r).bytes());
    let body = r
        .text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (body, rtp, req, r, client)
}

fn m_line(sdp: &str) -> &str {
    sdp.lines().find(|l| l.starts_with("m=audio")).unwrap_or("")
}

/// The packets of one stream: all with `pt`, and timestamps that advance by `step` per
/// sequence number. Returns the decoded audio's RMS level.
fn check_stream(packets: &[Captured], codec: Codec, pt: u8) -> f64 {
    assert!(packets.len() > 30, "{} packets", packets.len());
    let audio: Vec<&Captured> = packets.iter().filter(|p| p.pt == pt).collect();
    assert_eq!(audio.len(), packets.len(), "only PT {pt} is sent");
    for w in audio.windows(2) {
        let dseq = w[1].seq.wrapping_sub(w[0].seq) as u32;
        assert!(dseq >= 1, "sequence advances");
        assert_eq!(
            w[1].ts.wrapping_sub(w[0].ts),
            dseq * codec.timestamp_step(),
            "{codec:?}: timestamp step per 20 ms"
        );
    }
    let mut dec = Decoder::new(codec).expect("decoder");
    let mut pcm = [0i16; MAX_DECODED_8K];
    let (mut sum, mut n) = (0f64, 0usize);
    for p in &audio {
        if codec.is_octet_per_sample() {
            assert_eq!(p.payload.len(), 160, "{codec:?}: 20 ms is 160 octets");
        }
        let m = dec
            .decode_8k(&p.payload, &mut pcm)
            .expect("server RTP decodes");
        assert_eq!(m, 160, "{codec:?}: 20 ms of audio per packet");
        sum += pcm[..m].iter().map(|s| (*s as f64).powi(2)).sum::<f64>();
        n += m;
    }
    (sum / n as f64).sqrt()
}

fn send_digit(rtp: &UdpSocket, to: std::net::SocketAddr, pt: u8, rate: u32, event: u8) {
    // RFC 4733: one event, durations in timestamp units of the negotiated clock.
    let step = (rate / 50) as u16;
    let ts = 77_000u32;
    for (i, end) in [false, false, false, false, true, true, true]
        .into_iter()
        .enumerate()
    {
        let mut b = [0u8; 16];
        write_header(&mut b, i == 0, pt, 500 + i as u16, ts, 0x5151);
        b[12] = event;
        b[13] = if end { 0x80 } else { 0 } | 10;
        let dur = step * (i.min(4) as u16 + 1);
        b[14..16].copy_from_slice(&dur.to_be_bytes());
        let _ = rtp.send_to(&b, to);
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn server_rtp_addr(sdp: &str) -> std::net::SocketAddr {
    let port: u16 = m_line(sdp)
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("port");
    format!("127.0.0.1:{port}").parse().expect("addr")
}

#[test]
fn opus_only_offer_gets_opus_at_48k_with_telephone_event_48k() {
    let server = Server::start(&[]);
    let (sdp, rtp, req, _r, _client) = call(
        &server,
        "109 101",
        &["109 opus/48000/2", "101 telephone-event/48000"],
    );
    assert_eq!(
        m_line(&sdp).split_whitespace().skip(3).collect::<Vec<_>>(),
        ["109", "101"],
        "{sdp}"
    );
    assert!(sdp.contains("a=rtpmap:109 opus/48000/2\r\n"), "{sdp}");
    assert!(sdp.contains("a=fmtp:109 useinbandfec=1"), "{sdp}");
    assert!(
        sdp.contains("a=rtpmap:101 telephone-event/48000\r\n"),
        "{sdp}"
    );
    let packets = capture(&rtp, Duration::from_millis(2500));
    let level = check_stream(&packets, Codec::Opus, 109);
    assert!(level > 300.0, "the greeting is audible: RMS {level:.0}");
    // A '1' in RFC 4733 at 48 kHz during the menu is the caller's digit.
    send_digit(&rtp, server_rtp_addr(&sdp), 101, 48000, 1);
    let call_id = req.call_id().to_string();
    server.wait_db(Duration::from_secs(5), "dtmf event", |db| {
        let n = db.count(&format!(
            "call_events e JOIN call_records r ON r.id = e.call_id \
             WHERE r.sip_call_id = '{call_id}' AND e.kind = 'dtmf' AND e.detail = '1'"
        ));
        (n == 1).then_some(())
    });
}

#[test]
fn g722_offer_gets_g722_clocked_at_8000() {
    let server = Server::start(&[]);
    let (sdp, rtp, _req, _r, _client) = call(
        &server,
        "9 101",
        &["9 G722/8000", "101 telephone-event/8000"],
    );
    assert!(m_line(&sdp).ends_with("RTP/AVP 9 101"), "{sdp}");
    assert!(sdp.contains("a=rtpmap:9 G722/8000\r\n"), "{sdp}");
    let packets = capture(&rtp, Duration::from_millis(2500));
    let level = check_stream(&packets, Codec::G722, 9);
    assert!(level > 300.0, "the greeting is audible: RMS {level:.0}");
}

#[test]
fn default_preference_keeps_g711_when_offered() {
    // Today's phones offer G.711 among others: the default order answers PCMU, as before.
    let server = Server::start(&[]);
    let (sdp, rtp, _req, _r, _client) = call(
        &server,
        "111 9 0 8 101",
        &[
            "111 opus/48000/2",
            "9 G722/8000",
            "0 PCMU/8000",
            "8 PCMA/8000",
            "101 telephone-event/8000",
        ],
    );
    assert!(m_line(&sdp).ends_with("RTP/AVP 0 101"), "{sdp}");
    let packets = capture(&rtp, Duration::from_millis(1500));
    check_stream(&packets, Codec::Pcmu, 0);
}

#[test]
fn unsupported_offer_gets_488() {
    let server = Server::start(&[]);
    let client = server.sip_client();
    let sdp = sdp_offer(40_000, "18 97", &["18 G729/8000", "97 iLBC/8000"]);
    let req = SipRequest::new("INVITE", "hotline", &client).body("application/sdp", &sdp);
    let r = client.request(&req.bytes());
    assert_eq!(r.code, 488, "{}", r.text);
    client.send(&req.ack_for(&r).bytes());
}

/// SIPp offers Opus first, then G.722 (no G.711); the default preference answers G.722
/// (SIPp's `ereg check_it` fails the call otherwise) and the server's RTP, captured at the
/// port the scenario put in its SDP, is PT 9 stepping 160 per 20 ms.
#[test]
fn sipp_wideband_offer_gets_g722() {
    let server = Server::start(&[]);
    let rtp = UdpSocket::bind("127.0.0.1:0").expect("rtp socket");
    let rtp_port = rtp.local_addr().expect("addr").port().to_string();
    let dir = server.dir.path().join("sipp-wideband");
    std::fs::create_dir_all(&dir).expect("dir");
    let scenario = std::fs::read_to_string(repo_root().join("sip-test/uac_wideband_offer.xml"))
        .expect("scenario")
        .replace("@HOLD_MS@", "3000");
    let file = dir.join("uac_wideband_offer.xml");
    std::fs::write(&file, scenario).expect("write scenario");
    let port = free_port().to_string();
    let media = sipp_media_port().to_string();
    let errors = dir.join("errors.log").display().to_string();
    let sipp = SippProcess::spawn_file(
        &file,
        server.sip_addr,
        &dir,
        &[
            "-i",
            "127.0.0.1",
            "-p",
            &port,
            "-mp",
            &media,
            "-m",
            "1",
            "-l",
            "1",
            "-nostdin",
            "-timeout",
            "20s",
            "-timeout_error",
            "-trace_err",
            "-error_file",
            &errors,
            "-s",
            "hotline",
            "-set",
            "caller",
            "+15551230077",
            "-set",
            "rtp_port",
            &rtp_port,
        ],
        Duration::from_secs(20),
    );
    let packets = capture(&rtp, Duration::from_millis(3500));
    sipp.wait().assert_ok(&server);
    let level = check_stream(&packets, Codec::G722, 9);
    assert!(level > 300.0, "the greeting is audible: RMS {level:.0}");
}
