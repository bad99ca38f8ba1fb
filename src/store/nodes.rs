//! The `nodes` table and the cluster's shared-state queries: a node's own row and heartbeat,
//! dead-node detection by a survivor, and the crash recovery scoped to one node's calls
//! (docs/adr/0007-cluster-state.md).
//!
//! Every time compared here is the database's clock ([`super::Dialect::now`]), so two nodes
//! whose clocks disagree still agree on whose heartbeat is old.

use sqlx::Row;

use super::{now_ts, Db, Dialect, StoreError};

/// A node's state as written in `nodes.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    Running,
    /// Finishing its calls, taking no new ones (SIGTERM, `POST /api/drain`).
    Draining,
    /// Declared dead by a survivor: its heartbeat stopped.
    Dead,
    /// Shut down cleanly.
    Stopped,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Running => "running",
            NodeState::Draining => "draining",
            NodeState::Dead => "dead",
            NodeState::Stopped => "stopped",
        }
    }

    pub fn parse(s: &str) -> Option<NodeState> {
        Some(match s {
            "running" => NodeState::Running,
            "draining" => NodeState::Draining,
            "dead" => NodeState::Dead,
            "stopped" => NodeState::Stopped,
            _ => return None,
        })
    }
}

/// One row of `nodes`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NodeRow {
    pub node_id: String,
    pub state: String,
    pub started_at: String,
    pub heartbeat_at: String,
    pub version: String,
    pub sip_addr: Option<String>,
    pub http_addr: Option<String>,
    /// Seconds since the heartbeat, by the database's clock.
    pub heartbeat_age_s: f64,
}

/// What a node publishes about itself.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node_id: String,
    pub version: String,
    pub sip_addr: String,
    pub http_addr: String,
}

/// Write this node's row as running, with a fresh heartbeat (start, or rejoin after it was
/// declared dead).
pub async fn register(db: &Db, me: &NodeInfo) -> Result<(), StoreError> {
    let d = db.dialect;
    let sql = format!(
        "INSERT INTO nodes (node_id, started_at, heartbeat_at, state, version, sip_addr, http_addr, updated_at) \
         VALUES ($1, {now}, {now}, 'running', $2, $3, $4, {now}) \
         ON CONFLICT (node_id) DO UPDATE SET started_at = excluded.started_at, \
         heartbeat_at = excluded.heartbeat_at, state = 'running', version = excluded.version, \
         sip_addr = excluded.sip_addr, http_addr = excluded.http_addr, updated_at = excluded.updated_at",
        now = d.now()
    );
    sqlx::query(&sql)
        .bind(&me.node_id)
        .bind(&me.version)
        .bind(&me.sip_addr)
        .bind(&me.http_addr)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// How a heartbeat went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    Written,
    /// The row said `dead` (or was gone): a survivor declared this node dead while its
    /// heartbeats did not reach the database. The caller rejoins with [`register`].
    DeclaredDead,
}

/// Refresh this node's heartbeat and state, and the leases of its dialing campaign contacts
/// (they expire `lease_s` after the last heartbeat that renewed them).
pub async fn beat(db: &Db, node: &str, state: NodeState, lease_s: i64) -> Result<Beat, StoreError> {
    let d = db.dialect;
    let mut tx = db.pool.begin().await?;
    let sql = format!(
        "UPDATE nodes SET heartbeat_at = {now}, state = $1, updated_at = {now} \
         WHERE node_id = $2 AND state <> 'dead'",
        now = d.now()
    );
    let n = sqlx::query(&sql)
        .bind(state.as_str())
        .bind(node)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if n == 0 {
        tx.rollback().await?;
        return Ok(Beat::DeclaredDead);
    }
    let sql = format!(
        "UPDATE campaign_contacts SET lease_expires_at = {} \
         WHERE lease_owner = $2 AND state = 'dialing'",
        d.now_plus(1)
    );
    sqlx::query(&sql)
        .bind(lease_s)
        .bind(node)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Beat::Written)
}

