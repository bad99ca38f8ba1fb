//! Datagrams with their queueing age: how long each one waited between the kernel receiving
//! it and the server reading it.
//!
//! The SIP router uses the age of each INVITE as its overload signal (`[server]
//! overload_queue_ms`): when the server falls behind, requests wait in the socket buffer and
//! in the run queue, and that wait is exactly what a caller's user agent experiences before
//! its retransmission timer (T1 = 500 ms) fires. Deciding on the measured wait rather than on
//! a call count refuses the excess whatever makes the server slow (CPU, a burst, a slow
//! disk), and accepts again as soon as the queue has drained.
//!
//! The age comes from the kernel's receive stamp (`SO_TIMESTAMPNS`, wall clock) read with
//! `recvmsg(2)` through nix's safe wrapper; the control-message buffer is allocated once per
//! receiver. Where the option is refused the age is zero (no overload is ever detected).

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::socket::{
    recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage,
};
use nix::sys::time::TimeSpec;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// What the SIP socket asks the kernel to buffer (the kernel doubles it for bookkeeping and
/// caps it at `net.core.rmem_max` unless the process may force it). Why: the default
/// (about 200 KB, some 90 INVITEs) holds 15 ms of arrivals at 6 000 INVITEs/s, so any pause
/// of the router longer than that dropped datagrams, and every drop became a caller's
/// retransmission 0.5, 1, 2… s later — more load, more drops (the overload run of
/// 2026-12-06 saw 170 000 INVITE retransmissions). With 4 MiB the wait grows instead, where
/// overload control sees it and refuses new calls with `503` (docs/benchmarks.md).
pub const SIP_RECEIVE_BUFFER: usize = 4 << 20;

/// Ask for a receive buffer of `bytes` on `sock`: forced where the process may
/// (`CAP_NET_ADMIN`), else as far as `rmem_max` allows. Returns what the kernel granted.
pub fn set_receive_buffer<S: std::os::fd::AsFd>(sock: &S, bytes: usize) -> io::Result<usize> {
    if setsockopt(sock, sockopt::RcvBufForce, &bytes).is_err() {
        setsockopt(sock, sockopt::RcvBuf, &bytes).map_err(io::Error::from)?;
    }
    nix::sys::socket::getsockopt(sock, sockopt::RcvBuf).map_err(io::Error::from)
}

/// Reads one socket's datagrams with their age; owns the reusable control-message space.
pub struct StampedReceiver {
    cmsg: Vec<u8>,
}

impl StampedReceiver {
    /// Turn on receive stamps for `sock` (ignored where refused).
    pub fn new(sock: &UdpSocket) -> StampedReceiver {
        let _ = setsockopt(sock, sockopt::ReceiveTimestampns, &true);
        StampedReceiver {
            cmsg: nix::cmsg_space!(TimeSpec),
        }
    }

    /// The next datagram into `buf`: its length, sender and how long it waited.
    pub async fn recv(
        &mut self,
        sock: &UdpSocket,
        buf: &mut [u8],
    ) -> io::Result<(usize, SocketAddr, Duration)> {
        loop {
            sock.readable().await?;
            match sock.try_io(Interest::READABLE, || self.try_recv(sock, buf)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return r,
            }
        }
    }

    fn try_recv(
        &mut self,
        sock: &UdpSocket,
        buf: &mut [u8],
    ) -> io::Result<(usize, SocketAddr, Duration)> {
        let mut iov = [IoSliceMut::new(buf)];
        let msg = recvmsg::<SockaddrStorage>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut self.cmsg),
            MsgFlags::MSG_DONTWAIT,
        )
        .map_err(io::Error::from)?;
        let mut stamp = None;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmTimestampns(ts) = c {
                    stamp = Some(ts);
                }
            }
        }
        let from = msg
            .address
            .and_then(to_socket_addr)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no source address"))?;
        Ok((msg.bytes, from, age(stamp, SystemTime::now())))
    }
}

/// How long ago the kernel stamped a datagram; zero without a stamp or when the wall clock
/// stepped (a negative age, or one over a minute, is a clock change, not a wait).
fn age(stamp: Option<TimeSpec>, now: SystemTime) -> Duration {
    let Some(ts) = stamp else {
        return Duration::ZERO;
    };
    let Ok(now) = now.duration_since(UNIX_EPOCH) else {
        return Duration::ZERO;
    };
    let (Ok(secs), Ok(nanos)) = (u64::try_from(ts.tv_sec()), u32::try_from(ts.tv_nsec())) else {
        return Duration::ZERO;
    };
    let stamped = Duration::new(secs, nanos);
    match now.checked_sub(stamped) {
        Some(a) if a <= Duration::from_secs(60) => a,
        _ => Duration::ZERO,
    }
}

// In the leaf module `net` so `media::socket` can use it without depending on `runtime`.
pub use crate::net::to_socket_addr;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_from_stamp() {
        let now = UNIX_EPOCH + Duration::from_millis(10_250);
        let ts = TimeSpec::new(10, 0);
        assert_eq!(age(Some(ts), now), Duration::from_millis(250));
        assert_eq!(age(None, now), Duration::ZERO);
        // A stamp in the future or far in the past: the wall clock stepped.
        assert_eq!(age(Some(TimeSpec::new(11, 0)), now), Duration::ZERO);
        assert_eq!(
            age(Some(TimeSpec::new(0, 0)), now + Duration::from_secs(100)),
            Duration::ZERO
        );
    }

    #[tokio::test]
    async fn datagram_that_waited_reports_its_wait() {
        let rx = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let granted = set_receive_buffer(&rx, 1 << 20).expect("SO_RCVBUF");
        assert!(granted >= 256 << 10, "granted {granted}");
        let mut r = StampedReceiver::new(&rx);
        let to = rx.local_addr().expect("addr");
        // The kernel turns receive timestamps on (a static key) from a work queue after the
        // first socket asks for them; a datagram queued before that gets stamped when it is
        // read. One warm-up datagram lets that happen first (this flaked under load).
        let mut buf = [0u8; 64];
        tx.send_to(b"warm-up", to).expect("send");
        r.recv(&rx, &mut buf).await.expect("recv warm-up");
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx.send_to(b"INVITE", to).expect("send");
        std::thread::sleep(Duration::from_millis(60));
        let (n, from, waited) = r.recv(&rx, &mut buf).await.expect("recv");
        assert_eq!(&buf[..n], b"INVITE");
        assert_eq!(from, tx.local_addr().expect("addr"));
        assert!(
            waited >= Duration::from_millis(50) && waited < Duration::from_secs(5),
            "waited {waited:?}"
        );
    }
}
