//! The I/O edge of one browser media leg: one tokio task owns the leg's UDP socket and
//! the clock and drives the sans-IO [`WebRtcLeg`] (datagrams and timeouts in, datagrams
//! out). The call side talks to it through two bounded channels: audio payloads for the
//! browser in, [`LegNotice`]s out. Audio is dropped rather than queued when the call side
//! is slow (a late voice frame is worth nothing); `Connected` and `Closed` are awaited.
//!
//! Relay delay (`switchboard_webrtc_relay_delay_seconds`, recorded by the call side): the
//! socket asks the kernel for receive stamps (`SO_TIMESTAMPNS`) and each datagram is read
//! with `recvmsg(2)` into buffers allocated once per leg, so a browser packet's
//! [`LegNotice::Audio`] carries when it reached the host, not when this task got round to
//! it (without stamps: the read time). The other way, the time a [`Frame`] came with is
//! handed to `on_sent` when the SRTP packet carrying it leaves this socket.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::socket::{
    recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage,
};
use nix::sys::time::TimeSpec;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::session::{LegEvent, WebRtcLeg};

/// One audio payload for the browser, in the leg's codec, with its RTP timestamp in the
/// codec's clock (samples since the start of the leg's stream), and when the caller's packet
/// that carried it reached the server (its relay delay runs from there).
#[derive(Debug)]
pub struct Frame {
    pub rtp_time: u64,
    pub payload: Vec<u8>,
    pub arrived: Instant,
}

