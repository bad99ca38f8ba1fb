//! SDP parsing and RFC 3264 offer/answer for one audio stream (RFC 4566, RFC 3264, RFC 4733 §7).
//!
//! Inputs: the offer's body. Outputs: the [`Negotiated`] media parameters (codec, payload
//! types, remote address, direction) and the answer's text. Anything we cannot serve becomes
//! an [`SdpError`] that the call layer maps to `488 Not Acceptable Here`.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use crate::media::codec::Codec;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP is not UTF-8")]
    NotUtf8,
    #[error("malformed SDP line {line}: {reason}")]
    Malformed { line: usize, reason: &'static str },
    #[error("no audio stream offered")]
    NoAudio,
    #[error("no common audio codec")]
    NoCommonCodec,
    #[error("no connection address for audio")]
    NoConnection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn as_attr(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction an answerer uses for an offer with this direction (RFC 3264 §6.1).
    pub fn answer_to(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub payload_type: u8,
    pub encoding: String,
    pub clock_rate: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    pub kind: String,
    pub port: u16,
    pub proto: String,
    pub formats: Vec<u8>,
    pub rtpmaps: Vec<RtpMap>,
    pub connection: Option<IpAddr>,
    pub direction: Option<Direction>,
    pub ptime: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionDescription {
    pub connection: Option<IpAddr>,
    pub direction: Option<Direction>,
    pub media: Vec<MediaDescription>,
}

impl SessionDescription {
    pub fn parse(body: &[u8]) -> Result<SessionDescription, SdpError> {
        let text = std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?;
        let mut sd = SessionDescription::default();
        for (idx, raw) in text.lines().enumerate() {
            let line_no = idx + 1;
            let line = raw.trim_end_matches('\r');
            if line.is_empty() {
                continue;
            }
            let bad = |reason| SdpError::Malformed {
                line: line_no,
                reason,
            };
            let (kind, value) = line.split_once('=').ok_or(bad("expected <type>=<value>"))?;
            if kind.len() != 1 {
                return Err(bad("type must be one letter"));
            }
            match kind {
                "c" => {
                    let addr = parse_connection(value).ok_or(bad("bad c= line"))?;
                    match sd.media.last_mut() {
                        Some(m) => m.connection = Some(addr),
                        None => sd.connection = Some(addr),
                    }
                }
                "m" => {
                    let mut parts = value.split_whitespace();
                    let kind = parts.next().ok_or(bad("m= without media"))?.to_string();
                    let port_str = parts.next().ok_or(bad("m= without port"))?;
                    let port_str = port_str.split_once('/').map_or(port_str, |(p, _)| p);
                    let port: u16 = port_str.parse().map_err(|_| bad("bad m= port"))?;
                    let proto = parts.next().ok_or(bad("m= without proto"))?.to_string();
                    let formats = if proto.contains("RTP") {
                        parts
                            .map(|f| f.parse::<u8>().map_err(|_| bad("bad payload type")))
                            .collect::<Result<Vec<_>, _>>()?
                    } else {
                        Vec::new()
                    };
                    sd.media.push(MediaDescription {
                        kind,
                        port,
                        proto,
                        formats,
                        rtpmaps: Vec::new(),
                        connection: None,
                        direction: None,
                        ptime: None,
                    });
                }
                "a" => {
                    let (name, arg) = value
                        .split_once(':')
                        .map_or((value, None), |(n, a)| (n, Some(a)));
                    let dir = match name {
                        "sendrecv" => Some(Direction::SendRecv),
                        "sendonly" => Some(Direction::SendOnly),
                        "recvonly" => Some(Direction::RecvOnly),
                        "inactive" => Some(Direction::Inactive),
                        _ => None,
                    };
                    match (dir, sd.media.last_mut()) {
                        (Some(d), Some(m)) => m.direction = Some(d),
                        (Some(d), None) => sd.direction = Some(d),
                        (None, Some(m)) => match (name, arg) {
                            ("rtpmap", Some(arg)) => {
                                if let Some(map) = parse_rtpmap(arg) {
                                    m.rtpmaps.push(map);
                                }
                            }
                            ("ptime", Some(arg)) => m.ptime = arg.trim().parse().ok(),
                            _ => {}
                        },
                        (None, None) => {}
                    }
                }
                _ => {}
            }
        }
        Ok(sd)
    }
}

fn parse_connection(value: &str) -> Option<IpAddr> {
    let mut parts = value.split_whitespace();
    if parts.next()? != "IN" {
        return None;
    }
    let _addrtype = parts.next()?;
    let addr = parts.next()?;
    // Multicast TTL suffix ("/127") is not for us but must not break parsing.
    let addr = addr.split('/').next()?;
    addr.parse().ok()
}

fn parse_rtpmap(arg: &str) -> Option<RtpMap> {
    let (pt, rest) = arg.trim().split_once(' ')?;
    let mut enc = rest.trim().split('/');
    let encoding = enc.next()?.to_string();
    let clock_rate = enc.next()?.parse().ok()?;
    Some(RtpMap {
        payload_type: pt.parse().ok()?,
        encoding,
        clock_rate,
    })
}

/// What the two sides agreed for the audio stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: Codec,
    pub payload_type: u8,
    pub telephone_event: Option<u8>,
    /// Where to send RTP until symmetric RTP learns the real source (RFC 4961).
    pub remote: SocketAddr,
    /// Our direction in the answer.
    pub direction: Direction,
}

impl Negotiated {
    pub fn is_on_hold(&self) -> bool {
        matches!(self.direction, Direction::RecvOnly | Direction::Inactive)
            || self.remote.ip().is_unspecified()
    }
}

/// Which side's order decides between several common codecs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preference {
    /// Ours (`[server] codecs`): how we answer an offer. RFC 3264 §6.1 lets the answerer
    /// choose; a call center wants its own order (e.g. G.711 first so bridges to G.711
    /// trunks and agents never transcode, and recordings/AMD see the same audio).
    Ours,
    /// The remote description's: how we read an answer to our offer, whose first common
    /// format is what the answerer will send (RFC 3264 §6.1 / §7).
    Theirs,
}

/// Choose the audio codec of `offer` (an offer, or an answer to our offer) among `prefs`
/// (our ordered list), plus telephone-event at that codec's clock rate (RFC 4733 §2.1: the
/// event stream shares the audio's timestamp clock, so Opus needs telephone-event/48000).
pub fn negotiate(offer: &SessionDescription, prefs: &[Codec]) -> Result<Negotiated, SdpError> {
    negotiate_with(offer, prefs, Preference::Ours)
}

/// [`negotiate`] for the SDP answer to our own offer: the answerer's order wins.
pub fn negotiate_answer(
    answer: &SessionDescription,
    allowed: &[Codec],
) -> Result<Negotiated, SdpError> {
    negotiate_with(answer, allowed, Preference::Theirs)
}

pub fn negotiate_with(
    offer: &SessionDescription,
    prefs: &[Codec],
    order: Preference,
) -> Result<Negotiated, SdpError> {
    let audio = offer
        .media
        .iter()
        .find(|m| m.kind == "audio" && m.port != 0 && m.proto.starts_with("RTP/AVP"))
        .ok_or(SdpError::NoAudio)?;
    let ip = audio
        .connection
        .or(offer.connection)
        .ok_or(SdpError::NoConnection)?;
    // Every offered format we can serve, in the offer's order, with the offer's PT (dynamic
    // numbers are echoed, RFC 3264 §6.1).
    let offered = audio.formats.iter().filter_map(|&pt| {
        let codec = match audio.rtpmaps.iter().find(|m| m.payload_type == pt) {
            Some(m) => Codec::from_rtpmap(&m.encoding, m.clock_rate),
            // Static types may come without rtpmap (RFC 4566 §6); dynamic ones may not.
            None => Codec::from_static_pt(pt),
        };
        codec.filter(|c| prefs.contains(c)).map(|c| (c, pt))
    });
    let chosen = match order {
        Preference::Theirs => offered.into_iter().next(),
        Preference::Ours => offered.min_by_key(|(c, _)| prefs.iter().position(|p| p == c)),
    };
    let (codec, payload_type) = chosen.ok_or(SdpError::NoCommonCodec)?;
    let telephone_event = audio
        .rtpmaps
        .iter()
        .find(|m| {
            m.encoding.eq_ignore_ascii_case("telephone-event")
                && m.clock_rate == codec.clock_rate()
                && audio.formats.contains(&m.payload_type)
        })
        .map(|m| m.payload_type);
    let offered_dir = audio
        .direction
        .or(offer.direction)
        .unwrap_or(Direction::SendRecv);
    Ok(Negotiated {
        codec,
        payload_type,
        telephone_event,
        remote: SocketAddr::new(ip, audio.port),
        direction: offered_dir.answer_to(),
    })
}

/// Telephone-event payload types to offer for a codec list: one per clock rate in use.
pub fn offer_telephone_events(codecs: &[(Codec, u8)]) -> Vec<(u8, u32)> {
    use crate::media::codec::{TELEPHONE_EVENT_48K_PT, TELEPHONE_EVENT_8K_PT};
    let mut te = Vec::with_capacity(2);
    if codecs.iter().any(|(c, _)| c.clock_rate() == 8000) {
        te.push((TELEPHONE_EVENT_8K_PT, 8000));
    }
    if codecs.iter().any(|(c, _)| c.clock_rate() == 48000) {
        te.push((TELEPHONE_EVENT_48K_PT, 48000));
    }
    te
}

/// Render our SDP for one audio stream: an answer (one codec, its telephone-event) or an
/// offer (several codecs, a telephone-event per clock rate). `telephone_events` holds
/// (payload type, clock rate) pairs.
pub fn render(
    local_ip: IpAddr,
    local_port: u16,
    session_id: u64,
    version: u64,
    codecs: &[(Codec, u8)],
    telephone_events: &[(u8, u32)],
    direction: Direction,
) -> String {
    let fam = if local_ip.is_ipv6() { "IP6" } else { "IP4" };
    let mut s = String::with_capacity(320);
    let _ = write!(
        s,
        "v=0\r\no=switchboard {session_id} {version} IN {fam} {local_ip}\r\ns=switchboard\r\n"
    );
    let _ = write!(
        s,
        "c=IN {fam} {local_ip}\r\nt=0 0\r\nm=audio {local_port} RTP/AVP"
    );
    for (_, pt) in codecs {
        let _ = write!(s, " {pt}");
    }
    for (pt, _) in telephone_events {
        let _ = write!(s, " {pt}");
    }
    s.push_str("\r\n");
    for (codec, pt) in codecs {
        let _ = write!(s, "a=rtpmap:{pt} {}\r\n", codec.rtpmap());
        if let Some(f) = codec.fmtp() {
            let _ = write!(s, "a=fmtp:{pt} {f}\r\n");
        }
    }
    for (pt, rate) in telephone_events {
        let _ = write!(
            s,
            "a=rtpmap:{pt} telephone-event/{rate}\r\na=fmtp:{pt} 0-16\r\n"
        );
    }
    let _ = write!(s, "a=ptime:20\r\na={}\r\n", direction.as_attr());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 17000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n";

    #[test]
    fn answers_in_our_preference_order_with_telephone_event() {
        let sd = SessionDescription::parse(OFFER.as_bytes()).expect("parse");
        // The offer lists PCMA first; we prefer PCMU and say so in the answer.
        let n = negotiate(&sd, &[Codec::Pcmu, Codec::Pcma]).expect("negotiate");
        assert_eq!((n.codec, n.payload_type), (Codec::Pcmu, 0));
        assert_eq!(n.telephone_event, Some(101));
        assert_eq!(n.remote, "127.0.0.1:17000".parse().expect("addr"));
        assert_eq!(n.direction, Direction::SendRecv);
        let pcma_first = negotiate(&sd, &[Codec::Pcma, Codec::Pcmu]).expect("pcma");
        assert_eq!(pcma_first.payload_type, 8);
        // Reading an answer to our offer: the answerer's order wins.
        let answer = negotiate_answer(&sd, &[Codec::Pcmu, Codec::Pcma]).expect("answer");
        assert_eq!(answer.codec, Codec::Pcma);
    }

    fn offer(formats: &str, maps: &[&str]) -> SessionDescription {
        let mut s = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio 17000 RTP/AVP {formats}\r\n"
        );
        for m in maps {
            s.push_str(&format!("a=rtpmap:{m}\r\n"));
        }
        SessionDescription::parse(s.as_bytes()).expect("parse")
    }

    /// Answer selection: (formats, rtpmaps, our preference) -> (codec, PT, telephone-event).
    #[test]
    fn answer_selection_table() {
        use Codec::*;
        let all = [Opus, G722, Pcmu, Pcma];
        let g711_first = [Pcmu, Pcma, G722, Opus];
        type Row<'a> = (
            &'a str,
            &'a [&'a str],
            &'a [Codec],
            Result<(Codec, u8, Option<u8>), SdpError>,
        );
        let rows: &[Row] = &[
            // Only Opus (a WebRTC gateway), dynamic PT echoed, telephone-event at 48 kHz.
            (
                "109 101",
                &["109 opus/48000/2", "101 telephone-event/48000"],
                &all,
                Ok((Opus, 109, Some(101))),
            ),
            // Opus offered with only an 8 kHz telephone-event: no usable event stream.
            (
                "111 101",
                &["111 OPUS/48000/2", "101 telephone-event/8000"],
                &all,
                Ok((Opus, 111, None)),
            ),
            // Opus + PCMU, both event rates: our order decides, events follow the clock.
            (
                "111 0 110 101",
                &[
                    "111 opus/48000/2",
                    "0 PCMU/8000",
                    "110 telephone-event/48000",
                    "101 telephone-event/8000",
                ],
                &all,
                Ok((Opus, 111, Some(110))),
            ),
            (
                "111 0 110 101",
                &[
                    "111 opus/48000/2",
                    "0 PCMU/8000",
                    "110 telephone-event/48000",
                    "101 telephone-event/8000",
                ],
                &g711_first,
                Ok((Pcmu, 0, Some(101))),
            ),
            // G.722 first (static PT 9, no rtpmap needed), PCMU second.
            (
                "9 0 101",
                &["101 telephone-event/8000"],
                &all,
                Ok((G722, 9, Some(101))),
            ),
            (
                "9 0 101",
                &["101 telephone-event/8000"],
                &g711_first,
                Ok((Pcmu, 0, Some(101))),
            ),
            // G.722 not enabled in our list: the PCMU fallback.
            ("9 0", &[], &[Pcmu], Ok((Pcmu, 0, None))),
            // G722/16000 is a common mistake (RFC 3551 §4.5.2 says 8000): not G.722 to us.
            ("96", &["96 G722/16000"], &all, Err(SdpError::NoCommonCodec)),
            // A dynamic PT without rtpmap is unknown.
            ("111", &[], &all, Err(SdpError::NoCommonCodec)),
            // Nothing we support (G.729, iLBC): the 488 path.
            (
                "18 97",
                &["18 G729/8000", "97 iLBC/8000"],
                &all,
                Err(SdpError::NoCommonCodec),
            ),
            // Opus offered but not enabled.
            (
                "111",
                &["111 opus/48000/2"],
                &g711_first[..2],
                Err(SdpError::NoCommonCodec),
            ),
        ];
        for (formats, maps, prefs, want) in rows {
            let got = negotiate(&offer(formats, maps), prefs)
                .map(|n| (n.codec, n.payload_type, n.telephone_event));
            assert_eq!(&got, want, "m=audio {formats} {maps:?} prefs {prefs:?}");
        }
    }

    #[test]
    fn offers_every_codec_with_an_event_type_per_clock() {
        let codecs: Vec<(Codec, u8)> = [Codec::Opus, Codec::G722, Codec::Pcmu]
            .iter()
            .map(|c| (*c, c.offer_pt()))
            .collect();
        let te = offer_telephone_events(&codecs);
        assert_eq!(te, vec![(101, 8000), (110, 48000)]);
        let text = render(
            "127.0.0.1".parse().expect("ip"),
            20000,
            7,
            1,
            &codecs,
            &te,
            Direction::SendRecv,
        );
        assert!(
            text.contains("m=audio 20000 RTP/AVP 111 9 0 101 110\r\n"),
            "{text}"
        );
        assert!(
            text.contains("a=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1"),
            "{text}"
        );
        assert!(text.contains("a=rtpmap:9 G722/8000\r\n"), "{text}");
        assert!(
            text.contains("a=rtpmap:110 telephone-event/48000\r\n"),
            "{text}"
        );
        // Our own offer, answered by a peer that prefers G.722.
        let sd = SessionDescription::parse(text.as_bytes()).expect("parse");
        let n = negotiate(&sd, &[Codec::G722, Codec::Pcmu]).expect("negotiate");
        assert_eq!(
            (n.codec, n.payload_type, n.telephone_event),
            (Codec::G722, 9, Some(101))
        );
        let n = negotiate_answer(&sd, &Codec::ALL).expect("negotiate");
        assert_eq!(
            (n.codec, n.payload_type, n.telephone_event),
            (Codec::Opus, 111, Some(110))
        );
        assert_eq!(
            offer_telephone_events(&[(Codec::Pcma, 8)]),
            vec![(101, 8000)]
        );
    }

    #[test]
    fn static_payload_types_without_rtpmap() {
        let sd =
            SessionDescription::parse(b"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\n")
                .expect("parse");
        let n = negotiate(&sd, &[Codec::Pcmu]).expect("negotiate");
        assert_eq!((n.codec, n.telephone_event), (Codec::Pcmu, None));
    }

    #[test]
    fn rejects_what_we_cannot_serve() {
        let g729 =
            SessionDescription::parse(b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 18\r\n")
                .expect("parse");
        assert_eq!(
            negotiate(&g729, &[Codec::Pcmu, Codec::Pcma]),
            Err(SdpError::NoCommonCodec)
        );
        let video =
            SessionDescription::parse(b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=video 4000 RTP/AVP 96\r\n")
                .expect("parse");
        assert_eq!(negotiate(&video, &[Codec::Pcmu]), Err(SdpError::NoAudio));
        assert!(SessionDescription::parse(b"v=0\r\nm=audio x RTP/AVP 0\r\n").is_err());
    }

    #[test]
    fn hold_offers_answer_with_matching_direction() {
        let held = OFFER.replace("a=ptime:20\r\n", "a=ptime:20\r\na=sendonly\r\n");
        let sd = SessionDescription::parse(held.as_bytes()).expect("parse");
        let n = negotiate(&sd, &[Codec::Pcmu, Codec::Pcma]).expect("negotiate");
        assert_eq!(n.direction, Direction::RecvOnly);
        assert!(n.is_on_hold());
    }

    #[test]
    fn answer_round_trips() {
        let text = render(
            "127.0.0.1".parse().expect("ip"),
            20000,
            7,
            1,
            &[(Codec::Pcmu, 0)],
            &[(101, 8000)],
            Direction::SendRecv,
        );
        let sd = SessionDescription::parse(text.as_bytes()).expect("parse");
        let n = negotiate(&sd, &[Codec::Pcmu]).expect("negotiate");
        assert_eq!(n.remote.port(), 20000);
        assert_eq!(n.telephone_event, Some(101));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            if let Ok(sd) = SessionDescription::parse(&data) {
                let _ = negotiate(&sd, &Codec::ALL);
                let _ = negotiate_answer(&sd, &Codec::ALL);
            }
        }
    }
}
