//! Store tests: the same suite against SQLite and PostgreSQL (issue: the shared ticket
//! database). PostgreSQL comes from `SWITCHBOARD_TEST_PG_URL`, which `scripts/test` sets up
//! with a throwaway server; under CI its absence is a failure, not a skip.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use sqlx::Row;
use switchboard::store::ops::StoreOp;
use switchboard::store::writer::{self, WriterStats};
use switchboard::store::{demo, now_ts, tickets, Db};

async fn sqlite_db(dir: &Path) -> Db {
    let url = format!("sqlite://{}", dir.join("store.db").display());
    Db::connect(&url)
        .await
        .expect("sqlite connects and migrates")
}

/// A fresh PostgreSQL schema per test: a new database cloned from nothing.
async fn pg_db(name: &str) -> Option<Db> {
    let url = pg_url(name).await?;
    Some(
        Db::connect(&url)
            .await
            .expect("test database connects and migrates"),
    )
}

/// A new, empty PostgreSQL database for the test (not migrated): its URL.
async fn pg_url(name: &str) -> Option<String> {
    let Ok(url) = std::env::var("SWITCHBOARD_TEST_PG_URL") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI must provide SWITCHBOARD_TEST_PG_URL (scripts/test starts PostgreSQL)"
        );
        eprintln!("SWITCHBOARD_TEST_PG_URL not set: PostgreSQL half of this test skipped (run scripts/test)");
        return None;
    };
    let admin = Db::connect(&url).await.expect("postgres connects");
    let db_name = format!("sb_{name}_{}", std::process::id());
    sqlx::query(&format!("DROP DATABASE IF EXISTS {db_name}"))
        .execute(&admin.pool)
        .await
        .expect("drop");
    sqlx::query(&format!("CREATE DATABASE {db_name}"))
        .execute(&admin.pool)
        .await
        .expect("create");
    admin.pool.close().await;
    let base = url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .expect("url has a database");
    Some(format!("{base}/{db_name}"))
}

async fn both(name: &str, dir: &Path) -> Vec<Db> {
    let mut v = vec![sqlite_db(dir).await];
    if let Some(pg) = pg_db(name).await {
        v.push(pg);
    }
    v
}

async fn count(db: &Db, sql: &str) -> i64 {
    sqlx::query(sql)
        .fetch_one(&db.pool)
        .await
        .expect(sql)
        .try_get::<i64, _>(0)
        .expect("count")
}

/// A hotline call `call` from +15551230001 starting at `at`.
fn call_started(call: &str, at: String) -> StoreOp {
    StoreOp::CallStarted {
        id: call.into(),
        sip_call_id: format!("{call}@test"),
        direction: "inbound".into(),
        from_uri: "sip:+15551230001@127.0.0.1".into(),
        to_uri: "sip:hotline@127.0.0.1".into(),
        caller: Some("+15551230001".into()),
        dialplan: Some("hotline".into()),
        campaign_id: None,
        started_at: at,
        node: None,
    }
}

fn call_ops(call: &str, ticket: i64, choice: &str) -> Vec<StoreOp> {
    let t = now_ts();
    vec![
        call_started(call, t.clone()),
        StoreOp::CallAnswered {
            id: call.into(),
            at: t.clone(),
        },
        StoreOp::CallTicket {
            id: call.into(),
            ticket_id: ticket,
        },
        StoreOp::CallEvent {
            call_id: call.into(),
            seq: 1,
            at: t.clone(),
            kind: "dtmf".into(),
            detail: "2".into(),
        },
        StoreOp::CallEvent {
            call_id: call.into(),
            seq: 2,
            at: t.clone(),
            kind: "dtmf".into(),
            detail: "2".into(),
        },
        StoreOp::Outcome {
            call_id: call.into(),
            ticket_id: Some(ticket),
            choice: choice.into(),
            at: t.clone(),
        },
        StoreOp::CallEnded {
            id: call.into(),
            ended_at: t,
            disposition: "answered".into(),
            hangup_cause: "caller_hangup".into(),
            sip_status: Some(200),
            queue: None,
            agent: None,
            wait_ms: None,
        },
    ]
}

async fn ticket_id(db: &Db, order: &str) -> i64 {
    tickets::by_order_id(db, order)
        .await
        .expect("lookup")
        .expect("ticket")["id"]
        .parse()
        .expect("id")
}

/// Migrations are idempotent, demo data loads once, lookups by phone and order id work.
#[tokio::test]
async fn migrations_demo_data_and_lookups() {
    let dir = tempfile::tempdir().expect("tempdir");
    for db in both("lookups", dir.path()).await {
        assert_eq!(
            demo::load(&db).await.expect("demo"),
            demo::DEMO_TICKETS.len() as u64
        );
        assert_eq!(
            demo::load(&db).await.expect("demo again"),
            0,
            "demo insert is idempotent"
        );
        let t = tickets::by_phone(&db, "+15551230001")
            .await
            .expect("by phone")
            .expect("found");
        assert_eq!(t["order_id"], "1001");
        assert_eq!(t["status"], "delayed");
        assert_eq!(t["delay_days"], "5");
        assert_eq!(
            t["new_eta"].len(),
            10,
            "new_eta is YYYY-MM-DD: {:?}",
            t["new_eta"]
        );
        assert!(tickets::by_phone(&db, "+19999999999")
            .await
            .expect("by phone")
            .is_none());
        assert_eq!(
            tickets::by_order_id(&db, "2001")
                .await
                .expect("by order")
                .expect("found")["language"],
            "zh"
        );
    }
    // Connecting again re-runs migrations without error.
    let again = sqlite_db(dir.path()).await;
    assert_eq!(
        count(&again, "SELECT COUNT(*) FROM tickets").await,
        demo::DEMO_TICKETS.len() as i64
    );
}

