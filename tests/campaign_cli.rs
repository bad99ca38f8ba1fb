//! `switchboard campaign ...` against the real server: the built binary is run as an operator
//! would, talking HTTP to a server started by `support::Server` (loopback, temporary SQLite
//! database with the demo tickets, a config that adds a `carrier` trunk).
//!
//! Nothing is dialed: every campaign has `schedule.start` far in the future, so `start` makes
//! it `running` without a call (the trunk's address is a UDP socket nobody answers, should
//! that ever change). Checked: create from a file and from stdin, status (human and
//! `--json`), start / pause / resume / stop and a refused transition, `status --watch`
//! ending with the summary when the campaign is stopped, contacts, and the exit codes: 1
//! with the server's reason (unknown field, unknown campaign, wrong token), 2 for usage and
//! connection errors. About 5 s.

use crate::support;

use std::io::Write as _;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{read_lossy, repo_root, wait_child, wait_for, Server, LOCALHOST};
use serde_json::Value;

const TOKEN: &str = "campaign-cli-test-token-5e81b0";
/// Every CLI run must end within this.
const CLI_TIMEOUT: Duration = Duration::from_secs(15);

/// `config/default.toml` with the spool in `dir` and a `carrier` trunk towards `trunk_port`.
fn config_with_trunk(dir: &Path, trunk_port: u16) -> PathBuf {
    let default = std::fs::read_to_string(repo_root().join("config/default.toml"))
        .expect("read config/default.toml");
    let spool = dir.join("spool");
    let mut text: String = default
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("spool_dir") {
                format!("spool_dir = {:?}\n", spool.display().to_string())
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    text.push_str(&format!(
        "\n[[trunk]]\nname = \"carrier\"\naddress = \"127.0.0.1:{trunk_port}\"\n\
         transport = \"udp\"\nmax_channels = 4\nmax_cps = 2\n"
    ));
    let path = dir.join("config.toml");
    std::fs::write(&path, text).expect("write test config");
    path
}

/// A finished CLI run.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self, what: &str) -> Run {
        assert_eq!(self.code, Some(0), "{what}: {self:#?}");
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}

/// The CLI, with the server's address and token in the environment (as an operator would
/// export them) unless `bare`.
struct Cli<'a> {
    server: &'a Server,
    dir: &'a Path,
    n: std::cell::Cell<u32>,
}

impl Cli<'_> {
    fn command(&self, args: &[&str], bare: bool) -> (Command, PathBuf, PathBuf) {
        let n = self.n.get();
        self.n.set(n + 1);
        let out = self.dir.join(format!("cli{n}.stdout"));
        let err = self.dir.join(format!("cli{n}.stderr"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.arg("campaign")
            .args(args)
            .current_dir(self.dir)
            .env_remove("SWITCHBOARD_SERVER")
            .env_remove("SWITCHBOARD_API_TOKEN")
            .stdout(std::fs::File::create(&out).expect("stdout file"))
            .stderr(std::fs::File::create(&err).expect("stderr file"));
        if !bare {
            cmd.env(
                "SWITCHBOARD_SERVER",
                format!("http://{}", self.server.http_addr),
            )
            .env("SWITCHBOARD_API_TOKEN", TOKEN);
        }
        (cmd, out, err)
    }

    fn finish(mut child: Child, out: &Path, err: &Path) -> Run {
        let Some(status) = wait_child(&mut child, CLI_TIMEOUT) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "CLI still running after {CLI_TIMEOUT:?}\nstdout:\n{}\nstderr:\n{}",
                read_lossy(out),
                read_lossy(err)
            );
        };
        Run {
            code: status.code(),
            stdout: read_lossy(out),
            stderr: read_lossy(err),
        }
    }

    fn run_with(&self, args: &[&str], bare: bool, stdin: Option<&str>) -> Run {
        let (mut cmd, out, err) = self.command(args, bare);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = cmd.spawn().expect("spawn the switchboard binary");
        if let Some(text) = stdin {
            let mut pipe = child.stdin.take().expect("stdin pipe");
            pipe.write_all(text.as_bytes()).expect("write stdin");
        }
        Cli::finish(child, &out, &err)
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, false, None)
    }
}

fn spec(name: &str) -> String {
    format!(
        r#"{{"name": "{name}", "dialplan": "delay-notify", "trunk": "carrier",
            "caller_id": "+15550100", "tickets": {{"status": "delayed"}},
            "max_channels": 2, "max_cps": 1,
            "schedule": {{"start": "2099-01-01T00:00:00Z"}}}}"#
    )
}

