//! The I/O edge of one browser media leg: one tokio task owns the leg's UDP socket and
//! the clock and drives the sans-IO [`WebRtcLeg`] (datagrams and timeouts in, datagrams
//! out). The call side talks to it through two bounded channels: audio payloads for the
//! browser in, [`LegNotice`]s out. Audio is dropped rather than queued when the call side
//! is slow (a late voice frame is worth nothing); `Connected` and `Closed` are awaited.

use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::session::{LegEvent, WebRtcLeg};

/// One audio payload for the browser, in the leg's codec, with its RTP timestamp in the
/// codec's clock (samples since the start of the leg's stream).
#[derive(Debug)]
pub struct Frame {
    pub rtp_time: u64,
    pub payload: Vec<u8>,
}

/// What the leg's task tells the call side.
#[derive(Debug, PartialEq)]
pub enum LegNotice {
    /// ICE and DTLS-SRTP are up.
    Connected,
    /// One audio payload from the browser (codec payload, RTP timestamp in its clock).
    Audio { rtp_time: u64, payload: Vec<u8> },
    /// The browser is gone (consent lost) or the leg failed; the task has ended.
    Closed { why: &'static str },
}

/// Largest datagram we accept: STUN, DTLS records and SRTP packets on a voice leg are far
/// below a common MTU.
const MAX_DATAGRAM: usize = 2048;

/// Run the leg until the browser goes away, the leg fails, or the call side drops its
/// `to_browser` sender (the call ended). One task per leg; the receive buffer is reused.
pub async fn run(
    mut leg: WebRtcLeg,
    socket: UdpSocket,
    mut to_browser: mpsc::Receiver<Frame>,
    notices: mpsc::Sender<LegNotice>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let why = loop {
        // Drain the leg's outputs first: sans-IO contract (poll until only a timeout is left).
        let mut ended = None;
        loop {
            match leg.poll_event() {
                Ok(None) => break,
                Ok(Some(LegEvent::Transmit { to, data })) => {
                    // A failed send is a lost packet; consent expiry notices a dead path.
                    let _ = socket.send_to(&data, to).await;
                }
                Ok(Some(LegEvent::Connected)) => {
                    if notices.send(LegNotice::Connected).await.is_err() {
                        ended = Some("call_ended");
                        break;
                    }
                }
                Ok(Some(LegEvent::Audio { rtp_time, payload })) => {
                    let _ = notices.try_send(LegNotice::Audio { rtp_time, payload });
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
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, from)) => leg.handle_receive(Instant::now(), from, &buf[..n]),
                // ICMP port unreachable and the like: keep going, consent decides.
                Err(_) => Ok(()),
            },
            f = to_browser.recv() => match f {
                Some(f) => leg.send_audio(Instant::now(), f.rtp_time, &f.payload),
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