/// Replaying the same ops (after an outage or a crash) never duplicates rows nor moves a
/// ticket twice; the outcome and the ticket update land together.
#[tokio::test]
async fn ops_are_idempotent() {
    let dir = tempfile::tempdir().expect("tempdir");
    for db in both("idem", dir.path()).await {
        demo::load(&db).await.expect("demo");
        let ticket = ticket_id(&db, "1001").await;
        let ops = call_ops("c-1", ticket, "refund");
        for _ in 0..3 {
            let mut tx = db.pool.begin().await.expect("begin");
            for op in &ops {
                switchboard::store::ops::apply(&mut tx, db.dialect, op)
                    .await
                    .expect("apply");
            }
            tx.commit().await.expect("commit");
        }
        assert_eq!(count(&db, "SELECT COUNT(*) FROM call_records").await, 1);
        assert_eq!(count(&db, "SELECT COUNT(*) FROM call_events").await, 2);
        assert_eq!(count(&db, "SELECT COUNT(*) FROM call_outcomes").await, 1);
        assert_eq!(count(&db, "SELECT COUNT(*) FROM refund_requests").await, 1);
        let row = sqlx::query("SELECT resolution, CAST(resolved_at AS TEXT) AS r FROM tickets WHERE order_id = '1001'")
            .fetch_one(&db.pool)
            .await
            .expect("ticket");
        assert_eq!(
            row.try_get::<String, _>("resolution").expect("resolution"),
            "refund"
        );
        assert!(row
            .try_get::<Option<String>, _>("r")
            .expect("resolved_at")
            .is_some());
        let rec = sqlx::query("SELECT disposition, hangup_cause, ticket_id, sip_status FROM call_records WHERE id = 'c-1'")
            .fetch_one(&db.pool)
            .await
            .expect("record");
        assert_eq!(
            rec.try_get::<String, _>("disposition").expect("d"),
            "answered"
        );
        assert_eq!(rec.try_get::<i64, _>("ticket_id").expect("t"), ticket);
        assert_eq!(rec.try_get::<i64, _>("sip_status").expect("s"), 200);
        // A later, different outcome for the same call is ignored: one outcome per call.
        let mut tx = db.pool.begin().await.expect("begin");
        let op = StoreOp::Outcome {
            call_id: "c-1".into(),
            ticket_id: Some(ticket),
            choice: "wait".into(),
            at: now_ts(),
        };
        switchboard::store::ops::apply(&mut tx, db.dialect, &op)
            .await
            .expect("apply");
        tx.commit().await.expect("commit");
        assert_eq!(
            count(
                &db,
                "SELECT COUNT(*) FROM tickets WHERE resolution = 'refund'"
            )
            .await,
            1
        );
    }
}

/// The writer spools when the database is unreachable and replays in order, exactly once.
#[tokio::test]
async fn writer_spools_during_outage_and_replays_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, db) in both("spool", dir.path()).await.into_iter().enumerate() {
        demo::load(&db).await.expect("demo");
        let ticket = ticket_id(&db, "1002").await;
        let spool = dir.path().join(format!("spool{i}.jsonl"));
        let dead = spool.with_extension("dead.jsonl");
        // An unreachable database: the same schema behind a closed pool.
        let down = db.clone();
        let closed = Db {
            pool: sqlx::AnyPool::connect_lazy("sqlite://does/not/exist.db").expect("lazy"),
            ..down
        };
        closed.pool.close().await;
        let (handle, rx) = writer::channel();
        let stats = handle.stats.clone();
        let close = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(writer::run(
            closed,
            rx,
            spool.clone(),
            stats.clone(),
            close.clone(),
        ));
        for op in call_ops("c-out", ticket, "wait") {
            handle.submit(op);
        }
        close.cancel();
        drop(handle);
        task.await.expect("writer ends");
        assert_eq!(
            stats.spooled.load(std::sync::atomic::Ordering::Relaxed),
            7,
            "every op spooled"
        );
        assert!(spool.exists());
        assert_eq!(count(&db, "SELECT COUNT(*) FROM call_records").await, 0);
        // The database is back: replay twice (a crash between replay and spool removal).
        let copy = spool.with_extension("copy");
        std::fs::copy(&spool, &copy).expect("copy spool");
        let s = WriterStats::default();
        assert!(writer::replay_spool(&db, &spool, &dead, &s)
            .await
            .expect("replay"));
        std::fs::rename(&copy, &spool).expect("restore spool");
        assert!(writer::replay_spool(&db, &spool, &dead, &s)
            .await
            .expect("replay again"));
        assert!(!spool.exists(), "spool removed after replay");
        assert_eq!(count(&db, "SELECT COUNT(*) FROM call_records").await, 1);
        assert_eq!(count(&db, "SELECT COUNT(*) FROM call_events").await, 2);
        assert_eq!(count(&db, "SELECT COUNT(*) FROM call_outcomes").await, 1);
        assert_eq!(
            count(
                &db,
                "SELECT COUNT(*) FROM tickets WHERE resolution = 'wait'"
            )
            .await,
            1
        );
    }
}

/// A live writer batches ops submitted without waiting; a torn last spool line is skipped.
#[tokio::test]
async fn writer_batches_and_survives_torn_spool() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, db) in both("batch", dir.path()).await.into_iter().enumerate() {
        let spool = dir.path().join(format!("live{i}.jsonl"));
        std::fs::write(&spool, "{\"op\":\"call_answered\",\"id\":\"x\",\"at\":\"2026-01-01T00:00:00.000Z\"}\n{\"op\":\"call_ev").expect("torn spool");
        let (handle, rx) = writer::channel();
        let stats: Arc<WriterStats> = handle.stats.clone();
        let close = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(writer::run(
            db.clone(),
            rx,
            spool.clone(),
            stats.clone(),
            close.clone(),
        ));
        for c in 0..200 {
            for op in call_ops(&format!("b-{c}"), 1, "no_choice") {
                handle.submit(op);
            }
        }
        close.cancel();
        drop(handle);
        task.await.expect("writer ends");
        assert_eq!(count(&db, "SELECT COUNT(*) FROM call_records").await, 200);
        assert_eq!(count(&db, "SELECT COUNT(*) FROM call_events").await, 400);
        assert_eq!(
            count(
                &db,
                "SELECT COUNT(*) FROM call_records WHERE ended_at IS NULL"
            )
            .await,
            0
        );
        assert!(!spool.exists(), "old spool replayed at start then removed");
    }
}