#[test]
fn campaign_cli_drives_the_api() {
    let work = tempfile::Builder::new()
        .prefix("switchboard-cli-")
        .tempdir()
        .expect("temp dir");
    // The trunk: a socket that never answers (nothing should be sent to it anyway).
    let trunk = UdpSocket::bind((LOCALHOST, 0)).expect("bind trunk socket");
    let trunk_port = trunk.local_addr().expect("trunk addr").port();
    let config = config_with_trunk(work.path(), trunk_port);
    let config = config.display().to_string();
    let server = Server::start(&["--config", &config, "--api-token", TOKEN]);
    let cli = Cli {
        server: &server,
        dir: work.path(),
        n: std::cell::Cell::new(0),
    };

    // create from a file, --json: the server's 201 body as is.
    let file = work.path().join("campaign.json");
    std::fs::write(&file, spec("cli-file")).expect("write spec");
    let created = cli
        .run(&["create", &file.display().to_string(), "--json"])
        .ok("create FILE --json")
        .json();
    assert_eq!(created["state"], "created", "{created}");
    let contacts = created["contacts"].as_i64().expect("contacts count");
    assert!(contacts > 0, "the demo data has delayed tickets: {created}");
    let id = created["id"].as_i64().expect("campaign id").to_string();

    // create from stdin, human-readable.
    let r = cli
        .run_with(&["create", "-"], false, Some(&spec("cli-stdin")))
        .ok("create -");
    assert!(
        r.stdout.starts_with("created campaign ") && r.stdout.contains("\"cli-stdin\" (created)"),
        "{r:#?}"
    );

    // status, human-readable: state and contacts by state.
    let r = cli.run(&["status", &id]).ok("status");
    assert!(
        r.stdout
            .starts_with(&format!("campaign {id} \"cli-file\": created\n")),
        "{r:#?}"
    );
    assert!(
        r.stdout.contains(&format!("contacts: {contacts}\n"))
            && r.stdout.contains(&format!("  pending       {contacts}\n"))
            && r.stdout.contains("outcomes:\n"),
        "{r:#?}"
    );

    // Lifecycle: each action prints the campaign in its new state.
    for (action, state) in [("start", "running"), ("pause", "paused")] {
        let r = cli.run(&[action, &id]).ok(action);
        assert!(
            r.stdout
                .starts_with(&format!("campaign {id} \"cli-file\": {state}\n")),
            "{action}: {r:#?}"
        );
    }
    // A refused transition: exit 1 and the server's reason on stderr.
    let r = cli.run(&["pause", &id]);
    assert_eq!(r.code, Some(1), "{r:#?}");
    assert!(
        r.stderr
            .contains("server answered 409: cannot pause a campaign that is paused"),
        "{r:#?}"
    );
    assert!(r.stdout.is_empty(), "{r:#?}");
    let v = cli.run(&["resume", &id, "--json"]).ok("resume").json();
    assert_eq!(v["state"], "running", "{v}");
    assert_eq!(
        v["progress"]["contacts"]["pending"].as_i64(),
        Some(contacts),
        "nothing may be dialed before schedule.start: {v}"
    );

    // status --watch redraws until the campaign is stopped, then prints the summary.
    let (mut cmd, out, err) = cli.command(&["status", &id, "--watch"], false);
    let watcher = cmd
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn status --watch");
    wait_for(Duration::from_secs(5), "the first progress bar", || {
        read_lossy(&err).contains("running").then_some(())
    });
    // stop, with --server and --api-token given as flags instead of the environment.
    let url = format!("http://{}", server.http_addr);
    let r = cli
        .run_with(
            &["stop", &id, "--server", &url, "--api-token", TOKEN],
            true,
            None,
        )
        .ok("stop with flags");
    assert!(r.stdout.contains(": stopped\n"), "{r:#?}");
    let w = Cli::finish(watcher, &out, &err);
    assert_eq!(w.code, Some(0), "{w:#?}");
    assert!(
        w.stderr.contains(&format!("0/{contacts} done")) && w.stderr.contains('['),
        "{w:#?}"
    );
    assert!(
        w.stdout
            .starts_with(&format!("campaign {id} \"cli-file\": stopped\n")),
        "{w:#?}"
    );
    assert!(!w.stdout.contains("  ended         -"), "{w:#?}");

    // contacts: one line per contact after the header.
    let r = cli.run(&["contacts", &id]).ok("contacts");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len() as i64, contacts + 1, "{r:#?}");
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.contains(" +") && l.contains("pending")),
        "{r:#?}"
    );
    let v = cli
        .run(&[
            "contacts", &id, "--state", "pending", "--limit", "1", "--json",
        ])
        .ok("contacts --json")
        .json();
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{v}");

    // list
    let r = cli.run(&["list"]).ok("list");
    assert!(
        r.stdout.contains("cli-file") && r.stdout.contains("cli-stdin"),
        "{r:#?}"
    );

    // A body with an unknown field: exit 1, the reason names the field.
    let bad = work.path().join("bad.json");
    std::fs::write(
        &bad,
        spec("cli-bad").replacen('{', r#"{"colour": "red", "#, 1),
    )
    .expect("write bad spec");
    let r = cli.run(&["create", &bad.display().to_string()]);
    assert_eq!(r.code, Some(1), "{r:#?}");
    assert!(r.stderr.contains("unknown field `colour`"), "{r:#?}");
    assert!(r.stdout.is_empty(), "{r:#?}");
    // With --json the server's error body goes to stderr as is.
    let r = cli.run(&["create", &bad.display().to_string(), "--json"]);
    assert_eq!(r.code, Some(1), "{r:#?}");
    let body: Value = serde_json::from_str(r.stderr.trim()).expect("JSON error body on stderr");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("unknown field `colour`")),
        "{body}"
    );

    // Unknown campaign, wrong token: exit 1 with the reason.
    let r = cli.run(&["start", "999999"]);
    assert_eq!(r.code, Some(1), "{r:#?}");
    assert!(
        r.stderr.contains("campaign 999999 does not exist"),
        "{r:#?}"
    );
    let r = cli.run_with(
        &["status", &id, "--server", &url, "--api-token", "wrong"],
        true,
        None,
    );
    assert_eq!(r.code, Some(1), "{r:#?}");
    assert!(r.stderr.contains("missing or wrong bearer token"), "{r:#?}");

    // Usage and connection errors: exit 2.
    let r = cli.run(&["start", "abc"]);
    assert_eq!(r.code, Some(2), "{r:#?}");
    let r = cli.run(&[
        "create",
        &work.path().join("missing.json").display().to_string(),
    ]);
    assert_eq!(r.code, Some(2), "{r:#?}");
    let r = cli.run(&["status", &id, "--server", "https://127.0.0.1:1"]);
    assert_eq!(r.code, Some(2), "{r:#?}");
    let closed = std::net::TcpListener::bind((LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a port")
        .port();
    let r = cli.run(&[
        "status",
        &id,
        "--server",
        &format!("http://127.0.0.1:{closed}"),
    ]);
    assert_eq!(r.code, Some(2), "{r:#?}");
    assert!(r.stderr.contains("cannot connect"), "{r:#?}");

    // The trunk never heard from us.
    trunk
        .set_nonblocking(true)
        .expect("nonblocking trunk socket");
    let mut buf = [0u8; 2048];
    assert!(trunk.recv_from(&mut buf).is_err(), "a campaign dialed");
}

/// `switchboard agent add NAME --password-stdin` with `input` on its standard input.
fn agent_add_stdin(dir: &Path, name: &str, input: &[u8], extra: &[&str]) -> Run {
    let db = format!("sqlite://{}", dir.join("agents.db").display());
    let out = dir.join(format!("agent-{name}.stdout"));
    let err = dir.join(format!("agent-{name}.stderr"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["agent", "add", name, "--database", &db, "--no-demo-data"])
        .args(extra)
        .current_dir(repo_root())
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("spawn switchboard agent add");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        // The CLI may exit before reading (a usage error): a broken pipe is fine.
        let _ = stdin.write_all(input);
    }
    Cli::finish(child, &out, &err)
}

/// `agent add --password-stdin` (issue: the password of `--password` shows in `ps` and the
/// shell history): the first line of stdin without its line ending becomes the password
/// (checked through the stored HA1); an empty line or no input is refused, as is giving
/// both forms; `--password` keeps working.
#[test]
fn agent_add_reads_the_password_from_stdin() {
    use switchboard::sip::auth::{ha1, Algorithm};
    let dir = tempfile::tempdir().expect("temp dir");
    let run = agent_add_stdin(
        dir.path(),
        "stdin-ann",
        b"s3cret pw\nsecond line\n",
        &["--password-stdin"],
    )
    .ok("agent add --password-stdin");
    let realm = run
        .stdout
        .split("realm ")
        .nth(1)
        .map(|r| r.trim().trim_end_matches(')').to_string())
        .unwrap_or_else(|| panic!("realm in the output: {run:#?}"));
    let run2 = agent_add_stdin(
        dir.path(),
        "stdin-bob",
        b"crlf-pw\r\n",
        &["--password-stdin"],
    );
    run2.ok("agent add --password-stdin with CRLF");
    let run3 = agent_add_stdin(dir.path(), "flag-cy", b"", &["--password", "flag-pw"]);
    run3.ok("agent add --password (discouraged, still supported)");

    let db = support::TestDb::open(&dir.path().join("agents.db"));
    for (name, password) in [
        ("stdin-ann", "s3cret pw"),
        ("stdin-bob", "crlf-pw"),
        ("flag-cy", "flag-pw"),
    ] {
        let row = db.row(&format!("SELECT ha1_md5 FROM agents WHERE name = '{name}'"));
        assert_eq!(
            row["ha1_md5"],
            ha1(Algorithm::Md5, name, &realm, password),
            "{name}: the stored HA1 is of {password:?}"
        );
    }

    for (input, extra, what) in [
        (&b""[..], &["--password-stdin"][..], "no input"),
        (b"\n", &["--password-stdin"], "an empty line"),
        (
            b"pw\n",
            &["--password-stdin", "--password", "pw"],
            "both forms",
        ),
        (b"pw\n", &[], "neither form"),
    ] {
        let run = agent_add_stdin(dir.path(), "refused", input, extra);
        assert_eq!(run.code, Some(2), "{what} must be refused: {run:#?}");
        assert!(
            run.stderr.contains("password"),
            "{what}: the reason names the password: {run:#?}"
        );
    }
    assert_eq!(
        db.count("agents WHERE name = 'refused'"),
        0,
        "nothing saved for a refused invocation"
    );
}
