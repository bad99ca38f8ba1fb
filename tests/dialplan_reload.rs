//! `POST /api/dialplans/reload`, black-box: the real binary with its own copy of the shipped
//! dialplans, called by SIPp. A bad file is refused with 422 naming its file and line and
//! the running set keeps serving calls; once fixed, the reload answers 200 and the next call
//! runs the new plan.
//!
//! Needs SIPp (`$SWITCHBOARD_SIPP` or `sipp` on PATH) and root (SIPp's pcap play).
//! Run: `cargo test --test suite -- dialplan_reload:: --test-threads=1`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use crate::support::{repo_root, DbRow, Scenario, Server};
use serde_json::Value;

const DB_WAIT: Duration = Duration::from_secs(5);

/// One HTTP/1.1 request with `Connection: close`; the status and the JSON body.
fn post(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("write request");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn token(server: &Server) -> String {
    server
        .log()
        .lines()
        .find_map(|l| l.split("Authorization: Bearer ").nth(1))
        .map(|t| t.trim_end_matches(')').trim().to_string())
        .expect("API token in the server's banner")
}

fn ended_call(server: &Server, caller: &str) -> DbRow {
    server.wait_db(DB_WAIT, &format!("an ended call from {caller}"), |db| {
        db.rows(&format!(
            "SELECT * FROM call_records WHERE caller = '{caller}' AND ended_at IS NOT NULL"
        ))
        .pop()
    })
}

/// A call that presses 9 (an invalid choice on the hotline menu: re-prompt) and hangs up
/// itself after 3 s unless the server hangs up first.
fn call(server: &Server, caller: &str) -> DbRow {
    server
        .run_sipp(
            &Scenario::call_with_digits(&[(300, '9')], 200, 3000),
            &["-set", "caller", caller],
        )
        .assert_ok(server);
    ended_call(server, caller)
}

/// A config whose `dialplan_dir` is `plans` (everything else as shipped).
fn config_with_plans(dir: &Path, plans: &Path) -> String {
    let default =
        std::fs::read_to_string(repo_root().join("config/default.toml")).expect("default config");
    let text = default
        .replace(
            "dialplan_dir = \"dialplans\"",
            &format!("dialplan_dir = {:?}", plans.display().to_string()),
        )
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("spool_dir") {
                format!("spool_dir = {:?}", dir.join("spool").display().to_string())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        text.contains(&plans.display().to_string()),
        "dialplan_dir replaced"
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text + "\n").expect("write config");
    path.display().to_string()
}

/// One second of silence (so SIPp is waiting for the BYE, not still starting its media),
/// then a hangup with a cause the shipped hotline never uses.
const NEW_HOTLINE: &str = "[dialplan]\nname = \"hotline\"\nstart = \"pause\"\n\n[steps.pause]\naction = \"play\"\nprompts = [{ silence_ms = 1000 }]\nnext = \"bye\"\n\n[steps.bye]\naction = \"hangup\"\ncause = \"reloaded_plan\"\n";

#[test]
fn api_reload_refuses_bad_plans_then_swaps_in_good_ones() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let plans = tmp.path().join("plans");
    std::fs::create_dir(&plans).expect("plans dir");
    for entry in std::fs::read_dir(repo_root().join("dialplans")).expect("read dialplans") {
        let p = entry.expect("entry").path();
        if p.extension().is_some_and(|e| e == "toml") {
            std::fs::copy(&p, plans.join(p.file_name().expect("name"))).expect("copy plan");
        }
    }
    let cfg = config_with_plans(tmp.path(), &plans);
    let server = Server::start(&["--config", &cfg]);
    let tok = token(&server);

    let (code, body) = post(server.http_addr, "/api/dialplans/reload", None);
    assert_eq!(code, 401, "reload is an operator endpoint: {body}");

    // A plan whose goto target does not exist (line 7), and a changed hotline: the whole
    // folder is refused, so the hotline change must not be live either.
    let broken = plans.join("broken.toml");
    std::fs::write(
        &broken,
        "[dialplan]\nname = \"broken\"\nstart = \"a\"\n\n[steps.a]\naction = \"goto\"\nnext = \"nowhere\"\n",
    )
    .expect("write broken plan");
    std::fs::write(plans.join("hotline.toml"), NEW_HOTLINE).expect("write new hotline");
    let (code, body) = post(server.http_addr, "/api/dialplans/reload", Some(&tok));
    assert_eq!(code, 422, "{body}");
    let errors = body["errors"].as_array().expect("errors list");
    let want = broken.display().to_string();
    assert!(
        errors
            .iter()
            .any(|e| e["file"] == want.as_str() && e["line"] == 7),
        "an error naming {want}:7 in {body:#}"
    );
    assert!(
        errors.iter().all(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.starts_with(&format!("{}:", e["file"].as_str().unwrap_or("?"))))),
        "every error reads file:line: reason: {body:#}"
    );

    // The old hotline still answers: the caller's menu key is taken, the caller hangs up.
    let old = call(&server, "+15550000001");
    assert_eq!(old["disposition"], "answered", "{old:#?}");
    assert_eq!(
        old["hangup_cause"], "caller_hangup",
        "the running hotline stayed: {old:#?}"
    );

    // Fixed: the reload succeeds, lists every plan, and the next call runs the new hotline.
    std::fs::write(
        &broken,
        "[dialplan]\nname = \"broken\"\nstart = \"a\"\n\n[steps.a]\naction = \"hangup\"\n",
    )
    .expect("fix broken plan");
    let (code, body) = post(server.http_addr, "/api/dialplans/reload", Some(&tok));
    assert_eq!(code, 200, "{body}");
    let names: Vec<&str> = body["dialplans"]
        .as_array()
        .expect("dialplans list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for n in ["broken", "hotline", "voicemail"] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    let new = call(&server, "+15550000002");
    assert_eq!(new["disposition"], "answered", "{new:#?}");
    assert_eq!(
        new["hangup_cause"], "reloaded_plan",
        "the reloaded hotline is live: {new:#?}"
    );
    assert!(
        server.log().contains("dialplans reloaded (API)"),
        "the reload is logged"
    );
}