/// Another program inserts and updates tickets while switchboard runs: seen at once, and
/// switchboard's writes touch only the columns it owns.
#[tokio::test]
async fn other_writers_are_seen_and_respected() {
    let dir = tempfile::tempdir().expect("tempdir");
    for db in both("others", dir.path()).await {
        let other = db.clone();
        let sql = format!(
            "INSERT INTO tickets (order_id, customer_name, phone, status, delay_days, new_eta, updated_at) \
             VALUES ('9001', 'New Person', '+15559990001', 'delayed', 4, {}, {})",
            db.dialect.date(1),
            db.dialect.ts(2)
        );
        sqlx::query(&sql)
            .bind("2026-12-24")
            .bind(now_ts())
            .execute(&other.pool)
            .await
            .expect("other program inserts");
        let t = tickets::by_phone(&db, "+15559990001")
            .await
            .expect("lookup")
            .expect("seen immediately");
        assert_eq!(t["new_eta"], "2026-12-24");
        let id: i64 = t["id"].parse().expect("id");
        let mut tx = db.pool.begin().await.expect("begin");
        for op in call_ops("o-1", id, "wait") {
            switchboard::store::ops::apply(&mut tx, db.dialect, &op)
                .await
                .expect("apply");
        }
        tx.commit().await.expect("commit");
        let row = sqlx::query(
            "SELECT status, customer_name, delay_days, resolution FROM tickets WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .expect("row");
        assert_eq!(
            row.try_get::<String, _>("status").expect("status"),
            "delayed",
            "status belongs to the shop system"
        );
        assert_eq!(
            row.try_get::<String, _>("customer_name").expect("name"),
            "New Person"
        );
        assert_eq!(row.try_get::<i64, _>("delay_days").expect("days"), 4);
        assert_eq!(row.try_get::<String, _>("resolution").expect("res"), "wait");
    }
}

/// After a crash, calls without an end are finalized as `interrupted`.
#[tokio::test]
async fn dangling_calls_are_interrupted() {
    let dir = tempfile::tempdir().expect("tempdir");
    for db in both("dangling", dir.path()).await {
        let ops = call_ops("d-1", 1, "no_choice");
        let mut tx = db.pool.begin().await.expect("begin");
        for op in &ops[..4] {
            switchboard::store::ops::apply(&mut tx, db.dialect, op)
                .await
                .expect("apply");
        }
        tx.commit().await.expect("commit");
        assert_eq!(db.finalize_dangling_calls().await.expect("finalize"), 1);
        assert_eq!(
            db.finalize_dangling_calls().await.expect("finalize again"),
            0
        );
        let disp: String = sqlx::query("SELECT disposition FROM call_records WHERE id = 'd-1'")
            .fetch_one(&db.pool)
            .await
            .expect("row")
            .try_get("disposition")
            .expect("col");
        assert_eq!(disp, "interrupted");
        let _ = HashMap::<String, String>::new();
    }
}

/// Two writers race on a ticket's resolution (switchboard's outcome and, say, an agent in the
/// order system): the decision made last wins, whichever write reaches the database last
/// (docs/schema.md "Two writers"). Here our outcome arrives late, as after an outage, and is
/// older than the other writer's decision: the ticket keeps the other writer's, the call's
/// outcome row is still kept, no refund request is made and `updated_at` does not go back.
/// A later call's newer decision then wins over the other writer's.
#[tokio::test]
async fn resolution_race_is_won_by_the_later_decision() {
    let dir = tempfile::tempdir().expect("tempdir");
    for db in both("race", dir.path()).await {
        demo::load(&db).await.expect("demo");
        let ticket = ticket_id(&db, "1002").await;
        let (t_call, t_other, t_later) = (
            "2026-12-02T10:00:00.000Z",
            "2026-12-02T10:00:05.000Z",
            "2026-12-02T10:01:00.000Z",
        );
        // The other writer resolves the ticket at t_other (also touching a field it owns).
        let sql = format!(
            "UPDATE tickets SET resolution = 'wait', resolved_at = {}, updated_at = {}, \
             new_eta = {} WHERE id = $4",
            db.dialect.ts(1),
            db.dialect.ts(2),
            db.dialect.date(3)
        );
        sqlx::query(&sql)
            .bind(t_other)
            .bind(t_other)
            .bind("2027-01-15")
            .bind(ticket)
            .execute(&db.pool)
            .await
            .expect("other writer");
        let outcome = |call: &str, choice: &str, at: &str| StoreOp::Outcome {
            call_id: call.into(),
            ticket_id: Some(ticket),
            choice: choice.into(),
            at: at.into(),
        };
        let apply = |op: StoreOp| {
            let db = db.clone();
            async move {
                let mut tx = db.pool.begin().await.expect("begin");
                switchboard::store::ops::apply(&mut tx, db.dialect, &op)
                    .await
                    .expect("apply");
                tx.commit().await.expect("commit");
            }
        };
        // Our caller chose a refund at t_call, before the other writer's decision; the op
        // reaches the database only now (replayed from the spool).
        apply(outcome("late-1", "refund", t_call)).await;
        let read = || {
            let db = db.clone();
            async move {
                let r = sqlx::query(&format!(
                    "SELECT resolution, {} AS r, {} AS u, {} AS eta FROM tickets WHERE id = $1",
                    db.dialect.text("resolved_at"),
                    db.dialect.text("updated_at"),
                    db.dialect.text("new_eta")
                ))
                .bind(ticket)
                .fetch_one(&db.pool)
                .await
                .expect("ticket");
                (
                    r.try_get::<String, _>("resolution").expect("resolution"),
                    r.try_get::<String, _>("r").expect("resolved_at"),
                    r.try_get::<String, _>("u").expect("updated_at"),
                    r.try_get::<String, _>("eta").expect("new_eta"),
                )
            }
        };
        let (res, resolved, updated, eta) = read().await;
        assert_eq!(
            res, "wait",
            "the newer decision (the other writer's) is kept"
        );
        // (PostgreSQL prints TIMESTAMPTZ in the session's zone: compare minutes and seconds.)
        assert!(resolved.contains(":00:05"), "{resolved}");
        assert!(
            updated.contains(":00:05"),
            "updated_at not moved back: {updated}"
        );
        assert_eq!(eta, "2027-01-15", "new_eta is the other writer's");
        assert_eq!(
            count(
                &db,
                "SELECT COUNT(*) FROM call_outcomes WHERE call_id = 'late-1' AND choice = 'refund'"
            )
            .await,
            1,
            "what the caller chose is still recorded"
        );
        assert_eq!(
            count(&db, "SELECT COUNT(*) FROM refund_requests").await,
            0,
            "no refund request for a resolution that did not stand"
        );
        // A later call decides after the other writer: it wins.
        apply(outcome("later-2", "refund", t_later)).await;
        let (res, resolved, updated, eta) = read().await;
        assert_eq!(res, "refund");
        assert!(resolved.contains(":01:00"), "{resolved}");
        assert!(updated.contains(":01:00"), "{updated}");
        assert_eq!(eta, "2027-01-15");
        assert_eq!(
            count(
                &db,
                "SELECT COUNT(*) FROM refund_requests WHERE call_id = 'later-2'"
            )
            .await,
            1
        );
    }
}

/// The wallboard's figures of the day (`switchboard::api::wallboard::history`) read the same
/// on both engines: a hotline call that ended in self-service, a queued call answered in
/// 12 s by alice, a campaign with one settled contact (its SQL casts and timestamp
/// parameters must suit PostgreSQL's TIMESTAMPTZ and NUMERIC sums as well as SQLite's text).
#[tokio::test]
async fn wallboard_history_reads_the_day_on_both_engines() {
    let dir = tempfile::tempdir().expect("tempdir");
    for db in both("wallboard", dir.path()).await {
        demo::load(&db).await.expect("demo");
        let ticket = ticket_id(&db, "1001").await;
        let mut ops = call_ops("wb-1", ticket, "refund");
        let t = now_ts();
        for (i, (event, wait, talk)) in [
            ("enter", None, None),
            ("connect", Some(12_000), None),
            ("complete", None, Some(60_000)),
        ]
        .into_iter()
        .enumerate()
        {
            ops.push(StoreOp::QueueLog {
                id: format!("wb-q{i}"),
                at: t.clone(),
                queue: "support".into(),
                call_id: Some("wb-2".into()),
                agent: Some("alice".into()),
                event: event.into(),
                position: Some(1),
                wait_ms: wait,
                talk_ms: talk,
                reason: None,
            });
        }
        let mut tx = db.pool.begin().await.expect("begin");
        for op in &ops {
            switchboard::store::ops::apply(&mut tx, db.dialect, op)
                .await
                .expect("apply");
        }
        tx.commit().await.expect("commit");
        let sql = format!(
            "INSERT INTO campaigns (name, dialplan, trunk, caller_id, state, spec, created_at, updated_at) \
             VALUES ('wb', 'd', 't', '1', 'running', '{{}}', {0}, {0})",
            db.dialect.ts(1)
        );
        sqlx::query(&sql)
            .bind(t.clone())
            .execute(&db.pool)
            .await
            .expect("campaign");
        let cid = count(&db, "SELECT MAX(id) FROM campaigns").await;
        let sql = format!(
            "INSERT INTO campaign_contacts (campaign_id, ticket_id, phone, timezone, state, outcome, updated_at) \
             VALUES ($1, $2, '+15551230001', 'UTC', 'completed', 'wait', {})",
            db.dialect.ts(3)
        );
        sqlx::query(&sql)
            .bind(cid)
            .bind(ticket)
            .bind(t.clone())
            .execute(&db.pool)
            .await
            .expect("contact");

        let sl = vec![
            ("support".to_string(), 30_000),
            ("sales".to_string(), 20_000),
        ];
        let h = switchboard::api::wallboard::history(&db, &sl)
            .await
            .unwrap_or_else(|e| panic!("{:?}: {e}", db.dialect));
        let q = &h.queues["support"];
        assert_eq!(
            (
                q.today.offered,
                q.today.answered,
                q.today.answered_within_sl
            ),
            (1, 1, 1),
            "{:?}",
            db.dialect
        );
        assert_eq!((q.wait_sum_today_ms, q.talk_sum_today_ms), (12_000, 60_000));
        assert_eq!(q.recent.answered, 1);
        assert_eq!(h.agent_calls["alice"], 1);
        assert_eq!(h.hotline.calls_today, 1);
        assert_eq!(h.hotline.self_service, 1);
        assert_eq!(h.hotline.by_outcome["refund"], 1);
        let c = h.campaigns.iter().find(|c| c.id == cid).expect("campaign");
        assert_eq!(c.contacts["completed"], 1);
        assert_eq!(c.outcomes["wait"], 1);
        assert_eq!(c.finished_recently, 1);
        // One threshold for every queue: the constant form of the query.
        let one = vec![("support".to_string(), 30_000)];
        let h1 = switchboard::api::wallboard::history(&db, &one)
            .await
            .unwrap_or_else(|e| panic!("{:?}: {e}", db.dialect));
        assert_eq!(h1.queues["support"].today.answered_within_sl, 1);

        // The reports' SQL (interval buckets differ by engine) over the same rows.
        let now = chrono::Utc::now();
        let p = switchboard::api::reports::Params {
            from: now - chrono::Duration::hours(1),
            to: now + chrono::Duration::hours(1),
            interval_s: 3600,
            csv: false,
        };
        let r = switchboard::api::reports::queues(&db, &p, &sl)
            .await
            .unwrap_or_else(|e| panic!("{:?}: {e}", db.dialect));
        let support: Vec<_> = r.iter().filter(|q| q.queue == "support").collect();
        assert_eq!(support.len(), 1, "{:?}: {r:?}", db.dialect);
        assert_eq!(
            (
                support[0].offered,
                support[0].answered,
                support[0].answered_within_sl
            ),
            (1, 1, 1)
        );
        assert_eq!(support[0].asa_s, Some(12.0));
        assert_eq!(support[0].aht_s, Some(60.0));
        assert!(support[0].interval_start.ends_with(":00:00.000Z"), "{r:?}");
        let c = switchboard::api::reports::calls(&db, &p)
            .await
            .unwrap_or_else(|e| panic!("{:?}: {e}", db.dialect));
        assert_eq!(
            c.iter().map(|x| x.calls).sum::<i64>(),
            1,
            "{:?}: {c:?}",
            db.dialect
        );
        assert_eq!(c[0].direction, "inbound");
    }
}

/// A campaign from CSV rows (`store::csv::check_tickets`, `campaigns::preview_rows`,
/// `campaigns::create_from_rows`), its contacts listing with filters, and the campaign report
/// per segment (`api::reports::campaign`): the same figures on both engines.
#[tokio::test]
async fn campaign_from_csv_contacts_and_report_on_both_engines() {
    use switchboard::store::campaigns::{self, ContactFilter};
    let dir = tempfile::tempdir().expect("tempdir");
    for db in both("campreport", dir.path()).await {
        let e = db.dialect;
        // An order id already stored: used as it is (its stored segment counts).
        sqlx::query("INSERT INTO tickets (order_id, phone, segment) VALUES ('OLD-1', '+15550000001', 'vip')")
            .execute(&db.pool)
            .await
            .expect("ticket");
        let csv = "order_id,customer_name,phone,segment\n\
                   A-1,Ann,+15551230001,standard\n\
                   A-2,Bob,not a phone,standard\n\
                   A-3,Cy,+15551230003,vip\n\
                   OLD-1,Old,+15550000001,standard\n\
                   A-4,Di,+15551230004,standard\n";
        let checked = switchboard::store::csv::check_tickets(csv.as_bytes(), "1").expect("csv");
        assert_eq!(checked.errors.len(), 1, "{:?}", checked.errors);
        assert_eq!(checked.errors[0].0, 3, "bad row reported by its line");
        let p = campaigns::preview_rows(&db, &checked.rows)
            .await
            .unwrap_or_else(|err| panic!("{e:?}: {err}"));
        assert_eq!((p.contacts, p.new_tickets, p.existing_tickets), (4, 3, 1));
        assert_eq!((p.segments["standard"], p.segments["vip"]), (2, 2));
        assert_eq!(
            count(&db, "SELECT COUNT(*) FROM tickets").await,
            1,
            "{e:?}: a preview writes nothing"
        );
        let (id, made) = campaigns::create_from_rows(
            &db,
            "from-csv",
            "campaign",
            "t",
            "+15550100",
            &serde_json::json!({}),
            &checked.rows,
            &[("vip".into(), 1)],
            100,
        )
        .await
        .unwrap_or_else(|err| panic!("{e:?}: {err}"));
        assert_eq!(made, p, "{e:?}: created as previewed");
        assert_eq!(count(&db, "SELECT COUNT(*) FROM tickets").await, 4);
        assert_eq!(
            count(
                &db,
                "SELECT COUNT(*) FROM campaign_contacts WHERE priority = 1"
            )
            .await,
            2,
            "{e:?}: vip priority"
        );
        // Settle them: A-1 wait (2 attempts), A-3 refund, OLD-1 busy and texted, A-4 pending.
        let t = now_ts();
        for (order, state, outcome, disp, attempts) in [
            ("A-1", "completed", Some("wait"), "answered", 2),
            ("A-3", "completed", Some("refund"), "answered", 1),
            ("OLD-1", "failed", None, "busy", 3),
        ] {
            sqlx::query(
                "UPDATE campaign_contacts SET state = $1, outcome = $2, last_disposition = $3, attempts = $4 \
                 WHERE ticket_id = (SELECT id FROM tickets WHERE order_id = $5)",
            )
            .bind(state)
            .bind(outcome)
            .bind(disp)
            .bind(attempts)
            .bind(order)
            .execute(&db.pool)
            .await
            .expect("settle");
        }
        let sql = format!(
            "INSERT INTO campaign_sms (contact_id, campaign_id, ticket_id, phone, body, state, next_try_at, created_at, updated_at) \
             SELECT c.id, c.campaign_id, c.ticket_id, c.phone, 'x', 'sent', {0}, {0}, {0} FROM campaign_contacts c \
             JOIN tickets t ON t.id = c.ticket_id WHERE t.order_id = 'OLD-1'",
            e.ts(1)
        );
        sqlx::query(&sql)
            .bind(t)
            .execute(&db.pool)
            .await
            .expect("sms");

        let f = |state: Option<&str>, segment: Option<&str>, outcome: Option<&str>| ContactFilter {
            state: state.map(str::to_string),
            segment: segment.map(str::to_string),
            outcome: outcome.map(str::to_string),
        };
        let vip = campaigns::contacts(&db, id, &f(None, Some("vip"), None), 10, 0)
            .await
            .unwrap_or_else(|err| panic!("{e:?}: {err}"));
        let mut orders: Vec<_> = vip.iter().filter_map(|c| c.order_id.clone()).collect();
        orders.sort();
        assert_eq!(orders, ["A-3", "OLD-1"], "{e:?}");
        assert_eq!(vip[0].segment.as_deref(), Some("vip"));
        for (filter, want) in [
            (f(None, None, None), 4),
            (f(Some("completed"), None, None), 2),
            (f(None, None, Some("busy")), 1),
            (f(Some("completed"), Some("vip"), Some("refund")), 1),
        ] {
            assert_eq!(
                campaigns::count_contacts(&db, id, &filter)
                    .await
                    .expect("count"),
                want,
                "{e:?}: {filter:?}"
            );
        }
        let page = campaigns::contacts(&db, id, &f(None, None, None), 2, 2)
            .await
            .expect("page");
        assert_eq!(page.len(), 2, "{e:?}: second page");

        let r = switchboard::api::reports::campaign(&db, id)
            .await
            .unwrap_or_else(|err| panic!("{e:?}: {err}"));
        assert_eq!(r.len(), 2, "{e:?}: {r:?}");
        let (std_seg, vip_seg) = (&r[0], &r[1]);
        assert_eq!(std_seg.segment, "standard");
        assert_eq!(
            (
                std_seg.contacts,
                std_seg.attempts,
                std_seg.closed,
                std_seg.notified
            ),
            (2, 2, 1, 1),
            "{e:?}"
        );
        assert_eq!(std_seg.outcomes["wait"], 1);
        assert_eq!(std_seg.resolution_rate, Some(1.0));
        assert_eq!(
            (vip_seg.contacts, vip_seg.attempts, vip_seg.closed),
            (2, 4, 2),
            "{e:?}"
        );
        assert_eq!(
            (vip_seg.outcomes["refund"], vip_seg.outcomes["busy"]),
            (1, 1)
        );
        assert_eq!(
            (vip_seg.sms_sent, vip_seg.notified, vip_seg.resolved),
            (1, 2, 1)
        );
        assert_eq!(vip_seg.resolution_rate, Some(0.5));
        let total = switchboard::api::reports::campaign_total(&r);
        assert_eq!((total.contacts, total.notified, total.resolved), (4, 3, 2));
        assert_eq!(total.outcomes["sms_sent"], 1);

        // The segment is copied onto each contact at creation (migration 0015)...
        let sql = format!(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM campaign_contacts WHERE campaign_id = {id} \
             AND segment = 'vip'"
        );
        assert_eq!(
            count(&db, &sql).await,
            2,
            "{e:?}: segment on the contact row"
        );
        // ...and a contact written without it (NULL) counts under its ticket's segment, in
        // the report (its SMS too) and in the contacts filter.
        let sql = format!(
            "UPDATE campaign_contacts SET segment = NULL WHERE campaign_id = {id} \
             AND ticket_id IN (SELECT id FROM tickets WHERE order_id = 'OLD-1')"
        );
        sqlx::query(&sql)
            .execute(&db.pool)
            .await
            .expect("segment NULL");
        let again = switchboard::api::reports::campaign(&db, id)
            .await
            .unwrap_or_else(|err| panic!("{e:?}: {err}"));
        assert_eq!(again, r, "{e:?}: a NULL segment falls back to the ticket's");
        assert_eq!(
            campaigns::count_contacts(&db, id, &f(None, Some("vip"), None))
                .await
                .expect("count"),
            2,
            "{e:?}"
        );
    }
}

/// 2026-11-01T00:00:00Z, the start of the report-totals tests' rows.
const TOTALS_BASE: i64 = 1_793_491_200;

fn iso(secs: i64, ms: i64) -> String {
    chrono::DateTime::from_timestamp(secs, (ms * 1_000_000) as u32)
        .expect("time")
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// `n` call records and their queue_log rows, ids prefixed by `tag`, spread pseudo-randomly
/// over two days from [`TOTALS_BASE`]: every direction, disposition (NULL: in
/// progress), answered or not, events counted or not, waits on and around the service
/// levels, agents or none.
async fn seed_report_rows(
    pool: &sqlx::AnyPool,
    e: switchboard::store::Dialect,
    tag: &str,
    n: u64,
    seed: u64,
) {
    let mut x = seed;
    let mut next = |m: u64| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) % m
    };
    let call_sql = format!(
        "INSERT INTO call_records (id, sip_call_id, direction, from_uri, to_uri, started_at, \
         answered_at, ended_at, disposition) VALUES ($1, $1, $2, 'f', 't', {}, {}, {}, $6)",
        e.ts(3),
        e.ts(4),
        e.ts(5)
    );
    let log_sql = format!(
        "INSERT INTO queue_log (id, at, queue, call_id, agent, event, wait_ms, talk_ms) \
         VALUES ($1, {}, $2, $1, $3, $4, $5, $6)",
        e.ts(7)
    );
    for i in 0..n {
        let at = TOTALS_BASE + next(2 * 86_400) as i64;
        let ms = next(999) as i64;
        let answered = next(3) != 0;
        let ended = next(5) != 0;
        let disp = if !ended {
            None
        } else if answered {
            Some("answered")
        } else {
            ["no_answer", "busy", "cancelled"]
                .get(next(3) as usize)
                .copied()
        };
        sqlx::query(&call_sql)
            .bind(format!("{tag}c{i}"))
            .bind(if next(2) == 0 { "inbound" } else { "outbound" })
            .bind(iso(at, ms))
            .bind(answered.then(|| iso(at + 3, ms + next(2) as i64)))
            .bind(ended.then(|| iso(at + 3 + next(400) as i64, next(999) as i64)))
            .bind(disp)
            .execute(pool)
            .await
            .expect("call record");
        let events = [
            "enter", "connect", "abandon", "timeout", "complete", "offer", "pause",
        ];
        let waits = [
            None,
            Some(0),
            Some(10_000),
            Some(20_000),
            Some(20_001),
            Some(30_000),
            Some(30_001),
            Some(59_999),
            Some(125_000),
        ];
        for k in 0..3 {
            let ev = events[next(events.len() as u64) as usize];
            sqlx::query(&log_sql)
                .bind(format!("{tag}e{i}-{k}"))
                .bind(["support", "sales", "other"][next(3) as usize])
                .bind(["alice", "bob"].get(next(3) as usize).copied())
                .bind(ev)
                .bind(waits[next(waits.len() as u64) as usize])
                .bind((next(4) != 0).then(|| next(300_000) as i64))
                .bind(iso(at + next(600) as i64, next(999) as i64))
                .execute(pool)
                .await
                .expect("queue_log row");
        }
    }
}

