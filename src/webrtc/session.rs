//! One browser's media leg, sans-IO: the browser's SDP offer in, our answer out (ICE-lite,
//! our host candidate, our DTLS certificate's fingerprint, RFC 5763 `a=setup:passive`
//! chosen by str0m), then UDP datagrams and time in, datagrams to send, decoded-codec
//! payloads and state changes out. The caller owns the socket and the clock, as with every
//! core in this crate (`handle_*` inputs, `poll_*` outputs, `poll_timeout`).
//!
//! Audio crosses this boundary as codec payloads with their RTP timestamps (PCMU 8 kHz,
//! Opus 48 kHz); transcoding and the bridge to the caller's SIP leg stay in `media/`.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use str0m::config::DtlsCert;
use str0m::format::Codec;
use str0m::media::{Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, ExtensionMap};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

/// Why a browser's offer or a datagram was refused; the SIP side maps an offer error to
/// `488 Not Acceptable Here`.
#[derive(Debug, thiserror::Error)]
pub enum WebRtcError {
    /// RFC 8827 §6.5: a WebRTC endpoint must offer DTLS-SRTP with a certificate
    /// fingerprint; without one there is no way to authenticate the media keys.
    #[error("offer has no a=fingerprint (DTLS-SRTP is mandatory for WebRTC)")]
    NoFingerprint,
    #[error("offer has no audio m-line")]
    NoAudio,
    #[error("offer does not parse: {0}")]
    Sdp(String),
    #[error("no common audio codec (PCMU or Opus) in the offer")]
    NoCodec,
    #[error("local address {0} is not usable as an ICE candidate: {1}")]
    Candidate(SocketAddr, String),
    #[error("WebRTC session: {0}")]
    Rtc(#[from] str0m::RtcError),
}

/// The audio codec the leg negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegCodec {
    Pcmu,
    Opus,
}

impl LegCodec {
    /// RTP clock rate (RFC 3551 for PCMU; RFC 7587: Opus always 48 kHz).
    pub fn clock_rate(self) -> u32 {
        match self {
            LegCodec::Pcmu => 8000,
            LegCodec::Opus => 48_000,
        }
    }
}

