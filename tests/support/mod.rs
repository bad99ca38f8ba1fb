//! Shared harness for the black-box tests: the real `switchboard` binary as a child process
//! (free loopback ports, its own temporary SQLite database and spool), SIPp driven through the
//! `sip-test/` scenarios, and a raw UDP SIP client for protocol edge cases.
//!
//! Everything is bounded by a timeout and everything started here is stopped on drop, so
//! tests finish by themselves and can run two at a time (`--test-threads=2`).

// Each test binary uses only part of this module.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{Column, Row, TypeInfo, ValueRef};
use tempfile::TempDir;

pub const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// The project root: the server runs here so `dialplans/` and `audio/` are found.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

// ---- ports ---------------------------------------------------------------------------------

/// Ports handed out by this process, so two tests never get the same one.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

fn claim(port: u16) -> bool {
    let mut g = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    g.get_or_insert_with(HashSet::new).insert(port)
}

pub fn udp_free(port: u16) -> bool {
    UdpSocket::bind((LOCALHOST, port)).is_ok()
}

/// A loopback port that is free for both TCP and UDP right now (SIP listens on both).
pub fn free_port() -> u16 {
    for _ in 0..200 {
        let tcp = TcpListener::bind((LOCALHOST, 0)).expect("bind 127.0.0.1:0/tcp");
        let port = tcp.local_addr().expect("local addr").port();
        if udp_free(port) && claim(port) {
            return port;
        }
    }
    panic!("no loopback port free for both TCP and UDP after 200 tries");
}

/// Ports below the kernel's ephemeral range (32768+), so they never collide with
/// `free_port()`: server RTP ranges in 10000-19999, SIPp media ports in 20000-29999.
/// Server ranges come from one cursor counted in ports, not in blocks: ranges of different
/// sizes (40 for most servers, 400 for the large campaign) never overlap until the cursor
/// has gone round all 10 000 ports. (Two allocators of differently sized blocks over the
/// same span once gave a test a port another test's SIPp was still playing DTMF to.)
static RTP_CURSOR: Mutex<Option<u32>> = Mutex::new(None);
static MEDIA_BLOCK: AtomicU32 = AtomicU32::new(0);

fn pid_offset(slots: u32) -> u32 {
    std::process::id() % slots
}

/// A distinct range of `size` RTP ports for one server, all free now. The server skips
/// ports in use, so a range only has to be distinct from the other servers of this run.
pub fn rtp_ports(size: u32) -> (u16, u16) {
    const BASE: u32 = 10_000;
    const SPAN: u32 = 10_000;
    assert!(size > 0 && size <= SPAN, "RTP range of {size} ports");
    let mut cursor = RTP_CURSOR.lock().unwrap_or_else(|p| p.into_inner());
    // Parallel test binaries start at different places (the pid spreads them apart).
    let at = cursor.get_or_insert_with(|| pid_offset(SPAN / 40) * 40);
    for _ in 0..=SPAN / size {
        if *at + size > SPAN {
            *at = 0;
        }
        let lo = BASE + *at;
        *at += size;
        if (lo..lo + size).all(|p| udp_free(p as u16)) {
            return (lo as u16, (lo + size - 1) as u16);
        }
    }
    panic!(
        "no free range of {size} UDP ports in {BASE}..{}",
        BASE + SPAN
    );
}

/// A distinct RTP range (40 ports) for one server.
pub fn rtp_range() -> (u16, u16) {
    rtp_ports(40)
}

/// An even SIPp `-mp` port whose block `p..p+3` is free (SIPp binds `-mp` and `-mp`+2).
pub fn sipp_media_port() -> u16 {
    const SLOTS: u32 = 10_000 / 4;
    for _ in 0..SLOTS {
        let n = (MEDIA_BLOCK.fetch_add(1, Ordering::Relaxed) + pid_offset(SLOTS) * 13) % SLOTS;
        let p = (20_000 + n * 4) as u16;
        if (p..p + 4).all(udp_free) && claim(p) {
            return p;
        }
    }
    panic!("no free 4-port UDP block for SIPp media in 20000-29999");
}

// ---- waiting -------------------------------------------------------------------------------

/// Poll `f` every 50 ms until it returns Some, or panic after `timeout` naming `what`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait for a child to exit, at most `timeout`.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => std::thread::sleep(Duration::from_millis(25)),
            Err(e) => panic!("waiting for child {}: {e}", child.id()),
        }
    }
}

pub fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---- HTTP ----------------------------------------------------------------------------------

/// A minimal HTTP/1.1 GET: returns the status code, None when nothing answers.
pub fn http_get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    http_get(addr, path).map(|(code, _)| code)
}

/// A minimal HTTP/1.1 GET: the status code and the body (not de-chunked: the API answers
/// with Content-Length), None when nothing answers.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    http_get_with(addr, path, None)
}