/// Every report the totals can answer (intervals of 15-minute multiples, ranges aligned or
/// not) equals the same report grouped from the raw rows only.
async fn assert_totals_match_raw(db: &Db, what: &str) {
    use switchboard::api::reports::{self, Params, Source};
    let at = |s: i64, ms: i64| {
        chrono::DateTime::from_timestamp(TOTALS_BASE + s, (ms * 1_000_000) as u32).expect("t")
    };
    let sl = vec![
        ("support".to_string(), 30_000),
        ("sales".to_string(), 20_000),
    ];
    let mut counted = 0;
    for (from, to, iv) in [
        (at(0, 0), at(86_400, 0), 900),
        (at(0, 0), at(2 * 86_400, 0), 86_400),
        (at(3_600, 0), at(2 * 86_400 - 900, 0), 3_600),
        (at(-86_400, 0), at(3 * 86_400, 0), 7_200),
        (at(0, 0), at(2 * 86_400, 0), 31 * 86_400),
        // Partial 15 minutes at the ends: raw rows there, totals between.
        (at(123, 500), at(2 * 86_400 - 77, 0), 900),
        (at(899, 999), at(86_400 + 1, 1), 86_400),
        (at(4_000, 0), at(40_000, 250), 1_800),
    ] {
        let p = Params {
            from,
            to,
            interval_s: iv,
            csv: false,
        };
        assert!(
            matches!(reports::source(&p), Source::Totals { .. }),
            "{p:?}"
        );
        let e = db.dialect;
        let ctx = format!("{e:?} {what}: {from}..{to} by {iv}");
        let q = reports::queues(db, &p, &sl).await.expect("queues");
        let raw = reports::queues_from(db, &p, &sl, Source::Raw)
            .await
            .expect("raw");
        assert_eq!(q, raw, "{ctx}");
        let c = reports::calls(db, &p).await.expect("calls");
        let raw = reports::calls_from(db, &p, Source::Raw).await.expect("raw");
        assert_eq!(c, raw, "{ctx}");
        let a = reports::agents(db, &p).await.expect("agents");
        let raw = reports::agents_from(db, &p, Source::Raw)
            .await
            .expect("raw");
        assert_eq!(a, raw, "{ctx}");
        counted += q.len() + c.len() + a.len();
    }
    assert!(counted > 0, "{what}: the reports read something");
}

