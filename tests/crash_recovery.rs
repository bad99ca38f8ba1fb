//! Crash recovery (issue: the shared ticket database): a server killed with SIGKILL in the
//! middle of an answered call loses no call record — the next start on the same database
//! finalizes the dangling call as `interrupted` — and the records written before the crash
//! (the record itself, its keypad events) are all there, exactly once.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::{http_get_status, Scenario, Server};

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