/// [`http_get`] with `Authorization: Bearer <token>` when a token is given.
pub fn http_get_with(addr: SocketAddr, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    http_get_over(addr, path, token, None)
}

/// A client configuration that trusts exactly `cert` (a test's self-signed certificate):
/// for a server started with `[http] tls_cert` ([`Server::start_https_at`]).
pub fn trusting(cert: rustls::pki_types::CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("trust the test certificate");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(config)
}

/// [`http_get_with`] over TLS trusting `tls` when given (the server's name is its IP
/// address, which the certificate must list).
fn http_get_over(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    tls: Option<&rustls::pki_types::CertificateDer<'static>>,
) -> Option<(u16, String)> {
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    tcp.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut s: Box<dyn ReadWrite> = match tls {
        None => Box::new(tcp),
        Some(cert) => {
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            let conn = rustls::ClientConnection::new(trusting(cert.clone()), name).ok()?;
            Box::new(rustls::StreamOwned::new(conn, tcp))
        }
    };
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    // A TLS server may close without close_notify: what was read still counts.
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .lines()
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Some((status, body))
}

/// A byte stream, plain or TLS.
trait ReadWrite: std::io::Read + std::io::Write {}
impl<T: std::io::Read + std::io::Write> ReadWrite for T {}

// ---- the server under test -----------------------------------------------------------------

/// The `switchboard` binary as a child process; killed (if still running) on drop.
pub struct Server {
    child: Child,
    exited: Option<ExitStatus>,
    pub sip_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub rtp_ports: (u16, u16),
    pub db_path: PathBuf,
    /// `--api-token` when the test gave one (else the banner has the generated token).
    api_token: Option<String>,
    /// The HTTP port speaks HTTPS (`[http] tls_cert`): its certificate, which the test's
    /// requests trust (kept as bytes: a client config is not unwind-safe, and tests catch
    /// panics around a `Server`).
    tls: Option<rustls::pki_types::CertificateDer<'static>>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    sipp_runs: AtomicU32,
    /// The command line, for [`Server::restart`].
    args: Vec<String>,
    // Last: the files are removed after the child is gone.
    pub dir: TempDir,
}

/// The switchboard binary with `args`, its stdout and stderr appended to the files.
fn spawn_server(args: &[String], stdout: &Path, stderr: &Path) -> Child {
    let open = |p: &Path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap_or_else(|e| panic!("server log file {}: {e}", p.display()))
    };
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .current_dir(repo_root())
        .env(
            "RUST_LOG",
            std::env::var("SWITCHBOARD_TEST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(open(stdout))
        .stderr(open(stderr))
        .spawn()
        .expect("spawn the switchboard binary")
}

/// Our copy of `config/default.toml` (spool in `dir`) with `extra` TOML appended, for tests
/// that need a section of their own; pass it with `--config`.
#[allow(dead_code)]
pub fn config_with(dir: &Path, extra: &str) -> PathBuf {
    let path = isolated_config(dir);
    let mut text = std::fs::read_to_string(&path).expect("read test config");
    text.push('\n');
    text.push_str(extra);
    text.push('\n');
    std::fs::write(&path, text).expect("write test config");
    path
}

/// Our copy of `config/default.toml` with only `spool_dir` moved into the test's temp dir
/// (the default `data/` would be shared by parallel tests and replayed at start).
fn isolated_config(dir: &Path) -> PathBuf {
    let default = std::fs::read_to_string(repo_root().join("config/default.toml"))
        .expect("read config/default.toml");
    let spool = dir.join("spool");
    let mut replaced = 0;
    let text: Vec<String> = default
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("spool_dir") {
                replaced += 1;
                format!("spool_dir = {:?}", spool.display().to_string())
            } else {
                l.to_string()
            }
        })
        .collect();
    assert_eq!(
        replaced, 1,
        "config/default.toml should have exactly one spool_dir line"
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text.join("\n") + "\n").expect("write test config");
    path
}

impl Server {
    /// Start the server on free loopback ports with a fresh SQLite file and wait until
    /// `GET /healthz` answers 200. `extra_args` go after ours (a `--config` there replaces
    /// the test's default copy).
    pub fn start(extra_args: &[&str]) -> Server {
        Server::start_on(None, extra_args)
    }

    /// [`Server::start`] on the database at `url` (e.g. a PostgreSQL test database) instead
    /// of a fresh SQLite file; `None`: the SQLite file. `db()` reads the SQLite file only.
    pub fn start_on(url: Option<&str>, extra_args: &[&str]) -> Server {
        Server::start_at(url, IpAddr::V4(LOCALHOST), extra_args)
    }

    /// [`Server::start_on`] with SIP and HTTP (and so media, which follows `--sip-listen`)
    /// on `ip` instead of loopback: a veth address for the browser tests across network
    /// namespaces (tests/sip_ws.rs, `BrowserNet`). The ports are picked free on loopback,
    /// which is as good on an address that only the test's namespaces use.
    pub fn start_at(url: Option<&str>, ip: IpAddr, extra_args: &[&str]) -> Server {
        Server::launch(url, ip, extra_args, None)
    }

