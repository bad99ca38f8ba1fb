//! The RTP socket of one call leg: a non-blocking UDP socket that is **not** registered with
//! the async reactor while the call plays prompts, and registered only while it relays a
//! bridge.
//!
//! Why: a call that runs its own media session (IVR prompts, music on hold, a recording)
//! already wakes every 20 ms to send; receiving on that same tick — draining whatever
//! arrived since the last one — halves the wake-ups per call and takes the reactor
//! (`epoll_wait`, readiness bookkeeping, task wake-ups, the `EAGAIN` re-arm) off the
//! per-packet path entirely (docs/benchmarks.md, "Concurrent IVR calls"). Received audio
//! is at most one frame (20 ms) older when it is processed; that is below the jitter buffer's
//! own wait, and RFC 4733 digits still reach the dialplan in time for the next prompt to start
//! on the very tick the digit is seen.
//!
//! A bridged leg relays packets as they arrive (no added delay on a conversation), so while
//! relaying the actor takes a [`Readiness`] for the socket — one `epoll` registration,
//! dropped (deregistered) when the bridge ends or the caller is put on hold.

use std::cell::{Cell, RefCell};
use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::Interest;

use nix::sys::socket::{
    recvmmsg, recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, MultiHeaders,
    SockaddrStorage,
};
use nix::sys::time::TimeSpec;

use crate::net::to_socket_addr;

/// A call leg's bound, non-blocking RTP socket. Shared (`Arc`) between the two legs of a
/// bridge: each leg's actor sends the other leg's relayed packets from it.
#[derive(Debug)]
pub struct MediaSocket {
    sock: UdpSocket,
}

impl MediaSocket {
    /// Bind `addr` and make the socket non-blocking.
    pub fn bind(addr: SocketAddr) -> io::Result<MediaSocket> {
        let sock = UdpSocket::bind(addr)?;
        sock.set_nonblocking(true)?;
        // Kernel arrival stamps: a packet read on the tick after it arrived still gets its
        // true arrival time (RTCP interarrival jitter, DLSR). Without them (some
        // sandboxes refuse the option) the tick's time is used.
        let _ = setsockopt(&sock, sockopt::ReceiveTimestampns, &true);
        Ok(MediaSocket { sock })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// Send without waiting: a full socket buffer (`WouldBlock`) drops the packet, which is
    /// what real-time media wants (a late frame is worth nothing).
    pub fn try_send_to(&self, buf: &[u8], dest: SocketAddr) -> io::Result<usize> {
        self.sock.send_to(buf, dest)
    }

    /// Hand every waiting datagram to `f`, at most `limit` of them (a flood cannot keep a call
    /// in this loop). Returns how many were read.
    ///
    /// One `recvmmsg(2)` reads up to [`BATCH`] datagrams; a batch that comes back short means
    /// the socket is empty, so the usual tick (one packet waiting) costs one system call and
    /// not two (the packet, then the `EAGAIN`). The headers and buffers are per worker thread
    /// (allocated once, on the thread's first call): the call's task holds nothing for them.
    ///
    /// `f` gets each datagram with its arrival time: the kernel's receive stamp mapped onto
    /// the monotonic clock (at most `now`, and `now` when there is no stamp or the wall
    /// clock stepped).
    pub fn drain(
        &self,
        now: Instant,
        limit: usize,
        mut f: impl FnMut(&[u8], SocketAddr, Instant),
    ) -> usize {
        BATCH_STATE.with(|cell| match cell.try_borrow_mut() {
            Ok(mut state) => {
                let state = state.get_or_insert_with(Batch::new);
                let clock = Stamps::new(now);
                let mut n = 0;
                while n < limit {
                    let max = (limit - n).min(BATCH);
                    let got = state.receive(self.sock.as_raw_fd(), &clock, max, |p, from, at| {
                        n += 1;
                        f(p, from, at)
                    });
                    if got < max {
                        break;
                    }
                }
                n
            }
            // Re-entered from `f` (nothing does that): read nothing now; what waits stays in
            // the socket for the next tick.
            Err(_) => 0,
        })
    }
}

/// Maps kernel receive stamps (wall clock) onto `Instant`s. The wall clock is read once per
/// drain, and only when a stamped packet came (most ticks of a quiet socket read nothing).
struct Stamps {
    now: Instant,
    wall_ns: Cell<Option<i128>>,
}

impl Stamps {
    fn new(now: Instant) -> Stamps {
        Stamps {
            now,
            wall_ns: Cell::new(None),
        }
    }