/// Migration 0016's totals: backfilled from rows stored before it, then kept by its
/// triggers through late rows for old intervals (a replayed spool), crash recovery closing
/// open calls, updates and deletes; every aligned report equals the raw rows' on both
/// engines.
#[tokio::test]
async fn report_totals_are_backfilled_and_kept_exact_on_both_engines() {
    use switchboard::store::Dialect;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut urls = vec![(
        Dialect::Sqlite,
        format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display()),
    )];
    if let Some(u) = pg_url("totals").await {
        urls.push((Dialect::Postgres, u));
    }
    for (e, url) in urls {
        // The schema before 0016, rows in it, then the upgrade.
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&url).await.expect("connect");
        let mut m = match e {
            Dialect::Sqlite => sqlx::migrate!("migrations/sqlite"),
            Dialect::Postgres => sqlx::migrate!("migrations/postgres"),
        };
        m.migrations = m
            .migrations
            .iter()
            .filter(|m| m.version < 16)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        m.run(&pool).await.expect("migrations up to 0015");
        seed_report_rows(&pool, e, "old", 150, 7).await;
        pool.close().await;
        let db = Db::connect(&url.replace("?mode=rwc", ""))
            .await
            .expect("upgrade to 0016");
        assert!(
            count(&db, "SELECT COUNT(*) FROM report_call_totals").await > 0,
            "{e:?}: backfilled"
        );
        assert_totals_match_raw(&db, "backfilled").await;

        // Kept by the triggers: new rows, and late ones for the same (old) intervals.
        seed_report_rows(&db.pool, e, "new", 150, 11).await;
        seed_report_rows(&db.pool, e, "late", 50, 7 * 31).await;
        assert_totals_match_raw(&db, "after late rows").await;
        // Crash recovery closes the open calls (disposition NULL -> interrupted).
        let open = count(
            &db,
            "SELECT COUNT(*) FROM call_records WHERE ended_at IS NULL",
        )
        .await;
        assert!(open > 0);
        db.finalize_dangling_calls().await.expect("finalize");
        assert_totals_match_raw(&db, "after crash recovery").await;
        // Updates of uncounted columns, of counted ones, and deletes.
        sqlx::query("UPDATE call_records SET to_uri = 'x'")
            .execute(&db.pool)
            .await
            .expect("update");
        sqlx::query("UPDATE call_records SET direction = 'inbound' WHERE id LIKE 'newc1%'")
            .execute(&db.pool)
            .await
            .expect("update");
        sqlx::query(
            "UPDATE queue_log SET event = 'connect', wait_ms = 15000 WHERE id LIKE 'newe2%'",
        )
        .execute(&db.pool)
        .await
        .expect("update");
        sqlx::query("DELETE FROM call_records WHERE id LIKE 'oldc3%'")
            .execute(&db.pool)
            .await
            .expect("delete");
        sqlx::query("DELETE FROM queue_log WHERE id LIKE 'olde4%'")
            .execute(&db.pool)
            .await
            .expect("delete");
        assert_totals_match_raw(&db, "after updates and deletes").await;
        if e == Dialect::Postgres {
            // TRUNCATE fires no row trigger; its own trigger empties the totals.
            sqlx::query("TRUNCATE call_records, queue_log")
                .execute(&db.pool)
                .await
                .expect("truncate");
            for t in [
                "report_call_totals",
                "report_queue_totals",
                "report_agent_totals",
            ] {
                assert_eq!(
                    count(&db, &format!("SELECT COUNT(*) FROM {t}")).await,
                    0,
                    "{t}"
                );
            }
            seed_report_rows(&db.pool, e, "again", 50, 3).await;
            assert_totals_match_raw(&db, "after a truncate").await;
        }
        db.pool.close().await;
    }
}