    /// [`Server::start_at`] for a config whose `[http]` has `tls_cert`/`tls_key`: the
    /// test's requests (health, API) go over TLS trusting `cert`, whose names must include
    /// `ip`.
    pub fn start_https_at(
        url: Option<&str>,
        ip: IpAddr,
        extra_args: &[&str],
        cert: rustls::pki_types::CertificateDer<'static>,
    ) -> Server {
        Server::launch(url, ip, extra_args, Some(cert))
    }

    fn launch(
        url: Option<&str>,
        ip: IpAddr,
        extra_args: &[&str],
        tls: Option<rustls::pki_types::CertificateDer<'static>>,
    ) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("switchboard-it-")
            .tempdir()
            .expect("temp dir");
        let sip_port = free_port();
        let http_port = free_port();
        let rtp_ports = rtp_range();
        let db_path = dir.path().join("t.db");
        let stdout_path = dir.path().join("server.stdout");
        let stderr_path = dir.path().join("server.stderr");
        let url = url.map_or_else(|| format!("sqlite://{}", db_path.display()), str::to_string);
        let mut args: Vec<String> = vec![
            "--database".into(),
            url,
            "--sip-listen".into(),
            SocketAddr::new(ip, sip_port).to_string(),
            "--http-listen".into(),
            SocketAddr::new(ip, http_port).to_string(),
            "--rtp-ports".into(),
            format!("{}-{}", rtp_ports.0, rtp_ports.1),
        ];
        if !extra_args.contains(&"--config") {
            args.push("--config".into());
            args.push(isolated_config(dir.path()).display().to_string());
        }
        args.extend(extra_args.iter().map(|s| s.to_string()));
        let api_token = extra_args
            .iter()
            .position(|a| *a == "--api-token")
            .and_then(|i| extra_args.get(i + 1))
            .map(|t| t.to_string());
        let child = spawn_server(&args, &stdout_path, &stderr_path);
        let mut server = Server {
            child,
            exited: None,
            sip_addr: SocketAddr::new(ip, sip_port),
            http_addr: SocketAddr::new(ip, http_port),
            rtp_ports,
            db_path,
            api_token,
            tls,
            stdout_path,
            stderr_path,
            sipp_runs: AtomicU32::new(0),
            args,
            dir,
        };
        server.wait_healthy(Duration::from_secs(20));
        server
    }

    /// Start the server again after it stopped (`sigterm` + `wait_exit`): the same command
    /// line, so the same ports, database and config (and the same admin token: the generated
    /// one is passed with `--api-token`). Its output is appended to the same log files.
    /// Waits until `GET /healthz` answers 200.
    pub fn restart(&mut self) {
        assert!(
            self.exited.is_some(),
            "restart: the server is still running (sigterm and wait_exit first)"
        );
        let mut args = self.args.clone();
        if self.api_token.is_none() {
            let token = self.api_token();
            args.extend(["--api-token".to_string(), token.clone()]);
            self.api_token = Some(token);
        }
        let banner_lines = read_lossy(&self.stdout_path).matches("  Stop:").count();
        self.child = spawn_server(&args, &self.stdout_path, &self.stderr_path);
        self.exited = None;
        self.wait_healthy(Duration::from_secs(20));
        // wait_healthy found the first run's banner: wait for this run's too.
        let by = Instant::now() + Duration::from_secs(5);
        while read_lossy(&self.stdout_path).matches("  Stop:").count() <= banner_lines
            && Instant::now() < by
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_healthy(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = Some(status);
                panic!("server exited during start with {status}\n{}", self.log());
            }
            let health = http_get_over(self.http_addr, "/healthz", None, self.tls.as_ref());
            if health.is_some_and(|(code, _)| code == 200) {
                // /healthz turns 200 a moment before main prints the banner (tests read
                // the API token from it): wait for its last line too.
                let banner_by = Instant::now() + Duration::from_secs(5);
                while !read_lossy(&self.stdout_path).contains("  Stop:")
                    && Instant::now() < banner_by
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                return;
            }
            assert!(
                Instant::now() < deadline,
                "GET /healthz not 200 within {timeout:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The admin API token: the one given with `--api-token`, else the generated one the
    /// banner prints.
    pub fn api_token(&self) -> String {
        if let Some(t) = &self.api_token {
            return t.clone();
        }
        read_lossy(&self.stdout_path)
            .lines()
            .find_map(|l| l.split("Authorization: Bearer ").nth(1))
            .map(|t| t.trim_end_matches(')').trim().to_string())
            .expect("API token in the server's banner")
    }

    /// `GET path` with the admin token (the read endpoints need a token since
    /// `[api] anonymous_read` is off by default).
    pub fn api_get(&self, path: &str) -> Option<(u16, String)> {
        http_get_over(
            self.http_addr,
            path,
            Some(&self.api_token()),
            self.tls.as_ref(),
        )
    }

    /// stdout + stderr of the server so far.
    pub fn log(&self) -> String {
        format!(
            "---- server stdout ----\n{}\n---- server stderr ----\n{}",
            read_lossy(&self.stdout_path),
            read_lossy(&self.stderr_path)
        )
    }

    /// Send SIGTERM (through kill(1): no libc needed).
    pub fn sigterm(&self) {
        let st = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -TERM {} failed: {st}", self.pid());
    }

    /// Wait for the server to exit by itself, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = wait_child(&mut self.child, timeout);
        }
        self.exited
    }

    pub fn db(&self) -> TestDb {
        TestDb::open(&self.db_path)
    }

    pub fn sip_client(&self) -> SipClient {
        SipClient::new(self.sip_addr)
    }

    /// Poll the database until `f` returns Some (the writer batches), or panic with a dump
    /// of the call tables and the server log.
    pub fn wait_db<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut f: impl FnMut(&TestDb) -> Option<T>,
    ) -> T {
        let db = self.db();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f(&db) {
                return v;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n{}\n{}",
                    db.dump(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Render `scenario`, run SIPp against this server once (`-m 1`) and wait for it.
    /// `args` are extra SIPp arguments, e.g. `["-set", "caller", "+15551230001"]`.
    /// Start a second server on this one's config, database and admin token, on new SIP/HTTP ports (this
    /// one stopped or killed first). Returns the child (kill it when done) and its HTTP
    /// address; stderr goes to `restart.log` in the test's folder.
    pub fn restart_on_same_db(&self) -> (Child, SocketAddr) {
        let http_port = free_port();
        let sip_port = free_port();
        let log = std::fs::File::create(self.dir.path().join("restart.log")).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("--config")
            .arg(self.dir.path().join("config.toml"))
            .args([
                "--database",
                &format!("sqlite://{}", self.db_path.display()),
            ])
            .args(["--sip-listen", &format!("127.0.0.1:{sip_port}")])
            .args(["--http-listen", &format!("127.0.0.1:{http_port}")])
            .args([
                "--rtp-ports",
                &format!("{}-{}", self.rtp_ports.0, self.rtp_ports.1),
            ])
            // The same admin token, so `api_token()` reads this one too.
            .args(["--api-token", &self.api_token()])
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("restart the server");
        (child, SocketAddr::from((LOCALHOST, http_port)))
    }

    /// `switchboard agent add NAME --password P --queue support --skill lang:en=5 ARGS...`
    /// on this server's database (the contract command of the agent issues).
    pub fn add_agent(&self, name: &str, password: &str, extra: &[&str]) {
        let db = format!("sqlite://{}", self.db_path.display());
        let mut args = vec![
            "agent",
            "add",
            name,
            "--password",
            password,
            "--queue",
            "support",
            "--skill",
            "lang:en=5",
            "--database",
            &db,
        ];
        args.extend_from_slice(extra);
        let (st, out, err) = run_binary(&args, Duration::from_secs(20));
        assert!(st.success(), "agent add failed: {out}{err}");
    }

    pub fn run_sipp(&self, scenario: &Scenario, args: &[&str]) -> SippRun {
        self.spawn_sipp(scenario, args).wait()
    }

    /// Like `run_sipp` but returns at once; `wait()` collects the result.
    pub fn spawn_sipp(&self, scenario: &Scenario, args: &[&str]) -> SippProcess {
        let n = self.sipp_runs.fetch_add(1, Ordering::Relaxed);
        let dir = self.dir.path().join(format!("sipp-{n}"));
        std::fs::create_dir_all(&dir).expect("sipp dir");
        SippProcess::spawn(scenario, self.sip_addr, &dir, args)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = wait_child(&mut self.child, Duration::from_secs(10));
        }
        if std::thread::panicking() {
            let log = self.log();
            let head: Vec<&str> = log.lines().take(80).collect();
            eprintln!(
                "==== server log (test failed), first lines ====\n{}\n==== last lines ====\n{}",
                head.join("\n"),
                tail(&log, 120)
            );
        }
    }
}

/// Run the binary to completion (for start-up refusals); killed after `timeout`.
/// Returns (exit status, stdout, stderr).
pub fn run_binary(args: &[&str], timeout: Duration) -> (ExitStatus, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("stdout");
    let err = dir.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("spawn the switchboard binary");
    let status = wait_child(&mut child, timeout);
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "switchboard {args:?} still running after {timeout:?} (expected it to refuse to start)\nstdout:\n{}\nstderr:\n{}",
            read_lossy(&out),
            read_lossy(&err)
        );
    };
    (status, read_lossy(&out), read_lossy(&err))
}

