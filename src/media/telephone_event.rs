//! RFC 4733 telephone-events: turning a stream of event packets into single key presses, and
//! producing event packets to send.
//!
//! One key press is many packets: the same RTP timestamp with a growing duration, then the
//! end packet repeated (usually 3 times). A digit is reported once, on the first packet seen
//! for a new event timestamp, so a lost start or a lost end packet still yields exactly one
//! digit (RFC 4733 §2.5.1.3: the timestamp identifies the event).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPayload {
    pub event: u8,
    pub end: bool,
    pub volume: u8,
    pub duration: u16,
}

impl EventPayload {
    pub fn parse(payload: &[u8]) -> Option<EventPayload> {
        if payload.len() < 4 {
            return None;
        }
        Some(EventPayload {
            event: payload[0],
            end: payload[1] & 0x80 != 0,
            volume: payload[1] & 0x3F,
            duration: u16::from_be_bytes([payload[2], payload[3]]),
        })
    }

    pub fn write(&self, out: &mut [u8; 4]) {
        out[0] = self.event;
        out[1] = (if self.end { 0x80 } else { 0 }) | (self.volume & 0x3F);
        out[2..4].copy_from_slice(&self.duration.to_be_bytes());
    }
}

/// Map an RFC 4733 event code (0–15) to its DTMF character.
pub fn event_to_digit(event: u8) -> Option<char> {
    const DIGITS: &[u8; 16] = b"0123456789*#ABCD";
    DIGITS.get(event as usize).map(|b| *b as char)
}

pub fn digit_to_event(digit: char) -> Option<u8> {
    const DIGITS: &str = "0123456789*#ABCD";
    DIGITS.find(digit.to_ascii_uppercase()).map(|i| i as u8)
}

/// Receiver-side de-duplication state for one RTP stream.
#[derive(Debug, Default, Clone)]
pub struct EventReceiver {
    last: Option<(u32, u32)>, // (ssrc, event timestamp) already reported
}

impl EventReceiver {
    /// Feed one telephone-event packet; returns the digit when this packet starts a new event.
    pub fn handle_packet(&mut self, ssrc: u32, timestamp: u32, payload: &[u8]) -> Option<char> {
        let ev = EventPayload::parse(payload)?;
        let digit = event_to_digit(ev.event)?;
        if self.last == Some((ssrc, timestamp)) {
            return None;
        }
        self.last = Some((ssrc, timestamp));
        Some(digit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(event: u8, end: bool, duration: u16) -> [u8; 4] {
        let mut out = [0u8; 4];
        EventPayload {
            event,
            end,
            volume: 10,
            duration,
        }
        .write(&mut out);
        out
    }

    #[test]
    fn one_digit_per_event_despite_repeats() {
        let mut rx = EventReceiver::default();
        let mut got = Vec::new();
        for (ts, ev) in [(1000u32, 1u8), (5000, 1), (9000, 11)] {
            for d in [160u16, 320, 480] {
                got.extend(rx.handle_packet(7, ts, &pkt(ev, false, d)));
            }
            for _ in 0..3 {
                got.extend(rx.handle_packet(7, ts, &pkt(ev, true, 640)));
            }
        }
        assert_eq!(got, vec!['1', '1', '#']);
    }

    #[test]
    fn survives_lost_start_and_lost_end() {
        let mut rx = EventReceiver::default();
        // Only end packets of event 1 arrive, then only start packets of event 2.
        assert_eq!(rx.handle_packet(1, 100, &pkt(2, true, 800)), Some('2'));
        assert_eq!(rx.handle_packet(1, 100, &pkt(2, true, 800)), None);
        assert_eq!(rx.handle_packet(1, 900, &pkt(2, false, 160)), Some('2'));
        assert_eq!(rx.handle_packet(1, 900, &pkt(2, false, 320)), None);
        assert_eq!(rx.handle_packet(1, 900, &[1, 2]), None);
        assert_eq!(rx.handle_packet(1, 1900, &pkt(16, false, 160)), None);
    }

    #[test]
    fn digit_mapping() {
        assert_eq!(event_to_digit(10), Some('*'));
        assert_eq!(digit_to_event('#'), Some(11));
        assert_eq!(digit_to_event('d'), Some(15));
        assert_eq!(digit_to_event('x'), None);
    }
}
