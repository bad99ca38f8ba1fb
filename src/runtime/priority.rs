//! Real-time scheduling for the server's threads (`[server] realtime_priority`).
//!
//! Every call's 20 ms send tick must leave on time even when the box is busy with other
//! work (a load generator, a backup, a compile). Under the default time-sharing policy a
//! runnable worker thread can wait several milliseconds behind another process's time
//! slice, which shows up directly as send-interval jitter on every call that worker owns
//! (docs/benchmarks.md, "Real-time priority"). Telephony servers have long solved this the
//! same way: Asterisk's `-p` runs it at `SCHED_RR` priority 10, FreeSWITCH's `-rp` at a
//! real-time FIFO priority. switchboard does the same, on by default, and carries on at
//! normal priority when the system does not allow it (no `CAP_SYS_NICE`, `RLIMIT_RTPRIO`
//! too low, a container without the capability).
//!
//! The policy is set on the calling thread before the runtime starts: threads created
//! afterwards (tokio workers, the blocking pool, SQLite's worker) inherit it, so the whole
//! server runs at one priority. The kernel's real-time throttling
//! (`/proc/sys/kernel/sched_rt_runtime_us`, 95 % by default) still leaves the rest of the
//! system a share of each CPU should a thread ever spin.

use thread_priority::{
    RealtimeThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
};

/// Highest `SCHED_RR` priority Linux accepts.
pub const MAX_PRIORITY: u8 = 99;

/// Why the real-time policy could not be set.
#[derive(Debug, thiserror::Error)]
pub enum PriorityError {
    #[error("real-time priority {0} is outside 1-{MAX_PRIORITY}")]
    OutOfRange(u8),
    /// EPERM: neither `CAP_SYS_NICE` nor a high enough `RLIMIT_RTPRIO`.
    #[error("not permitted (needs CAP_SYS_NICE or RLIMIT_RTPRIO >= the priority)")]
    NotPermitted,
    #[error("{0}")]
    Os(String),
}

/// Puts the calling thread under `SCHED_RR` at `priority` (1-99). Threads it creates later
/// inherit the policy.
pub fn set_realtime(priority: u8) -> Result<(), PriorityError> {
    if !(1..=MAX_PRIORITY).contains(&priority) {
        return Err(PriorityError::OutOfRange(priority));
    }
    let value =
        ThreadPriorityValue::try_from(priority).map_err(|_| PriorityError::OutOfRange(priority))?;
    thread_priority::set_thread_priority_and_policy(
        thread_priority::thread_native_id(),
        ThreadPriority::Crossplatform(value),
        ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::RoundRobin),
    )
    .map_err(|e| match e {
        thread_priority::Error::OS(code) if code == EPERM => PriorityError::NotPermitted,
        other => PriorityError::Os(other.to_string()),
    })
}

/// The calling thread's policy and priority, as the kernel reports them: `Some(priority)`
/// under `SCHED_RR`/`SCHED_FIFO`, `None` under a time-sharing policy.
pub fn current_realtime_priority() -> Option<u8> {
    let tid = thread_priority::thread_native_id();
    match thread_priority::thread_schedule_policy_param(tid) {
        Ok((ThreadSchedulePolicy::Realtime(_), param)) => u8::try_from(param.sched_priority).ok(),
        _ => None,
    }
}

const EPERM: i32 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_is_refused_before_the_kernel_is_asked() {
        assert!(matches!(set_realtime(0), Err(PriorityError::OutOfRange(0))));
        assert!(matches!(
            set_realtime(100),
            Err(PriorityError::OutOfRange(100))
        ));
    }

    #[test]
    fn threads_created_after_inherit_the_policy() {
        // On a thread of its own: the test harness's threads keep their policy.
        let outcome = std::thread::spawn(|| {
            let set = set_realtime(7);
            let child = std::thread::spawn(current_realtime_priority).join();
            (set, current_realtime_priority(), child)
        })
        .join();
        let Ok((set, here, child)) = outcome else {
            panic!("test thread panicked");
        };
        match set {
            Ok(()) => {
                assert_eq!(here, Some(7));
                assert_eq!(child.ok().flatten(), Some(7), "a later thread inherits");
            }
            // Without the capability the kernel must have left the thread alone.
            Err(PriorityError::NotPermitted) => assert_eq!(here, None),
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
}
