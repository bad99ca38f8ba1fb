//! The call runtime: the threads that run call tasks (and with them every call's 20 ms media
//! tick), apart from the threads that run signalling, the store and the API.
//!
//! Why two runtimes: the media tick wants real-time scheduling (a send that waits behind
//! another process's time slice is late on the wire: docs/benchmarks.md, "Concurrent IVR
//! calls"), and signalling must not have it. When the whole server ran at `SCHED_RR`, 2 000
//! call set-ups per second starved the callers' own user agent on the same box; its
//! retransmissions then multiplied the server's work (docs/benchmarks.md, "Overload and the
//! default priority"). So only call tasks get `[server] realtime_priority`; the router,
//! transports, registrar, ACD, dialer, store writer and HTTP stay at normal priority, where
//! they compete on equal terms with a co-located PostgreSQL, Kamailio or SIPp.
//!
//! That split also bounds what real time can take: the router, at normal priority, is the
//! canary. Real-time call work that crowds out normal processes delays the router's reading
//! of its socket, and overload control (`call::router`, `[server] overload_queue_ms`) then
//! refuses new calls until the backlog clears, so the real-time load cannot keep growing.
//! [`CallLag`] is the second signal: how late the call runtime itself runs.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::priority;

/// What the call threads got: `0` not asked, `1..=99` the `SCHED_RR` priority they run at,
/// [`REFUSED`] asked but refused by the kernel.
static CALL_THREAD_PRIORITY: AtomicU8 = AtomicU8::new(0);
const REFUSED: u8 = 255;

/// The call runtime as the kernel scheduled its threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallPriority {
    /// `realtime_priority = 0`: normal time-sharing.
    Normal,
    /// Call threads run under `SCHED_RR` at this priority.
    Realtime(u8),
    /// Real time was asked for and the kernel refused it (no `CAP_SYS_NICE`).
    Refused,
}

/// What the call threads run at (read after [`build`]).
pub fn call_priority() -> CallPriority {
    match CALL_THREAD_PRIORITY.load(Ordering::Relaxed) {
        0 => CallPriority::Normal,
        REFUSED => CallPriority::Refused,
        p => CallPriority::Realtime(p),
    }
}

/// A multi-threaded runtime for call tasks, `threads` workers (0: one per core), its threads
/// at `SCHED_RR` `realtime_priority` when that is not 0 (and the system allows it;
/// otherwise they run at normal priority and [`call_priority`] says `Refused`).
pub fn build(realtime_priority: u8, threads: usize) -> io::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = if threads == 0 { cores } else { threads };
    let started = Arc::new(AtomicUsize::new(0));
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all()
        .worker_threads(workers)
        .thread_name("switchboard-call");
    if realtime_priority > 0 {
        let started = started.clone();
        b.on_thread_start(move || {
            // A refusal on any thread is what call_priority() reports.
            match priority::set_realtime(realtime_priority) {
                Ok(()) => {
                    let _ = CALL_THREAD_PRIORITY.compare_exchange(
                        0,
                        realtime_priority,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
                Err(_) => CALL_THREAD_PRIORITY.store(REFUSED, Ordering::Relaxed),
            }
            started.fetch_add(1, Ordering::Release);
        });
    }
    let rt = b.build()?;
    if realtime_priority > 0 {
        // The workers start on their own threads: wait (briefly) until each has set its
        // policy, so the start-up log and the banner say what the kernel gave them.
        let deadline = Instant::now() + Duration::from_secs(2);
        while started.load(Ordering::Acquire) < workers && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(rt)
}

/// How late the call runtime runs: a probe task on it wakes every [`PROBE_PERIOD`] and
/// stamps when it ran. The router reads the stamp: a probe that has not run for longer
/// than its period means every call task is waiting that long too — including when the
/// runtime is so busy that the probe never runs at all (a stale stamp, not a stale
/// measurement).
#[derive(Debug)]
pub struct CallLag {
    base: Instant,
    /// Microseconds since `base` at the probe's last wake-up.
    last_run_us: AtomicU64,
}

/// The probe's period: short against the 150 ms default limit, long against its own cost
/// (one timer wake-up per 10 ms).
pub const PROBE_PERIOD: Duration = Duration::from_millis(10);

impl CallLag {
    pub fn new() -> Arc<CallLag> {
        Arc::new(CallLag {
            base: Instant::now(),
            last_run_us: AtomicU64::new(0),
        })
    }

    fn stamp(&self, now: Instant) {
        let us = now.saturating_duration_since(self.base).as_micros();
        self.last_run_us
            .store(u64::try_from(us).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// How far behind the call runtime is at `now`: the time since the probe last ran,
    /// beyond its period. Zero when it keeps up.
    pub fn lag(&self, now: Instant) -> Duration {
        let last = Duration::from_micros(self.last_run_us.load(Ordering::Relaxed));
        now.saturating_duration_since(self.base)
            .saturating_sub(last)
            .saturating_sub(PROBE_PERIOD)
    }

    /// The probe: run it on the call runtime until `stop`.
    pub async fn probe(self: Arc<Self>, stop: CancellationToken) {
        self.stamp(Instant::now());
        let mut interval = tokio::time::interval(PROBE_PERIOD);
        // A probe that fell behind does not catch up in a burst: the next stamp is what
        // matters, not how many were missed.
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = interval.tick() => self.stamp(Instant::now()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_the_time_since_the_last_stamp_beyond_the_period() {
        let lag = CallLag::new();
        let t0 = lag.base;
        lag.stamp(t0 + Duration::from_millis(100));
        assert_eq!(lag.lag(t0 + Duration::from_millis(105)), Duration::ZERO);
        assert_eq!(
            lag.lag(t0 + Duration::from_millis(110)),
            Duration::ZERO,
            "one period without a stamp is on time"
        );
        assert_eq!(
            lag.lag(t0 + Duration::from_millis(300)),
            Duration::from_millis(190),
            "a probe that never ran again shows the whole wait"
        );
        lag.stamp(t0 + Duration::from_millis(300));
        assert_eq!(lag.lag(t0 + Duration::from_millis(301)), Duration::ZERO);
    }

    #[test]
    fn a_blocked_call_runtime_shows_as_lag_even_though_its_probe_cannot_run() {
        let lag = CallLag::new();
        let stop = CancellationToken::new();
        let (rt_lag, rt_stop) = (lag.clone(), stop.clone());
        let (block_tx, block_rx) = std::sync::mpsc::channel::<()>();
        let runner = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let Ok(rt) = rt else { return };
            rt.block_on(async move {
                let probe = tokio::spawn(rt_lag.probe(rt_stop));
                // The test tells us when to hog the runtime's only thread.
                let _ = tokio::task::spawn_blocking(move || block_rx.recv()).await;
                tokio::task::spawn(async { std::thread::sleep(Duration::from_millis(300)) })
                    .await
                    .ok();
                let _ = probe.await;
            });
        });
        std::thread::sleep(Duration::from_millis(80));
        let idle = lag.lag(Instant::now());
        assert!(
            idle < Duration::from_millis(40),
            "idle runtime lags {idle:?}"
        );
        assert!(block_tx.send(()).is_ok());
        std::thread::sleep(Duration::from_millis(200));
        let busy = lag.lag(Instant::now());
        assert!(
            busy >= Duration::from_millis(120),
            "a runtime blocked for 200 ms shows only {busy:?}"
        );
        stop.cancel();
        assert!(runner.join().is_ok());
    }
}