/// Two nodes write one PostgreSQL at once (each its own pool, many statements in flight):
/// the totals' upserts add up, no increment lost.
#[tokio::test]
async fn report_totals_add_up_with_two_writers_on_postgres() {
    let Some(url) = pg_url("totals2").await else {
        return;
    };
    let a = Db::connect(&url).await.expect("node a");
    let b = Db::connect(&url).await.expect("node b");
    let e = a.dialect;
    // Same seed for several writers: the same intervals and keys, contended.
    let mut jobs = Vec::new();
    for (k, db) in [&a, &b, &a, &b, &a, &b].into_iter().enumerate() {
        let tag = format!("w{k}-");
        jobs.push(async move { seed_report_rows(&db.pool, e, &tag, 60, 5).await });
    }
    futures_util::future::join_all(jobs).await;
    assert_eq!(count(&a, "SELECT COUNT(*) FROM call_records").await, 360);
    assert_eq!(
        count(
            &a,
            "SELECT CAST(SUM(calls) AS BIGINT) FROM report_call_totals"
        )
        .await,
        360
    );
    // And concurrent updates of the same rows' counted columns from both nodes.
    let ends = [&a, &b].map(|db| async move {
        sqlx::query("UPDATE call_records SET ended_at = started_at, disposition = 'interrupted' WHERE ended_at IS NULL")
            .execute(&db.pool)
            .await
            .expect("finalize")
    });
    futures_util::future::join_all(ends).await;
    assert_totals_match_raw(&a, "two writers").await;
}

