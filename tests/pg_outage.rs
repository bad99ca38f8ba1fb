//! Database outage (issue: the shared ticket database): PostgreSQL is stopped while a call is
//! in progress; the call goes on (no media or IVR step waits on the database), its records go
//! to the spool, and when PostgreSQL is back they arrive exactly once — call record, keypad
//! events, outcome and the ticket's resolution. Uses its own throwaway PostgreSQL server so
//! it can stop and start it.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::Row;
use support::{free_port, http_get_status, is_root, repo_root, Scenario, SippProcess};

fn pg_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// Run a PostgreSQL server binary, as the `postgres` user when we are root.
fn pg(bin: &Path, tool: &str, args: &[&str], cwd: &Path) -> bool {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    };
    cmd.args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.status().map(|s| s.success()).unwrap_or(false)
}

struct Pg {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl Pg {
    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }
    fn start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        assert!(
            pg(
                &self.bin,
                "pg_ctl",
                &["-D", &self.data(), "-o", &opts, "-w", "-t", "30", "start"],
                self.dir.path()
            ),
            "pg_ctl start failed"
        );
    }
    fn stop(&self) {
        assert!(
            pg(
                &self.bin,
                "pg_ctl",
                &["-D", &self.data(), "-m", "fast", "-w", "-t", "30", "stop"],
                self.dir.path()
            ),
            "pg_ctl stop failed"
        );
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        pg(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-m",
                "immediate",
                "-w",
                "-t",
                "10",
                "stop",
            ],
            self.dir.path(),
        );
    }
}

#[test]
fn postgres_outage_during_a_call_loses_nothing_and_duplicates_nothing() {
    let Some(bin) = pg_bin() else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must have PostgreSQL server binaries (scripts/test installs them)"
        );
        eprintln!("PostgreSQL server binaries not found: skipped");
        return;
    };
    let dir = tempfile::Builder::new()
        .prefix("switchboard-pg-outage-")
        .tempdir()
        .expect("dir");
    if is_root() {
        let _ = Command::new("chown")
            .args(["-R", "postgres:"])
            .arg(dir.path())
            .status();
    }
    let pg_srv = Pg {
        bin: bin.clone(),
        port: free_port(),
        dir,
    };
    assert!(
        pg(
            &bin,
            "initdb",
            &[
                "-D",
                &pg_srv.data(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--no-locale"
            ],
            pg_srv.dir.path()
        ),
        "initdb failed"
    );
    pg_srv.start();
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", pg_srv.port);

    // The server, with its spool in a temp folder.
    let work = tempfile::tempdir().expect("work dir");
    let default = std::fs::read_to_string(repo_root().join("config/default.toml")).expect("config");
    let spool = work.path().join("spool");
    let cfg: String = default
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("spool_dir") {
                format!("spool_dir = {:?}", spool.display().to_string())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(work.path().join("config.toml"), cfg).expect("write config");
    let (sip_port, http_port) = (free_port(), free_port());
    let rtp = support::rtp_range();
    let mut server = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("--config")
        .arg(work.path().join("config.toml"))
        .args([
            "--database",
            &url,
            "--sip-listen",
            &format!("127.0.0.1:{sip_port}"),
            "--http-listen",
            &format!("127.0.0.1:{http_port}"),
        ])
        .args(["--rtp-ports", &format!("{}-{}", rtp.0, rtp.1)])
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.path().join("server.log")).expect("log"))
        .spawn()
        .expect("start server");
    let http = std::net::SocketAddr::from(([127, 0, 0, 1], http_port));
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get_status(http, "/healthz") != Some(200) {
        assert!(Instant::now() < deadline, "server never healthy");
        std::thread::sleep(Duration::from_millis(100));
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let count = |sql: &str| -> Option<i64> {
        rt.block_on(async {
            let pool = sqlx::PgPool::connect(&url).await.ok()?;
            let n = sqlx::query(sql)
                .fetch_one(&pool)
                .await
                .ok()?
                .try_get::<i64, _>(0)
                .ok();
            pool.close().await;
            n
        })
    };

    // The refund call: 2 at 1.5 s (delayed order), 2 at 9 s (refund).
    let sipp_dir = work.path().join("sipp");
    std::fs::create_dir_all(&sipp_dir).expect("sipp dir");
    let call = SippProcess::spawn(
        &Scenario::call_with_digits(&[(1500, '2'), (9000, '2')], 1000, 20_000),
        std::net::SocketAddr::from(([127, 0, 0, 1], sip_port)),
        &sipp_dir,
        &["-set", "caller", "+15551230001"],
    );
    // Once the caller's ticket has been found (the one read this call needs), take the
    // database away for the rest of the call: the refund choice, the outcome and the end
    // must then travel through the spool.
    let deadline = Instant::now() + Duration::from_secs(10);
    while count("SELECT COUNT(*) FROM call_events WHERE kind = 'lookup' AND detail = 'found'")
        != Some(1)
    {
        assert!(Instant::now() < deadline, "ticket lookup never recorded");
        std::thread::sleep(Duration::from_millis(50));
    }
    pg_srv.stop();
    let run = call.wait();
    let log = std::fs::read_to_string(work.path().join("server.log")).unwrap_or_default();
    assert_eq!(
        run.code,
        Some(0),
        "the call must complete while the database is down\n{}\n{log}",
        run.text
    );
    assert!(
        spool.join("spool.jsonl").exists(),
        "records were spooled\n{log}"
    );

    pg_srv.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done = count("SELECT COUNT(*) FROM call_records WHERE ended_at IS NOT NULL") == Some(1)
            && count("SELECT COUNT(*) FROM call_outcomes WHERE choice = 'refund'") == Some(1);
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "spooled records never arrived\n{}",
            std::fs::read_to_string(work.path().join("server.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(count("SELECT COUNT(*) FROM call_records"), Some(1));
    assert_eq!(
        count("SELECT COUNT(*) FROM call_events WHERE kind = 'dtmf'"),
        Some(2),
        "both key presses, once each"
    );
    assert_eq!(count("SELECT COUNT(*) FROM refund_requests"), Some(1));
    assert_eq!(
        count("SELECT COUNT(*) FROM tickets WHERE order_id = '1001' AND resolution = 'refund'"),
        Some(1)
    );
    let _ = server.kill();
    let _ = server.wait();
}
