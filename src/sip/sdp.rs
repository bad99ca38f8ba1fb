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

/// Pick the first offered codec that we support (the offerer's preference, RFC 3264 §6.1),
/// restricted to `allowed`, plus telephone-event at the codec's clock rate.
pub fn negotiate(offer: &SessionDescription, allowed: &[Codec]) -> Result<Negotiated, SdpError> {
    let audio = offer
        .media
        .iter()
        .find(|m| m.kind == "audio" && m.port != 0 && m.proto.starts_with("RTP/AVP"))
        .ok_or(SdpError::NoAudio)?;
    let ip = audio
        .connection
        .or(offer.connection)
        .ok_or(SdpError::NoConnection)?;
    let mut chosen = None;
    for &pt in &audio.formats {
        let map = audio.rtpmaps.iter().find(|m| m.payload_type == pt);
        let codec = match map {
            Some(m) => Codec::from_rtpmap(&m.encoding, m.clock_rate),
            None => Codec::from_static_pt(pt),
        };
        if let Some(c) = codec.filter(|c| allowed.contains(c)) {
            chosen = Some((c, pt));
            break;
        }
    }
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

/// Render our SDP (answer, or offer when `offer_codecs` lists several) for one audio stream.
pub fn render(
    local_ip: IpAddr,
    local_port: u16,
    session_id: u64,
    version: u64,
    codecs: &[(Codec, u8)],
    telephone_event: Option<u8>,
    direction: Direction,
) -> String {
    let fam = if local_ip.is_ipv6() { "IP6" } else { "IP4" };
    let mut s = String::with_capacity(256);
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
    if let Some(te) = telephone_event {
        let _ = write!(s, " {te}");
    }
    s.push_str("\r\n");
    for (codec, pt) in codecs {
        let _ = write!(
            s,
            "a=rtpmap:{pt} {}/{}\r\n",
            codec.encoding_name(),
            codec.clock_rate()
        );
    }
    if let Some(te) = telephone_event {
        let rate = codecs.first().map_or(8000, |(c, _)| c.clock_rate());
        let _ = write!(
            s,
            "a=rtpmap:{te} telephone-event/{rate}\r\na=fmtp:{te} 0-16\r\n"
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
    fn negotiates_offerers_first_codec_and_telephone_event() {
        let sd = SessionDescription::parse(OFFER.as_bytes()).expect("parse");
        let n = negotiate(&sd, &[Codec::Pcmu, Codec::Pcma]).expect("negotiate");
        assert_eq!(n.codec, Codec::Pcma);
        assert_eq!(n.payload_type, 8);
        assert_eq!(n.telephone_event, Some(101));
        assert_eq!(n.remote, "127.0.0.1:17000".parse().expect("addr"));
        assert_eq!(n.direction, Direction::SendRecv);
        let only_pcmu = negotiate(&sd, &[Codec::Pcmu]).expect("pcmu");
        assert_eq!(only_pcmu.payload_type, 0);
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
            Some(101),
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
                let _ = negotiate(&sd, &[Codec::Pcmu, Codec::Pcma]);
            }
        }
    }
}