/// What the leg's task tells the call side.
#[derive(Debug, PartialEq)]
pub enum LegNotice {
    /// ICE and DTLS-SRTP are up.
    Connected,
    /// One audio payload from the browser (codec payload, RTP timestamp in its clock) and
    /// when the datagram that carried it reached the host (kernel stamp, else read time).
    Audio {
        rtp_time: u64,
        payload: Vec<u8>,
        arrived: Instant,
    },
    /// The browser is gone (consent lost) or the leg failed; the task has ended.
    Closed { why: &'static str },
}

/// Largest datagram we accept: STUN, DTLS records and SRTP packets on a voice leg are far
/// below a common MTU.
const MAX_DATAGRAM: usize = 2048;

/// Run the leg until the browser goes away, the leg fails, or the call side drops its
/// `to_browser` sender (the call ended). One task per leg; the receive buffer is reused.
pub async fn run(
    leg: WebRtcLeg,
    socket: UdpSocket,
    to_browser: mpsc::Receiver<Frame>,
    notices: mpsc::Sender<LegNotice>,
) {
    run_measured(leg, socket, to_browser, notices, |_, _| {}).await
}

/// [`run`], calling `on_sent(arrived, sent)` when the SRTP packet carrying a [`Frame`]
/// was handed to the socket (`arrived` is the frame's). A plain closure owned by the task:
/// the call side counts into its own per-leg histogram, nothing shared per packet.
pub async fn run_measured(
    mut leg: WebRtcLeg,
    socket: UdpSocket,
    mut to_browser: mpsc::Receiver<Frame>,
    notices: mpsc::Sender<LegNotice>,
    mut on_sent: impl FnMut(Instant, Instant),
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    // Kernel receive stamps; refused (some sandboxes), each datagram's read time is used.
    let _ = setsockopt(&socket, sockopt::ReceiveTimestampns, &true);
    // Room for one `SCM_TIMESTAMPNS` control message, allocated once per leg: `recvmsg`
    // uses its capacity and never grows it.
    let mut cmsg = nix::cmsg_space!(TimeSpec);
    // The last datagram given to the session: the `now` it was given with (str0m's
    // `network_time` of the audio it completes) and its kernel arrival.
    let mut last_read: Option<(Instant, Instant)> = None;
    // The arrival of the last frame handed to the session, until its SRTP packet is sent.
    let mut unsent: Option<Instant> = None;
    // Where the last datagram came from: at `Connected`, the browser's address as this
    // host sees it (its LAN address, or the NAT's in front of it), logged for operators.
    let mut last_from: Option<SocketAddr> = None;
    let why = loop {
        // Drain the leg's outputs first: sans-IO contract (poll until only a timeout is left).
        let mut ended = None;
        loop {
            match leg.poll_event() {
                Ok(None) => break,
                Ok(Some(LegEvent::Transmit { to, data })) => {
                    // A failed send is a lost packet; consent expiry notices a dead path.
                    let sent = socket.send_to(&data, to).await.is_ok();
                    if sent && is_rtp(&data) {
                        if let Some(arrived) = unsent.take() {
                            on_sent(arrived, Instant::now());
                        }
                    }
                }
                Ok(Some(LegEvent::Connected)) => {
                    if let Some(peer) = last_from {
                        tracing::info!(%peer, "webrtc leg connected");
                    }
                    if notices.send(LegNotice::Connected).await.is_err() {
                        ended = Some("call_ended");
                        break;
                    }
                }
                Ok(Some(LegEvent::Audio {
                    rtp_time,
                    payload,
                    received,
                })) => {
                    // Audio completed by the datagram just read (the usual case: one packet
                    // per frame, emitted at once) arrived at its kernel stamp; audio the
                    // session held back from an earlier read counts from that read.
                    let arrived = match last_read {
                        Some((given, stamp)) if given == received => stamp,
                        _ => received,
                    };
                    let _ = notices.try_send(LegNotice::Audio {
                        rtp_time,
                        payload,
                        arrived,
                    });
                }
                Ok(Some(LegEvent::Closed { why })) => {
                    ended = Some(why);
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "webrtc leg failed");
                    ended = Some("webrtc_error");
                    break;
                }
            }
        }
        if let Some(why) = ended {
            break why;
        }
        let deadline = leg
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + std::time::Duration::from_secs(1));
        let step = tokio::select! {
            r = socket.readable() => match r.and_then(|()| recv_stamped(&socket, &mut buf, &mut cmsg)) {
                Ok((n, from, stamp)) => {
                    let now = Instant::now();
                    let arrived = stamp.map_or(now, |ts| arrival(now, SystemTime::now(), ts));
                    last_read = Some((now, arrived));
                    last_from = Some(from);
                    leg.handle_receive(now, from, &buf[..n])
                }
                // Nothing after all (`WouldBlock`, readiness cleared), or ICMP port
                // unreachable and the like: keep going, consent decides.
                Err(_) => Ok(()),
            },
            f = to_browser.recv() => match f {
                Some(f) => {
                    unsent = Some(f.arrived);
                    leg.send_audio(Instant::now(), f.rtp_time, &f.payload)
                }
                None => break "call_ended",
            },
            _ = tokio::time::sleep_until(deadline) => leg.handle_timeout(Instant::now()),
        };
        if let Err(e) = step {
            tracing::warn!(error = %e, "webrtc leg failed");
            break "webrtc_error";
        }
    };
    if why != "call_ended" {
        let _ = notices.send(LegNotice::Closed { why }).await;
    }
}

/// One datagram waiting on `socket` (non-blocking; `WouldBlock` clears tokio's readiness),
/// with its sender and the kernel's receive stamp when there is one. `buf` and `cmsg` are
/// the leg's own: nothing is allocated (the only control message enabled on the socket is
/// the stamp, which parses into a `TimeSpec` by value).
fn recv_stamped(
    socket: &UdpSocket,
    buf: &mut [u8],
    cmsg: &mut Vec<u8>,
) -> io::Result<(usize, SocketAddr, Option<TimeSpec>)> {
    socket.try_io(Interest::READABLE, || {
        let mut iov = [IoSliceMut::new(buf)];
        let r = recvmsg::<SockaddrStorage>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut *cmsg),
            MsgFlags::MSG_DONTWAIT,
        )
        .map_err(io::Error::from)?;
        let mut stamp = None;
        if let Ok(cmsgs) = r.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmTimestampns(ts) = c {
                    stamp = Some(ts);
                }
            }
        }
        let from = r.address.and_then(socket_addr).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "datagram without an IP source")
        })?;
        Ok((r.bytes, from, stamp))
    })
}

