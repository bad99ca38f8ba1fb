//! Crash recovery (issue: the shared ticket database): a server killed with SIGKILL in the
//! middle of an answered call loses no call record — the next start on the same database
//! finalizes the dangling call as `interrupted` — and the records written before the crash
//! (the record itself, its keypad events) are all there, exactly once.
//!
//! Several nodes on one PostgreSQL (issue 18, `SWITCHBOARD_TEST_PG_URL`; skipped without
//! it outside CI): scoped recovery and dead-node takeover; SIPp calls through a real Kamailio
//! running `deploy/kamailio/kamailio.cfg` (skipped outside CI when the `kamailio` package is
//! missing; `scripts/test` installs it), spread over the nodes and routed around a draining
//! one; campaign contact leases of a node killed mid-campaign taken over by the other;
//! pause, resume and stop through one node's API followed by the other node. An agent's
//! phone registered through the edge (RFC 3327 Path) is rung through it (SQLite, no
//! PostgreSQL needed).

use crate::support;

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{http_get_status, Scenario, Server};

#[test]
fn kill_9_mid_call_then_restart_finalizes_the_call_as_interrupted() {
    let server = Server::start(&[]);
    // A long call: digit 2 at 1.5 s (main menu → delayed-order lookup), then it stays on the
    // line; SIPp keeps the call up for 20 s unless the server hangs up.
    let call = server.spawn_sipp(
        &Scenario::call_with_digits(&[(1500, '2')], 15_000, 20_000),
        &["-set", "caller", "+15551230001"],
    );
    // Wait until the call is answered and its keypad event is in the database.
    server.wait_db(
        Duration::from_secs(15),
        "answered call with its digit",
        |db| {
            let answered =
                db.count("call_records WHERE answered_at IS NOT NULL AND ended_at IS NULL");
            let digit = db.count("call_events WHERE kind = 'dtmf' AND detail = '2'");
            (answered == 1 && digit == 1).then_some(())
        },
    );
    let st = Command::new("kill")
        .arg("-KILL")
        .arg(server.pid().to_string())
        .status()
        .expect("kill");
    assert!(st.success());
    drop(call); // SIPp is stopped by its guard

    // Same database and config, new ports: the restart finalizes the dangling call.
    let (mut child, addr) = server.restart_on_same_db();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get_status(addr, "/healthz") != Some(200) {
        assert!(
            Instant::now() < deadline,
            "restarted server never became healthy"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let db = server.db();
    let row = db.row("SELECT disposition, hangup_cause, ended_at FROM call_records");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(row["disposition"].as_str(), Some("interrupted"), "{row:?}");
    assert_eq!(
        row["hangup_cause"].as_str(),
        Some("server_restart"),
        "{row:?}"
    );
    assert!(row["ended_at"].as_str().is_some(), "{row:?}");
    assert_eq!(
        db.count("call_records"),
        1,
        "one record, not duplicated by the restart"
    );
    assert_eq!(
        db.count("call_events WHERE kind = 'dtmf'"),
        1,
        "the keypad event survived once"
    );
}

/// The write-ahead journal: ops a call handed to the store are on disk before the writer
/// gets them. Here another program holds an exclusive lock on the SQLite file, so the writer
/// sits in `busy_timeout` with the call's ops in memory; the server is killed with SIGKILL
/// before it can spool them. The next start (lock released) writes the whole call — its real
/// end, not `interrupted` — exactly once.
#[test]
fn kill_9_while_the_writer_is_blocked_loses_no_record() {
    let server = Server::start(&[]);
    let mut locker = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys,time\n\
             c=sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)\n\
             c.execute('BEGIN EXCLUSIVE')\n\
             print('locked', flush=True)\n\
             time.sleep(120)\n",
        ])
        .arg(&server.db_path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 sqlite3 locker");
    {
        use std::io::BufRead as _;
        let out = locker.stdout.take().expect("locker stdout");
        let mut line = String::new();
        std::io::BufReader::new(out)
            .read_line(&mut line)
            .expect("locker output");
        assert_eq!(
            line.trim(),
            "locked",
            "the locker could not lock the database"
        );
    }
    let run = server.run_sipp(
        &Scenario::HangupEarly { hold_ms: 300 },
        &["-set", "caller", "+15551230002"],
    );
    run.assert_ok(&server);
    // Give the actor a moment to hand over its last ops (CallEnded) after the BYE.
    std::thread::sleep(Duration::from_millis(300));
    let spool_dir = server.dir.path().join("spool");
    let journal_text: String = std::fs::read_dir(&spool_dir)
        .expect("spool dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("journal-"))
        .map(|e| support::read_lossy(&e.path()))
        .collect();
    let spool_text = support::read_lossy(&spool_dir.join("spool.jsonl"));
    let st = Command::new("kill")
        .arg("-KILL")
        .arg(server.pid().to_string())
        .status()
        .expect("kill");
    assert!(st.success());
    assert!(
        journal_text.contains("\"call_started\"") && journal_text.contains("\"call_ended\""),
        "the call's ops were journaled before the kill:\n{journal_text}"
    );
    if spool_text.contains("call_ended") {
        eprintln!("note: the writer had already spooled the call (slow machine); the journal was not needed this time");
    }
    let _ = locker.kill();
    let _ = locker.wait();

    let (mut child, addr) = server.restart_on_same_db();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get_status(addr, "/healthz") != Some(200) {
        assert!(
            Instant::now() < deadline,
            "restarted server never became healthy"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let db = server.db();
    let rows = support::wait_for(Duration::from_secs(10), "the call's record", || {
        let rows = db.rows("SELECT disposition, answered_at, ended_at FROM call_records");
        (!rows.is_empty()).then_some(rows)
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(rows.len(), 1, "one record, not duplicated: {rows:?}");
    let row = &rows[0];
    assert_ne!(
        row["disposition"].as_str(),
        Some("interrupted"),
        "the call's real end was recovered from the journal: {row:?}"
    );
    assert!(row["ended_at"].as_str().is_some(), "{row:?}");
    assert!(row["answered_at"].as_str().is_some(), "{row:?}");
}

// ---- PostgreSQL for the cluster tests -------------------------------------------------------

/// The test PostgreSQL (`SWITCHBOARD_TEST_PG_URL`) with a runtime and a pool of the test's
/// own, for counting rows while the nodes run.
struct Pg {
    url: String,
    rt: tokio::runtime::Runtime,
    db: switchboard::store::Db,
}

impl Pg {
    /// `None` (with a message) outside CI when no PostgreSQL is given; in CI a failure.
    fn from_env() -> Option<Pg> {
        let Ok(url) = std::env::var("SWITCHBOARD_TEST_PG_URL") else {
            assert!(
                std::env::var("CI").is_err(),
                "CI must provide SWITCHBOARD_TEST_PG_URL (scripts/test starts PostgreSQL)"
            );
            eprintln!("SWITCHBOARD_TEST_PG_URL not set: skipped");
            return None;
        };
        Some(Pg::connect(&url))
    }

    fn connect(url: &str) -> Pg {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let db = rt
            .block_on(switchboard::store::Db::connect(url))
            .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
        Pg {
            url: url.to_string(),
            rt,
            db,
        }
    }

    /// `SELECT COUNT(*) … $1` with one text parameter.
    fn count(&self, sql: &str, bind: &str) -> i64 {
        self.rt
            .block_on(
                sqlx::query_scalar::<_, i64>(sql)
                    .bind(bind.to_string())
                    .fetch_one(&self.db.pool),
            )
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The `bridge_packets` event of call `id` (its bridge's packet counters).
    fn bridge_packets(&self, id: &str) -> String {
        self.rt
            .block_on(
                sqlx::query_scalar(
                    "SELECT detail FROM call_events WHERE call_id = $1 AND kind = 'bridge_packets'",
                )
                .bind(id)
                .fetch_one(&self.db.pool),
            )
            .expect("bridge counters")
    }

    /// The trail of call `id`: (kind, detail) in order.
    fn call_events(&self, id: &str) -> Vec<(String, String)> {
        self.rt
            .block_on(
                sqlx::query_as::<_, (String, Option<String>)>(
                    "SELECT kind, detail FROM call_events WHERE call_id = $1 ORDER BY seq",
                )
                .bind(id)
                .fetch_all(&self.db.pool),
            )
            .expect("call events")
            .into_iter()
            .map(|(k, d)| (k, d.unwrap_or_default()))
            .collect()
    }

    fn count0(&self, sql: &str) -> i64 {
        self.rt
            .block_on(sqlx::query_scalar::<_, i64>(sql).fetch_one(&self.db.pool))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// A fresh database of the test's own beside the test database (`<name>_<tag>_<pid>`),
    /// dropped again when the returned guard goes: nodes of other tests running at the
    /// same time share the test database's `nodes` table, and one of them may declare this
    /// test's node dead or take its campaign.
    fn own_database(&self, tag: &str) -> OwnDatabase<'_> {
        let (prefix, base_db) = self.url.rsplit_once('/').expect("database URL with a name");
        let name = format!(
            "{}_{tag}_{}",
            base_db.split('?').next().unwrap_or("t"),
            std::process::id()
        );
        self.exec(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        self.exec(&format!("CREATE DATABASE {name}"));
        OwnDatabase {
            url: format!("{prefix}/{name}"),
            name,
            base: self,
        }
    }

    fn exec(&self, sql: &str) {
        self.rt
            .block_on(sqlx::query(sql).execute(&self.db.pool))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// A database made by [`Pg::own_database`], dropped on drop.
struct OwnDatabase<'a> {
    url: String,
    name: String,
    base: &'a Pg,
}

impl Drop for OwnDatabase<'_> {
    fn drop(&mut self) {
        self.base.exec(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

// ---- two nodes on one PostgreSQL (issue 18: scale-out) -------------------------------------

/// Crash recovery scoped to a node: A holds a call; B is killed and restarted beside it and
/// leaves A's live row alone; A is drained (OPTIONS 503) and killed with SIGKILL; after
/// `[cluster] dead_after_s` B declares A dead and closes A's call `interrupted`, once.
#[test]
fn two_nodes_on_postgres_restart_leaves_the_other_alone_and_a_dead_node_is_finalized() {
    let Some(base) = Pg::from_env() else { return };
    let own = base.own_database("restart");
    let pg = Pg::connect(&own.url);
    let url = own.url.clone();
    let q = |sql: &str, node: &str| pg.count(sql, node);
    let node_a = support::unique("a");
    let node_b = support::unique("b");
    // Each node its own config copy (its own spool), fast cluster timing.
    let cluster = "[cluster]\nheartbeat_s = 1\ndead_after_s = 3\n";
    let (setup_a, setup_b) = (NodeSetup::new(cluster), NodeSetup::new(cluster));
    let a = setup_a.start(&url, &node_a);
    let call = a.spawn_sipp(
        &Scenario::call_with_digits(&[(1500, '2')], 25_000, 30_000),
        &["-set", "caller", "+15551230001"],
    );
    let live_on_a = "SELECT COUNT(*) FROM call_records WHERE node = $1 AND answered_at IS NOT NULL AND ended_at IS NULL";
    let deadline = Instant::now() + Duration::from_secs(15);
    while q(live_on_a, &node_a) != 1 {
        assert!(
            Instant::now() < deadline,
            "A's call never answered\n{}",
            a.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // B starts, is killed with SIGKILL, and starts again: A's live row is untouched.
    let b = setup_b.start(&url, &node_b);
    let st = Command::new("kill")
        .args(["-KILL", &b.pid().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    drop(b);
    let b = setup_b.start(&url, &node_b);
    assert_eq!(
        q(live_on_a, &node_a),
        1,
        "B's restart closed A's live call\n{}",
        b.log()
    );
    assert!(
        b.log().contains("node registered"),
        "B registered its node row\n{}",
        b.log()
    );
    // Both nodes running in the nodes table.
    let running = "SELECT COUNT(*) FROM nodes WHERE node_id = $1 AND state = 'running'";
    assert_eq!(q(running, &node_a), 1);
    assert_eq!(q(running, &node_b), 1);

    // Drain A through the API: its OPTIONS answer turns 503, the row says draining, the
    // call goes on.
    let client = support::SipClient::new(a.sip_addr);
    let options = |client: &support::SipClient| {
        client.send(&support::SipRequest::new("OPTIONS", "hotline", client).bytes());
        client
            .final_response(Duration::from_secs(3))
            .map(|r| r.code)
    };
    assert_eq!(options(&client), Some(200));
    assert_eq!(post(a.http_addr, "/api/drain", &a.api_token()), 200);
    assert_eq!(
        options(&client),
        Some(503),
        "a draining node answers OPTIONS 503"
    );
    let draining = "SELECT COUNT(*) FROM nodes WHERE node_id = $1 AND state = 'draining'";
    assert_eq!(q(draining, &node_a), 1);
    assert_eq!(q(live_on_a, &node_a), 1, "draining does not cut the call");

    // A dies. Within dead_after_s (3) + a heartbeat or two, B declares it dead and closes
    // its call as interrupted — not before dead_after_s.
    let killed = Instant::now();
    let st = Command::new("kill")
        .args(["-KILL", &a.pid().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    drop(call);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        q(live_on_a, &node_a),
        1,
        "A's call closed before dead_after_s"
    );
    let closed = "SELECT COUNT(*) FROM call_records WHERE node = $1 AND ended_at IS NOT NULL \
                  AND disposition = 'interrupted' AND hangup_cause = 'node_dead'";
    let deadline = Instant::now() + Duration::from_secs(15);
    while q(closed, &node_a) != 1 {
        assert!(
            Instant::now() < deadline,
            "B never finalized A's call\n{}",
            b.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Dead once its last heartbeat is `dead_after_s` old, and that beat may have been up to
    // `heartbeat_s` before the kill: 3 s − 1 s.
    let took = killed.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "A's call was finalized {took:?} after the kill"
    );
    assert_eq!(
        q(
            "SELECT COUNT(*) FROM nodes WHERE node_id = $1 AND state = 'dead'",
            &node_a
        ),
        1
    );
    assert_eq!(
        q("SELECT COUNT(*) FROM call_records WHERE node = $1", &node_a),
        1,
        "one row, not duplicated"
    );
    assert!(b.log().contains("node declared dead"), "{}", b.log());
    drop(a);
}

/// One node per name on the database at `url`, each with its own config (the test config
/// plus `extra`) and spool in a directory of its own (returned: dropped with the test).
fn start_nodes(url: &str, names: &[String], extra: &str) -> (Vec<NodeSetup>, Vec<Server>) {
    let setups: Vec<NodeSetup> = names.iter().map(|_| NodeSetup::new(extra)).collect();
    let nodes = names
        .iter()
        .zip(&setups)
        .map(|(node, setup)| setup.start(url, node))
        .collect();
    (setups, nodes)
}

/// A node's own directory (spool) and config (the test config plus `extra`), kept for the
/// test: starting it again is a restart of the same node.
struct NodeSetup {
    _dir: tempfile::TempDir,
    cfg: std::path::PathBuf,
}

impl NodeSetup {
    fn new(extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let cfg = support::config_with(dir.path(), extra);
        NodeSetup { _dir: dir, cfg }
    }

    /// The node `node` on the database at `url`.
    fn start(&self, url: &str, node: &str) -> Server {
        Server::start_on(
            Some(url),
            &[
                "--node-id",
                node,
                "--config",
                &self.cfg.display().to_string(),
            ],
        )
    }
}

/// `switchboard agent add NAME` (queue `support`, password `s3cret-pw`) on the database at
/// `url`, as an operator adds an agent for every node of a cluster.
fn add_agent_on(url: &str, name: &str) {
    let (st, out, err) = support::run_binary(
        &[
            "agent",
            "add",
            name,
            "--password",
            "s3cret-pw",
            "--queue",
            "support",
            "--skill",
            "lang:en=5",
            "--database",
            url,
        ],
        Duration::from_secs(20),
    );
    assert!(st.success(), "agent add {name}: {out}{err}");
}

/// `POST path` with a bearer token and no body; the status code.
fn post(addr: std::net::SocketAddr, path: &str, token: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

// ---- Kamailio at the edge (issue 18: deploy/kamailio/kamailio.cfg) -------------------------

/// `deploy/kamailio/kamailio.cfg` run as a child process (killed on drop) in front of the
/// given nodes: its dispatcher list file, control socket and log live in a temp dir.
struct Kamailio {
    child: std::process::Child,
    sip_addr: std::net::SocketAddr,
    ctl: String,
    log_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Kamailio {
    /// The Kamailio binary, or `None` (with a message) when the package is not installed.
    fn binary() -> Option<std::path::PathBuf> {
        ["/usr/sbin/kamailio", "/usr/local/sbin/kamailio"]
            .iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.exists())
    }

    fn start(bin: &std::path::Path, nodes: &[std::net::SocketAddr]) -> Kamailio {
        let dir = tempfile::Builder::new()
            .prefix("switchboard-kamailio-")
            .tempdir()
            .expect("temp dir");
        let list = dir.path().join("dispatcher.list");
        let text: String = nodes.iter().map(|n| format!("1 sip:{n}\n")).collect();
        std::fs::write(&list, text).expect("write dispatcher list");
        let port = support::free_port();
        let sip_addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let ctl = format!("unix:{}", dir.path().join("ctl").display());
        let log_path = dir.path().join("kamailio.log");
        let child = Command::new(bin)
            .args(["-DD", "-E", "-m", "32", "-M", "4", "-f"])
            .arg(support::repo_root().join("deploy/kamailio/kamailio.cfg"))
            .args(["-A", &format!("LISTEN=udp:{sip_addr}")])
            .args(["-A", &format!("DISPATCHER_LIST=\"{}\"", list.display())])
            .args(["-A", &format!("CTL_SOCKET=\"{ctl}\"")])
            .args(["-A", "PING_INTERVAL=1"])
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("kamailio.out")).expect("file"))
            .stderr(std::fs::File::create(&log_path).expect("file"))
            .spawn()
            .expect("spawn kamailio");
        Kamailio {
            child,
            sip_addr,
            ctl,
            log_path,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        support::tail(&support::read_lossy(&self.log_path), 60)
    }

    /// The dispatcher's flags per node (`AP` active+probing, `IP` inactive+probing …) from
    /// `kamcmd dispatcher.list`; empty while Kamailio is not up yet.
    fn flags(&self) -> Vec<(String, String)> {
        let Ok(out) = Command::new("kamcmd")
            .args(["-s", &self.ctl, "dispatcher.list"])
            .output()
        else {
            return Vec::new();
        };
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut uri = None;
        let mut flags = Vec::new();
        for line in text.lines().map(str::trim) {
            if let Some(u) = line.strip_prefix("URI: sip:") {
                uri = Some(u.to_string());
            } else if let Some(f) = line.strip_prefix("FLAGS: ") {
                if let Some(u) = uri.take() {
                    flags.push((u, f.to_string()));
                }
            }
        }
        flags.sort();
        flags
    }

    /// Wait until the dispatcher has `node` with flags starting with `state` (`A`, `I`).
    fn wait_node(&self, node: std::net::SocketAddr, state: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let flags = self.flags();
            if flags
                .iter()
                .any(|(u, f)| *u == node.to_string() && f.starts_with(state))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "kamailio never showed {node} as {state}: {flags:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIPp hotline callers through the edge: `calls` calls at `rate`/s, each hanging up
    /// `hold_ms` after the ACK, from caller `caller`.
    fn callers(&self, calls: u32, rate: u32, hold_ms: u32, caller: &str) -> support::SippProcess {
        let dir = self
            ._dir
            .path()
            .join(format!("sipp-{}", caller.trim_start_matches('+')));
        std::fs::create_dir_all(&dir).expect("sipp dir");
        let file = support::render_scenario(&Scenario::HangupEarly { hold_ms }, &dir);
        let port = support::free_port().to_string();
        let media = support::sipp_media_port().to_string();
        let errors = dir.join("errors.log").display().to_string();
        let (calls, rate) = (calls.to_string(), rate.to_string());
        let budget = Duration::from_secs(90);
        support::SippProcess::spawn_file(
            &file,
            self.sip_addr,
            &dir,
            &[
                "-i",
                "127.0.0.1",
                "-p",
                &port,
                "-mp",
                &media,
                "-m",
                &calls,
                "-r",
                &rate,
                "-l",
                "500",
                "-nostdin",
                "-timeout",
                "80s",
                "-timeout_error",
                "-trace_err",
                "-error_file",
                &errors,
                "-s",
                "hotline",
                "-set",
                "caller",
                caller,
            ],
            budget,
        )
    }
}

impl Kamailio {
    /// One SIPp caller through the edge running `scenario` from number `caller`.
    fn call(&self, scenario: &Scenario, caller: &str) -> support::SippProcess {
        let dir = self
            ._dir
            .path()
            .join(format!("call-{}", caller.trim_start_matches('+')));
        std::fs::create_dir_all(&dir).expect("sipp dir");
        support::SippProcess::spawn(scenario, self.sip_addr, &dir, &["-set", "caller", caller])
    }

    /// The whole log (Kamailio's stderr).
    fn full_log(&self) -> String {
        support::read_lossy(&self.log_path)
    }
}

/// The first request `method` a SIPp phone received, as traced in its run's text
/// (`-trace_msg`): from its request line to the end of its headers.
fn received_request(trace: &str, method: &str) -> Option<String> {
    let start = trace.find(&format!("\n{method} sip:"))? + 1;
    let rest = &trace[start..];
    let end = ["\r\n\r\n", "\n\n"]
        .iter()
        .filter_map(|sep| rest.find(sep))
        .min()?;
    Some(rest[..end].to_string())
}

/// RFC 3327 behind the edge (ADR 0008): an agent's phone (SIPp) registers THROUGH Kamailio,
/// which adds its Path; the node stores it (`registrations.path`) and, when a caller who came
/// in through the edge reaches the queue, sends the agent's INVITE with that path as Route
/// to the edge — which relays it to the phone's registered address. The phone sees the
/// INVITE with the edge's Via and Record-Route on top, answers, the caller talks to it, and
/// the call record names queue and agent. One node on SQLite: only Kamailio is needed.
#[test]
fn kamailio_path_leads_the_agent_leg_through_the_edge() {
    use crate::acd_sipp::{agent_phone_at, ended_call, event_detail, packets, register_at};
    let Some(kamailio_bin) = Kamailio::binary() else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must have kamailio installed (scripts/test installs the kamailio package)"
        );
        eprintln!(
            "kamailio is not installed (apt-get install kamailio; scripts/test does): skipped"
        );
        return;
    };
    let server = Server::start(&[]);
    let edge = Kamailio::start(&kamailio_bin, &[server.sip_addr]);
    edge.wait_node(server.sip_addr, "A", Duration::from_secs(15));
    server.add_agent("pathy", "s3cret-pw", &[]);
    let port = support::free_port();
    let received = format!("received=sip:127.0.0.1:{port}");

    // 1. REGISTER through the edge, saying it supports Path: the 200 carries the edge's
    // Path back (RFC 3327 §5.3), with the phone's address as received=.
    let template = support::repo_root().join("sip-test/uac_register.xml");
    let text = std::fs::read_to_string(&template).expect("register scenario");
    let with_path = text
        .replace(
            "User-Agent: switchboard-test-register",
            "User-Agent: switchboard-test-register\n      Supported: path",
        )
        .replace(
            r#"<recv response="200"/>"#,
            &format!(
                r#"<recv response="200"><action><ereg regexp="{}" search_in="hdr" header="Path:" check_it="true" assign_to="path"/></action></recv>
  <Reference variables="path"/>"#,
                received.replace('.', "\\.")
            ),
        );
    assert_ne!(
        text, with_path,
        "uac_register.xml changed: update this test"
    );
    let scenario = server.dir.path().join("uac_register_path.xml");
    std::fs::write(&scenario, with_path).expect("write scenario");
    register_at(
        &server,
        edge.sip_addr,
        &scenario,
        port,
        "pathy",
        "s3cret-pw",
    );
    crate::acd_sipp::wait_agent_state(&server, "pathy", "available", Duration::from_secs(5));
    let row = server
        .db()
        .row("SELECT path, source FROM registrations WHERE aor = 'pathy'");
    let path = row["path"].as_str().unwrap_or_default().to_string();
    assert!(
        path.starts_with(&format!("<sip:{};lr", edge.sip_addr)) && path.contains(&received),
        "the binding keeps the edge's Path: {row:?}"
    );
    assert_eq!(row["source"], format!("udp:{}", edge.sip_addr), "{row:?}");

    // 2. A caller through the edge presses 0; the agent's phone answers and waits for the
    // BYE (the caller hangs up first, the node's BYE follows the edge's Record-Route).
    let phone = agent_phone_at(&server, edge.sip_addr, "pathy", port, 300, 60_000);
    let call = edge.call(
        &Scenario::call_with_digits(&[(1500, '0')], 2000, 6000),
        "+15551239301",
    );
    let caller = call.wait();
    assert_eq!(
        caller.code,
        Some(0),
        "caller through the edge\n{}\n{}",
        caller.text,
        edge.log()
    );
    let agent = phone.finish("agent phone behind the edge");

    // The INVITE reached the phone through the edge: its Via on top, then the node's; the
    // edge record-routed it and took its own Route (the path) off.
    let invite = received_request(&agent.text, "INVITE").expect("the phone got an INVITE");
    let vias: Vec<&str> = invite
        .lines()
        .filter(|l| l.trim_start().to_ascii_lowercase().starts_with("via:"))
        .collect();
    assert!(
        vias.len() == 2
            && vias[0].contains(&edge.sip_addr.to_string())
            && vias[1].contains(&server.sip_addr.to_string()),
        "edge's Via over the node's:\n{invite}"
    );
    assert!(
        invite.contains(&format!("Record-Route: <sip:{};lr", edge.sip_addr)),
        "{invite}"
    );
    assert!(
        !invite.lines().any(|l| l.starts_with("Route:")),
        "the edge consumed its Route:\n{invite}"
    );
    // The node's INVITE carried the stored path as Route (the edge logs what it routed).
    let log = edge.full_log();
    assert!(
        log.lines()
            .any(|l| l.contains("to a registered phone: INVITE")
                && l.contains(&format!("Route <sip:{};lr", edge.sip_addr))
                && l.contains(&received)
                && l.contains(&server.sip_addr.to_string())),
        "no Route-led INVITE from the node in the edge's log:\n{}",
        edge.log()
    );

    // 3. The call record: queue, agent, answered, and audio both ways over the bridge.
    let rec = ended_call(&server, "+15551239301");
    assert_eq!(rec["queue"], "support", "{rec:?}");
    assert_eq!(rec["agent"], "pathy", "{rec:?}");
    assert_eq!(rec["disposition"], "answered", "{rec:?}");
    assert_eq!(rec["hangup_cause"], "caller_hangup", "{rec:?}");
    let id = rec["id"].as_str().expect("id").to_string();
    let bridge = server.wait_db(Duration::from_secs(5), "bridge counters", |_| {
        event_detail(&server, &id, "bridge_packets")
    });
    assert!(packets(&bridge, "caller_to_agent") >= 50, "{bridge}");
    assert!(packets(&bridge, "agent_to_caller") >= 50, "{bridge}");
    drop(edge);
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // SIGTERM: the main process stops its children; SIGKILL would leave them running.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        if support::wait_child(&mut self.child, Duration::from_secs(5)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Kamailio in front of three nodes on PostgreSQL: 150 SIPp hotline calls through the edge
/// are spread over all three, each recorded once with its node; then node A is drained with
/// `POST /api/drain` while it holds calls: the dispatcher's OPTIONS probe takes A out of
/// rotation, every new call lands on B or C, and A's calls in progress finish normally.
#[test]
fn kamailio_spreads_calls_over_three_nodes_and_stops_sending_to_a_draining_one() {
    let Some(pg) = Pg::from_env() else { return };
    let url = pg.url.clone();
    let Some(kamailio_bin) = Kamailio::binary() else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must have kamailio installed (scripts/test installs the kamailio package)"
        );
        eprintln!(
            "kamailio is not installed (apt-get install kamailio; scripts/test does): skipped"
        );
        return;
    };
    let q = |sql: &str, node: &str| pg.count(sql, node);
    let names = [
        support::unique("ka"),
        support::unique("kb"),
        support::unique("kc"),
    ];
    let (_dirs, nodes) = start_nodes(
        &url,
        &names,
        "[cluster]\nheartbeat_s = 1\ndead_after_s = 3\n",
    );
    let addrs: Vec<std::net::SocketAddr> = nodes.iter().map(|n| n.sip_addr).collect();
    let edge = Kamailio::start(&kamailio_bin, &addrs);
    for addr in &addrs {
        edge.wait_node(*addr, "A", Duration::from_secs(15));
    }
    // Per node, in `names` order.
    let per = |sql: &str| -> Vec<i64> { names.iter().map(|n| q(sql, n)).collect() };
    let (a, node_a) = (&nodes[0], &names[0]);

    // 1. 150 calls through the edge: all recorded once, finished, on every node.
    let calls = "SELECT COUNT(*) FROM call_records WHERE node = $1";
    let ended = "SELECT COUNT(*) FROM call_records WHERE node = $1 AND ended_at IS NOT NULL \
                 AND disposition IS DISTINCT FROM 'interrupted'";
    let distinct = "SELECT COUNT(DISTINCT sip_call_id) FROM call_records WHERE node = $1";
    let run = edge.callers(150, 10, 500, "+15551230100").wait();
    assert_eq!(
        run.code,
        Some(0),
        "SIPp through kamailio failed\n{}\n{}",
        run.text,
        edge.log()
    );
    let spread = per(calls);
    assert_eq!(
        spread.iter().sum::<i64>(),
        150,
        "every call recorded once: {spread:?}"
    );
    assert_eq!(per(distinct).iter().sum::<i64>(), 150);
    assert!(
        spread.iter().all(|n| *n >= 30),
        "round-robin used every node: {spread:?}"
    );
    // The BYE went through the edge too (record-route): every row is closed normally.
    let deadline = Instant::now() + Duration::from_secs(10);
    while per(ended) != spread {
        assert!(
            Instant::now() < deadline,
            "not all calls ended normally: {:?} of {spread:?}",
            per(ended)
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // 2. Long calls on every node, then A drains while it holds some of them. (Gentle rates:
    // a test server has 40 RTP ports, and a node out of ports answers 503, which the edge
    // rightly takes as "out of rotation".)
    let long = edge.callers(6, 6, 10_000, "+15551230101");
    let live = "SELECT COUNT(*) FROM call_records WHERE node = $1 AND answered_at IS NOT NULL \
                AND ended_at IS NULL";
    let deadline = Instant::now() + Duration::from_secs(15);
    while per(live).iter().any(|n| *n < 2) {
        assert!(
            Instant::now() < deadline,
            "long calls never up on every node: {:?}\n{}",
            per(live),
            edge.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let held_by_a = q(live, node_a);
    assert_eq!(post(a.http_addr, "/api/drain", &a.api_token()), 200);
    edge.wait_node(a.sip_addr, "I", Duration::from_secs(5));
    let before = per(calls);
    let after = edge.callers(12, 4, 300, "+15551230102").wait();
    assert_eq!(
        after.code,
        Some(0),
        "calls during the drain\n{}",
        after.text
    );
    let now = per(calls);
    assert_eq!(
        now[0], before[0],
        "the edge sent a new call to the draining node: {before:?} -> {now:?}"
    );
    assert_eq!(
        now[1] + now[2],
        before[1] + before[2] + 12,
        "B and C took every new call: {before:?} -> {now:?}"
    );
    assert!(
        now[1] > before[1] && now[2] > before[2],
        "both remaining nodes share the new calls: {before:?} -> {now:?}"
    );
    // A's calls in progress were not cut: still up while the edge routed around A, then
    // SIPp's long calls all pass and A's rows end normally.
    assert!(
        q(live, node_a) > 0,
        "A still holds calls ({held_by_a} at the drain) while B and C take the new ones"
    );
    let long = long.wait();
    assert_eq!(
        long.code,
        Some(0),
        "A's calls in progress finished during the drain\n{}",
        long.text
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while q(ended, node_a) != before[0] || q(live, node_a) != 0 {
        assert!(
            Instant::now() < deadline,
            "A's calls did not end normally: {} of {}\n{}",
            q(ended, node_a),
            before[0],
            a.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(edge);
    drop(nodes);
}

/// Campaign contact leases across two nodes (issue 18): A and B run one campaign on
/// PostgreSQL against the SIPp customer farm; A is killed with SIGKILL while it is dialing.
/// B declares A dead, A's dialing contacts are finished `interrupted` once their leases ran
/// out and B calls them again — never while A's lease held — and every contact completes
/// with its one outcome; the farm saw exactly one INVITE per attempt.
#[test]
fn campaign_contacts_of_a_killed_node_are_retried_by_the_other() {
    use crate::campaign::{self, Behaviour, Farm, ServerOptions};
    let Some(base) = Pg::from_env() else { return };
    // A database of its own: the campaign takes every delayed ticket of the database.
    let own = base.own_database("lease");
    let url = own.url.clone();

    let dir = campaign::test_dir("switchboard-leases-");
    let farm_dir = dir.path().join("farm");
    let mut farm = Farm::start(&farm_dir);
    let opts = ServerOptions {
        extra: "[cluster]\nheartbeat_s = 1\ndead_after_s = 3\n".into(),
        ..ServerOptions::default()
    };
    let node_a = support::unique("la");
    let node_b = support::unique("lb");
    let farm_port = farm.port;
    let start = |node: &str| start_node(dir.path(), &url, farm_port, &opts, node);
    let a = start(&node_a);
    let lease_db = Pg::connect(&url);
    let (rt, db) = (&lease_db.rt, &lease_db.db);
    let count = |sql: &str, bind: &str| lease_db.count(sql, bind);
    let count0 = |sql: &str| lease_db.count0(sql);
    // 12 customers who answer and press 1 after 6 s: calls long enough to be cut.
    let tickets = campaign::tickets(7, &[Behaviour::SlowPress1; 12]);
    for t in &tickets {
        rt.block_on(
            sqlx::query(
                "INSERT INTO tickets (order_id, customer_name, phone, language, segment, timezone, \
                 status, delay_days, new_eta) VALUES ($1, $2, $3, 'en', 'standard', $4, 'delayed', $5, '2026-12-24')",
            )
            .bind(&t.order_id)
            .bind(format!("Customer {}", t.order_id))
            .bind(&t.phone)
            .bind(&t.timezone)
            .bind(t.delay_days)
            .execute(&db.pool),
        )
        .unwrap_or_else(|e| panic!("insert ticket {t:?}: {e}"));
    }
    let b = start(&node_b);
    let (code, body) = campaign::http(
        a.http_addr,
        "POST",
        "/api/campaigns",
        Some(campaign::TOKEN),
        Some(&campaign::campaign_spec("leases-12", 3, 2)),
    );
    assert_eq!(code, 201, "{body}\n{}", a.log());
    let id = body["id"].as_i64().expect("campaign id").to_string();
    let (code, body) = campaign::http(
        a.http_addr,
        "POST",
        &format!("/api/campaigns/{id}/start"),
        Some(campaign::TOKEN),
        None,
    );
    assert_eq!(code, 200, "{body}");

    // Both nodes dialing; then A dies.
    let dialing_by = |node: &str| {
        count(
            &format!(
                "SELECT COUNT(*) FROM campaign_contacts WHERE campaign_id = {id} \
                 AND state = 'dialing' AND lease_owner = $1"
            ),
            node,
        )
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while dialing_by(&node_a) < 1 || dialing_by(&node_b) < 1 {
        assert!(
            Instant::now() < deadline,
            "both nodes never dialed at once: A {}, B {}\n{}\n{}",
            dialing_by(&node_a),
            dialing_by(&node_b),
            a.log(),
            b.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let st = Command::new("kill")
        .args(["-KILL", &a.pid().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let killed = Instant::now();
    // What A held when it died (nothing changes them until their leases run out).
    let held: Vec<i64> = rt
        .block_on(
            sqlx::query_scalar::<_, i64>(&format!(
                "SELECT id FROM campaign_contacts WHERE campaign_id = {id} \
                 AND state = 'dialing' AND lease_owner = $1 ORDER BY id"
            ))
            .bind(node_a.clone())
            .fetch_all(&db.pool),
        )
        .expect("A's contacts");
    assert!(!held.is_empty());
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        dialing_by(&node_a),
        held.len() as i64,
        "A's leased contacts were touched before dead_after_s"
    );

    // B finishes the campaign alone.
    let completed =
        format!("SELECT COUNT(*) FROM campaigns WHERE id = {id} AND state = 'completed'");
    let deadline = Instant::now() + Duration::from_secs(150);
    while count0(&completed) != 1 {
        assert!(
            Instant::now() < deadline,
            "the campaign never completed on B\n{}",
            b.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(killed.elapsed() >= Duration::from_secs(3));
    // The store writer batches: every attempt's call record written (not A's cut ones: A
    // may have died before its writer wrote them).
    let unrecorded = format!(
        "SELECT COUNT(*) FROM campaign_attempts a JOIN campaign_contacts c ON c.id = a.contact_id \
         WHERE c.campaign_id = {id} AND a.disposition IS DISTINCT FROM 'interrupted' \
         AND (a.call_id IS NULL OR a.call_id NOT IN \
         (SELECT id FROM call_records WHERE ended_at IS NOT NULL))"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while count0(&unrecorded) != 0 {
        assert!(
            Instant::now() < deadline,
            "{} attempts without a finished call record\n{}",
            count0(&unrecorded),
            b.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(1000)); // the farm's last BYEs
    let farm_calls = farm.stop().calls();

    let rows = rt
        .block_on(
            sqlx::query_as::<_, (i64, String, i64, String, Option<String>, bool)>(&format!(
                "SELECT c.id, c.state, a.attempt, COALESCE(a.disposition, ''), r.node, \
                        COALESCE(a.started_at >= prev.ended_at, true) \
                 FROM campaign_contacts c \
                 JOIN campaign_attempts a ON a.contact_id = c.id \
                 LEFT JOIN campaign_attempts prev ON prev.contact_id = c.id AND prev.attempt = a.attempt - 1 \
                 LEFT JOIN call_records r ON r.id = a.call_id \
                 WHERE c.campaign_id = {id} ORDER BY c.id, a.attempt"
            ))
            .fetch_all(&db.pool),
        )
        .expect("attempts");
    let mut errors = Vec::new();
    let contacts: std::collections::BTreeSet<i64> = rows.iter().map(|r| r.0).collect();
    if contacts.len() != 12 {
        errors.push(format!("{} contacts with attempts, not 12", contacts.len()));
    }
    for c in &contacts {
        let mine: Vec<_> = rows.iter().filter(|r| r.0 == *c).collect();
        let was_held = held.contains(c);
        let want = if was_held { 2 } else { 1 };
        if mine.len() != want || mine.iter().any(|r| r.1 != "completed") {
            errors.push(format!("contact {c} (held by A: {was_held}): {mine:?}"));
            continue;
        }
        if was_held {
            if mine[0].3 != "interrupted" || mine[1].4.as_deref() != Some(node_b.as_str()) {
                errors.push(format!(
                    "contact {c}: not interrupted then retried by B: {mine:?}"
                ));
            }
            if !mine[1].5 {
                errors.push(format!(
                    "contact {c}: attempt 2 started before attempt 1 ended: {mine:?}"
                ));
            }
        }
    }
    let attempts = rows.len();
    if farm_calls.len() != attempts {
        errors.push(format!(
            "the farm saw {} calls for {attempts} attempts",
            farm_calls.len()
        ));
    }
    let outcomes = count0(&format!(
        "SELECT COUNT(*) FROM call_outcomes o JOIN campaign_contacts c ON c.ticket_id = o.ticket_id \
         WHERE c.campaign_id = {id}"
    ));
    if outcomes != 12 {
        errors.push(format!("{outcomes} outcome rows for 12 customers"));
    }
    eprintln!(
        "leases: A held {} contacts at SIGKILL, {attempts} attempts, farm calls {}, campaign done {:.1} s after the kill",
        held.len(),
        farm_calls.len(),
        killed.elapsed().as_secs_f64()
    );
    assert!(
        errors.is_empty(),
        "{}\n{rows:?}\n---- B ----\n{}",
        errors.join("\n"),
        b.log()
    );
    drop(b);
    drop(a);
    drop(lease_db);
}

/// Campaign control across nodes: two nodes run one campaign (started through A); a pause
/// through A's API stops both nodes' claims at once — no attempt starts on either node
/// while paused, the calls in progress finish normally, and both runners give their
/// reserved contacts back; a resume through A reaches B too (B dials again) and the
/// campaign completes with one attempt and one outcome per customer. Then a second
/// campaign is stopped through A while B dials it: no attempt starts after the stop, B's
/// call ends normally. The farm saw exactly one INVITE per attempt.
#[test]
fn campaign_pause_resume_and_stop_through_one_node_reach_the_other() {
    use crate::campaign::{self, Behaviour, Farm, ServerOptions};
    let Some(base) = Pg::from_env() else { return };
    // A database of its own: nodes adopt every running campaign of the database.
    let own = base.own_database("control");
    let url = own.url.clone();

    let dir = campaign::test_dir("switchboard-control-");
    let mut farm = Farm::start(&dir.path().join("farm"));
    let opts = ServerOptions {
        extra: "[cluster]\nheartbeat_s = 1\ndead_after_s = 3\n".into(),
        ..ServerOptions::default()
    };
    let node_a = support::unique("ca");
    let node_b = support::unique("cb");
    let farm_port = farm.port;
    let start = |node: &str| start_node(dir.path(), &url, farm_port, &opts, node);
    let a = start(&node_a);
    let pg = Pg::connect(&url);
    let (rt, db) = (&pg.rt, &pg.db);
    let count = |sql: &str, bind: &str| pg.count(sql, bind);
    let count0 = |sql: &str| pg.count0(sql);
    let insert = |tickets: &[campaign::Ticket], segment: &str| {
        for t in tickets {
            rt.block_on(
                sqlx::query(
                    "INSERT INTO tickets (order_id, customer_name, phone, language, segment, timezone, \
                     status, delay_days, new_eta) VALUES ($1, $2, $3, 'en', $4, $5, 'delayed', $6, '2026-12-24')",
                )
                .bind(&t.order_id)
                .bind(format!("Customer {}", t.order_id))
                .bind(&t.phone)
                .bind(segment)
                .bind(&t.timezone)
                .bind(t.delay_days)
                .execute(&db.pool),
            )
            .unwrap_or_else(|e| panic!("insert ticket {t:?}: {e}"));
        }
    };
    insert(&campaign::tickets(8, &[Behaviour::Press1; 12]), "pausing");
    insert(
        &campaign::tickets(9, &[Behaviour::SlowPress1; 8]),
        "stopping",
    );
    let b = start(&node_b);
    let logs = || format!("---- A ----\n{}\n---- B ----\n{}", a.log(), b.log());
    let new_campaign = |name: &str, segment: &str| -> i64 {
        let mut spec = campaign::campaign_spec(name, 2, 2);
        spec["tickets"]["segment"] = segment.into();
        let (code, body) = campaign::http(
            a.http_addr,
            "POST",
            "/api/campaigns",
            Some(campaign::TOKEN),
            Some(&spec),
        );
        assert_eq!(code, 201, "{body}");
        body["id"].as_i64().expect("campaign id")
    };
    let act = |id: i64, action: &str| {
        let (code, body) = campaign::http(
            a.http_addr,
            "POST",
            &format!("/api/campaigns/{id}/{action}"),
            Some(campaign::TOKEN),
            None,
        );
        assert_eq!(code, 200, "{action}: {body}");
    };
    let dialing_by = |id: i64, node: &str| {
        count(
            &format!(
                "SELECT COUNT(*) FROM campaign_contacts WHERE campaign_id = {id} \
                 AND state = 'dialing' AND lease_owner = $1"
            ),
            node,
        )
    };
    let attempts = |id: i64| {
        count0(&format!(
            "SELECT COUNT(*) FROM campaign_attempts a JOIN campaign_contacts c ON c.id = a.contact_id \
             WHERE c.campaign_id = {id}"
        ))
    };
    let wait = |what: &str, secs: u64, cond: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !cond() {
            assert!(Instant::now() < deadline, "{what}\n{}", logs());
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    // ---- campaign 1: pause and resume through A ----
    let c1 = new_campaign("control-pause", "pausing");
    act(c1, "start");
    wait("both nodes never dialed campaign 1 at once", 30, &|| {
        dialing_by(c1, &node_a) >= 1 && dialing_by(c1, &node_b) >= 1
    });
    act(c1, "pause");
    let paused = Instant::now();
    let at_pause = attempts(c1);
    let in_progress = count0(&format!(
        "SELECT COUNT(*) FROM campaign_contacts WHERE campaign_id = {c1} AND state = 'dialing'"
    ));
    // Both runners stop and hand back their reservations (the runner's stop, measured);
    // then the calls in progress end.
    let reserved_by = |node: &str| {
        count(
            &format!(
                "SELECT COUNT(*) FROM campaign_contacts WHERE campaign_id = {c1} \
                 AND state IN ('pending', 'retry') AND lease_owner = $1"
            ),
            node,
        )
    };
    let reserved_at_pause = (reserved_by(&node_a), reserved_by(&node_b));
    wait(
        "the runners never gave back their reservations",
        10,
        &|| reserved_by(&node_a) == 0 && reserved_by(&node_b) == 0,
    );
    let released = paused.elapsed();
    let held = format!(
        "SELECT COUNT(*) FROM campaign_contacts WHERE campaign_id = {c1} \
         AND (state = 'dialing' OR lease_owner IS NOT NULL)"
    );
    wait("the runners never let go of campaign 1", 30, &|| {
        count0(&held) == 0
    });
    let settled = paused.elapsed();
    assert!(
        released < Duration::from_secs(2),
        "a runner kept its reservations {released:?} after the pause\n{}",
        logs()
    );
    std::thread::sleep(Duration::from_secs(3));
    let during_pause = attempts(c1) - at_pause;
    assert_eq!(
        during_pause,
        0,
        "attempts started after the pause through A\n{}",
        logs()
    );
    let cut = count0(&format!(
        "SELECT COUNT(*) FROM campaign_attempts a JOIN campaign_contacts c ON c.id = a.contact_id \
         WHERE c.campaign_id = {c1} AND (a.ended_at IS NULL OR a.disposition <> 'answered')"
    ));
    assert_eq!(
        cut, 0,
        "a call in progress at the pause did not end normally"
    );

    act(c1, "resume");
    let resumed = Instant::now();
    let mut b_back = None;
    let completed =
        format!("SELECT COUNT(*) FROM campaigns WHERE id = {c1} AND state = 'completed'");
    let deadline = Instant::now() + Duration::from_secs(120);
    while count0(&completed) != 1 {
        if b_back.is_none() && dialing_by(c1, &node_b) >= 1 {
            b_back = Some(resumed.elapsed());
        }
        assert!(
            Instant::now() < deadline,
            "campaign 1 never completed\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let b_back = b_back.unwrap_or_else(|| panic!("B never dialed after the resume\n{}", logs()));
    let per_contact = rt
        .block_on(
            sqlx::query_as::<_, (i64, String, i64, String)>(&format!(
                "SELECT c.id, c.state, COUNT(a.attempt), string_agg(COALESCE(a.disposition, '-'), ',') \
                 FROM campaign_contacts c LEFT JOIN campaign_attempts a ON a.contact_id = c.id \
                 WHERE c.campaign_id = {c1} GROUP BY c.id, c.state ORDER BY c.id"
            ))
            .fetch_all(&db.pool),
        )
        .expect("contacts");
    let wrong: Vec<_> = per_contact
        .iter()
        .filter(|r| r.1 != "completed" || r.2 != 1 || r.3 != "answered")
        .collect();
    assert!(
        per_contact.len() == 12 && wrong.is_empty(),
        "campaign 1: every contact once, answered: {wrong:?} of {per_contact:?}\n{}",
        logs()
    );
    let outcomes = count0(&format!(
        "SELECT COUNT(*) FROM call_outcomes o JOIN campaign_contacts c ON c.ticket_id = o.ticket_id \
         WHERE c.campaign_id = {c1}"
    ));
    assert_eq!(outcomes, 12, "outcome rows of campaign 1");

    // ---- campaign 2: stopped through A while B dials it ----
    let c2 = new_campaign("control-stop", "stopping");
    act(c2, "start");
    wait("B never dialed campaign 2", 30, &|| {
        dialing_by(c2, &node_b) >= 1
    });
    act(c2, "stop");
    let stopped = Instant::now();
    let at_stop = attempts(c2);
    wait("the runners never let go of campaign 2", 30, &|| {
        count0(&format!(
            "SELECT COUNT(*) FROM campaign_contacts WHERE campaign_id = {c2} \
             AND (state = 'dialing' OR lease_owner IS NOT NULL)"
        )) == 0
    });
    let stop_settled = stopped.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        attempts(c2),
        at_stop,
        "attempts started after the stop through A\n{}",
        logs()
    );
    let c2_rows = rt
        .block_on(
            sqlx::query_as::<_, (String, i64)>(&format!(
                "SELECT COALESCE(a.disposition, '-'), COUNT(*) FROM campaign_attempts a \
                 JOIN campaign_contacts c ON c.id = a.contact_id WHERE c.campaign_id = {c2} \
                 GROUP BY 1 ORDER BY 1"
            ))
            .fetch_all(&db.pool),
        )
        .expect("attempts of campaign 2");
    assert!(
        c2_rows.iter().all(|(d, _)| d == "answered"),
        "calls in progress at the stop did not end normally: {c2_rows:?}"
    );
    assert!(
        at_stop < 8,
        "campaign 2 was done before the stop: the test proves nothing"
    );
    let state = count0(&format!(
        "SELECT COUNT(*) FROM campaigns WHERE id = {c2} AND state = 'stopped'"
    ));
    assert_eq!(state, 1);

    std::thread::sleep(Duration::from_millis(1000)); // the farm's last BYEs
    let farm_calls = farm.stop().calls();
    let total = attempts(c1) + attempts(c2);
    eprintln!(
        "control: campaign 1 {at_pause} attempts at the pause ({in_progress} in progress, \
         reserved by A/B {reserved_at_pause:?}), reservations given back {:.2} s and calls \
         ended {:.2} s after the pause, B dialing again {:.2} s after the resume; \
         campaign 2 {at_stop} attempts at the stop, runners let go {:.2} s after it; \
         farm calls {} for {total} attempts",
        released.as_secs_f64(),
        settled.as_secs_f64(),
        b_back.as_secs_f64(),
        stop_settled.as_secs_f64(),
        farm_calls.len()
    );
    assert_eq!(
        farm_calls.len() as i64,
        total,
        "the farm saw {} calls for {total} attempts",
        farm_calls.len()
    );
    drop(b);
    drop(a);
    drop(pg);
}

/// Trunk and campaign caps held across nodes (issue 18, docs/adr/0010-shared-caps.md): two
/// nodes on one PostgreSQL run one campaign through a trunk of `max_channels = 4`,
/// `max_cps = 5` (the campaign asks for the same). Counted at the SIPp customer farm: never
/// more than 4 calls at once and at most `max_cps` + one per node new calls in any second
/// (each node's pacer rounds its share of the rate up) — each node alone would allow 4 and
/// 5. Both nodes dial, every contact has one attempt and one outcome, the farm saw one
/// INVITE per attempt, and `GET /api/trunks` shows each node's block (their sum ≤ 4).
#[test]
fn trunk_and_campaign_caps_hold_across_two_nodes_counted_at_the_farm() {
    use crate::campaign::{self, Behaviour, Farm, ServerOptions};
    let Some(base) = Pg::from_env() else { return };
    let own = base.own_database("caps");
    let url = own.url.clone();
    const CHANNELS: usize = 4;
    const CPS: usize = 5;
    const CONTACTS: usize = 40;

    let dir = campaign::test_dir("switchboard-caps-");
    let mut farm = Farm::start(&dir.path().join("farm"));
    let opts = ServerOptions {
        trunk_channels: CHANNELS as u32,
        trunk_cps: CPS as u32,
        extra: "[cluster]\nheartbeat_s = 1\ndead_after_s = 3\n".into(),
        ..ServerOptions::default()
    };
    let node_a = support::unique("capa");
    let node_b = support::unique("capb");
    let farm_port = farm.port;
    let start = |node: &str| start_node(dir.path(), &url, farm_port, &opts, node);
    let a = start(&node_a);
    let b = start(&node_b);
    let pg = Pg::connect(&url);
    let (rt, db) = (&pg.rt, &pg.db);
    let count = |sql: &str, bind: &str| pg.count(sql, bind);
    let count0 = |sql: &str| pg.count0(sql);
    for t in &campaign::tickets(6, &[Behaviour::Press1; CONTACTS]) {
        rt.block_on(
            sqlx::query(
                "INSERT INTO tickets (order_id, customer_name, phone, language, segment, timezone, \
                 status, delay_days, new_eta) VALUES ($1, $2, $3, 'en', 'standard', $4, 'delayed', $5, '2026-12-24')",
            )
            .bind(&t.order_id)
            .bind(format!("Customer {}", t.order_id))
            .bind(&t.phone)
            .bind(&t.timezone)
            .bind(t.delay_days)
            .execute(&db.pool),
        )
        .unwrap_or_else(|e| panic!("insert ticket {t:?}: {e}"));
    }
    let logs = || format!("---- A ----\n{}\n---- B ----\n{}", a.log(), b.log());
    let (code, body) = campaign::http(
        a.http_addr,
        "POST",
        "/api/campaigns",
        Some(campaign::TOKEN),
        Some(&campaign::campaign_spec("caps-40", CHANNELS, CPS)),
    );
    assert_eq!(code, 201, "{body}");
    let id = body["id"].as_i64().expect("campaign id");
    let (code, body) = campaign::http(
        a.http_addr,
        "POST",
        &format!("/api/campaigns/{id}/start"),
        Some(campaign::TOKEN),
        None,
    );
    assert_eq!(code, 200, "{body}");
    let started = Instant::now();

    // While it runs: each node's block of the trunk, as operators see it.
    let mut errors = Vec::new();
    let mut blocks_seen = Vec::new();
    let completed =
        format!("SELECT COUNT(*) FROM campaigns WHERE id = {id} AND state = 'completed'");
    let deadline = Instant::now() + Duration::from_secs(240);
    while count0(&completed) != 1 {
        assert!(
            Instant::now() < deadline,
            "the campaign never completed\n{}",
            logs()
        );
        let block = |addr| {
            let (_, v) = campaign::http(addr, "GET", "/api/trunks", Some(campaign::TOKEN), None);
            v["trunks"][0]["node_channels"].as_u64()
        };
        if let (Some(x), Some(y)) = (block(a.http_addr), block(b.http_addr)) {
            blocks_seen.push((x, y));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let took = started.elapsed();
    let unrecorded = format!(
        "SELECT COUNT(*) FROM campaign_attempts a JOIN campaign_contacts c ON c.id = a.contact_id \
         WHERE c.campaign_id = {id} AND (a.call_id IS NULL OR a.call_id NOT IN \
         (SELECT id FROM call_records WHERE ended_at IS NOT NULL))"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while count0(&unrecorded) != 0 {
        assert!(
            Instant::now() < deadline,
            "attempts without a record\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(1000)); // the farm's last BYEs
    let calls = farm.stop().calls();

    let concurrent = campaign::max_concurrent(&calls);
    let per_second = campaign::max_in_window(&calls, Duration::from_secs(1));
    if concurrent > CHANNELS {
        errors.push(format!(
            "{concurrent} calls at once at the farm: trunk max_channels {CHANNELS}"
        ));
    }
    if per_second > CPS + 2 {
        errors.push(format!(
            "{per_second} new calls within one second at the farm: trunk max_cps {CPS} (+1 per node)"
        ));
    }
    let by_node = |node: &str| {
        count(
            &format!(
                "SELECT COUNT(*) FROM campaign_attempts a JOIN campaign_contacts c ON c.id = a.contact_id \
                 JOIN call_records r ON r.id = a.call_id WHERE c.campaign_id = {id} AND r.node = $1"
            ),
            node,
        )
    };
    let (on_a, on_b) = (by_node(&node_a), by_node(&node_b));
    if on_a == 0 || on_b == 0 {
        errors.push(format!("one node never dialed: A {on_a}, B {on_b}"));
    }
    let attempts = count0(&format!(
        "SELECT COUNT(*) FROM campaign_attempts a JOIN campaign_contacts c ON c.id = a.contact_id \
         WHERE c.campaign_id = {id}"
    ));
    let done = count0(&format!(
        "SELECT COUNT(*) FROM campaign_contacts WHERE campaign_id = {id} AND state = 'completed' AND attempts = 1"
    ));
    if attempts != CONTACTS as i64 || done != CONTACTS as i64 {
        errors.push(format!(
            "{attempts} attempts, {done} contacts completed in one attempt, for {CONTACTS}"
        ));
    }
    if calls.len() as i64 != attempts || calls.iter().any(|c| c.invites != 1) {
        errors.push(format!(
            "the farm saw {} calls ({} with more than one INVITE) for {attempts} attempts",
            calls.len(),
            calls.iter().filter(|c| c.invites != 1).count()
        ));
    }
    let outcomes = count0(&format!(
        "SELECT COUNT(*) FROM call_outcomes o JOIN campaign_contacts c ON c.ticket_id = o.ticket_id \
         WHERE c.campaign_id = {id}"
    ));
    if outcomes != CONTACTS as i64 {
        errors.push(format!("{outcomes} outcome rows for {CONTACTS} customers"));
    }
    if blocks_seen.is_empty() {
        errors.push("GET /api/trunks never showed a node's block (node_channels)".into());
    }
    if let Some(over) = blocks_seen.iter().find(|(x, y)| x + y > CHANNELS as u64) {
        errors.push(format!("the nodes' blocks {over:?} exceed {CHANNELS}"));
    }
    eprintln!(
        "caps: {CONTACTS} contacts in {:.1} s ({:.0}/min) on 2 nodes (A {on_a}, B {on_b} calls); \
         at the farm: max {concurrent} at once, max {per_second} new in 1 s; blocks seen {:?}",
        took.as_secs_f64(),
        CONTACTS as f64 * 60.0 / took.as_secs_f64(),
        &blocks_seen[..blocks_seen.len().min(12)]
    );
    assert!(errors.is_empty(), "{}\n{}", errors.join("\n"), logs());
    drop(b);
    drop(a);
    drop(pg);
}

/// One cluster node for the campaign tests: its own directory under `dir` (config, spool),
/// the shared PostgreSQL at `url`, the farm's trunk, `--node-id node`.
fn start_node(
    dir: &std::path::Path,
    url: &str,
    farm_port: u16,
    opts: &crate::campaign::ServerOptions,
    node: &str,
) -> Server {
    let d = dir.join(node);
    std::fs::create_dir_all(&d).expect("node dir");
    let setup = crate::campaign::ServerSetup::with(&d, farm_port, opts);
    Server::start_on(
        Some(url),
        &[
            "--node-id",
            node,
            "--config",
            &setup.config.display().to_string(),
            "--api-token",
            crate::campaign::TOKEN,
            "--no-demo-data",
        ],
    )
}

// ---- queues shared by the nodes (issue 18, ADR 0011) --------------------------------------

/// `[cluster] queues = "cluster"`: one node leads the queues (PostgreSQL advisory lock) and
/// the other talks to it by LISTEN/NOTIFY. An agent whose phone registered with the leader A
/// answers a caller who landed on the follower B (the leader offers, B rings the phone);
/// B's API shows the agent as the leader sees it. Then A is killed with SIGKILL: B takes the
/// lead, the phone registers with B (as it would through the edge), and B's next caller is
/// answered by it.
#[test]
fn shared_queues_an_agent_of_one_node_answers_a_caller_of_the_other_and_the_lead_fails_over() {
    use crate::acd_sipp::{agent_phone_at, packets, register_at, wait_agent_state};
    let Some(base) = Pg::from_env() else { return };
    let own = base.own_database("queues");
    let pg = Pg::connect(&own.url);
    let url = own.url.clone();
    let node_a = support::unique("qa");
    let node_b = support::unique("qb");
    let cluster = "[cluster]\nheartbeat_s = 1\ndead_after_s = 3\nqueues = \"cluster\"\n";
    let (setup_a, setup_b) = (NodeSetup::new(cluster), NodeSetup::new(cluster));
    let leads = |s: &Server| s.log().contains("this node leads the cluster's queues");
    let a = setup_a.start(&url, &node_a);
    support::wait_for(Duration::from_secs(10), "A to lead the queues", || {
        leads(&a).then_some(())
    });
    let b = setup_b.start(&url, &node_b);
    add_agent_on(&url, "roamer");

    // The phone registers with A; B's API (answered by the leader) shows it available.
    let register = support::repo_root().join("sip-test/uac_register.xml");
    let port = support::free_port();
    register_at(&a, a.sip_addr, &register, port, "roamer", "s3cret-pw");
    wait_agent_state(&b, "roamer", "available", Duration::from_secs(10));
    assert!(!leads(&b), "only one leader\n{}", b.log());
    let serving = |s: &Server| {
        let (code, body) = s.api_get("/metrics").expect("GET /metrics");
        assert_eq!(code, 200, "{body}");
        body.lines()
            .find_map(|l| l.strip_prefix("switchboard_acd_leader "))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no switchboard_acd_leader in the scrape:\n{body}"))
    };
    assert_eq!((serving(&a), serving(&b)), ("1".into(), "0".into()));

    // A caller of B presses 0: the leader offers roamer, B rings the phone at A's binding.
    let answer = |caller: &str| {
        format!(
            "SELECT COUNT(*) FROM call_records WHERE caller = '{caller}' AND node = $1 \
             AND agent = 'roamer' AND queue = 'support' AND disposition = 'answered' \
             AND ended_at IS NOT NULL"
        )
    };
    let phone = agent_phone_at(&a, b.sip_addr, "roamer", port, 300, 60_000);
    let call = b.spawn_sipp(
        &Scenario::call_with_digits(&[(1500, '0')], 2000, 6000),
        &["-set", "caller", "+15551239401"],
    );
    let caller = call.wait();
    assert_eq!(
        caller.code,
        Some(0),
        "caller of B\n{}\n{}",
        caller.text,
        b.log()
    );
    phone.finish("agent phone registered with A, rung by B");
    let deadline = Instant::now() + Duration::from_secs(15);
    while pg.count(&answer("+15551239401"), &node_b) != 1 {
        assert!(
            Instant::now() < deadline,
            "B's caller was not answered by roamer\nA:{}\nB:{}",
            a.log(),
            b.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let id: String = pg
        .rt
        .block_on(
            sqlx::query_scalar("SELECT id FROM call_records WHERE caller = '+15551239401'")
                .fetch_one(&pg.db.pool),
        )
        .expect("call id");
    let bridge = pg.bridge_packets(&id);
    assert!(packets(&bridge, "caller_to_agent") >= 50, "{bridge}");
    assert!(packets(&bridge, "agent_to_caller") >= 50, "{bridge}");
    // The leader logged the queue events of B's caller once each.
    assert_eq!(
        pg.count(
            "SELECT COUNT(*) FROM queue_log WHERE call_id = $1 AND event = 'connect'",
            &id
        ),
        1
    );

    // The leader dies: B takes the lead within a few heartbeats.
    let st = Command::new("kill")
        .args(["-KILL", &a.pid().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let killed = Instant::now();
    support::wait_for(Duration::from_secs(10), "B to lead the queues", || {
        leads(&b).then_some(())
    });
    eprintln!("B leads {:?} after the kill", killed.elapsed());
    assert_eq!(serving(&b), "1");
    drop(a);
    register_at(&b, b.sip_addr, &register, port, "roamer", "s3cret-pw");
    wait_agent_state(&b, "roamer", "available", Duration::from_secs(10));
    let phone = agent_phone_at(&b, b.sip_addr, "roamer", port, 300, 60_000);
    let call = b.spawn_sipp(
        &Scenario::call_with_digits(&[(1500, '0')], 2000, 6000),
        &["-set", "caller", "+15551239402"],
    );
    let caller = call.wait();
    assert_eq!(
        caller.code,
        Some(0),
        "caller of B after the fail-over\n{}",
        b.log()
    );
    phone.finish("agent phone registered with B");
    let deadline = Instant::now() + Duration::from_secs(15);
    while pg.count(&answer("+15551239402"), &node_b) != 1 {
        assert!(
            Instant::now() < deadline,
            "B's caller after the fail-over was not answered by roamer\n{}",
            b.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Chromium for the browser tests: None (skipped, with a message) when missing outside CI.
fn chromium() -> Option<String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !std::path::Path::new(&chromium).exists() {
        assert!(std::env::var("CI").is_err(), "CI must have Chromium");
        eprintln!("Chromium not found at {chromium}: skipped");
        return None;
    }
    Some(chromium)
}

/// Two nodes sharing their queues, with agent `webdora`'s page on A.
struct BrowserAcross {
    a: Server,
    b: Server,
    node_b: String,
    dir_b: tempfile::TempDir,
    _dir_a: tempfile::TempDir,
    /// The page driver (tests/browser/agent_call.js) and its stdout lines after `READY`.
    child: std::process::Child,
    line_rx: std::sync::mpsc::Receiver<String>,
}

/// Nodes A (the queues' leader) and B on the database `url`, `[cluster] queues =
/// "cluster"`, each with `extra` in its config and a hotline that queues in `support` at
/// once; agent `webdora` (queue `support`) logged in on A's `/agent` page in headless
/// Chromium, driven by tests/browser/agent_call.js in `mode` with the browser phone on,
/// and available as B (the leader's view) shows.
fn browser_agent_across(url: &str, chromium: &str, mode: &str, extra: &str) -> BrowserAcross {
    use crate::acd_sipp::wait_agent_state;
    let node_a = support::unique("wa");
    let node_b = support::unique("wb");
    let setup = |dir: &std::path::Path| {
        let plans = crate::sip_ws::hotline_queues_at_once(dir);
        let cfg = support::config_with(
            dir,
            &format!("[cluster]\nheartbeat_s = 1\ndead_after_s = 3\nqueues = \"cluster\"\n{extra}"),
        );
        let text = std::fs::read_to_string(&cfg).expect("config");
        let planned = text.replace(
            "dialplan_dir = \"dialplans\"",
            &format!("dialplan_dir = {:?}", plans.display().to_string()),
        );
        assert_ne!(planned, text, "config/default.toml has a dialplan_dir line");
        std::fs::write(&cfg, planned).expect("write config");
        cfg
    };
    let dir_a = tempfile::tempdir().expect("dir");
    let dir_b = tempfile::tempdir().expect("dir");
    let cfg_a = setup(dir_a.path());
    let cfg_b = setup(dir_b.path());
    let start = |node: &str, cfg: &std::path::Path| {
        Server::start_on(
            Some(url),
            &["--node-id", node, "--config", &cfg.display().to_string()],
        )
    };
    let a = start(&node_a, &cfg_a);
    support::wait_for(Duration::from_secs(10), "A to lead the queues", || {
        a.log()
            .contains("this node leads the cluster's queues")
            .then_some(())
    });
    let b = start(&node_b, &cfg_b);
    add_agent_on(url, "webdora");

    // The agent's page on A, phone on.
    let script = support::repo_root().join("tests/browser/agent_call.js");
    let mut cmd = Command::new("node");
    cmd.arg(&script)
        .arg(format!("http://{}", a.http_addr))
        .arg("webdora")
        .arg("s3cret-pw")
        .arg(mode)
        .env("NODE_PATH", crate::sip_ws::playwright_node_path())
        .env("CHROMIUM", chromium);
    let (child, line_rx) = crate::sip_ws::start_page_driver(cmd, &a);
    // Reachable through A's page, as B's API (the leader's view) shows.
    wait_agent_state(&b, "webdora", "available", Duration::from_secs(10));
    BrowserAcross {
        a,
        b,
        node_b,
        dir_b,
        _dir_a: dir_a,
        child,
        line_rx,
    }
}

/// Node A's browser agent for node B's caller (issue 18, ADR 0011 "As built"): two nodes on
/// one PostgreSQL with shared queues; agent `webdora` logs in on A's `/agent` page in
/// headless Chromium (fake microphone: a beep) with the browser phone on; a SIPp customer
/// of B with a ticket calls the hotline (queue `support` at once) with a 400 Hz tone. The
/// leader offers B's caller to webdora; B rings A with a marked INVITE, A rings the page,
/// which shows B's caller's order in the pop, answers, and audio flows both ways through
/// B's bridge and A's browser leg. The page hangs up and disposes of the call: one call
/// record on B naming the agent, the disposition against B's call. And an INVITE with the
/// marker from an address that is no node's is refused (403).
#[test]
fn shared_queues_browser_agent_of_one_node_answers_a_caller_of_the_other() {
    let Some(base) = Pg::from_env() else { return };
    let Some(chromium) = chromium() else { return };
    let own = base.own_database("webq");
    let pg = Pg::connect(&own.url);
    let BrowserAcross {
        a,
        b,
        node_b,
        dir_b,
        child,
        line_rx,
        ..
    } = browser_agent_across(&own.url, &chromium, "dispose", "");
    pg.exec(
        "INSERT INTO tickets (order_id, customer_name, phone, language, segment, timezone, status, delay_days, new_eta) \
         VALUES ('WEB-1818', 'Nodal Crosser', '+15551239418', 'en', 'web', 'UTC', 'delayed', 3, '2026-12-24')",
    );

    // A stranger (not a node's SIP socket) sending the marked INVITE to A is refused.
    let stranger = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    stranger
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let me = stranger.local_addr().expect("addr");
    let invite = format!(
        "INVITE sip:webdora@{a};sb-browser SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bK-stranger-18a\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:mallory@{me}>;tag=m1\r\n\
         To: <sip:webdora@{a}>\r\n\
         Call-ID: stranger-18a@{me}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:mallory@{me}>\r\n\
         X-Switchboard-Call: forged-call\r\n\
         Content-Length: 0\r\n\r\n",
        a = a.sip_addr
    );
    stranger
        .send_to(invite.as_bytes(), a.sip_addr)
        .expect("send");
    let mut buf = [0u8; 4096];
    let final_status = loop {
        let (n, _) = stranger
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("no answer to the stranger's INVITE: {e}\n{}", a.log()));
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        let code: u16 = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        if code >= 200 {
            break text;
        }
    };
    assert!(
        final_status.starts_with("SIP/2.0 403"),
        "the stranger's browser leg: {final_status}"
    );

    // B's customer: 12 s of tone, on the line until the BYE.
    let caller = crate::sip_ws::tone_caller(&b, &dir_b, "+15551239418", 12, 40_000);
    let report = line_rx
        .recv_timeout(Duration::from_secs(90))
        .unwrap_or_else(|_| panic!("no report from the page\nA:{}\nB:{}", a.log(), b.log()));
    let out = child.wait_with_output().expect("node exits");
    let r: serde_json::Value = serde_json::from_str(&report).expect("driver JSON");
    assert!(
        out.status.success(),
        "browser driver failed: {r}\n{}\nA:{}\nB:{}",
        String::from_utf8_lossy(&out.stderr),
        a.log(),
        b.log()
    );
    eprintln!("browser agent on A for B's caller: {r}");
    assert_eq!(
        r["screen_pop_order"], "WEB-1818",
        "B's caller's ticket: {r}"
    );
    let s = &r["stats"];
    assert_eq!(s["conn"], "connected", "{r}");
    assert!(
        s["rx_packets"].as_u64().unwrap_or(0) >= 100
            && s["rx_energy"].as_f64().unwrap_or(0.0) > 0.0,
        "the browser heard B's caller: {r}"
    );
    assert!(
        r["rx_packets_shown"]
            .as_str()
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > 0),
        "the page's call-stats-rx-packets counter moved: {r}"
    );
    caller.wait().assert_ok(&b);

    // One record, on B, naming the agent; the disposition against it.
    let deadline = Instant::now() + Duration::from_secs(15);
    let rec = "SELECT COUNT(*) FROM call_records WHERE caller = '+15551239418' AND node = $1 \
               AND agent = 'webdora' AND queue = 'support' AND ended_at IS NOT NULL";
    while pg.count(rec, &node_b) != 1 {
        assert!(
            Instant::now() < deadline,
            "no record of B's caller answered by webdora\nA:{}\nB:{}",
            a.log(),
            b.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        pg.count0("SELECT COUNT(*) FROM call_records WHERE caller = '+15551239418'"),
        1,
        "A keeps no record of its own for the leg"
    );
    let id: String = pg
        .rt
        .block_on(
            sqlx::query_scalar("SELECT id FROM call_records WHERE caller = '+15551239418'")
                .fetch_one(&pg.db.pool),
        )
        .expect("call id");
    assert_eq!(r["disposition"], "saved", "{r}\nA:{}", a.log());
    assert_eq!(r["disposition_call"], id.as_str(), "{r}");
    assert_eq!(
        pg.count(
            "SELECT COUNT(*) FROM dispositions WHERE call_id = $1 AND agent = 'webdora'",
            &id
        ),
        1
    );
    let bridge = pg.bridge_packets(&id);
    assert!(
        crate::acd_sipp::packets(&bridge, "caller_to_agent") >= 100,
        "{bridge}"
    );
    assert!(
        crate::acd_sipp::packets(&bridge, "agent_to_caller") >= 100,
        "the browser's audio reached B's caller: {bridge}"
    );
}

/// Issues 16 + 18: hold, the DTMF pad and a blind transfer from a browser agent's page on
/// node A, for a caller node B holds. A asks B as a SIP agent phone would (a re-INVITE
/// offering `sendonly`, then `sendrecv`; a REFER to `sales`); the pad's RFC 4733 events go
/// through both nodes' relays. A raw UDP caller on B logs every RTP packet it gets, and the
/// same assertions as for a caller of the page's own node
/// (`sip_ws::holds_sends_dtmf_and_transfers`) hold: the page hears nothing while held and
/// the caller again after resume; the caller hears the bridge, then B's music on hold (another
/// source) while held, the bridge again, and the pad's 5 as one RFC 4733 event. The
/// transfer: the page's call ends as transferred, B's caller goes to `sales` (nobody there:
/// B releases it with `queue_no_agents`), and B's record (the only one) has hold, unhold
/// and `transfer support->sales` in its trail.
#[test]
fn shared_queues_browser_agent_of_one_node_holds_sends_dtmf_and_transfers_a_caller_of_the_other() {
    let Some(base) = Pg::from_env() else { return };
    let Some(chromium) = chromium() else { return };
    let own = base.own_database("webc");
    let pg = Pg::connect(&own.url);
    let sales = "[[queue]]\nname = \"sales\"\nstrategy = \"longest-idle\"\nring_timeout_s = 15\n\
                 wrapup_s = 5\njoin_empty = false\nmusic_on_hold = \"moh\"\n";
    let x = browser_agent_across(&own.url, &chromium, "controls:sales", sales);
    let number = "+15551239419";
    let caller = crate::sip_ws::raw_caller(&x.b, number, Duration::from_secs(60));
    let report = x
        .line_rx
        .recv_timeout(Duration::from_secs(90))
        .unwrap_or_else(|_| panic!("no report from the page\nA:{}\nB:{}", x.a.log(), x.b.log()));
    let BrowserAcross {
        a,
        b,
        child,
        node_b,
        ..
    } = x;
    let out = child.wait_with_output().expect("node exits");
    let r: serde_json::Value = serde_json::from_str(&report).expect("driver JSON");
    assert!(
        out.status.success(),
        "browser driver failed: {r}\n{}\nA:{}\nB:{}",
        String::from_utf8_lossy(&out.stderr),
        a.log(),
        b.log()
    );
    eprintln!("browser agent on A for B's caller: {r}");
    let (heard, bye) = caller.join().expect("caller thread");
    assert!(
        r["stats"]["codecs"]
            .to_string()
            .to_lowercase()
            .contains("audio/pcmu"),
        "the page's leg is on PCMU: {r}"
    );
    crate::sip_ws::assert_hold_and_dtmf_heard(&r, &heard);
    assert!(
        r["note"]
            .as_str()
            .is_some_and(|n| n.to_lowercase().contains("transferred")),
        "{r}"
    );
    assert!(
        bye,
        "B's caller got a BYE after the transfer to an empty queue\nB:{}",
        b.log()
    );

    // B's record, the only one; its trail names the hold, its end and the transfer.
    let deadline = Instant::now() + Duration::from_secs(15);
    let ended = "SELECT COUNT(*) FROM call_records WHERE caller = $1 AND node = $2 \
                 AND hangup_cause = 'queue_no_agents' AND queue IS NULL AND ended_at IS NOT NULL";
    let count_ended = || {
        pg.rt
            .block_on(
                sqlx::query_scalar::<_, i64>(ended)
                    .bind(number)
                    .bind(&node_b)
                    .fetch_one(&pg.db.pool),
            )
            .expect("count")
    };
    while count_ended() != 1 {
        assert!(
            Instant::now() < deadline,
            "no record on B of the caller released by `sales`\nA:{}\nB:{}",
            a.log(),
            b.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        pg.count(
            "SELECT COUNT(*) FROM call_records WHERE caller = $1",
            number
        ),
        1,
        "A keeps no record of its own for the leg"
    );
    let id: String = pg
        .rt
        .block_on(
            sqlx::query_scalar("SELECT id FROM call_records WHERE caller = $1")
                .bind(number)
                .fetch_one(&pg.db.pool),
        )
        .expect("call id");
    let trail = pg.call_events(&id);
    for (kind, detail) in [
        ("hold", "agent"),
        ("unhold", "agent"),
        ("transfer", "support->sales"),
    ] {
        assert!(
            trail.iter().any(|(k, d)| k == kind && d == detail),
            "{kind} {detail} in {trail:?}\nA:{}",
            a.log()
        );
    }
}

/// Issue 18's inbound case with shared queues: three nodes behind Kamailio on one
/// PostgreSQL, `[cluster] queues = "cluster"`. One agent's phone registers through the edge
/// (the REGISTER is hashed to one node, which stores the edge's Path); callers through the
/// edge land on the nodes in turn and press 0; the one agent answers every one of them,
/// whichever node holds the caller, each call recorded once on its node.
#[test]
fn shared_queues_three_nodes_behind_kamailio_one_agent_answers_callers_of_every_node() {
    use crate::acd_sipp::{agent_phone_calls_at, register_at, wait_agent_state};
    let Some(base) = Pg::from_env() else { return };
    let Some(kamailio_bin) = Kamailio::binary() else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must have kamailio installed (scripts/test installs the kamailio package)"
        );
        eprintln!("kamailio is not installed: skipped");
        return;
    };
    let own = base.own_database("edgeq");
    let pg = Pg::connect(&own.url);
    let url = own.url.clone();
    let names = [
        support::unique("ea"),
        support::unique("eb"),
        support::unique("ec"),
    ];
    let (_dirs, nodes) = start_nodes(
        &url,
        &names,
        "[cluster]\nheartbeat_s = 1\ndead_after_s = 3\nqueues = \"cluster\"\n",
    );
    let leaders = || {
        nodes
            .iter()
            .filter(|n| n.log().contains("this node leads the cluster's queues"))
            .count()
    };
    support::wait_for(Duration::from_secs(10), "one leader of the queues", || {
        (leaders() == 1).then_some(())
    });
    let addrs: Vec<std::net::SocketAddr> = nodes.iter().map(|n| n.sip_addr).collect();
    let edge = Kamailio::start(&kamailio_bin, &addrs);
    for addr in &addrs {
        edge.wait_node(*addr, "A", Duration::from_secs(15));
    }
    add_agent_on(&url, "edgy");
    let port = support::free_port();
    let register = support::repo_root().join("sip-test/uac_register.xml");
    register_at(
        &nodes[0],
        edge.sip_addr,
        &register,
        port,
        "edgy",
        "s3cret-pw",
    );
    for n in &nodes {
        wait_agent_state(n, "edgy", "available", Duration::from_secs(10));
    }
    let registered_with: i64 =
        pg.count0("SELECT COUNT(*) FROM registrations WHERE aor = 'edgy' AND path IS NOT NULL");
    assert_eq!(registered_with, 1, "one binding, with the edge's Path");

    // Six callers one after the other (the agent's wrap-up is 5 s): two per node.
    let calls = 6;
    let phone = agent_phone_calls_at(
        &nodes[0],
        edge.sip_addr,
        "edgy",
        port,
        60_000,
        calls,
        150_000,
    );
    for i in 0..calls {
        let caller = format!("+1555124{i:04}");
        let run = edge
            .call(
                &Scenario::call_with_digits(&[(1500, '0')], 2000, 6000),
                &caller,
            )
            .wait();
        assert_eq!(
            run.code,
            Some(0),
            "caller {caller}\n{}\n{}",
            run.text,
            edge.log()
        );
        let answered = "SELECT COUNT(*) FROM call_records WHERE caller = $1 AND agent = 'edgy' \
             AND disposition = 'answered' AND ended_at IS NOT NULL";
        let deadline = Instant::now() + Duration::from_secs(10);
        while pg.count(answered, &caller) != 1 {
            assert!(
                Instant::now() < deadline,
                "caller {caller} was not answered by the agent\n{}",
                edge.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(5500));
    }
    phone.finish("the agent's phone behind the edge");
    let per_node: Vec<i64> = names
        .iter()
        .map(|n| {
            pg.count(
                "SELECT COUNT(*) FROM call_records WHERE node = $1 AND agent = 'edgy' \
                 AND disposition = 'answered'",
                n,
            )
        })
        .collect();
    assert_eq!(per_node.iter().sum::<i64>(), calls as i64, "{per_node:?}");
    assert!(
        per_node.iter().all(|c| *c >= 1),
        "the agent answered callers of every node: {per_node:?}"
    );
    assert_eq!(
        pg.count0("SELECT COUNT(DISTINCT sip_call_id) FROM call_records WHERE agent = 'edgy'"),
        calls as i64,
        "each call recorded once"
    );
    drop(edge);
    drop(nodes);
}
