//! The `cap_shares` table: each node's block of a trunk's or a campaign's channel cap
//! (docs/adr/0010-shared-caps.md; the policy is `dialer::share`).
//!
//! One statement set per sync, in one transaction serialised per cap: on PostgreSQL a
//! transaction-scoped advisory lock on the cap's name, so two nodes growing at once cannot
//! both count the same free channels. Expiry is the database's clock (`now()`), as for
//! heartbeats: a node's row counts until `expires_at`, renewed by each sync.

use sqlx::Row;

use super::{Db, Dialect, StoreError};

/// Which kind of cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Trunk,
    Campaign,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Trunk => "trunk",
            Scope::Campaign => "campaign",
        }
    }
}

/// One cap: a trunk by name, a campaign by id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ShareKey {
    pub scope: Scope,
    pub key: String,
}

impl ShareKey {
    pub fn trunk(name: &str) -> ShareKey {
        ShareKey {
            scope: Scope::Trunk,
            key: name.to_string(),
        }
    }

    pub fn campaign(id: i64) -> ShareKey {
        ShareKey {
            scope: Scope::Campaign,
            key: id.to_string(),
        }
    }
}

/// What the shell should write: this node's block of the cap becomes `target` (or less:
/// the database grants what the others leave), and whether the node is short of channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub target: u32,
    pub wants: bool,
}

/// What the database granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub channels: u32,
    /// Other nodes whose block is full while they have work.
    pub others_wanting: u32,
}

/// Make this node's block of `key` (whose cap is `cap` channels) `req.target`, or what the
/// other nodes' unexpired blocks leave of the cap if that is less; renew it for `ttl_s`
/// seconds. A target of 0 with no want deletes the row.
pub async fn sync(
    db: &Db,
    key: &ShareKey,
    node: &str,
    cap: u32,
    req: Request,
    ttl_s: f64,
) -> Result<Grant, StoreError> {
    let d = db.dialect;
    let scope = key.scope.as_str();
    let mut tx = db.pool.begin().await?;
    if d == Dialect::Postgres {
        // Wrapped so the row has a type the Any driver reads (the lock function returns void).
        sqlx::query("SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock(hashtext($1))) AS l")
            .bind(format!("cap_shares/{scope}/{}", key.key))
            .fetch_one(&mut *tx)
            .await?;
    }
    let sql = format!(
        "SELECT CAST(COALESCE(SUM(channels), 0) AS BIGINT) AS held, \
         CAST(COALESCE(SUM(CASE WHEN wants > 0 THEN 1 ELSE 0 END), 0) AS BIGINT) AS wanting \
         FROM cap_shares WHERE scope = $1 AND key = $2 AND node <> $3 AND expires_at > {}",
        d.now()
    );
    let row = sqlx::query(&sql)
        .bind(scope)
        .bind(&key.key)
        .bind(node)
        .fetch_one(&mut *tx)
        .await?;
    let others: i64 = row.try_get("held")?;
    let wanting: i64 = row.try_get("wanting")?;
    let free = (i64::from(cap) - others).max(0);
    let channels = i64::from(req.target).min(free);
    if channels == 0 && !req.wants {
        sqlx::query("DELETE FROM cap_shares WHERE scope = $1 AND key = $2 AND node = $3")
            .bind(scope)
            .bind(&key.key)
            .bind(node)
            .execute(&mut *tx)
            .await?;
    } else {
        let sql = format!(
            "INSERT INTO cap_shares (scope, key, node, channels, wants, expires_at) \
             VALUES ($1, $2, $3, $4, $5, {exp}) \
             ON CONFLICT (scope, key, node) DO UPDATE SET channels = excluded.channels, \
             wants = excluded.wants, expires_at = excluded.expires_at",
            exp = now_plus_secs(d, 6)
        );
        sqlx::query(&sql)
            .bind(scope)
            .bind(&key.key)
            .bind(node)
            .bind(channels)
            .bind(i64::from(req.wants))
            .bind(ttl_s)
            .execute(&mut *tx)
            .await?;
    }
    // Rows long expired (a node that died and never came back) are dropped here rather
    // than by a sweeper: they already count for nobody.
    let sql = format!(
        "DELETE FROM cap_shares WHERE scope = $1 AND key = $2 AND expires_at < {}",
        now_plus_secs(d, 3)
    );
    sqlx::query(&sql)
        .bind(scope)
        .bind(&key.key)
        .bind(-3600.0_f64)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Grant {
        channels: u32::try_from(channels).unwrap_or(0),
        others_wanting: u32::try_from(wanting).unwrap_or(u32::MAX),
    })
}

