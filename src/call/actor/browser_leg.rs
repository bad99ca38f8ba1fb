//! A browser agent leg: the agent takes the call in the `/agent` page instead of a SIP
//! phone. To the caller's actor it is an agent leg like any other (`LegEvent::Answered`,
//! then `LegControl::Bridge`, `Stop`, `LegEvent::Ended`), so queue logic, ring-all races,
//! recording and the ACD bookkeeping are unchanged.
//!
//! The leg rings the page through [`crate::webrtc::phones`] (the page's event stream gets
//! `incoming-call`); the page answers by posting its WebRTC offer, which this task accepts
//! on a port-pool socket ([`WebRtcLeg`], driven by [`driver::run`] inside this same task).
//! Towards the caller the leg is plain RTP on a loopback socket that is both the leg's
//! `socket` and its `remote`: the caller's relay sends the caller's audio (already in the
//! browser's codec: PCMU passes through, Opus is transcoded by the relay) from that socket
//! to itself, and this task reads it there and hands the payloads to the browser. What the
//! browser sends comes back as payloads, is wrapped in RTP and goes through an
//! agent→caller [`Relay`] from the caller's socket, exactly what a SIP agent leg does.
//!
//! One task per leg; everything (sockets, the str0m session, the ring) is released when it
//! returns.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::queue::{AnsweredLeg, LegControl, LegEvent, LegLink};
use super::{CallContext, CallInput};
use crate::acd::OfferEnd;
use crate::media::bridge::{Direction, LegMedia, Relay};
use crate::media::codec::{Codec, OPUS_OFFER_PT};
use crate::media::rtp::{write_header, RtpPacket};
use crate::media::socket::{MediaSocket, Readiness};
use crate::webrtc::driver::{self, Frame, LegNotice};
use crate::webrtc::phones::PageAction;
use crate::webrtc::{LegCodec, WebRtcLeg};

/// From the page's answer to ICE + DTLS up: beyond this the browser cannot reach us.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Datagrams read per wake-up from the loopback socket (a flood cannot hold the task).
const DRAIN_LIMIT: usize = 32;