/// What the leg tells its owner.
#[derive(Debug, PartialEq)]
pub enum LegEvent {
    /// Send this datagram from the leg's socket.
    Transmit { to: SocketAddr, data: Vec<u8> },
    /// ICE and DTLS are up: audio can flow.
    Connected,
    /// One audio payload from the browser with its RTP timestamp (in the codec's clock) and
    /// the `now` of the [`WebRtcLeg::handle_receive`] that brought its first packet (the
    /// driver maps that read onto the datagram's kernel arrival stamp).
    Audio {
        rtp_time: u64,
        payload: Vec<u8>,
        received: Instant,
    },
    /// RFC 7675 consent lost or the browser closed: release the call (cause for the record).
    Closed { why: &'static str },
}

/// RFC 7675 §5.1: consent expires 30 s after the last authenticated packet. An ICE-lite
/// agent sends no checks of its own, so it judges consent by what it hears: browsers send a
/// consent check every ~5 s, and media far more often.
const CONSENT_EXPIRY: Duration = Duration::from_secs(30);

/// One browser media leg.
pub struct WebRtcLeg {
    /// Boxed: an `Rtc` is ~6.3 KiB inline, and the leg is moved from `accept_offer` through
    /// the browser-leg task's locals into the driver's future; each async state that
    /// holds it by value would reserve its own 6 KiB in the task's allocation.
    rtc: Box<Rtc>,
    local: SocketAddr,
    mid: Option<Mid>,
    pt: Option<Pt>,
    codec: Option<LegCodec>,
    next_timeout: Option<Instant>,
    /// ICE and DTLS came up once: from then on, a lost path is a lost browser.
    connected: bool,
    /// When the browser was last heard (any datagram str0m accepted).
    last_heard: Instant,
    /// Consent expired in `handle_timeout`; reported by the next `poll_event`.
    consent_lost: bool,
    closed: bool,
}

impl WebRtcLeg {
    /// Accept a browser's offer (`UDP/TLS/RTP/SAVPF` with `a=fingerprint`): returns the leg
    /// and the SDP answer to send back (in the SIP 200, or to the page). `local` is the
    /// leg's UDP socket address as the browser can reach it (the public address behind NAT).
    pub fn accept_offer(
        now: Instant,
        local: SocketAddr,
        offer: &str,
    ) -> Result<(WebRtcLeg, String), WebRtcError> {
        let lower = offer.to_ascii_lowercase();
        if !lower.contains("a=fingerprint:") {
            return Err(WebRtcError::NoFingerprint);
        }
        if !lower.lines().any(|l| l.starts_with("m=audio")) {
            return Err(WebRtcError::NoAudio);
        }
        let sdp = str0m::change::SdpOffer::from_sdp_string(offer)
            .map_err(|e| WebRtcError::Sdp(e.to_string()))?;
        let mut config = Rtc::builder()
            .set_ice_lite(true)
            .clear_codecs()
            .enable_opus(true)
            .enable_pcmu(true)
            .set_extension_map(audio_extensions());
        if let Some(cert) = shared_dtls_cert() {
            config = config.set_dtls_cert(cert);
        }
        let mut rtc = config.build();
        // Give the session its clock before the offer: accepting it sets up DTLS, which
        // seeds its state (the ServerHello's `gmt_unix_time`) from the last time str0m was
        // given. Without a time yet that is str0m's placeholder instant an hour back, older
        // than dimpl's own epoch: a wrong timestamp on the wire and a "Time went backwards
        // from beginning_of_time Instant" warning per leg.
        rtc.handle_input(Input::Timeout(now))?;
        let candidate = Candidate::host(local, "udp")
            .map_err(|e| WebRtcError::Candidate(local, e.to_string()))?;
        rtc.add_local_candidate(candidate);
        let answer = rtc.sdp_api().accept_offer(sdp)?;
        let mut leg = WebRtcLeg {
            rtc: Box::new(rtc),
            local,
            mid: None,
            pt: None,
            codec: None,
            next_timeout: None,
            connected: false,
            last_heard: now,
            consent_lost: false,
            closed: false,
        };
        leg.rtc.handle_input(Input::Timeout(now))?;
        let answer = answer.to_sdp_string();
        // Pick the codec now, not at the MediaAdded event: the call side sets up the bridge
        // (pass-through or transcoding) before the browser connects.
        if let Some(mid) = audio_mid(&answer) {
            leg.choose_codec(Mid::from(mid));
        }
        Ok((leg, answer))
    }

    /// The negotiated codec, once known (after the answer).
    pub fn codec(&self) -> Option<LegCodec> {
        self.codec
    }