    fn arrival(&self, stamp: Option<TimeSpec>) -> Instant {
        let Some(ts) = stamp else { return self.now };
        let wall_ns = self.wall_ns.get().unwrap_or_else(|| {
            let w = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i128);
            self.wall_ns.set(Some(w));
            w
        });
        let stamp_ns = i128::from(ts.tv_sec()) * 1_000_000_000 + i128::from(ts.tv_nsec());
        let age = wall_ns - stamp_ns;
        // A negative age or one over a second is a stepped wall clock, not a real wait.
        if !(0..=1_000_000_000).contains(&age) {
            return self.now;
        }
        self.now
            .checked_sub(Duration::from_nanos(age as u64))
            .unwrap_or(self.now)
    }
}

/// Datagrams per `recvmmsg` call.
pub const BATCH: usize = 4;
/// Largest datagram kept whole (an Ethernet MTU); longer ones are truncated, which the RTP
/// parser then refuses.
const MAX_DATAGRAM: usize = 1500;

thread_local! {
    static BATCH_STATE: RefCell<Option<Batch>> = const { RefCell::new(None) };
}

/// The `recvmmsg` headers and buffers of one worker thread.
struct Batch {
    headers: MultiHeaders<SockaddrStorage>,
    bufs: Box<[[u8; MAX_DATAGRAM]; BATCH]>,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            headers: MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(TimeSpec))),
            bufs: Box::new([[0u8; MAX_DATAGRAM]; BATCH]),
        }
    }

    /// One non-blocking `recvmmsg`; hands each datagram to `f`; how many came.
    fn receive(
        &mut self,
        fd: RawFd,
        clock: &Stamps,
        max: usize,
        mut f: impl FnMut(&[u8], SocketAddr, Instant),
    ) -> usize {
        let mut meta = [(0usize, None::<SocketAddr>, clock.now); BATCH];
        let got = {
            let [a, b, c, d] = &mut *self.bufs;
            let mut iovs = [
                [IoSliceMut::new(a)],
                [IoSliceMut::new(b)],
                [IoSliceMut::new(c)],
                [IoSliceMut::new(d)],
            ];
            match recvmmsg(
                fd,
                &mut self.headers,
                iovs.iter_mut().take(max),
                MsgFlags::MSG_DONTWAIT,
                None,
            ) {
                Ok(results) => {
                    let mut k = 0;
                    for r in results {
                        if k < BATCH {
                            let mut stamp = None;
                            if let Ok(cmsgs) = r.cmsgs() {
                                for c in cmsgs {
                                    if let ControlMessageOwned::ScmTimestampns(ts) = c {
                                        stamp = Some(ts);
                                    }
                                }
                            }
                            meta[k] = (
                                r.bytes.min(MAX_DATAGRAM),
                                r.address.and_then(to_socket_addr),
                                clock.arrival(stamp),
                            );
                            k += 1;
                        }
                    }
                    k
                }
                // EAGAIN (nothing waits) or an error that is not the call's business (an ICMP
                // port unreachable reported as ECONNREFUSED): nothing this tick.
                Err(_) => 0,
            }
        };
        for (buf, (len, from, at)) in self.bufs.iter().zip(meta).take(got) {
            if let Some(from) = from {
                f(&buf[..len], from, at);
            }
        }
        got
    }
}

/// Readiness notifications for a [`MediaSocket`] while a leg relays: a duplicate of its
/// descriptor registered with the reactor on creation and deregistered (then closed) on
/// drop; the socket itself stays open and unregistered. (A duplicate rather than the
/// socket itself because registering a borrowed descriptor needs `unsafe`, which this crate
/// forbids.)
#[derive(Debug)]
pub struct Readiness {
    watched: tokio::net::UdpSocket,
}

