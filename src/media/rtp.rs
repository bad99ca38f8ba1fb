//! RTP packet view and writer (RFC 3550 §5.1).
//!
//! Zero-copy on receive ([`RtpPacket::parse`] borrows the datagram) and allocation-free on
//! send ([`write_header`] fills a caller-owned buffer), because both run 50 times a second per
//! call.

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("packet shorter than RTP header")]
    TooShort,
    #[error("RTP version is not 2")]
    BadVersion,
    #[error("header extension or CSRCs run past the packet")]
    Truncated,
    #[error("bad padding")]
    BadPadding,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

pub const HEADER_LEN: usize = 12;

impl<'a> RtpPacket<'a> {
    pub fn parse(data: &'a [u8]) -> Result<RtpPacket<'a>, RtpError> {
        if data.len() < HEADER_LEN {
            return Err(RtpError::TooShort);
        }
        let b0 = data[0];
        if b0 >> 6 != 2 {
            return Err(RtpError::BadVersion);
        }
        let padding = b0 & 0x20 != 0;
        let extension = b0 & 0x10 != 0;
        let csrc_count = (b0 & 0x0F) as usize;
        let b1 = data[1];
        let mut offset = HEADER_LEN + 4 * csrc_count;
        if data.len() < offset {
            return Err(RtpError::Truncated);
        }
        if extension {
            if data.len() < offset + 4 {
                return Err(RtpError::Truncated);
            }
            let words = u16::from_be_bytes([data[offset + 2], data[offset + 3]]) as usize;
            offset += 4 + 4 * words;
            if data.len() < offset {
                return Err(RtpError::Truncated);
            }
        }
        let mut end = data.len();
        if padding {
            let pad = data[end - 1] as usize;
            if pad == 0 || end - offset < pad {
                return Err(RtpError::BadPadding);
            }
            end -= pad;
        }
        Ok(RtpPacket {
            marker: b1 & 0x80 != 0,
            payload_type: b1 & 0x7F,
            sequence: u16::from_be_bytes([data[2], data[3]]),
            timestamp: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
            ssrc: u32::from_be_bytes([data[8], data[9], data[10], data[11]]),
            payload: &data[offset..end],
        })
    }
}

/// Write a 12-byte RTP header (no CSRC, no extension) into `buf[..12]`.
pub fn write_header(
    buf: &mut [u8],
    marker: bool,
    payload_type: u8,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
) {
    buf[0] = 0x80;
    buf[1] = (if marker { 0x80 } else { 0 }) | (payload_type & 0x7F);
    buf[2..4].copy_from_slice(&sequence.to_be_bytes());
    buf[4..8].copy_from_slice(&timestamp.to_be_bytes());
    buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

/// Whether a datagram looks like RTCP rather than RTP when both share a port (RFC 5761 §4).
pub fn is_rtcp(data: &[u8]) -> bool {
    data.len() >= 2 && (192..=223).contains(&data[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_parse() {
        let mut buf = [0u8; 172];
        write_header(&mut buf, true, 8, 65535, 0xDEADBEEF, 42);
        buf[12..].fill(0xD5);
        let p = RtpPacket::parse(&buf).expect("parse");
        assert!(p.marker);
        assert_eq!(
            (p.payload_type, p.sequence, p.timestamp, p.ssrc),
            (8, 65535, 0xDEADBEEF, 42)
        );
        assert_eq!(p.payload.len(), 160);
    }

    #[test]
    fn handles_csrc_extension_and_padding() {
        let mut pkt = vec![0xB1u8, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        pkt.extend_from_slice(&[0, 0, 0, 9]); // one CSRC
        pkt.extend_from_slice(&[0xBE, 0xDE, 0, 1, 1, 2, 3, 4]); // extension, one word
        pkt.extend_from_slice(&[7, 7, 0, 2]); // payload 7 7, padding 2
        let p = RtpPacket::parse(&pkt).expect("parse");
        assert_eq!(p.payload, &[7, 7]);
        assert_eq!(RtpPacket::parse(&pkt[..14]), Err(RtpError::Truncated));
        assert_eq!(RtpPacket::parse(&[0x40; 12]), Err(RtpError::BadVersion));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = RtpPacket::parse(&data);
        }
    }
}