// ---- database ------------------------------------------------------------------------------

/// A row as column name -> JSON value (INTEGER -> number, TEXT -> string, NULL -> null).
pub type DbRow = BTreeMap<String, Value>;

/// Direct SQL access to the server's SQLite file, as another program would have.
/// An existing SQLite database (the server's) on a one-connection pool with its own
/// single-threaded runtime, for tests that read it while the server writes.
pub fn open_sqlite(path: &Path, busy: Duration) -> (tokio::runtime::Runtime, SqlitePool) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .busy_timeout(busy);
    let pool = rt
        .block_on(
            SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(opts),
        )
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    (rt, pool)
}

pub struct TestDb {
    rt: tokio::runtime::Runtime,
    pool: SqlitePool,
}

impl TestDb {
    pub fn open(path: &Path) -> TestDb {
        let (rt, pool) = open_sqlite(path, Duration::from_secs(5));
        TestDb { rt, pool }
    }

    /// One SQLite row as column name → JSON value (NULL, integer, real, text; blobs as text).
    pub fn to_map(row: &SqliteRow) -> DbRow {
        let mut m = BTreeMap::new();
        for (i, col) in row.columns().iter().enumerate() {
            let raw = row.try_get_raw(i).expect("column");
            let v = if raw.is_null() {
                Value::Null
            } else {
                match raw.type_info().name() {
                    "INTEGER" => Value::from(row.try_get::<i64, _>(i).expect("integer")),
                    "REAL" => Value::from(row.try_get::<f64, _>(i).expect("real")),
                    "BLOB" => {
                        Value::from(format!("{:?}", row.try_get::<Vec<u8>, _>(i).expect("blob")))
                    }
                    _ => Value::from(row.try_get::<String, _>(i).expect("text")),
                }
            };
            m.insert(col.name().to_string(), v);
        }
        m
    }

