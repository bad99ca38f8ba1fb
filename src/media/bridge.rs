//! The RTP relay between two legs of a bridged call (caller ↔ agent): each leg's actor
//! rewrites the packets it receives in place and sends them from the *other* leg's socket,
//! so each phone keeps talking to the address it negotiated.
//!
//! Per packet: no allocation, no lock — the header is rewritten in the receive buffer, G.711
//! is transcoded byte by byte through a 256-entry table when the legs chose different laws,
//! and the shared packet counters are relaxed atomics. Each direction gets its own SSRC
//! (RFC 3550 §8: we are the source the far end sees, so a new source is announced properly)
//! while sequence numbers and timestamps pass through (both legs run at 8 kHz).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use super::codec::Codec;
use super::rtp::RtpPacket;

/// One side's negotiated media (what a leg sends and expects).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegMedia {
    pub codec: Codec,
    pub payload_type: u8,
    pub telephone_event: Option<u8>,
}

/// Packets relayed in each direction, shared by both legs (dashboard, tests, records).
#[derive(Debug, Default)]
pub struct RelayCounters {
    pub caller_to_agent: AtomicU64,
    pub agent_to_caller: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    CallerToAgent,
    AgentToCaller,
}

/// Rewrites packets from one leg for the other.
#[derive(Debug)]
pub struct Relay {
    from: LegMedia,
    to: LegMedia,
    ssrc: u32,
    dest: SocketAddr,
    direction: Direction,
    counters: Arc<RelayCounters>,
    last_rx: Instant,
    /// Recording: what this leg receives goes to this channel (0 caller, 1 agent).
    recorder: Option<(super::recorder::Recorder, u8)>,
}

fn ulaw_to_alaw() -> &'static [u8; 256] {
    static T: OnceLock<[u8; 256]> = OnceLock::new();
    T.get_or_init(|| {
        let mut t = [0u8; 256];
        for (b, out) in t.iter_mut().enumerate() {
            *out = Codec::Pcma.encode_sample(Codec::Pcmu.decode_sample(b as u8));
        }
        t
    })
}

fn alaw_to_ulaw() -> &'static [u8; 256] {
    static T: OnceLock<[u8; 256]> = OnceLock::new();
    T.get_or_init(|| {
        let mut t = [0u8; 256];
        for (b, out) in t.iter_mut().enumerate() {
            *out = Codec::Pcmu.encode_sample(Codec::Pcma.decode_sample(b as u8));
        }
        t
    })
}

impl Relay {
    pub fn new(
        now: Instant,
        from: LegMedia,
        to: LegMedia,
        dest: SocketAddr,
        direction: Direction,
        counters: Arc<RelayCounters>,
    ) -> Relay {
        // Build the tables off the packet path.
        let _ = (ulaw_to_alaw(), alaw_to_ulaw());
        Relay {
            from,
            to,
            ssrc: rand::random(),
            dest,
            direction,
            counters,
            last_rx: now,
            recorder: None,
        }
    }

    /// Also record what this leg receives (before any transcoding).
    pub fn record(&mut self, recorder: super::recorder::Recorder) {
        let channel = match self.direction {
            Direction::CallerToAgent => 0,
            Direction::AgentToCaller => 1,
        };
        self.recorder = Some((recorder, channel));
    }

    pub fn dest(&self) -> SocketAddr {
        self.dest
    }

    pub fn set_dest(&mut self, dest: SocketAddr) {
        self.dest = dest;
    }

    /// Restart the silence clock (after a hold, during which nothing was relayed).
    pub fn touch(&mut self, now: Instant) {
        self.last_rx = now;
    }

    pub fn last_rx(&self) -> Instant {
        self.last_rx
    }