    /// A datagram that arrived on the leg's socket from `from` (STUN, DTLS or SRTP/SRTCP).
    pub fn handle_receive(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
    ) -> Result<(), WebRtcError> {
        let Ok(contents) = data.try_into() else {
            // Not STUN/DTLS/RTP (RFC 7983 demultiplexing): ignore, as on any media port.
            return Ok(());
        };
        self.last_heard = now;
        self.rtc.handle_input(Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source: from,
                destination: self.local,
                contents,
            },
        ))?;
        Ok(())
    }

    /// Time moved on (call at [`WebRtcLeg::poll_timeout`]).
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), WebRtcError> {
        if self.connected && now >= self.last_heard + CONSENT_EXPIRY {
            self.consent_lost = true;
        }
        self.rtc.handle_input(Input::Timeout(now))?;
        Ok(())
    }

    /// One audio payload for the browser, `rtp_time` in the codec's clock.
    pub fn send_audio(
        &mut self,
        now: Instant,
        rtp_time: u64,
        payload: &[u8],
    ) -> Result<(), WebRtcError> {
        let (Some(mid), Some(pt), Some(codec)) = (self.mid, self.pt, self.codec) else {
            return Ok(()); // not negotiated/connected yet: dropped like early media
        };
        let freq = match codec {
            LegCodec::Pcmu => Frequency::EIGHT_KHZ,
            LegCodec::Opus => Frequency::FORTY_EIGHT_KHZ,
        };
        if let Some(w) = self.rtc.writer(mid) {
            w.write(pt, now, MediaTime::new(rtp_time, freq), payload.to_vec())?;
        }
        Ok(())
    }

    /// When [`WebRtcLeg::handle_timeout`] is due (after the outputs are drained).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let consent = self.connected.then(|| self.last_heard + CONSENT_EXPIRY);
        match (self.next_timeout, consent) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next thing to do; None when only a timeout is pending.
    pub fn poll_event(&mut self) -> Result<Option<LegEvent>, WebRtcError> {
        loop {
            if self.closed {
                return Ok(None);
            }
            if self.consent_lost {
                self.closed = true;
                return Ok(Some(LegEvent::Closed {
                    why: "ice_consent_lost",
                }));
            }
            match self.rtc.poll_output()? {
                Output::Timeout(t) => {
                    self.next_timeout = Some(t);
                    return Ok(None);
                }
                Output::Transmit(t) => {
                    return Ok(Some(LegEvent::Transmit {
                        to: t.destination,
                        data: t.contents.to_vec(),
                    }))
                }
                Output::Event(e) => match e {
                    Event::MediaAdded(m) if m.kind == MediaKind::Audio && self.codec.is_none() => {
                        self.choose_codec(m.mid);
                    }
                    Event::Connected => {
                        self.connected = true;
                        return Ok(Some(LegEvent::Connected));
                    }
                    // Before the first check arrives an ICE-lite agent has no usable pair
                    // and str0m says Disconnected at once (the offer's candidates are never
                    // checked by a lite agent): that is "not yet", not "gone".
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected)
                        if self.connected =>
                    {
                        self.closed = true;
                        return Ok(Some(LegEvent::Closed {
                            why: "ice_consent_lost",
                        }));
                    }
                    Event::MediaData(d) => {
                        return Ok(Some(LegEvent::Audio {
                            rtp_time: d.time.numer(),
                            payload: d.data,
                            received: d.network_time,
                        }))
                    }
                    _ => {}
                },
            }
        }
    }

    /// Prefer PCMU (pass-through with G.711 callers, docs/adr/0006), else Opus.
    fn choose_codec(&mut self, mid: Mid) {
        let Some(w) = self.rtc.writer(mid) else {
            return;
        };
        let mut pcmu = None;
        let mut opus = None;
        for p in w.payload_params() {
            match p.spec().codec {
                Codec::PCMU if pcmu.is_none() => pcmu = Some(p.pt()),
                Codec::Opus if opus.is_none() => opus = Some(p.pt()),
                _ => {}
            }
        }
        let (pt, codec) = match (pcmu, opus) {
            (Some(pt), _) => (pt, LegCodec::Pcmu),
            (None, Some(pt)) => (pt, LegCodec::Opus),
            _ => return,
        };
        self.mid = Some(mid);
        self.pt = Some(pt);
        self.codec = Some(codec);
    }
}

/// The RTP header extensions the leg negotiates: audio level and the BUNDLE `mid` only.
///
/// str0m's default map (Chromium's) also has transport-wide congestion control
/// (`transport-cc`) and `abs-send-time`, which only feed a bandwidth estimator, and a voice
/// leg has none. With `transport-cc` accepted, str0m numbers every packet it sends and keeps
/// the last 1 000 send records for feedback that is never used (~72 KiB per leg once a
/// call is 20 s old: the largest single item of a browser call's heap, measured with
/// heaptrack, docs/benchmarks.md), parses the browser's per-packet numbers and sends it
/// feedback every 100 ms. The browser gets RTCP receiver reports as a SIP phone does.
fn audio_extensions() -> ExtensionMap {
    let mut exts = ExtensionMap::empty();
    // The ids Chromium uses (str0m's `ExtensionMap::standard`).
    exts.set(1, Extension::AudioLevel);
    exts.set(4, Extension::RtpMid);
    exts
}