/// `cap_shares` (ADR 0010) on both engines: the grant rule (never past the cap, counting
/// only the other nodes' unexpired blocks), its PostgreSQL advisory lock, and concurrent
/// growers that together never hold more than the cap.
#[tokio::test]
async fn cap_share_grants_never_exceed_the_cap_even_when_nodes_grow_at_once() {
    use switchboard::dialer::share::{Request, ShareKey};
    use switchboard::store::cap_shares;
    let dir = tempfile::tempdir().expect("dir");
    for db in both("capshares", dir.path()).await {
        let k = ShareKey::trunk("carrier");
        let want = |target| Request {
            target,
            wants: true,
        };
        let a = cap_shares::sync(&db, &k, "a", 4, want(3), 15.0)
            .await
            .expect("a grows");
        assert_eq!(a.channels, 3, "{:?}", db.dialect);
        let b = cap_shares::sync(&db, &k, "b", 4, want(3), 15.0)
            .await
            .expect("b grows");
        assert_eq!((b.channels, b.others_wanting), (1, 1));
        cap_shares::release_all(&db, "a").await.expect("release");
        cap_shares::release_all(&db, "b").await.expect("release");
        if db.dialect != switchboard::store::Dialect::Postgres {
            continue; // one node per SQLite database: no concurrent growers
        }
        // Eight nodes asking for the whole cap at once, over and over.
        let mut tasks = Vec::new();
        for n in 0..8 {
            let db = db.clone();
            let k = k.clone();
            tasks.push(tokio::spawn(async move {
                let mut held = 0;
                for _ in 0..10 {
                    held = cap_shares::sync(&db, &k, &format!("n{n}"), 4, want(4), 15.0)
                        .await
                        .expect("sync")
                        .channels;
                }
                held
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.expect("task");
        }
        assert_eq!(total, 4, "the growers' blocks sum to the cap, not more");
        let rows = cap_shares::live(&db).await.expect("live");
        assert_eq!(rows.iter().map(|r| r.channels).sum::<i64>(), 4);
    }
}

/// Two nodes' writers cross on the report totals (found by bench/cluster.sh with two and three
/// nodes: "deadlock detected", the batch spooled as if the database were down). Here made
/// certain: another node's transaction holds the totals row of one quarter-hour and then
/// wants the row of another, which this node's batch took first. PostgreSQL aborts the
/// batch's transaction (its session detects the cycle first: the other's `deadlock_timeout`
/// is 10 s); the writer runs the batch again, nothing is spooled, nothing is lost, and the
/// totals still match the raw rows.
#[tokio::test]
async fn a_batch_that_deadlocks_with_another_node_is_run_again_not_spooled() {
    let Some(url) = pg_url("deadlock").await else {
        return;
    };
    let db = Db::connect(&url).await.expect("this node");
    let other = Db::connect(&url).await.expect("the other node");
    // Two quarter-hours: two rows of report_call_totals.
    let (q1, q2) = (iso(TOTALS_BASE, 0), iso(TOTALS_BASE + 900, 0));

    // The other node: holds quarter 2's row, in an open transaction.
    let mut held = other.pool.begin().await.expect("begin");
    sqlx::query("SET LOCAL deadlock_timeout = '10s'")
        .execute(&mut *held)
        .await
        .expect("deadlock_timeout");
    switchboard::store::ops::apply(&mut held, other.dialect, &call_started("o-2", q2.clone()))
        .await
        .expect("the other node's first row");

    // This node's batch (both ops queued before the writer starts: one batch): quarter 1's
    // row, then quarter 2's, where it waits for the other node.
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = dir.path().join("spool.jsonl");
    let (handle, rx) = writer::channel();
    handle.submit(call_started("n-1", q1.clone()));
    handle.submit(call_started("n-2", q2));
    let stats = handle.stats.clone();
    let close = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(writer::run(
        db.clone(),
        rx,
        spool.clone(),
        stats.clone(),
        close.clone(),
    ));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // The other node now wants quarter 1's row: a cycle, which the batch's session finds
    // after its deadlock_timeout (1 s) and loses.
    switchboard::store::ops::apply(&mut held, other.dialect, &call_started("o-1", q1))
        .await
        .expect("the other node's second row (the batch gave way)");
    held.commit().await.expect("the other node commits");

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while stats.written.load(std::sync::atomic::Ordering::Relaxed) < 2
        && stats.spooled.load(std::sync::atomic::Ordering::Relaxed) == 0
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    close.cancel();
    drop(handle);
    task.await.expect("writer ends");
    assert_eq!(
        stats.spooled.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "the batch that lost the race was spooled as if the database were down"
    );
    assert!(!spool.exists(), "nothing in the spool");
    assert_eq!(stats.written.load(std::sync::atomic::Ordering::Relaxed), 2);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM call_records").await, 4);
    assert_eq!(
        count(
            &db,
            "SELECT CAST(SUM(calls) AS BIGINT) FROM report_call_totals"
        )
        .await,
        4
    );
    db.pool.close().await;
    other.pool.close().await;
}