    /// Rewrite `pkt` (one received datagram) for the other leg. Returns the length to send,
    /// or None to drop it (not RTP, a payload type the other leg did not negotiate).
    pub fn rewrite(&mut self, now: Instant, pkt: &mut [u8]) -> Option<usize> {
        let (pt, offset, end) = {
            let p = RtpPacket::parse(pkt).ok()?;
            let offset = p.payload.as_ptr() as usize - pkt.as_ptr() as usize;
            (p.payload_type, offset, offset + p.payload.len())
        };
        self.last_rx = now;
        let new_pt = if pt == self.from.payload_type {
            if let Some((rec, channel)) = &self.recorder {
                rec.push(now, *channel, self.from.codec, &pkt[offset..end]);
            }
            if self.from.codec != self.to.codec {
                let table = match self.from.codec {
                    Codec::Pcmu => ulaw_to_alaw(),
                    Codec::Pcma => alaw_to_ulaw(),
                };
                for b in &mut pkt[offset..end] {
                    *b = table[*b as usize];
                }
            }
            self.to.payload_type
        } else if Some(pt) == self.from.telephone_event {
            self.to.telephone_event?
        } else {
            // Comfort noise and anything else the other leg never agreed to.
            return None;
        };
        pkt[1] = (pkt[1] & 0x80) | (new_pt & 0x7F);
        pkt[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        let counter = match self.direction {
            Direction::CallerToAgent => &self.counters.caller_to_agent,
            Direction::AgentToCaller => &self.counters.agent_to_caller,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Some(pkt.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::write_header;

    fn leg(codec: Codec, te: Option<u8>) -> LegMedia {
        LegMedia {
            codec,
            payload_type: codec.static_pt(),
            telephone_event: te,
        }
    }

    fn packet(pt: u8, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; 12 + payload.len()];
        write_header(&mut buf, false, pt, 7, 160, 0xdead_beef);
        buf[12..].copy_from_slice(payload);
        buf
    }

    #[test]
    fn same_codec_passes_payload_and_takes_our_ssrc() {
        let c = Arc::new(RelayCounters::default());
        let dest = "127.0.0.1:4000".parse().expect("addr");
        let now = Instant::now();
        let mut r = Relay::new(
            now,
            leg(Codec::Pcmu, Some(101)),
            leg(Codec::Pcmu, Some(96)),
            dest,
            Direction::CallerToAgent,
            c.clone(),
        );
        let mut p = packet(0, &[1, 2, 3]);
        assert_eq!(r.rewrite(now, &mut p), Some(15));
        let parsed = RtpPacket::parse(&p).expect("rtp");
        assert_eq!(parsed.payload, &[1, 2, 3]);
        assert_eq!(parsed.sequence, 7);
        assert_ne!(parsed.ssrc, 0xdead_beef);
        // DTMF events keep flowing, renumbered to the other leg's payload type.
        let mut e = packet(101, &[5, 0x80, 0, 160]);
        r.rewrite(now, &mut e).expect("event relayed");
        assert_eq!(RtpPacket::parse(&e).expect("rtp").payload_type, 96);
        // Comfort noise (13) was not negotiated: dropped.
        assert_eq!(r.rewrite(now, &mut packet(13, &[0])), None);
        assert_eq!(c.caller_to_agent.load(Ordering::Relaxed), 2);
        assert_eq!(r.rewrite(now, &mut [0u8; 5]), None);
    }

    #[test]
    fn transcodes_between_laws() {
        let c = Arc::new(RelayCounters::default());
        let dest = "127.0.0.1:4000".parse().expect("addr");
        let now = Instant::now();
        let mut r = Relay::new(
            now,
            leg(Codec::Pcmu, None),
            leg(Codec::Pcma, None),
            dest,
            Direction::AgentToCaller,
            c.clone(),
        );
        let samples: Vec<i16> = vec![0, 1000, -1000, 8000, -32000];
        let ulaw: Vec<u8> = samples
            .iter()
            .map(|s| Codec::Pcmu.encode_sample(*s))
            .collect();
        let mut p = packet(0, &ulaw);
        r.rewrite(now, &mut p).expect("relayed");
        let parsed = RtpPacket::parse(&p).expect("rtp");
        assert_eq!(parsed.payload_type, 8);
        for (b, s) in parsed.payload.iter().zip(&samples) {
            let back = Codec::Pcma.decode_sample(*b) as i32;
            // Both laws quantize; the round trip stays within one coarse step.
            assert!((back - *s as i32).abs() <= (s.unsigned_abs() as i32 / 8).max(16));
        }
        assert_eq!(c.agent_to_caller.load(Ordering::Relaxed), 1);
    }
}
