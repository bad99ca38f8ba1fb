//! RTP port allocation from the configured range (`--rtp-ports LO-HI`).
//!
//! No free-list to lock: a rotating cursor proposes even ports and the OS decides, because a
//! bind that fails (in use by an earlier call or another program) simply moves on. Sockets are
//! released by dropping them.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::net::UdpSocket;

#[derive(Debug)]
pub struct PortRange {
    lo: u16,
    hi: u16,
    cursor: AtomicU32,
}

#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("no free RTP port in {lo}-{hi}")]
    Exhausted { lo: u16, hi: u16 },
}

impl PortRange {
    pub fn new(lo: u16, hi: u16) -> PortRange {
        let start = (rand::random::<u32>() % ((hi - lo) as u32 / 2 + 1)) * 2;
        PortRange {
            lo,
            hi,
            cursor: AtomicU32::new(start),
        }
    }

    /// Parse `LO-HI` (inclusive, at least two ports).
    pub fn parse(s: &str) -> Option<(u16, u16)> {
        let (a, b) = s.split_once('-')?;
        let (lo, hi): (u16, u16) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        (lo >= 1024 && hi > lo).then_some((lo, hi))
    }

    pub fn bounds(&self) -> (u16, u16) {
        (self.lo, self.hi)
    }

    /// Bind a UDP socket on an even port of the range.
    pub async fn bind(&self, ip: IpAddr) -> Result<UdpSocket, PortError> {
        let even_lo = self.lo + (self.lo % 2);
        let slots = ((self.hi - even_lo) / 2 + 1) as u32;
        for _ in 0..slots {
            let n = self.cursor.fetch_add(1, Ordering::Relaxed) % slots;
            let port = even_lo + (n * 2) as u16;
            if let Ok(sock) = UdpSocket::bind(SocketAddr::new(ip, port)).await {
                return Ok(sock);
            }
        }
        Err(PortError::Exhausted {
            lo: self.lo,
            hi: self.hi,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges() {
        assert_eq!(PortRange::parse("20000-20999"), Some((20000, 20999)));
        assert_eq!(PortRange::parse("20000"), None);
        assert_eq!(PortRange::parse("30-20"), None);
    }

    #[tokio::test]
    async fn allocates_distinct_even_ports_until_exhausted() {
        let range = PortRange::new(41000, 41007);
        let ip = "127.0.0.1".parse().expect("ip");
        let mut held = Vec::new();
        for _ in 0..4 {
            if let Ok(s) = range.bind(ip).await {
                let port = s.local_addr().expect("addr").port();
                assert_eq!(port % 2, 0);
                held.push(s);
            }
        }
        let mut ports: Vec<u16> = held
            .iter()
            .map(|s| s.local_addr().expect("addr").port())
            .collect();
        ports.dedup();
        assert_eq!(ports.len(), held.len());
        if held.len() == 4 {
            assert!(range.bind(ip).await.is_err());
        }
    }
}