/// One self-signed DTLS certificate for every leg of the process (RFC 8827 §6.5 asks for a
/// fingerprint in the SDP, which authenticates whatever key it names; RFC 8122 allows a
/// certificate to be reused across sessions), made on the first leg. Without it str0m
/// makes a P-256 key and certificate per leg: a key generation and a signature on each
/// answer, and ~8 KiB of heap per leg. `None` (the provider could not make one): each leg
/// makes its own, as before.
fn shared_dtls_cert() -> Option<DtlsCert> {
    static CERT: OnceLock<Option<DtlsCert>> = OnceLock::new();
    CERT.get_or_init(|| {
        str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
    })
    .clone()
}

/// The `a=mid` of the first audio m-line of an SDP.
fn audio_mid(sdp: &str) -> Option<&str> {
    let mut in_audio = false;
    for line in sdp.lines() {
        if line.starts_with("m=") {
            in_audio = line.starts_with("m=audio");
        } else if in_audio {
            if let Some(mid) = line.strip_prefix("a=mid:") {
                return Some(mid.trim());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use str0m::change::SdpAnswer;
    use str0m::media::Direction;

    const BROWSER: &str = "127.0.0.1:50000";
    const SERVER: &str = "127.0.0.1:40000";

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    /// A browser stand-in: a full-ICE str0m peer that offers audio (what Chromium does,
    /// with PCMU and Opus), on loopback.
    fn browser(now: Instant) -> (Rtc, Mid, String, str0m::change::SdpPendingOffer) {
        browser_with(now, true)
    }

    fn browser_with(
        now: Instant,
        pcmu: bool,
    ) -> (Rtc, Mid, String, str0m::change::SdpPendingOffer) {
        // Chromium offers Opus first and PCMU among the rest (`111 63 9 0 8 …`).
        let mut b = Rtc::builder()
            .clear_codecs()
            .enable_opus(true)
            .enable_pcmu(pcmu)
            .build();
        b.add_local_candidate(Candidate::host(addr(BROWSER), "udp").expect("candidate"));
        // A clock before the offer, as the leg does (else DTLS is seeded an hour back).
        b.handle_input(Input::Timeout(now)).expect("time");
        let mut api = b.sdp_api();
        let mid = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, pending) = api.apply().expect("an offer");
        (b, mid, offer.to_sdp_string(), pending)
    }

    /// The codec is known as soon as the offer is accepted: PCMU when offered (pass-through
    /// to G.711 callers), Opus otherwise.
    #[test]
    fn codec_is_chosen_with_the_answer() {
        let now = Instant::now();
        let (_b, _mid, offer, _p) = browser_with(now, true);
        let (leg, _) = WebRtcLeg::accept_offer(now, addr(SERVER), &offer).expect("accepted");
        assert_eq!(leg.codec(), Some(LegCodec::Pcmu));
        let (_b, _mid, offer, _p) = browser_with(now, false);
        let (leg, answer) = WebRtcLeg::accept_offer(now, addr(SERVER), &offer).expect("accepted");
        assert_eq!(leg.codec(), Some(LegCodec::Opus), "{answer}");
        assert_eq!(leg.codec().map(LegCodec::clock_rate), Some(48_000));
    }

    /// Every leg of the process answers with the same DTLS certificate (one key generation
    /// per process, not per call).
    #[test]
    fn legs_share_one_dtls_certificate() {
        let now = Instant::now();
        let fingerprint = |answer: &str| {
            answer
                .lines()
                .find(|l| l.starts_with("a=fingerprint:"))
                .map(str::to_owned)
                .expect("a fingerprint")
        };
        let (_b, _mid, offer, _p) = browser(now);
        let (_leg, first) = WebRtcLeg::accept_offer(now, addr(SERVER), &offer).expect("accepted");
        let (_b, _mid, offer, _p) = browser(now);
        let (_leg, second) = WebRtcLeg::accept_offer(now, addr(SERVER), &offer).expect("accepted");
        assert_eq!(fingerprint(&first), fingerprint(&second));
    }

    #[test]
    fn offers_without_fingerprint_or_audio_are_refused() {
        let now = Instant::now();
        let (_b, _mid, offer, _p) = browser(now);
        assert!(offer.contains("a=fingerprint:"), "{offer}");
        let stripped: String = offer
            .lines()
            .filter(|l| !l.starts_with("a=fingerprint:"))
            .map(|l| format!("{l}\r\n"))
            .collect();
        assert!(matches!(
            WebRtcLeg::accept_offer(now, addr(SERVER), &stripped),
            Err(WebRtcError::NoFingerprint)
        ));
        let plain = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                     a=fingerprint:sha-256 00\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n";
        assert!(matches!(
            WebRtcLeg::accept_offer(now, addr(SERVER), plain),
            Err(WebRtcError::NoAudio)
        ));
    }

    /// Offer/answer, ICE-lite + DTLS-SRTP to `Connected` on both sides in virtual time, then
    /// PCMU both ways; finally the browser goes silent and consent expires (RFC 7675).
    #[test]
    fn handshake_media_both_ways_and_consent_loss() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("str0m=debug,dimpl=debug")
            .with_test_writer()
            .try_init();
        let t0 = Instant::now();
        let (mut b, b_mid, offer, pending) = browser(t0);
        let (mut leg, answer) =
            WebRtcLeg::accept_offer(t0, addr(SERVER), &offer).expect("offer accepted");
        assert!(answer.contains("a=ice-lite"), "{answer}");
        // No transport-wide congestion control or abs-send-time on a voice leg (memory and
        // per-packet work for a bandwidth estimator we do not run), though the browser
        // offers both.
        assert!(offer.contains("transport-wide-cc"), "{offer}");
        assert!(!answer.contains("transport-wide-cc"), "{answer}");
        assert!(!answer.contains("abs-send-time"), "{answer}");
        assert!(answer.contains("a=fingerprint:sha-256"), "{answer}");
        assert!(
            answer.contains("127.0.0.1 40000"),
            "our candidate: {answer}"
        );
        b.sdp_api()
            .accept_answer(
                pending,
                SdpAnswer::from_sdp_string(&answer).expect("answer"),
            )
            .expect("browser takes the answer");

        let mut now = t0;
        let (mut leg_up, mut b_up) = (false, false);
        let mut heard = Vec::new();
        let mut b_heard = 0;
        let mut closed = None;
        let mut b_pt = None;
        let mut silent_browser = false;
        let mut hello_gmt = None;
        for step in 0..6000u64 {
            // Leg -> browser.
            while let Some(ev) = leg.poll_event().expect("leg") {
                match ev {
                    LegEvent::Transmit { to, data } => {
                        assert_eq!(to, addr(BROWSER));
                        if let Some(gmt) = server_hello_gmt(&data) {
                            hello_gmt = Some(gmt);
                        }
                        if !silent_browser {
                            let r = Receive {
                                proto: Protocol::Udp,
                                source: addr(SERVER),
                                destination: addr(BROWSER),
                                contents: data.as_slice().try_into().expect("datagram"),
                            };
                            b.handle_input(Input::Receive(now, r))
                                .expect("browser input");
                        }
                    }
                    LegEvent::Connected => leg_up = true,
                    LegEvent::Audio {
                        payload, received, ..
                    } => {
                        // Emitted from the datagram handed over on the previous step (one
                        // packet per frame, nothing held back): its read time comes along.
                        assert_eq!(received + Duration::from_millis(20), now, "read time");
                        heard.push(payload)
                    }
                    LegEvent::Closed { why } => closed = Some(why),
                }
            }
            // Browser -> leg.
            loop {
                match b.poll_output().expect("browser") {
                    Output::Timeout(_) => break,
                    Output::Transmit(t) => {
                        if !silent_browser {
                            leg.handle_receive(now, addr(BROWSER), &t.contents)
                                .expect("leg input");
                        }
                    }
                    Output::Event(Event::Connected) => b_up = true,
                    Output::Event(Event::MediaData(_)) => b_heard += 1,
                    Output::Event(_) => {}
                }
            }
            if closed.is_some() {
                break;
            }
            if leg_up && b_up && !silent_browser {
                assert_eq!(leg.codec(), Some(LegCodec::Pcmu), "PCMU preferred");
                // 20 ms of PCMU each way.
                let k = step * 160;
                leg.send_audio(now, k, &[0xff; 160]).expect("send");
                let w = b.writer(b_mid).expect("browser writer");
                let pt = *b_pt.get_or_insert_with(|| {
                    w.payload_params()
                        .find(|p| p.spec().codec == Codec::PCMU)
                        .map(|p| p.pt())
                        .expect("PCMU negotiated")
                });
                w.write(
                    pt,
                    now,
                    MediaTime::new(k, Frequency::EIGHT_KHZ),
                    vec![0x7f; 160],
                )
                .expect("browser sends");
                if heard.len() >= 20 && b_heard >= 20 {
                    // The browser vanishes: no more packets either way.
                    silent_browser = true;
                }
            }
            now += Duration::from_millis(20);
            leg.handle_timeout(now).expect("leg timeout");
            b.handle_input(Input::Timeout(now))
                .expect("browser timeout");
        }
        assert!(leg_up && b_up, "ICE-lite + DTLS connected on both sides");
        assert!(
            heard.len() >= 20,
            "browser audio reached the leg: {}",
            heard.len()
        );
        assert!(
            heard.iter().all(|p| p == &vec![0x7f; 160]),
            "payload intact"
        );
        assert!(b_heard >= 20, "leg audio reached the browser: {b_heard}");
        assert_eq!(
            closed,
            Some("ice_consent_lost"),
            "a vanished browser is noticed"
        );
        // The leg's DTLS state was seeded with the leg's clock, not with a placeholder an
        // hour back (which also logged "Time went backwards" once per leg).
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let gmt = u64::from(hello_gmt.expect("the leg sent a ServerHello"));
        assert!(
            wall.abs_diff(gmt) < 60,
            "ServerHello gmt_unix_time {gmt} is {} s from the wall clock {wall}",
            wall as i64 - gmt as i64
        );
    }

    /// The `gmt_unix_time` of a DTLS 1.2 ServerHello in `datagram` (RFC 6347 §4.1 record
    /// header, §4.2.2 handshake header, RFC 5246 §7.4.1.3: the random's first 4 bytes).
    fn server_hello_gmt(datagram: &[u8]) -> Option<u32> {
        let mut rest = datagram;
        while rest.len() >= 13 {
            let len = usize::from(u16::from_be_bytes([rest[11], rest[12]]));
            let body = rest.get(13..13 + len)?;
            // Content type 22 = handshake, epoch 0 (clear text); handshake type 2 = ServerHello.
            if rest[0] == 22 && rest[3..5] == [0, 0] && body.first() == Some(&2) {
                let gmt = body.get(14..18)?;
                return Some(u32::from_be_bytes([gmt[0], gmt[1], gmt[2], gmt[3]]));
            }
            rest = &rest[13 + len..];
        }
        None
    }
}
