//! Another program writes the shared ticket database while calls run (issue 5): the order
//! system (`tests/support/other_writer.py churn`, its own process and connection, one
//! commit per statement) keeps editing fields switchboard does not own and inserting new
//! tickets, while SIPp customers call the hotline at the same time and choose refund or
//! wait. Afterwards: every call has its one record and outcome, every ticket its caller's
//! resolution, no field the other program owns was overwritten (its last write stands),
//! and a ticket it inserted is found by the next call.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{repo_root, wait_child, Scenario, Server};
use serde_json::Value;

const CALLERS: usize = 5;
const DB_WAIT: Duration = Duration::from_secs(15);

fn phone(i: usize) -> String {
    format!("+155595000{i:02}")
}

#[test]
fn other_program_writes_tickets_while_calls_run() {
    let server = Server::start(&[]);
    let db = server.db();
    let mut ids = Vec::new();
    for i in 0..CALLERS {
        db.exec(&format!(
            "INSERT INTO tickets (order_id, customer_name, phone, language, segment, timezone, status, delay_days, new_eta) \
             VALUES ('81{i:02}', 'Caller {i}', '{}', 'en', 'standard', 'UTC', 'delayed', 3, '2030-01-15')",
            phone(i)
        ));
        ids.push(
            db.row(&format!(
                "SELECT id FROM tickets WHERE order_id = '81{i:02}'"
            ))["id"]
                .as_i64()
                .expect("ticket id"),
        );
    }
    let list: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    let mut writer = Command::new("python3")
        .arg(repo_root().join("tests/support/other_writer.py"))
        .arg(format!("sqlite:{}", server.db_path.display()))
        .args(["churn", "--tickets", &list.join(","), "--seconds", "14"])
        .args(["--insert-prefix", "+1555951"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs the other writer");

    // Even callers want a refund (2, 2), odd ones keep waiting (2, 1).
    let sipp: Vec<_> = (0..CALLERS)
        .map(|i| {
            let second = if i % 2 == 0 { '2' } else { '1' };
            let scenario = Scenario::call_with_digits(&[(1500, '2'), (9000, second)], 1000, 20_000);
            server.spawn_sipp(&scenario, &["-set", "caller", &phone(i)])
        })
        .collect();
    for run in sipp {
        run.wait().assert_ok(&server);
    }
    let status = wait_child(&mut writer, Duration::from_secs(40)).expect("the writer ends");
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut o) = writer.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    if let Some(mut e) = writer.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "other writer failed: {err}");
    let report: Value = serde_json::from_str(out.trim()).expect("writer report is JSON");
    assert!(
        report["updates"].as_u64().unwrap_or(0) >= 50,
        "the other program really wrote throughout: {report}"
    );

    for (i, id) in ids.iter().enumerate() {
        let want = if i % 2 == 0 { "refund" } else { "wait" };
        let t = server.wait_db(DB_WAIT, &format!("ticket {id} resolved"), |db| {
            let t = db.row(&format!(
                "SELECT resolution, customer_name, new_eta, delay_days FROM tickets WHERE id = {id}"
            ));
            (!t["resolution"].is_null()).then_some(t)
        });
        assert_eq!(t["resolution"], want, "ticket {id}: {t:?}");
        // The other program's last write stands: switchboard never wrote these columns.
        let last = &report["last"][id.to_string()];
        assert_eq!(
            t["customer_name"], last["customer_name"],
            "ticket {id}: {t:?} vs {last}"
        );
        assert_eq!(
            t["new_eta"], last["new_eta"],
            "ticket {id}: {t:?} vs {last}"
        );
        assert_eq!(
            t["delay_days"], last["delay_days"],
            "ticket {id}: {t:?} vs {last}"
        );
        let calls = db.rows(&format!(
            "SELECT id, ticket_id, ended_at FROM call_records WHERE caller = '{}'",
            phone(i)
        ));
        assert_eq!(calls.len(), 1, "one record per call: {calls:?}");
        assert_eq!(calls[0]["ticket_id"], *id, "{calls:?}");
        assert!(calls[0]["ended_at"].is_string(), "{calls:?}");
        let outcomes = db.rows(&format!(
            "SELECT choice FROM call_outcomes WHERE call_id = '{}'",
            calls[0]["id"].as_str().unwrap_or("")
        ));
        assert_eq!(outcomes.len(), 1, "one outcome per call: {outcomes:?}");
        assert_eq!(outcomes[0]["choice"], want);
    }
    let refunds = db.count("refund_requests");
    assert_eq!(
        refunds as usize,
        CALLERS.div_ceil(2),
        "one refund per refund call"
    );

    // A ticket the other program inserted during the calls is found by the next call.
    let inserted = report["inserted"].as_array().cloned().unwrap_or_default();
    assert!(inserted.len() >= 10, "{report}");
    for order in &inserted {
        let order = order.as_str().unwrap_or("");
        assert_eq!(
            db.count(&format!("tickets WHERE order_id = '{order}'")),
            1,
            "inserted ticket {order} is there once"
        );
    }
    let newest = db.row(&format!(
        "SELECT id, phone FROM tickets WHERE order_id = '{}'",
        inserted.last().and_then(Value::as_str).unwrap_or("")
    ));
    let newest_phone = newest["phone"].as_str().expect("phone").to_string();
    // The order system marks it delayed (another write from outside), then its customer
    // calls and keeps waiting.
    db.exec(&format!(
        "UPDATE tickets SET status = 'delayed', delay_days = 2, new_eta = '2030-02-01' WHERE id = {}",
        newest["id"]
    ));
    let scenario = Scenario::call_with_digits(&[(1500, '2'), (9000, '1')], 1000, 20_000);
    server
        .run_sipp(&scenario, &["-set", "caller", &newest_phone])
        .assert_ok(&server);
    let call = server.wait_db(DB_WAIT, "the next call's record", |db| {
        db.rows(&format!(
            "SELECT ticket_id FROM call_records WHERE caller = '{newest_phone}' AND ended_at IS NOT NULL"
        ))
        .pop()
    });
    assert_eq!(
        call["ticket_id"], newest["id"],
        "the new ticket was found: {call:?}"
    );
    let t = server.wait_db(DB_WAIT, "the new ticket resolved", |db| {
        let t = db.row(&format!(
            "SELECT resolution FROM tickets WHERE id = {}",
            newest["id"]
        ));
        (!t["resolution"].is_null()).then_some(t)
    });
    assert_eq!(t["resolution"], "wait", "{t:?}");
}