impl Readiness {
    /// Register (a duplicate of) `sock` with the current tokio reactor.
    pub fn new(sock: &MediaSocket) -> io::Result<Readiness> {
        let dup = sock.sock.try_clone()?;
        Ok(Readiness {
            watched: tokio::net::UdpSocket::from_std(dup)?,
        })
    }

    /// Wait until a datagram may be waiting.
    pub async fn readable(&self) -> io::Result<ReadyGuard<'_>> {
        self.watched.readable().await?;
        Ok(ReadyGuard { r: self })
    }
}

/// A readable socket; [`ReadyGuard::drain`] reads it.
pub struct ReadyGuard<'a> {
    r: &'a Readiness,
}

impl ReadyGuard<'_> {
    /// Like [`MediaSocket::drain`]; the readiness is cleared only when the socket reported
    /// `WouldBlock`, so nothing that arrived meanwhile is missed.
    pub fn drain(
        self,
        buf: &mut [u8],
        limit: usize,
        mut f: impl FnMut(&mut [u8], usize, SocketAddr),
    ) -> usize {
        let mut n = 0;
        while n < limit {
            match self.r.watched.try_recv_from(buf) {
                Ok((len, from)) => {
                    n += 1;
                    f(buf, len, from);
                }
                Err(_) => break,
            }
        }
        n
    }

    /// Like [`ReadyGuard::drain`], with each datagram's arrival: the kernel's receive stamp
    /// mapped onto the monotonic clock (at most `now`; `now` without a stamp), as
    /// [`MediaSocket::drain`] gives. One `recvmsg(2)` per datagram into `buf` and the
    /// caller's `cmsg` (from [`stamp_buffer`], allocated once by its owner: `recvmsg` only
    /// uses its capacity), so a packet costs no allocation.
    pub fn drain_stamped(
        self,
        now: Instant,
        buf: &mut [u8],
        cmsg: &mut Vec<u8>,
        limit: usize,
        mut f: impl FnMut(&mut [u8], usize, SocketAddr, Instant),
    ) -> usize {
        let clock = Stamps::new(now);
        let fd = self.r.watched.as_raw_fd();
        let mut n = 0;
        while n < limit {
            let got = self.r.watched.try_io(Interest::READABLE, || {
                let mut iov = [IoSliceMut::new(&mut *buf)];
                let m = recvmsg::<SockaddrStorage>(
                    fd,
                    &mut iov,
                    Some(&mut *cmsg),
                    MsgFlags::MSG_DONTWAIT,
                )
                .map_err(io::Error::from)?;
                let mut stamp = None;
                if let Ok(cmsgs) = m.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::ScmTimestampns(ts) = c {
                            stamp = Some(ts);
                        }
                    }
                }
                Ok((m.bytes, m.address.and_then(to_socket_addr), stamp))
            });
            // `WouldBlock` (readiness cleared by `try_io`) or an error: done for now.
            let Ok((len, from, stamp)) = got else { break };
            n += 1;
            if let Some(from) = from {
                let len = len.min(buf.len());
                f(buf, len, from, clock.arrival(stamp));
            }
        }
        n
    }
}

