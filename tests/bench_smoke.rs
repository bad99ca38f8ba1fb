//! Every benchmark script under `bench/` in its smoke mode (`SMOKE=1`: a small N for a few
//! seconds on the debug build), so a benchmark cannot rot unnoticed (issue: the campaign
//! farm script died at start for weeks after the scenario gained a pcap it did not make).
//!
//! A script fails its smoke run only when the run itself breaks — a build or SIPp error,
//! the server dying, a figure missing from the output — never because of the figures,
//! which stay out of pass/fail. A new `bench/*.sh` must be added to [`SCRIPTS`] (the test
//! fails until it is), so every script gets a smoke mode.
//!
//! The scripts build their example tools with `cargo build --example X` (debug profile, no
//! release build) and take the server from `SWITCHBOARD_BIN` (this test's own binary).
//! `bench/campaign_farm.sh` needs root (SIPp plays RTP through a raw socket) and SIPp
//! (`SWITCHBOARD_SIPP` or `sipp` on PATH), like the campaign tests; `bench/cluster.sh` also
//! needs Kamailio and PostgreSQL's server binaries (deploy/cluster.sh starts both).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Every script in `bench/`, in the order they run.
const SCRIPTS: &[&str] = &[
    "acd.sh",
    "campaign_list.sh",
    "store.sh",
    "sip_cps.sh",
    "ivr_load.sh",
    "campaign_farm.sh",
    "cluster.sh",
    "reports.sh",
    "wallboard.sh",
    "webrtc_load.sh",
];

/// The most one smoke run may take (the first one may build its example tool on a loaded
/// 2-core machine; the runs themselves take seconds).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(600);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn bench_scripts_on_disk() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("bench"))
        .expect("read bench/")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sh"))
        .collect();
    names.sort();
    names
}

/// PATH with SIPp's folder first when `SWITCHBOARD_SIPP` names it.
fn path_with_sipp() -> std::ffi::OsString {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Ok(sipp) = std::env::var("SWITCHBOARD_SIPP") {
        if let Some(dir) = Path::new(&sipp).parent() {
            dirs.push(dir.to_path_buf());
        }
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    dirs.extend(std::env::split_paths(&path));
    std::env::join_paths(dirs).expect("PATH")
}

/// One script with SMOKE=1; Err with its output when it fails or overruns.
fn smoke(script: &str) -> Result<Duration, String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    let t0 = Instant::now();
    let mut cmd = Command::new("bash");
    // What cargo sets for this test (CARGO_PKG_NAME, CARGO_MANIFEST_DIR, ...) would reach
    // the script's `cargo build --example`, and build scripts that watch those variables
    // (ring's) would rebuild — and again for the next `cargo test`. The script gets the
    // environment a developer's shell has.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
            "CARGO_CFG_",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_TARGET_TMPDIR",
            "CARGO_RUSTC_CURRENT_DIR",
        ]
        .iter()
        .any(|p| key.starts_with(p))
        {
            cmd.env_remove(&*key);
        }
    }
    let mut child = cmd
        .arg(root().join("bench").join(script))
        .current_dir(root())
        .env("SMOKE", "1")
        .env("SWITCHBOARD_BIN", env!("CARGO_BIN_EXE_switchboard"))
        .env("PATH", path_with_sipp())
        // Never a database of the developer's: the smoke runs are SQLite only.
        .env_remove("SWITCHBOARD_BENCH_PG_URL")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("output file"))
        .stderr(std::fs::File::create(dir.path().join("err")).expect("error file"))
        .spawn()
        .map_err(|e| format!("cannot run bash: {e}"))?;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for the script") {
            break Some(st);
        }
        if t0.elapsed() > SCRIPT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = format!(
        "---- stdout ----\n{}\n---- stderr ----\n{}",
        std::fs::read_to_string(&out).unwrap_or_default(),
        std::fs::read_to_string(dir.path().join("err")).unwrap_or_default()
    );
    match status {
        Some(st) if st.success() && text.contains("smoke: ok") => Ok(t0.elapsed()),
        Some(st) if st.success() => Err(format!("exited 0 without `smoke: ok`\n{text}")),
        Some(st) => Err(format!("failed with {st}\n{text}")),
        None => Err(format!("still running after {SCRIPT_TIMEOUT:?}\n{text}")),
    }
}

/// The list above is the list on disk: a new script cannot escape its smoke run.
#[test]
fn every_bench_script_is_in_the_smoke_list() {
    let mut listed: Vec<String> = SCRIPTS.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(
        bench_scripts_on_disk(),
        listed,
        "bench/*.sh and SCRIPTS in tests/bench_smoke.rs differ: give a new script a SMOKE=1 \
         mode and add it to SCRIPTS"
    );
}

#[test]
fn every_bench_script_runs_in_smoke_mode() {
    let mut failures = Vec::new();
    for script in SCRIPTS {
        match smoke(script) {
            Ok(took) => eprintln!("bench/{script}: smoke ok in {:.1} s", took.as_secs_f64()),
            Err(e) => failures.push(format!("==== bench/{script} ====\n{e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bench scripts broke in smoke mode:\n{}",
        failures.len(),
        SCRIPTS.len(),
        failures.join("\n")
    );
}