/// Every node's row, by name.
pub async fn list(db: &Db) -> Result<Vec<NodeRow>, StoreError> {
    let age = match db.dialect {
        Dialect::Postgres => "CAST(EXTRACT(EPOCH FROM (now() - heartbeat_at)) AS DOUBLE PRECISION)",
        Dialect::Sqlite => "CAST((julianday('now') - julianday(heartbeat_at)) * 86400.0 AS REAL)",
    };
    let sql = format!(
        "SELECT node_id, state, CAST(started_at AS TEXT) AS started_at, \
         CAST(heartbeat_at AS TEXT) AS heartbeat_at, version, sip_addr, http_addr, {age} AS age \
         FROM nodes ORDER BY node_id"
    );
    let rows = sqlx::query(&sql).fetch_all(&db.pool).await?;
    rows.iter()
        .map(|r| {
            Ok(NodeRow {
                node_id: r.try_get("node_id")?,
                state: r.try_get("state")?,
                started_at: r.try_get("started_at")?,
                heartbeat_at: r.try_get("heartbeat_at")?,
                version: r.try_get("version")?,
                sip_addr: r.try_get("sip_addr")?,
                http_addr: r.try_get("http_addr")?,
                heartbeat_age_s: r.try_get("age")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(StoreError::from)
}

/// Declare `node` dead when its heartbeat is older than `dead_after_s`. Of several survivors
/// trying at once exactly one gets `true` (the row moves once); only that one finalises the
/// node's calls.
pub async fn declare_dead(db: &Db, node: &str, dead_after_s: i64) -> Result<bool, StoreError> {
    let d = db.dialect;
    let sql = format!(
        "UPDATE nodes SET state = 'dead', updated_at = {} \
         WHERE node_id = $1 AND state IN ('running', 'draining') AND heartbeat_at < {}",
        d.now(),
        d.now_plus(2)
    );
    let n = sqlx::query(&sql)
        .bind(node)
        .bind(-dead_after_s)
        .execute(&db.pool)
        .await?
        .rows_affected();
    Ok(n == 1)
}

/// Close a dead node's open call rows as `interrupted` (hangup cause `node_dead`).
pub async fn finalize_node_calls(db: &Db, node: &str) -> Result<u64, StoreError> {
    let sql = format!(
        "UPDATE call_records SET ended_at = {}, disposition = 'interrupted', hangup_cause = 'node_dead' \
         WHERE node = $2 AND ended_at IS NULL",
        db.dialect.ts(1)
    );
    Ok(sqlx::query(&sql)
        .bind(now_ts())
        .bind(node)
        .execute(&db.pool)
        .await?
        .rows_affected())
}

/// Crash recovery at start, scoped to this node.
///
/// - SQLite serves one node: every open row is this node's (also rows of an earlier name),
///   closed as today ([`Db::finalize_dangling_calls`]).
/// - PostgreSQL: this node's own open rows; rows without a node (written before nodes had
///   names, by a single node) only when no other node is heart-beating, since one of them
///   might be that single node still running an older release.
pub async fn finalize_own_calls(db: &Db, node: &str, dead_after_s: i64) -> Result<u64, StoreError> {
    if db.dialect == Dialect::Sqlite {
        return db.finalize_dangling_calls().await;
    }
    let d = db.dialect;
    let sql = format!(
        "UPDATE call_records SET ended_at = {}, disposition = 'interrupted', hangup_cause = 'server_restart' \
         WHERE ended_at IS NULL AND (node = $2 OR (node IS NULL AND NOT EXISTS ( \
           SELECT 1 FROM nodes WHERE node_id <> $2 AND state IN ('running', 'draining') \
           AND heartbeat_at >= {})))",
        d.ts(1),
        d.now_plus(3)
    );
    Ok(sqlx::query(&sql)
        .bind(now_ts())
        .bind(node)
        .bind(-dead_after_s)
        .execute(&db.pool)
        .await?
        .rows_affected())
}

/// Other nodes whose heartbeat is older than `dead_after_s` and that are not yet marked
/// dead or stopped: the candidates a survivor tries to [`declare_dead`].
pub async fn stale_peers(db: &Db, me: &str, dead_after_s: i64) -> Result<Vec<String>, StoreError> {
    let sql = format!(
        "SELECT node_id FROM nodes WHERE node_id <> $1 AND state IN ('running', 'draining') \
         AND heartbeat_at < {} ORDER BY node_id",
        db.dialect.now_plus(2)
    );
    let rows = sqlx::query(&sql)
        .bind(me)
        .bind(-dead_after_s)
        .fetch_all(&db.pool)
        .await?;
    rows.iter()
        .map(|r| r.try_get::<String, _>("node_id"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(StoreError::from)
}

/// Set this node's state (draining, stopped) without waiting for the next heartbeat.
pub async fn set_state(db: &Db, node: &str, state: NodeState) -> Result<(), StoreError> {
    let sql = format!(
        "UPDATE nodes SET state = $1, updated_at = {} WHERE node_id = $2 AND state <> 'dead'",
        db.dialect.now()
    );
    sqlx::query(&sql)
        .bind(state.as_str())
        .bind(node)
        .execute(&db.pool)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn db() -> Db {
        Db::connect("sqlite::memory:").await.expect("db")
    }

    fn info(n: &str) -> NodeInfo {
        NodeInfo {
            node_id: n.into(),
            version: "test".into(),
            sip_addr: "127.0.0.1:5060".into(),
            http_addr: "127.0.0.1:8080".into(),
        }
    }

    #[test]
    fn states_round_trip() {
        for s in [
            NodeState::Running,
            NodeState::Draining,
            NodeState::Dead,
            NodeState::Stopped,
        ] {
            assert_eq!(NodeState::parse(s.as_str()), Some(s));
        }
        assert_eq!(NodeState::parse("zombie"), None);
    }

    /// A stale heartbeat is declared dead once; a fresh one never; a node declared dead
    /// learns it at its next beat and rejoins.
    #[tokio::test]
    async fn dead_node_is_declared_once_and_can_rejoin() {
        let db = db().await;
        register(&db, &info("a")).await.expect("a");
        register(&db, &info("b")).await.expect("b");
        assert!(!declare_dead(&db, "a", 15).await.expect("fresh"));
        sqlx::query(
            "UPDATE nodes SET heartbeat_at = '2000-01-01T00:00:00.000Z' WHERE node_id = 'a'",
        )
        .execute(&db.pool)
        .await
        .expect("age a");
        assert_eq!(stale_peers(&db, "b", 15).await.expect("stale"), vec!["a"]);
        assert!(stale_peers(&db, "a", 15).await.expect("own").is_empty());
        assert!(declare_dead(&db, "a", 15).await.expect("dead"));
        assert!(!declare_dead(&db, "a", 15).await.expect("only once"));
        assert_eq!(
            beat(&db, "a", NodeState::Running, 15).await.expect("beat"),
            Beat::DeclaredDead
        );
        register(&db, &info("a")).await.expect("rejoin");
        assert_eq!(
            beat(&db, "a", NodeState::Draining, 15).await.expect("beat"),
            Beat::Written
        );
        let rows = list(&db).await.expect("list");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].state, "draining");
        assert!(rows[0].heartbeat_age_s < 5.0, "{rows:?}");
    }

    /// A dead node's open calls are closed, nobody else's.
    #[tokio::test]
    async fn finalizing_a_dead_node_touches_only_its_calls() {
        let db = db().await;
        for (id, node) in [("c1", Some("a")), ("c2", Some("b")), ("c3", None)] {
            sqlx::query("INSERT INTO call_records (id, sip_call_id, direction, from_uri, to_uri, started_at, node) VALUES ($1, $1, 'inbound', 'f', 't', '2026-01-01T00:00:00.000Z', $2)")
                .bind(id)
                .bind(node)
                .execute(&db.pool)
                .await
                .expect("insert");
        }
        assert_eq!(finalize_node_calls(&db, "a").await.expect("a"), 1);
        let open: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM call_records WHERE ended_at IS NULL")
                .fetch_one(&db.pool)
                .await
                .expect("count");
        assert_eq!(open, 2);
        let cause: String =
            sqlx::query_scalar("SELECT hangup_cause FROM call_records WHERE id = 'c1'")
                .fetch_one(&db.pool)
                .await
                .expect("cause");
        assert_eq!(cause, "node_dead");
    }
}