/// A control-message buffer for [`ReadyGuard::drain_stamped`]: room for one receive stamp.
pub fn stamp_buffer() -> Vec<u8> {
    nix::cmsg_space!(TimeSpec)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;

    fn pair() -> (Arc<MediaSocket>, UdpSocket) {
        let a = MediaSocket::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let b = UdpSocket::bind("127.0.0.1:0").expect("bind");
        (Arc::new(a), b)
    }

    #[test]
    fn drain_reads_what_waits_and_stops_at_the_limit() {
        let (a, b) = pair();
        let to = a.local_addr().expect("addr");
        let before_send = Instant::now();
        for i in 0..5u8 {
            b.send_to(&[i; 12], to).expect("send");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut seen = Vec::new();
        let from = b.local_addr().expect("addr");
        std::thread::sleep(std::time::Duration::from_millis(30));
        let now = Instant::now();
        let mut ages = Vec::new();
        assert_eq!(
            a.drain(now, 3, |p, f, at| {
                seen.push((p.len(), p[0], f));
                ages.push(now - at);
            }),
            3
        );
        assert_eq!(a.drain(now, 8, |p, f, _| seen.push((p.len(), p[0], f))), 2);
        assert_eq!(a.drain(now, 8, |_, _, _| {}), 0);
        // Kernel stamps: each packet arrived after it was sent (with slack for the stamp's
        // mapping, which reads the wall clock after `now`) and before it was read (a read
        // without a stamp would give `now` itself, age zero). Usually 30 ms or more before
        // `now`, but on a loaded box the loopback softirq may deliver, and stamp, it later.
        let slack = std::time::Duration::from_millis(5);
        for age in ages {
            assert!(age > std::time::Duration::ZERO, "no kernel stamp used");
            assert!(
                age <= now - before_send + slack,
                "arrival {age:?} before now, before sending"
            );
        }
        let want: Vec<_> = (0..5u8).map(|i| (12, i, from)).collect();
        assert_eq!(seen, want);
        // More than one batch waiting, sizes kept per datagram.
        for i in 0..(BATCH as u8 * 2 + 1) {
            b.send_to(&vec![i; 20 + usize::from(i)], to).expect("send");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut sizes = Vec::new();
        assert_eq!(
            a.drain(Instant::now(), 64, |p, _, _| sizes.push(p.len())),
            BATCH * 2 + 1
        );
        assert_eq!(
            sizes,
            (0..BATCH * 2 + 1).map(|i| 20 + i).collect::<Vec<_>>()
        );
    }

    /// The readiness drain with kernel stamps: each datagram, its source and an arrival
    /// between its send and the read; the control buffer is reused, not grown.
    #[tokio::test]
    async fn stamped_drain_gives_each_datagram_its_arrival() {
        let (a, b) = pair();
        let to = a.local_addr().expect("addr");
        let ready = Readiness::new(&a).expect("register");
        let before = Instant::now();
        b.send_to(&[1; 12], to).expect("send");
        b.send_to(&[2; 20], to).expect("send");
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        let g = tokio::time::timeout(std::time::Duration::from_secs(2), ready.readable())
            .await
            .expect("woken")
            .expect("readable");
        let mut buf = [0u8; 64];
        let mut cmsg = stamp_buffer();
        let capacity = cmsg.capacity();
        let now = Instant::now();
        let mut got = Vec::new();
        let n = g.drain_stamped(now, &mut buf, &mut cmsg, 16, |p, len, from, at| {
            got.push((p[0], len, from, now - at));
        });
        assert_eq!(n, 2);
        let from = b.local_addr().expect("addr");
        assert_eq!(
            got.iter().map(|g| (g.0, g.1, g.2)).collect::<Vec<_>>(),
            [(1, 12, from), (2, 20, from)]
        );
        let slack = std::time::Duration::from_millis(5);
        for (_, _, _, age) in got {
            assert!(age > std::time::Duration::ZERO, "no kernel stamp used");
            assert!(
                age <= now - before + slack,
                "arrival {age:?} before the send"
            );
        }
        assert_eq!(cmsg.capacity(), capacity);
        // Drained: the readiness was cleared and nothing else wakes it.
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), ready.readable())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn readiness_wakes_on_arrival_and_rearms_after_draining() {
        let (a, b) = pair();
        let to = a.local_addr().expect("addr");
        let ready = Readiness::new(&a).expect("register");
        let mut buf = [0u8; 64];
        for round in 0..3u8 {
            b.send_to(&[round; 4], to).expect("send");
            let g = tokio::time::timeout(std::time::Duration::from_secs(2), ready.readable())
                .await
                .expect("woken")
                .expect("readable");
            let mut got = Vec::new();
            g.drain(&mut buf, 16, |p, n, _| got.push(p[..n].to_vec()));
            assert_eq!(got, vec![vec![round; 4]]);
        }
        // Nothing waits: no wake-up.
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), ready.readable())
                .await
                .is_err()
        );
        drop(ready);
        // Deregistered, the socket still works for tick-driven reads.
        b.send_to(&[9; 4], to).expect("send");
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(a.drain(Instant::now(), 4, |_, _, _| {}), 1);
    }
}