fn socket_addr(a: SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

/// A kernel receive stamp (wall clock) on the monotonic clock: `now` less the stamp's age
/// by the wall clock `wall_now` read at the same moment. A negative age or one over a
/// second is a stepped wall clock, not a real wait: `now` then (as `media::socket` does for
/// the RTP sockets).
fn arrival(now: Instant, wall_now: SystemTime, stamp: TimeSpec) -> Instant {
    let wall_ns = wall_now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    let stamp_ns = i128::from(stamp.tv_sec()) * 1_000_000_000 + i128::from(stamp.tv_nsec());
    let age = wall_ns - stamp_ns;
    if !(0..=1_000_000_000).contains(&age) {
        return now;
    }
    now.checked_sub(Duration::from_nanos(age as u64))
        .unwrap_or(now)
}

/// An SRTP (not SRTCP, STUN or DTLS) datagram: RFC 7983 puts RTP/RTCP at first bytes
/// 128–191, and with RTCP-mux RFC 5761 §4 tells RTCP by its packet type 192–223 in the
/// second byte (where RTP has marker + payload type).
fn is_rtp(datagram: &[u8]) -> bool {
    match datagram {
        [first, second, ..] => (128..=191).contains(first) && !(192..=223).contains(second),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_stamps_map_onto_the_monotonic_clock() {
        let now = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1_765_000_000);
        let ts = |d: Duration| {
            let t = wall
                .checked_sub(d)
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .expect("after 1970");
            TimeSpec::new(t.as_secs() as i64, i64::from(t.subsec_nanos()))
        };
        let age = Duration::from_micros(2_500);
        assert_eq!(arrival(now, wall, ts(age)), now - age);
        assert_eq!(arrival(now, wall, ts(Duration::ZERO)), now);
        // A stamp from the future, or more than a second old: the wall clock stepped.
        let ahead = TimeSpec::new(1_765_000_001, 0);
        assert_eq!(arrival(now, wall, ahead), now);
        assert_eq!(arrival(now, wall, ts(Duration::from_secs(2))), now);
    }

    #[test]
    fn only_srtp_counts_as_a_relayed_packet() {
        // RTP, PCMU (PT 0) and with the marker bit (PT 0 | 0x80).
        assert!(is_rtp(&[0x80, 0x00, 0, 1]));
        assert!(is_rtp(&[0x80, 0x80, 0, 1]));
        assert!(is_rtp(&[0x90, 111, 0, 1]), "Opus with a header extension");
        // SRTCP sender / receiver report, STUN, DTLS, too short.
        assert!(!is_rtp(&[0x80, 200, 0, 6]));
        assert!(!is_rtp(&[0x81, 201, 0, 7]));
        assert!(!is_rtp(&[0x00, 0x01, 0, 0]));
        assert!(!is_rtp(&[22, 0xfe, 0xfd]));
        assert!(!is_rtp(&[0x80]));
    }

    /// The leg's socket read: what a peer sent, from where, with a kernel stamp that maps to
    /// a moment between the send and the read.
    #[tokio::test]
    async fn stamped_receive_gives_data_source_and_arrival() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let stamped = setsockopt(&socket, sockopt::ReceiveTimestampns, &true).is_ok();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").expect("peer");
        let before = Instant::now();
        peer.send_to(b"hello", socket.local_addr().expect("addr"))
            .expect("send");
        tokio::time::sleep(Duration::from_millis(30)).await;
        let mut buf = [0u8; 64];
        let mut cmsg = nix::cmsg_space!(TimeSpec);
        socket.readable().await.expect("readable");
        let (n, from, stamp) = recv_stamped(&socket, &mut buf, &mut cmsg).expect("a datagram");
        let now = Instant::now();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(from, peer.local_addr().expect("peer addr"));
        if stamped {
            let at = arrival(now, SystemTime::now(), stamp.expect("a kernel stamp"));
            // Slack for the mapping's own clock reads.
            assert!(at + Duration::from_millis(5) >= before, "after the send");
            assert!(at < now, "before the read: the 30 ms in the queue are seen");
        }
        // Nothing else waits: `WouldBlock`, not a stale datagram.
        let again = recv_stamped(&socket, &mut buf, &mut cmsg);
        assert!(
            matches!(&again, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
            "{again:?}"
        );
        // The control buffer was reused, not grown.
        assert_eq!(cmsg.capacity(), nix::cmsg_space!(TimeSpec).capacity());
    }
}
