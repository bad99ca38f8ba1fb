//! What the load tools read of a process in `/proc` (shared by `ivr_load` and
//! `webrtc_load` through `#[path]`; not an example of its own: Cargo only takes
//! `examples/*.rs` and `examples/*/main.rs`).

/// The resident set (KiB, `VmRSS` of `/proc/PID/status`) and the CPU time (clock ticks,
/// utime + stime of `/proc/PID/stat`) of `pid`; zeros for what cannot be read.
pub fn rss_kib_and_cpu_ticks(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the ")" that closes the command name: utime and stime are 14 and 15.
    let cpu_ticks = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let get = |k: usize| f.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            get(11) + get(12)
        })
        .unwrap_or(0);
    (rss_kib, cpu_ticks)
}
