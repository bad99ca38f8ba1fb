//! RTP port allocation from the configured range (`--rtp-ports LO-HI`).
//!
//! No free-list to lock: a rotating cursor proposes even ports and the OS decides, because a
//! bind that fails (in use by an earlier call or another program) simply moves on. Sockets are
//! released by dropping them.
//!
//! RTP is always on an even port so that the odd port above it can carry RTCP (RFC 3550
//! §11); [`PortRange::bind_pair`] takes both, and only an even port whose odd neighbour is
//! also free (and inside the range) is used, so SDP needs no `a=rtcp` line.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::net::UdpSocket;

use crate::media::socket::MediaSocket;

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

impl PortRange {
    /// Bind an even RTP port and the RTCP port above it (both in the range). The RTP socket
    /// is read on the call's send tick ([`MediaSocket`]); RTCP (one report every few seconds)
    /// stays an ordinary reactor-driven socket.
    pub async fn bind_pair(&self, ip: IpAddr) -> Result<(MediaSocket, UdpSocket), PortError> {
        let even_lo = self.lo + (self.lo % 2);
        if even_lo >= self.hi {
            return Err(PortError::Exhausted {
                lo: self.lo,
                hi: self.hi,
            });
        }
        // Even ports p with p + 1 <= hi.
        let slots = ((self.hi - 1 - even_lo) / 2 + 1) as u32;
        for _ in 0..slots {
            let n = self.cursor.fetch_add(1, Ordering::Relaxed) % slots;
            let port = even_lo + (n * 2) as u16;
            let Ok(rtp) = MediaSocket::bind(SocketAddr::new(ip, port)) else {
                continue;
            };
            if let Ok(rtcp) = UdpSocket::bind(SocketAddr::new(ip, port + 1)).await {
                return Ok((rtp, rtcp));
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

    #[tokio::test]
    async fn pairs_are_even_then_odd_and_skip_a_taken_odd_port() {
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        // 41101 taken by someone else: 41100 cannot be used, 41102/41103 can.
        let Ok(squatter) = UdpSocket::bind(SocketAddr::new(ip, 41101)).await else {
            return; // the port is busy on this machine: nothing to prove
        };
        let range = PortRange::new(41100, 41103);
        let mut held = Vec::new();
        for _ in 0..2 {
            if let Ok((rtp, rtcp)) = range.bind_pair(ip).await {
                let p = rtp.local_addr().expect("addr").port();
                assert_eq!(p % 2, 0);
                assert_eq!(rtcp.local_addr().expect("addr").port(), p + 1);
                assert_ne!(p, 41100, "its RTCP port is taken");
                held.push((rtp, rtcp));
            }
        }
        assert!(held.len() <= 1);
        drop(squatter);
    }
}