    pub fn rows(&self, sql: &str) -> Vec<DbRow> {
        let rows = self
            .rt
            .block_on(sqlx::query(sql).fetch_all(&self.pool))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.iter().map(Self::to_map).collect()
    }

    /// Exactly one row, else panic.
    pub fn row(&self, sql: &str) -> DbRow {
        let mut rows = self.rows(sql);
        assert_eq!(
            rows.len(),
            1,
            "expected exactly one row from {sql}, got {rows:#?}"
        );
        rows.remove(0)
    }

    /// A call's `call_events` as (kind, detail), in order.
    pub fn call_events(&self, call_id: &str) -> Vec<(String, String)> {
        self.rows(&format!(
            "SELECT kind, detail FROM call_events WHERE call_id = '{call_id}' ORDER BY seq"
        ))
        .into_iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap_or("").to_string(),
                r["detail"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
    }

    pub fn count(&self, sql_where: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) AS n FROM {sql_where}");
        self.row(&sql)["n"].as_i64().expect("count is an integer")
    }

    pub fn exec(&self, sql: &str) -> u64 {
        self.rt
            .block_on(sqlx::query(sql).execute(&self.pool))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .rows_affected()
    }

    /// The call tables, for failure messages.
    pub fn dump(&self) -> String {
        let mut s = String::from("---- database ----\n");
        for t in [
            "call_records",
            "call_events",
            "call_outcomes",
            "refund_requests",
        ] {
            let _ = writeln!(s, "{t}:");
            match self
                .rt
                .block_on(sqlx::query(&format!("SELECT * FROM {t}")).fetch_all(&self.pool))
            {
                Ok(rows) => {
                    for r in &rows {
                        let _ = writeln!(
                            s,
                            "  {}",
                            serde_json::to_string(&Self::to_map(r)).unwrap_or_default()
                        );
                    }
                }
                Err(e) => {
                    let _ = writeln!(s, "  ({e})");
                }
            }
        }
        s
    }
}

// ---- SIPp ----------------------------------------------------------------------------------

/// The SIPp binary: `$SWITCHBOARD_SIPP`, else `sipp` on PATH. Absent SIPp is a failure.
pub fn sipp() -> PathBuf {
    if let Ok(p) = std::env::var("SWITCHBOARD_SIPP") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "SWITCHBOARD_SIPP={} does not exist",
            p.display()
        );
        return p;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("sipp"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "SIPp not found: set SWITCHBOARD_SIPP or put `sipp` on PATH \
             (Debian package sip-tester; scripts/test installs it)"
            )
        })
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// The `sip-test/` scenarios.
#[derive(Debug, Clone)]
pub enum Scenario {
    /// `uac_call.xml`: answer, play RTP built by `make_dtmf_pcap.py` with `pcap_args`
    /// (e.g. `["--script", "1500:2,9000:2", "--tail-ms", "1000"]`), then wait up to `hold_ms`
    /// for the server's BYE before hanging up itself.
    Call {
        pcap_args: Vec<String>,
        hold_ms: u32,
    },
    /// `uac_hangup_early.xml`: BYE `hold_ms` after the ACK, no media.
    HangupEarly { hold_ms: u32 },
    /// `uac_cancel.xml`: CANCEL `ring_ms` after the 180.
    Cancel { ring_ms: u32 },
    /// `uac_options.xml`: one OPTIONS, expects 200.
    Options,
}

