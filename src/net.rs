//! Network address types every layer shares: CIDR ranges (trunk sources, the SIP guard's
//! trusted networks), how a trunk is reached, and socket addresses from `recvmsg`.
//!
//! A leaf module (it imports nothing from the crate) so the protocol layers (`sip`, `media`)
//! can use them without depending on `config`, which sits above them; `config` re-exports
//! `Cidr` and `TrunkTransport` under their old paths. See docs/architecture.md (layers).

use std::net::{IpAddr, SocketAddr};

use nix::sys::socket::SockaddrStorage;

/// An IPv4/IPv6 network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub net: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (
                ip.trim().parse::<IpAddr>().ok()?,
                p.trim().parse::<u8>().ok()?,
            ),
            None => {
                let ip: IpAddr = s.trim().parse().ok()?;
                (ip, if ip.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { net: ip, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix as u32)
                };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix as u32)
                };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// How we reach a trunk (`[[trunk]] transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrunkTransport {
    Udp,
    Tcp,
    Tls,
}

impl TrunkTransport {
    /// The config spelling, also what the API reports.
    pub fn as_str(self) -> &'static str {
        match self {
            TrunkTransport::Udp => "udp",
            TrunkTransport::Tcp => "tcp",
            TrunkTransport::Tls => "tls",
        }
    }

    /// Connection-oriented: requests go over one connection opened on first use
    /// (`sip::tls::TrunkConnections`), not the shared UDP socket.
    pub fn is_stream(self) -> bool {
        !matches!(self, TrunkTransport::Udp)
    }

    pub(crate) fn parse(s: &str) -> Option<TrunkTransport> {
        match s.to_ascii_lowercase().as_str() {
            "udp" => Some(TrunkTransport::Udp),
            "tcp" => Some(TrunkTransport::Tcp),
            "tls" => Some(TrunkTransport::Tls),
            _ => None,
        }
    }
}

impl std::fmt::Display for TrunkTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A socket address from what `recvmsg`/`recvmmsg` report (IPv4 or IPv6).
pub fn to_socket_addr(a: SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}