/// Ring `link.agent`'s page for the call `call` (the ACD key), and serve the leg.
pub(super) async fn run(
    ctx: Arc<CallContext>,
    link: LegLink,
    call: String,
    ring_timeout: Duration,
    own_tx: mpsc::Sender<CallInput>,
    mut rx: mpsc::Receiver<CallInput>,
    shutdown: CancellationToken,
) {
    let failed = |how: OfferEnd| {
        let _ = link.caller_tx.try_send(CallInput::Leg(LegEvent::Failed {
            leg: link.leg,
            agent: link.agent.clone(),
            how,
        }));
    };
    let Some(mut ring) = ctx.phones.ring(&link.agent, &call) else {
        debug!(agent = %link.agent, "browser phone went off before the ring");
        failed(OfferEnd::Failed);
        return;
    };
    // ---- ringing -----------------------------------------------------------------------
    let deadline = tokio::time::sleep(ring_timeout);
    tokio::pin!(deadline);
    let (offer, reply) = loop {
        tokio::select! {
            a = ring.actions.recv() => match a {
                Some(PageAction::Answer { offer, reply }) => break (offer, reply),
                Some(PageAction::Reject) | Some(PageAction::Hangup) => {
                    ring.why = "rejected";
                    failed(OfferEnd::Busy);
                    return;
                }
                // The phone was turned off (logout, takeover).
                None => {
                    ring.why = "phone_off";
                    failed(OfferEnd::Failed);
                    return;
                }
            },
            c = rx.recv() => match c {
                Some(CallInput::LegControl(LegControl::Stop)) | None => {
                    ring.why = "cancelled";
                    failed(OfferEnd::Cancelled);
                    return;
                }
                Some(_) => {}
            },
            _ = &mut deadline => {
                ring.why = "no_answer";
                failed(OfferEnd::NoAnswer);
                return;
            }
            _ = shutdown.cancelled() => {
                ring.why = "shutdown";
                failed(OfferEnd::Cancelled);
                return;
            }
        }
    };
    // ---- answer: the browser's offer --------------------------------------------------
    let Some(setup) = accept(&ctx, &offer).await else {
        let _ = reply.send(Err(
            "the offer could not be accepted (see the server log)".into()
        ));
        ring.why = "bad_offer";
        failed(OfferEnd::Failed);
        return;
    };
    let Setup {
        leg,
        answer,
        socket,
        plain,
        media,
    } = setup;
    if reply.send(Ok(answer)).is_err() {
        // The page's request went away (closed tab): nobody will connect.
        ring.why = "page_gone";
        failed(OfferEnd::Failed);
        return;
    }
    let (frames_tx, frames_rx) = mpsc::channel::<Frame>(16);
    let (notices_tx, mut notices) = mpsc::channel::<LegNotice>(64);
    let drive = driver::run(leg, socket, frames_rx, notices_tx);
    tokio::pin!(drive);
    let (plain, readiness, plain_addr) = match plain_readiness(plain) {
        Some(p) => p,
        None => {
            ring.why = "no_rtp_socket";
            failed(OfferEnd::Failed);
            return;
        }
    };
    // ---- until ICE + DTLS are up ------------------------------------------------------
    let connect_by = tokio::time::sleep(CONNECT_TIMEOUT);
    tokio::pin!(connect_by);
    let connected = loop {
        tokio::select! {
            _ = &mut drive => break false,
            n = notices.recv() => match n {
                Some(LegNotice::Connected) => break true,
                Some(LegNotice::Closed { .. }) | None => break false,
                Some(LegNotice::Audio { .. }) => {}
            },
            c = rx.recv() => match c {
                Some(CallInput::LegControl(LegControl::Stop)) | None => {
                    ring.why = "cancelled";
                    failed(OfferEnd::Cancelled);
                    return;
                }
                Some(_) => {}
            },
            a = ring.actions.recv() => {
                if matches!(a, Some(PageAction::Hangup | PageAction::Reject) | None) {
                    ring.why = "rejected";
                    failed(OfferEnd::Busy);
                    return;
                }
            }
            _ = &mut connect_by => break false,
            _ = shutdown.cancelled() => break false,
        }
    };
    if !connected {
        info!(agent = %link.agent, "browser answered but its media never connected");
        ring.why = "ice_failed";
        failed(OfferEnd::Failed);
        return;
    }
    let sent = link
        .caller_tx
        .try_send(CallInput::Leg(LegEvent::Answered(Box::new(AnsweredLeg {
            leg: link.leg,
            agent: link.agent.clone(),
            media,
            remote: plain_addr,
            socket: plain.clone(),
            tx: own_tx.clone(),
        }))));
    if sent.is_err() {
        ring.why = "caller_gone";
        return;
    }
    info!(agent = %link.agent, codec = ?media.codec, "browser agent answered");
    // ---- answered: relay both ways until one side ends --------------------------------
    let mut relay: Option<(Relay, Arc<MediaSocket>)> = None;
    let mut buf = vec![0u8; 1500];
    let mut to_browser = Timeline::default();
    let mut seq: u16 = rand::random();
    let ssrc: u32 = rand::random();
    let why = loop {
        tokio::select! {
            _ = &mut drive => break "webrtc_error",
            n = notices.recv() => match n {
                Some(LegNotice::Audio { rtp_time, payload }) => {
                    let Some((r, out)) = relay.as_mut() else { continue };
                    let len = 12 + payload.len();
                    if len > buf.len() {
                        continue;
                    }
                    write_header(&mut buf, false, media.payload_type, seq, rtp_time as u32, ssrc);
                    seq = seq.wrapping_add(1);
                    buf[12..len].copy_from_slice(&payload);
                    if let Some(n) = r.rewrite(Instant::now(), &mut buf, len) {
                        let _ = out.try_send_to(&buf[..n], r.dest());
                    }
                }
                Some(LegNotice::Closed { why }) => break why,
                Some(LegNotice::Connected) => {}
                None => break "webrtc_error",
            },
            ready = readiness.readable() => {
                let Ok(guard) = ready else { break "rtp_socket_error" };
                guard.drain(&mut buf, DRAIN_LIMIT, |b, len, from| {
                    // Only the caller's relay sends here (from this very socket).
                    if from != plain_addr {
                        return;
                    }
                    let Ok(p) = RtpPacket::parse(&b[..len]) else { return };
                    if p.payload_type != media.payload_type {
                        return;
                    }
                    let _ = frames_tx.try_send(Frame {
                        rtp_time: to_browser.extend(p.timestamp),
                        payload: p.payload.to_vec(),
                    });
                });
            }
            c = rx.recv() => match c {
                Some(CallInput::LegControl(LegControl::Bridge { socket, dest, agent, caller, counters, recorder })) => {
                    let mut r = Relay::new(Instant::now(), agent, caller, dest, Direction::AgentToCaller, counters);
                    if let Some(rec) = recorder {
                        r.record(rec);
                    }
                    relay = Some((r, socket));
                }
                Some(CallInput::LegControl(LegControl::CallerMoved { dest })) => {
                    if let Some((r, _)) = relay.as_mut() {
                        r.set_dest(dest);
                    }
                }
                Some(CallInput::LegControl(LegControl::Stop)) | None => break "caller_gone",
                Some(_) => {}
            },
            a = ring.actions.recv() => match a {
                Some(PageAction::Hangup | PageAction::Reject) => break "agent_hangup",
                Some(PageAction::Answer { reply, .. }) => {
                    let _ = reply.send(Err("already answered".into()));
                }
                None => break "phone_off",
            },
            _ = shutdown.cancelled() => break "shutdown",
        }
    };
    info!(agent = %link.agent, why, "browser agent leg ended");
    ring.why = why;
    let _ = link.caller_tx.try_send(CallInput::Leg(LegEvent::Ended {
        leg: link.leg,
        agent: link.agent.clone(),
    }));
}

