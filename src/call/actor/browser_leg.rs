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
//!
//! Relay delay (`switchboard_webrtc_relay_delay_seconds`, docs/operations.md): browser →
//! caller from the kernel's arrival stamp on the leg's UDP socket (carried in
//! [`LegNotice::Audio`]) to the RTP packet handed to the caller's socket here; caller →
//! browser from the arrival stamp on the loopback socket (carried in [`Frame`]) to the
//! SRTP packet handed to the leg's socket in the driver. Both are counted in this task's
//! own [`RelayDelays`] (plain integers; flushed once a second and when the leg ends), so a
//! packet costs no allocation, lock or shared atomic for it.

use std::collections::VecDeque;
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
use crate::media::socket::{stamp_buffer, MediaSocket, Readiness};
use crate::media::telephone_event::{digit_to_event, EventPayload};
use crate::metrics::{RelayDelays, RelayDirection};
use crate::webrtc::driver::{self, Frame, LegNotice};
use crate::webrtc::phones::PageAction;
use crate::webrtc::{LegCodec, WebRtcLeg};

/// From the page's answer to ICE + DTLS up: beyond this the browser cannot reach us.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Datagrams read per wake-up from the loopback socket (a flood cannot hold the task).
const DRAIN_LIMIT: usize = 32;
/// After the page's last event stream closed, this long without audio from the browser
/// ends the call as lost (a live browser sends a packet every 20 ms, even muted).
const PAGE_GONE_SILENCE: Duration = Duration::from_secs(2);
/// Payload type of the RFC 4733 events the leg sends into the agent→caller relay (only
/// the relay sees it: it is rewritten to the caller's negotiated telephone-event type).
const EVENT_PT: u8 = 101;
/// One DTMF digit from the pad: 100 ms of event, then 60 ms before the next (RFC 4733
/// senders commonly use 50–100 ms tones; receivers detect from 40 ms).
const DTMF_TONE: Duration = Duration::from_millis(100);
const DTMF_GAP: Duration = Duration::from_millis(60);
/// Event packets are sent every 20 ms, the end packet three times (RFC 4733 §2.5.1.4).
const DTMF_STEP: Duration = Duration::from_millis(20);
const DTMF_END_REPEATS: u8 = 3;
/// Digits queued at most (a page cannot queue an unbounded tone train).
const DTMF_MAX_QUEUED: usize = 32;

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
    let (offer, reply, page_ip) = loop {
        tokio::select! {
            a = ring.actions.recv() => match a {
                Some(PageAction::Answer {
                    offer,
                    reply,
                    page_ip,
                }) => break (offer, reply, page_ip),
                Some(PageAction::Reject) | Some(PageAction::Hangup) => {
                    ring.why = "rejected";
                    failed(OfferEnd::Busy);
                    return;
                }
                // The page closed while ringing: nobody will answer it.
                Some(PageAction::PageGone) => {
                    ring.why = "page_gone";
                    failed(OfferEnd::Failed);
                    return;
                }
                Some(PageAction::Transfer { reply, .. }) => {
                    let _ = reply.send(Err("the call is not answered".into()));
                }
                Some(PageAction::Hold { .. } | PageAction::Dtmf { .. }) => {}
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
    let Some(setup) = accept(&ctx, &offer, page_ip).await else {
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
    let mut to_browser_delays = RelayDelays::new(RelayDirection::CallerToBrowser, Instant::now());
    let drive = driver::run_measured(leg, socket, frames_rx, notices_tx, move |arrived, sent| {
        to_browser_delays.record(arrived, sent)
    });
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
            a = ring.actions.recv() => match a {
                Some(PageAction::Hangup | PageAction::Reject) | None => {
                    ring.why = "rejected";
                    failed(OfferEnd::Busy);
                    return;
                }
                Some(PageAction::PageGone) => {
                    ring.why = "page_gone";
                    failed(OfferEnd::Failed);
                    return;
                }
                Some(PageAction::Transfer { reply, .. }) => {
                    let _ = reply.send(Err("the call is not connected yet".into()));
                }
                Some(PageAction::Answer { reply, .. }) => {
                    let _ = reply.send(Err("already answered".into()));
                }
                Some(PageAction::Hold { .. } | PageAction::Dtmf { .. }) => {}
            },
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
    // The loopback socket's receive stamps (one control buffer for the leg's life).
    let mut cmsg = stamp_buffer();
    let mut to_caller_delays = RelayDelays::new(RelayDirection::BrowserToCaller, Instant::now());
    let mut to_browser = Timeline::default();
    let mut seq: u16 = rand::random();
    let ssrc: u32 = rand::random();
    // What the page asked for: hold (the caller hears music, the browser's audio is not
    // relayed), DTMF (RFC 4733 events on the agent→caller stream), a transfer under way.
    let mut held = false;
    let mut transferring = false;
    let mut dtmf = DtmfSender::new(media.codec.clock_rate());
    // The browser's media time (its last audio packet) and when it was heard: DTMF events
    // start there, and a page gone silent with its event stream closed is a lost agent.
    let mut last_rtp_time: u64 = 0;
    let mut last_heard = Instant::now();
    let mut page_gone = false;
    let why = loop {
        let wake = [
            dtmf.next_at(),
            page_gone.then(|| last_heard + PAGE_GONE_SILENCE),
        ]
        .into_iter()
        .flatten()
        .min();
        let timer = async move {
            match wake {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut drive => break "webrtc_error",
            () = timer => {
                let now = Instant::now();
                if page_gone && now >= last_heard + PAGE_GONE_SILENCE {
                    break "page_gone";
                }
                let step = u64::from(media.codec.timestamp_step());
                while let Some(ev) = dtmf.poll(now, (last_rtp_time + step) as u32) {
                    let Some((r, out)) = relay.as_mut() else { continue };
                    let (Some(pt), false) = (media.telephone_event, held) else { continue };
                    write_header(&mut buf, ev.marker, pt, seq, ev.timestamp, ssrc);
                    seq = seq.wrapping_add(1);
                    buf[12..16].copy_from_slice(&ev.payload);
                    if let Some(n) = r.rewrite(now, &mut buf, 16) {
                        let _ = out.try_send_to(&buf[..n], r.dest());
                    }
                }
            }
            n = notices.recv() => match n {
                Some(LegNotice::Audio { rtp_time, payload, arrived }) => {
                    last_rtp_time = rtp_time;
                    last_heard = Instant::now();
                    // On hold the caller hears music; during a DTMF event the event packets
                    // stand for the audio (as a phone's RFC 4733 sender does).
                    if held || dtmf.sending() {
                        continue;
                    }
                    let Some((r, out)) = relay.as_mut() else { continue };
                    let len = 12 + payload.len();
                    if len > buf.len() {
                        continue;
                    }
                    write_header(&mut buf, false, media.payload_type, seq, rtp_time as u32, ssrc);
                    seq = seq.wrapping_add(1);
                    buf[12..len].copy_from_slice(&payload);
                    if let Some(n) = r.rewrite(Instant::now(), &mut buf, len) {
                        if out.try_send_to(&buf[..n], r.dest()).is_ok() {
                            to_caller_delays.record(arrived, Instant::now());
                        }
                    }
                }
                Some(LegNotice::Closed { why }) => break why,
                Some(LegNotice::Connected) => {}
                None => break "webrtc_error",
            },
            ready = readiness.readable() => {
                let Ok(guard) = ready else { break "rtp_socket_error" };
                guard.drain_stamped(Instant::now(), &mut buf, &mut cmsg, DRAIN_LIMIT, |b, len, from, arrived| {
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
                        arrived,
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
                // The caller's node refused the transfer (a caller on another node): the
                // call goes on, and its end later is not a transfer.
                Some(CallInput::LegControl(LegControl::TransferRefused)) => {
                    info!(agent = %link.agent, "transfer refused by the caller's node; the call goes on");
                    transferring = false;
                }
                // After our transfer request the caller's side stops this leg: the caller
                // waits in the new queue.
                Some(CallInput::LegControl(LegControl::Stop)) if transferring => break "transferred",
                Some(CallInput::LegControl(LegControl::Stop)) | None => break "caller_gone",
                Some(_) => {}
            },
            a = ring.actions.recv() => match a {
                Some(PageAction::Hangup | PageAction::Reject) => break "agent_hangup",
                Some(PageAction::Answer { reply, .. }) => {
                    let _ = reply.send(Err("already answered".into()));
                }
                Some(PageAction::Hold { on }) => {
                    if on != held && relay.is_some() {
                        held = on;
                        // The caller's actor does what it does for a SIP phone's hold
                        // re-INVITE: music on hold for the caller, no relay to us meanwhile.
                        let _ = link.caller_tx.try_send(CallInput::Leg(LegEvent::Hold {
                            leg: link.leg,
                            on,
                            remote: plain_addr,
                        }));
                        info!(agent = %link.agent, on, "browser agent hold");
                    }
                }
                Some(PageAction::Dtmf { digits }) => {
                    if media.telephone_event.is_some() && !held {
                        dtmf.push(&digits);
                    }
                }
                Some(PageAction::Transfer { target, reply }) => {
                    let sent = link.caller_tx.try_send(CallInput::Leg(LegEvent::Transfer {
                        leg: link.leg,
                        target: target.clone(),
                    }));
                    if sent.is_ok() {
                        info!(agent = %link.agent, %target, "browser agent transfers the caller");
                        transferring = true;
                        let _ = reply.send(Ok(()));
                    } else {
                        let _ = reply.send(Err("the call is busy; try again".into()));
                    }
                }
                // The page's event stream is gone: the leg ends once the browser's media has
                // stopped too (a closed tab); a browser that still sends keeps its call.
                Some(PageAction::PageGone) => page_gone = true,
                None => break "phone_off",
            },
            _ = shutdown.cancelled() => break "shutdown",
        }
    };
    info!(agent = %link.agent, why, "browser agent leg ended");
    ring.why = why;
    // Without a page and with its media gone (or consent expired), nobody hung up: the
    // agent's side was lost, and the record says so.
    let lost = matches!(why, "page_gone" | "ice_consent_lost" | "webrtc_error");
    let _ = link.caller_tx.try_send(CallInput::Leg(LegEvent::Ended {
        leg: link.leg,
        agent: link.agent.clone(),
        lost,
    }));
    drop(ring);
    // A page closed during the call left the phone on for it: off now, so the ACD does not
    // ring a page that is gone.
    if ctx.phones.off_if_unwatched(&link.agent) {
        info!(agent = %link.agent, "no page left after the call: browser phone off");
        ctx.acd.send(crate::acd::AcdMsg::BrowserPhone {
            name: link.agent.clone(),
            def: None,
            on: false,
        });
    }
}

/// What answering the browser's offer set up.
struct Setup {
    leg: WebRtcLeg,
    answer: String,
    socket: tokio::net::UdpSocket,
    plain: MediaSocket,
    media: LegMedia,
}

/// The address put in the leg's ICE candidate (the server is ICE-lite: its only one, so it
/// must be where the browser can send to): `[webrtc] public_address` when set; else the
/// media address the leg is bound on; bound on a wildcard, the address the page reached
/// this server on (`page_ip`, from its request's `Host`) when that is one of this socket's
/// family and not itself a wildcard, since a LAN browser cannot use loopback; else loopback.
fn candidate_ip(public: Option<IpAddr>, bind: IpAddr, page_ip: Option<IpAddr>) -> IpAddr {
    if let Some(ip) = public {
        return ip;
    }
    if !bind.is_unspecified() {
        return bind;
    }
    match page_ip {
        Some(ip) if ip.is_ipv4() == bind.is_ipv4() && !ip.is_unspecified() => ip,
        _ if bind.is_ipv4() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        _ => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
    }
}

/// Accept the page's offer on a port-pool socket, advertising [`candidate_ip`].
async fn accept(ctx: &CallContext, offer: &str, page_ip: Option<IpAddr>) -> Option<Setup> {
    let bind_ip = ctx.config.media_address;
    let socket = match ctx.ports.bind(bind_ip).await {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "no RTP port for a browser leg");
            return None;
        }
    };
    let port = socket.local_addr().ok()?.port();
    let ip = candidate_ip(ctx.config.webrtc_public_address, bind_ip, page_ip);
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
            telephone_event: Some(EVENT_PT),
        },
        Some(LegCodec::Opus) => LegMedia {
            codec: Codec::Opus,
            payload_type: OPUS_OFFER_PT,
            telephone_event: Some(EVENT_PT),
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

/// One RFC 4733 event packet to send: payload, marker (first packet of an event) and the
/// event's timestamp (the same for all its packets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EventPacket {
    marker: bool,
    timestamp: u32,
    payload: [u8; 4],
}

/// Sans-IO RFC 4733 sender for the DTMF pad: digits in, event packets out on a 20 ms
/// cadence (growing duration, then the end packet three times), one digit after another.
#[derive(Debug)]
struct DtmfSender {
    /// Timestamp units per millisecond of the leg's clock (8 for PCMU, 48 for Opus).
    per_ms: u32,
    queue: VecDeque<u8>,
    active: Option<ActiveEvent>,
    next_at: Option<Instant>,
}

#[derive(Debug)]
struct ActiveEvent {
    event: u8,
    timestamp: u32,
    started: bool,
    /// Elapsed tone, in timestamp units.
    duration: u32,
    ends_sent: u8,
}

impl DtmfSender {
    fn new(clock_rate: u32) -> DtmfSender {
        DtmfSender {
            per_ms: (clock_rate / 1000).max(1),
            queue: VecDeque::new(),
            active: None,
            next_at: None,
        }
    }

    /// Queue digits (anything but `0-9 * # A-D` is ignored).
    fn push(&mut self, digits: &str) {
        for e in digits.chars().filter_map(digit_to_event) {
            if self.queue.len() < DTMF_MAX_QUEUED {
                self.queue.push_back(e);
            }
        }
        if self.next_at.is_none() && !self.queue.is_empty() {
            self.next_at = Some(Instant::now());
        }
    }

    /// An event is being sent (its packets replace the audio meanwhile).
    fn sending(&self) -> bool {
        self.active.is_some()
    }

    fn next_at(&self) -> Option<Instant> {
        self.next_at
    }

    /// The packet due at `now`, if any; `ts_now` is where a new event starts in the
    /// stream's clock (the next audio frame's timestamp).
    fn poll(&mut self, now: Instant, ts_now: u32) -> Option<EventPacket> {
        if self.next_at.is_none_or(|t| now < t) {
            return None;
        }
        let step = DTMF_STEP.as_millis() as u32 * self.per_ms;
        let tone = DTMF_TONE.as_millis() as u32 * self.per_ms;
        let a = match self.active.as_mut() {
            Some(a) => a,
            None => {
                let event = self.queue.pop_front()?;
                self.active.insert(ActiveEvent {
                    event,
                    timestamp: ts_now,
                    started: false,
                    duration: 0,
                    ends_sent: 0,
                })
            }
        };
        let marker = !a.started;
        a.started = true;
        let end = a.duration + step >= tone;
        a.duration = (a.duration + step).min(tone);
        if end {
            a.ends_sent += 1;
        }
        let mut payload = [0u8; 4];
        EventPayload {
            event: a.event,
            end,
            volume: 10,
            duration: a.duration.min(u32::from(u16::MAX)) as u16,
        }
        .write(&mut payload);
        let packet = EventPacket {
            marker,
            timestamp: a.timestamp,
            payload,
        };
        if a.ends_sent >= DTMF_END_REPEATS {
            self.active = None;
            self.next_at = (!self.queue.is_empty()).then(|| now + DTMF_GAP);
        } else {
            self.next_at = Some(now + DTMF_STEP);
        }
        Some(packet)
    }
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
    use super::*;

    /// The candidate: the public address first, then a concrete bind address; on a
    /// wildcard bind the address the page used (same family, not a wildcard), else
    /// loopback (as before `page_ip` was known).
    #[test]
    fn candidate_is_public_then_bound_then_the_pages_address() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let any4 = ip("0.0.0.0");
        let public = Some(ip("203.0.113.7"));
        let page = Some(ip("10.77.1.1"));
        assert_eq!(
            candidate_ip(public, ip("10.0.0.5"), page),
            ip("203.0.113.7")
        );
        assert_eq!(candidate_ip(public, any4, page), ip("203.0.113.7"));
        assert_eq!(candidate_ip(None, ip("10.0.0.5"), page), ip("10.0.0.5"));
        assert_eq!(candidate_ip(None, any4, page), ip("10.77.1.1"));
        assert_eq!(candidate_ip(None, any4, None), ip("127.0.0.1"));
        assert_eq!(candidate_ip(None, any4, Some(ip("::1"))), ip("127.0.0.1"));
        assert_eq!(candidate_ip(None, any4, Some(any4)), ip("127.0.0.1"));
        assert_eq!(
            candidate_ip(None, ip("::"), Some(ip("fd00::5"))),
            ip("fd00::5")
        );
        assert_eq!(candidate_ip(None, ip("::"), page), ip("::1"));
    }

    #[test]
    fn dtmf_sender_sends_each_digit_as_one_rfc4733_event() {
        let mut d = DtmfSender::new(8000);
        let t0 = Instant::now();
        assert!(d.poll(t0, 1000).is_none(), "nothing queued");
        d.push("5x#");
        let mut now = d.next_at().expect("due");
        let mut got = Vec::new();
        while let Some(t) = d.next_at() {
            now = now.max(t);
            while let Some(p) = d.poll(now, 1000 + got.len() as u32) {
                got.push((now, p, EventPayload::parse(&p.payload).expect("event")));
            }
        }
        // Two digits ('x' ignored), each: 5 packets of growing duration with the end on the
        // 5th, repeated twice more; one timestamp per event; marker on its first packet.
        assert_eq!(got.len(), 14, "{got:?}");
        let (first, second) = got.split_at(7);
        for (digit, packets) in [(5u8, first), (11u8, second)] {
            assert!(packets.iter().all(|(_, _, e)| e.event == digit));
            assert!(packets[0].1.marker && packets[1..].iter().all(|(_, p, _)| !p.marker));
            let ts = packets[0].1.timestamp;
            assert!(packets.iter().all(|(_, p, _)| p.timestamp == ts));
            let durations: Vec<u16> = packets.iter().map(|(_, _, e)| e.duration).collect();
            assert_eq!(durations, [160, 320, 480, 640, 800, 800, 800]);
            let ends = packets.iter().filter(|(_, _, e)| e.end).count();
            assert_eq!(ends, 3);
        }
        assert_ne!(
            first[0].1.timestamp, second[0].1.timestamp,
            "a new event, a new timestamp"
        );
        assert!(second[0].0 >= first[6].0 + DTMF_GAP, "a gap between digits");
        assert!(!d.sending());
    }

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