/// The database's clock plus parameter `$n` seconds (a float).
fn now_plus_secs(d: Dialect, n: usize) -> String {
    match d {
        Dialect::Sqlite => {
            format!("strftime('%Y-%m-%dT%H:%M:%fZ', 'now', printf('%+.3f seconds', ${n}))")
        }
        Dialect::Postgres => {
            format!("(now() + make_interval(secs => CAST(${n} AS DOUBLE PRECISION)))")
        }
    }
}

/// Drop every block of `node` (clean stop; start, where a previous run's rows are stale).
pub async fn release_all(db: &Db, node: &str) -> Result<u64, StoreError> {
    Ok(sqlx::query("DELETE FROM cap_shares WHERE node = $1")
        .bind(node)
        .execute(&db.pool)
        .await?
        .rows_affected())
}

/// One node's block, for operators and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareRow {
    pub scope: String,
    pub key: String,
    pub node: String,
    pub channels: i64,
    pub wants: bool,
}

/// The unexpired blocks of every node, by scope, key and node.
pub async fn live(db: &Db) -> Result<Vec<ShareRow>, StoreError> {
    let sql = format!(
        "SELECT scope, key, node, CAST(channels AS BIGINT) AS channels, CAST(wants AS BIGINT) AS wants \
         FROM cap_shares WHERE expires_at > {} ORDER BY scope, key, node",
        db.dialect.now()
    );
    let rows = sqlx::query(&sql).fetch_all(&db.pool).await?;
    rows.iter()
        .map(|r| {
            Ok(ShareRow {
                scope: r.try_get("scope")?,
                key: r.try_get("key")?,
                node: r.try_get("node")?,
                channels: r.try_get("channels")?,
                wants: r.try_get::<i64, _>("wants")? > 0,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(StoreError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The grant rule on SQLite (the same SQL but the lock; PostgreSQL is exercised by the
    /// two-node black-box test, tests/crash_recovery.rs).
    #[tokio::test]
    async fn grants_never_exceed_the_cap_and_a_release_frees_them() {
        let db = Db::connect("sqlite::memory:").await.expect("db");
        let k = ShareKey {
            scope: Scope::Trunk,
            key: "carrier".into(),
        };
        let want = |target| Request {
            target,
            wants: true,
        };
        let a = sync(&db, &k, "a", 4, want(3), 15.0).await.expect("a");
        assert_eq!(a.channels, 3);
        let b = sync(&db, &k, "b", 4, want(3), 15.0).await.expect("b");
        assert_eq!((b.channels, b.others_wanting), (1, 1), "what a left");
        let a = sync(
            &db,
            &k,
            "a",
            4,
            Request {
                target: 2,
                wants: false,
            },
            15.0,
        )
        .await
        .expect("a shrinks");
        assert_eq!((a.channels, a.others_wanting), (2, 1));
        let b = sync(&db, &k, "b", 4, want(3), 15.0).await.expect("b grows");
        assert_eq!(b.channels, 2);
        // An expired block counts for nobody.
        let c = sync(&db, &k, "c", 4, want(4), -1.0).await.expect("c");
        assert_eq!(c.channels, 0, "full");
        let rows = live(&db).await.expect("live");
        assert_eq!(rows.iter().map(|r| r.channels).sum::<i64>(), 4);
        assert_eq!(release_all(&db, "a").await.expect("release"), 1);
        let c = sync(&db, &k, "c", 4, want(4), 15.0).await.expect("c again");
        assert_eq!(c.channels, 2, "a's released block is free");
        // Other caps are separate.
        let other = ShareKey::campaign(7);
        assert_eq!(
            sync(&db, &other, "a", 2, want(2), 15.0)
                .await
                .expect("campaign")
                .channels,
            2
        );
    }
}