impl Scenario {
    /// A call pressing digits at the given times: `&[(1500, '2'), (9000, '2')]`.
    pub fn call_with_digits(digits: &[(u32, char)], tail_ms: u32, hold_ms: u32) -> Scenario {
        let script: Vec<String> = digits.iter().map(|(at, d)| format!("{at}:{d}")).collect();
        Scenario::Call {
            pcap_args: vec![
                "--script".into(),
                script.join(","),
                "--tail-ms".into(),
                tail_ms.to_string(),
            ],
            hold_ms,
        }
    }

    fn template(&self) -> &'static str {
        match self {
            Scenario::Call { .. } => "uac_call.xml",
            Scenario::HangupEarly { .. } => "uac_hangup_early.xml",
            Scenario::Cancel { .. } => "uac_cancel.xml",
            Scenario::Options => "uac_options.xml",
        }
    }

    /// How long SIPp may run before its own `-timeout` stops it.
    fn budget(&self) -> Duration {
        let ms = match self {
            Scenario::Call { hold_ms, .. } | Scenario::HangupEarly { hold_ms } => {
                *hold_ms as u64 + 15_000
            }
            Scenario::Cancel { ring_ms } => *ring_ms as u64 + 15_000,
            Scenario::Options => 10_000,
        };
        Duration::from_millis(ms)
    }
}

fn python(script: &str, args: &[String], cwd: &Path) -> String {
    let out = Command::new("python3")
        .arg(repo_root().join("sip-test").join(script))
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("python3 {script}: {e} (python3 is required)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "python3 {script} {args:?} failed ({}):\n{text}",
        out.status
    );
    text
}

/// Write `scenario`'s SIPp file into `dir` (with its pcap for a call) and return its path.
pub fn render_scenario(scenario: &Scenario, dir: &Path) -> PathBuf {
    if let Scenario::Options = scenario {
        return repo_root().join("sip-test/uac_options.xml");
    }
    let out = dir.join(scenario.template());
    let mut render: Vec<String> = vec![scenario.template().into(), out.display().to_string()];
    match scenario {
        Scenario::Call { pcap_args, hold_ms } => {
            assert!(
                is_root(),
                "SIPp's play_pcap_audio needs root (raw socket): run the SIP tests as root"
            );
            let pcap = dir.join("in.pcap");
            let mut a = pcap_args.clone();
            a.extend(["-o".into(), pcap.display().to_string()]);
            python("make_dtmf_pcap.py", &a, dir);
            render.extend([
                "--pcap".into(),
                pcap.display().to_string(),
                "--hold-ms".into(),
                hold_ms.to_string(),
            ]);
        }
        Scenario::HangupEarly { hold_ms } => {
            render.extend(["--hold-ms".into(), hold_ms.to_string()])
        }
        Scenario::Cancel { ring_ms } => render.extend(["--ring-ms".into(), ring_ms.to_string()]),
        Scenario::Options => unreachable!(),
    }
    python("render.py", &render, dir);
    out
}

/// Result of one SIPp run.
#[derive(Debug)]
pub struct SippRun {
    /// 0 = passed, 1 = failed call or load error, 255 = timeout / fatal; None = killed.
    pub code: Option<i32>,
    /// stdout, stderr, error file and message file, for failure messages.
    pub text: String,
}

impl SippRun {
    pub fn assert_ok(&self, server: &Server) {
        assert_eq!(
            self.code,
            Some(0),
            "SIPp failed (exit {:?})\n{}\n{}",
            self.code,
            self.text,
            tail(&server.log(), 80)
        );
    }
}

/// A SIPp child process; killed on drop if still running.
pub struct SippProcess {
    child: Option<Child>,
    dir: PathBuf,
    budget: Duration,
    cmdline: String,
}

impl SippProcess {
    pub fn spawn(
        scenario: &Scenario,
        target: SocketAddr,
        dir: &Path,
        args: &[&str],
    ) -> SippProcess {
        let scenario_file = render_scenario(scenario, dir);
        SippProcess::spawn_caller_file(&scenario_file, target, dir, args, scenario.budget())
    }

    /// SIPp as one caller of the hotline on a ready scenario file: one call from a free
    /// port pair, `-timeout` = `budget`, error and message traces in `dir`, then `args`.
    pub fn spawn_caller_file(
        file: &Path,
        target: SocketAddr,
        dir: &Path,
        args: &[&str],
        budget: Duration,
    ) -> SippProcess {
        let port = free_port().to_string();
        let media = sipp_media_port().to_string();
        let timeout = format!("{}s", budget.as_secs());
        let errors = dir.join("errors.log").display().to_string();
        let messages = dir.join("messages.log").display().to_string();
        let mut all: Vec<&str> = vec![
            "-i",
            "127.0.0.1",
            "-p",
            &port,
            "-mp",
            &media,
            "-m",
            "1",
            "-l",
            "1",
            "-nostdin",
            "-timeout",
            &timeout,
            "-timeout_error",
            "-trace_err",
            "-error_file",
            &errors,
            "-trace_msg",
            "-message_file",
            &messages,
            "-s",
            "hotline",
        ];
        all.extend_from_slice(args);
        SippProcess::spawn_file(file, target, dir, &all, budget)
    }