/// What answering the browser's offer set up.
struct Setup {
    leg: WebRtcLeg,
    answer: String,
    socket: tokio::net::UdpSocket,
    plain: MediaSocket,
    media: LegMedia,
}

/// Accept the page's offer on a port-pool socket, advertising `[webrtc] public_address`
/// (else the media address; loopback when that is the wildcard).
async fn accept(ctx: &CallContext, offer: &str) -> Option<Setup> {
    let bind_ip = ctx.config.media_address;
    let socket = match ctx.ports.bind(bind_ip).await {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "no RTP port for a browser leg");
            return None;
        }
    };
    let port = socket.local_addr().ok()?.port();
    let ip = ctx
        .config
        .webrtc_public_address
        .unwrap_or(if bind_ip.is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            bind_ip
        });
    let (leg, answer) =
        match WebRtcLeg::accept_offer(Instant::now(), SocketAddr::new(ip, port), offer) {
            Ok(x) => x,
            Err(e) => {
                info!(error = %e, "browser offer refused");
                return None;
            }
        };
    let media = match leg.codec() {
        Some(LegCodec::Pcmu) => LegMedia {
            codec: Codec::Pcmu,
            payload_type: 0,
            telephone_event: None,
        },
        Some(LegCodec::Opus) => LegMedia {
            codec: Codec::Opus,
            payload_type: OPUS_OFFER_PT,
            telephone_event: None,
        },
        None => {
            info!("browser offer has no codec we speak");
            return None;
        }
    };
    let plain = match MediaSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "no loopback socket for a browser leg");
            return None;
        }
    };
    Some(Setup {
        leg,
        answer,
        socket,
        plain,
        media,
    })
}

fn plain_readiness(plain: MediaSocket) -> Option<(Arc<MediaSocket>, Readiness, SocketAddr)> {
    let addr = plain.local_addr().ok()?;
    let readiness = Readiness::new(&plain).ok()?;
    Some((Arc::new(plain), readiness, addr))
}

/// 32-bit RTP timestamps of the caller's relay → the leg's 64-bit media time.
#[derive(Debug, Default)]
struct Timeline {
    last: Option<u32>,
    now: u64,
}

impl Timeline {
    fn extend(&mut self, ts: u32) -> u64 {
        match self.last {
            None => self.now = u64::from(ts),
            Some(prev) => {
                // Forward steps of less than half the range; a step back (reordering) is
                // kept at the last time rather than wrapping the clock.
                let step = ts.wrapping_sub(prev);
                if step < 1 << 31 {
                    self.now += u64::from(step);
                }
            }
        }
        if self.last.is_none_or(|p| ts.wrapping_sub(p) < 1 << 31) {
            self.last = Some(ts);
        }
        self.now
    }
}

#[cfg(test)]
mod tests {
    use super::Timeline;

    #[test]
    fn timeline_wraps_and_ignores_steps_back() {
        let mut t = Timeline::default();
        assert_eq!(t.extend(u32::MAX - 159), u64::from(u32::MAX - 159));
        assert_eq!(t.extend(0), u64::from(u32::MAX) + 1);
        assert_eq!(t.extend(160), u64::from(u32::MAX) + 161);
        assert_eq!(t.extend(0), u64::from(u32::MAX) + 161, "late packet");
        assert_eq!(t.extend(320), u64::from(u32::MAX) + 321);
    }
}