    /// SIPp on a ready scenario file with exactly `args` (plus the target), e.g. a UAS.
    pub fn spawn_file(
        file: &Path,
        target: SocketAddr,
        dir: &Path,
        args: &[&str],
        budget: Duration,
    ) -> SippProcess {
        let sipp = sipp();
        let mut cmd_args: Vec<String> = vec!["-sf".into(), file.display().to_string()];
        cmd_args.extend(args.iter().map(|s| s.to_string()));
        cmd_args.push(target.to_string());
        let cmdline = format!("{} {}", sipp.display(), cmd_args.join(" "));
        let child = Command::new(&sipp)
            .args(&cmd_args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("stdout.log")).expect("sipp stdout"))
            .stderr(std::fs::File::create(dir.join("stderr.log")).expect("sipp stderr"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", sipp.display()));
        SippProcess {
            child: Some(child),
            dir: dir.to_path_buf(),
            budget,
            cmdline,
        }
    }

    /// Wait for SIPp (its own -timeout plus a margin) and collect its output.
    pub fn wait(mut self) -> SippRun {
        let mut child = self.child.take().expect("sipp child");
        let status = wait_child(&mut child, self.budget + Duration::from_secs(10));
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let mut text = format!("$ {}\n", self.cmdline);
        for f in ["stdout.log", "stderr.log", "errors.log", "messages.log"] {
            let body = read_lossy(&self.dir.join(f));
            let body = if f == "stdout.log" {
                tail(&body, 60)
            } else {
                body
            };
            let _ = writeln!(text, "---- sipp {f} ----\n{body}");
        }
        SippRun {
            code: status.and_then(|s| s.code()),
            text,
        }
    }
}

impl Drop for SippProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---- raw SIP over UDP ----------------------------------------------------------------------

static SEQ: AtomicU32 = AtomicU32::new(1);

/// A unique token for branches, tags and Call-IDs.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}{}x{}x{nanos:x}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A SIP response as received.
#[derive(Debug, Clone)]
pub struct SipResponse {
    pub code: u16,
    pub text: String,
}

impl SipResponse {
    fn parse(bytes: &[u8]) -> Option<SipResponse> {
        let text = String::from_utf8_lossy(bytes).into_owned();
        let mut first = text.lines().next()?.split_whitespace();
        if first.next()? != "SIP/2.0" {
            return None;
        }
        let code = first.next()?.parse().ok()?;
        Some(SipResponse { code, text })
    }

    /// First value of a header (case-insensitive name, no compact forms).
    pub fn header(&self, name: &str) -> Option<&str> {
        let head = self.text.split("\r\n\r\n").next().unwrap_or("");
        head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A UDP socket on 127.0.0.1 speaking raw SIP to the server.
pub struct SipClient {
    sock: UdpSocket,
    pub local: SocketAddr,
    pub server: SocketAddr,
}

impl SipClient {
    pub fn new(server: SocketAddr) -> SipClient {
        SipClient::from_ip(server, LOCALHOST)
    }

    /// A client bound to another loopback address (e.g. 127.0.0.2, for source ACLs).
    pub fn from_ip(server: SocketAddr, ip: std::net::Ipv4Addr) -> SipClient {
        let sock = UdpSocket::bind((ip, 0)).expect("bind client socket");
        let local = sock.local_addr().expect("client addr");
        SipClient {
            sock,
            local,
            server,
        }
    }

    pub fn send(&self, bytes: &[u8]) {
        self.sock
            .send_to(bytes, self.server)
            .expect("send datagram");
    }

    /// The next response within `timeout`, None if nothing (non-SIP datagrams are skipped).
    pub fn recv(&self, timeout: Duration) -> Option<SipResponse> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65_536];
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())?;
            self.sock.set_read_timeout(Some(left)).expect("set timeout");
            match self.sock.recv_from(&mut buf) {
                Ok((n, _)) => {
                    if let Some(r) = SipResponse::parse(&buf[..n]) {
                        return Some(r);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None
                }
                // ICMP port unreachable from an earlier send: keep listening.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                Err(e) => panic!("recv: {e}"),
            }
        }
    }

    /// The next datagram within `timeout`, whatever it is (a request from the server too).
    pub fn recv_datagram(&self, timeout: Duration) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 65_536];
        self.sock
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .expect("set timeout");
        match self.sock.recv_from(&mut buf) {
            Ok((n, _)) => Some(buf[..n].to_vec()),
            Err(_) => None,
        }
    }

    /// The first final (>= 200) response within `timeout`.
    pub fn final_response(&self, timeout: Duration) -> Option<SipResponse> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let r = self.recv(left)?;
            if r.code >= 200 {
                return Some(r);
            }
        }
    }

    /// Send and return the final response, panicking (with what was sent) if none in 5 s.
    pub fn request(&self, bytes: &[u8]) -> SipResponse {
        self.send(bytes);
        self.final_response(Duration::from_secs(5))
            .unwrap_or_else(|| {
                panic!(
                    "no final response within 5 s to:\n{}",
                    String::from_utf8_lossy(bytes)
                )
            })
    }

    /// Everything received within `timeout`.
    pub fn drain(&self, timeout: Duration) -> Vec<SipResponse> {
        let deadline = Instant::now() + timeout;
        let mut v = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.recv(left) {
                Some(r) => v.push(r),
                None => break,
            }
        }
        v
    }
}

/// A request builder with the mandatory headers filled in (RFC 3261 §8.1.1).
#[derive(Debug, Clone)]
pub struct SipRequest {
    pub method: String,
    pub uri: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Raw Content-Length value; None = the body's length.
    pub content_length: Option<String>,
}

impl SipRequest {
    pub fn new(method: &str, user: &str, client: &SipClient) -> SipRequest {
        let call_id = unique("call-");
        let headers = vec![
            (
                "Via".into(),
                format!(
                    "SIP/2.0/UDP {};branch=z9hG4bK{};rport",
                    client.local,
                    unique("b")
                ),
            ),
            ("Max-Forwards".into(), "70".into()),
            (
                "From".into(),
                format!("<sip:+15550009999@{}>;tag={}", client.local, unique("t")),
            ),
            ("To".into(), format!("<sip:{user}@{}>", client.server)),
            ("Call-ID".into(), call_id),
            ("CSeq".into(), format!("1 {method}")),
            (
                "Contact".into(),
                format!("<sip:+15550009999@{}>", client.local),
            ),
        ];
        SipRequest {
            method: method.into(),
            uri: format!("sip:{user}@{}", client.server),
            version: "SIP/2.0".into(),
            headers,
            body: Vec::new(),
            content_length: None,
        }
    }

    /// Set a header (replacing one of the same name) and return self.
    pub fn header(mut self, name: &str, value: &str) -> SipRequest {
        match self
            .headers
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(h) => h.1 = value.to_string(),
            None => self.headers.push((name.to_string(), value.to_string())),
        }
        self
    }

    pub fn body(mut self, content_type: &str, body: &str) -> SipRequest {
        self.body = body.as_bytes().to_vec();
        self.header("Content-Type", content_type)
    }

    pub fn get(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    pub fn call_id(&self) -> &str {
        self.get("Call-ID")
    }

    /// The ACK for a non-2xx final answer to this INVITE: same Via branch, the answer's To
    /// (with its tag), CSeq method ACK, no body (RFC 3261 §17.1.1.3).
    pub fn ack_for(&self, response: &SipResponse) -> SipRequest {
        let seq = self
            .get("CSeq")
            .split_whitespace()
            .next()
            .unwrap_or("1")
            .to_string();
        let mut ack = SipRequest {
            method: "ACK".into(),
            body: Vec::new(),
            content_length: None,
            ..self.clone()
        };
        ack.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("Content-Type"));
        ack.header("CSeq", &format!("{seq} ACK"))
            .header("To", response.header("To").unwrap_or(""))
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut s = format!("{} {} {}\r\n", self.method, self.uri, self.version);
        for (n, v) in &self.headers {
            let _ = write!(s, "{n}: {v}\r\n");
        }
        let cl = self
            .content_length
            .clone()
            .unwrap_or_else(|| self.body.len().to_string());
        let _ = write!(s, "Content-Length: {cl}\r\n\r\n");
        let mut b = s.into_bytes();
        b.extend_from_slice(&self.body);
        b
    }
}

/// An SDP offer with the given payload types and rtpmap lines.
pub fn sdp_offer(rtp_port: u16, pts: &str, rtpmaps: &[&str]) -> String {
    let mut s = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {rtp_port} RTP/AVP {pts}\r\n"
    );
    for m in rtpmaps {
        let _ = write!(s, "a=rtpmap:{m}\r\n");
    }
    s.push_str("a=sendrecv\r\n");
    s
}

/// playwright-core for the page tests, installed by npm at test time into a cache folder in
/// the target directory (once; the browser itself is Debian's chromium).
pub fn playwright_modules() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("node-playwright");
    let module = dir.join("node_modules/playwright-core/package.json");
    if !module.is_file() {
        std::fs::create_dir_all(&dir).expect("npm cache dir");
        let out = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .arg("playwright-core@1.65.1")
            .output()
            .expect("npm runs (Debian npm; scripts/test installs it)");
        assert!(
            out.status.success() && module.is_file(),
            "npm install playwright-core failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dir.join("node_modules")
}
