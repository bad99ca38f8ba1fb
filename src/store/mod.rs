//! The shared ticket database: connection, migrations, the SQL dialect differences between
//! SQLite (embedded default) and PostgreSQL (the shared deployment), ticket reads, and the
//! batched, spooling record writer.
//!
//! Calls never await this module on their media path: they `submit` [`ops::StoreOp`]s to the
//! writer's bounded mailbox and read tickets from a spawned task. See docs/schema.md.

pub mod agents;
pub mod campaigns;
pub mod cap_shares;
pub mod csv;
pub mod demo;
pub mod journal;
pub mod nodes;
pub mod operators;
pub mod ops;
pub mod tickets;
pub mod writer;

use std::path::Path;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyQueryResult};
use sqlx::{AnyPool, Executor};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL '{0}' (use sqlite://PATH or postgres://...)")]
    BadUrl(String),
    #[error("cannot create database folder {path}: {source}")]
    Folder {
        path: String,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Reading or writing CSV (ticket import, call export): I/O, or a malformed stream.
    #[error("CSV: {0}")]
    Csv(#[from] ::csv::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// A timestamp parameter: PostgreSQL columns are TIMESTAMPTZ, SQLite's are ISO text.
    pub fn ts(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("${n}"),
            Dialect::Postgres => format!("CAST(${n} AS TIMESTAMPTZ)"),
        }
    }

    /// A date parameter (`YYYY-MM-DD`).
    pub fn date(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("${n}"),
            Dialect::Postgres => format!("CAST(${n} AS DATE)"),
        }
    }

    /// The database's own clock, `now()`: heartbeats and leases are compared on one clock,
    /// never on two nodes' clocks (which may disagree by seconds).
    pub fn now(self) -> &'static str {
        match self {
            Dialect::Sqlite => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
            Dialect::Postgres => "now()",
        }
    }

    /// The database's clock plus (or minus, when negative) parameter `$n` seconds (an integer).
    pub fn now_plus(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => {
                format!("strftime('%Y-%m-%dT%H:%M:%fZ', 'now', printf('%+d seconds', ${n}))")
            }
            Dialect::Postgres => {
                format!("(now() + make_interval(secs => CAST(${n} AS DOUBLE PRECISION)))")
            }
        }
    }

    /// A timestamp or date column read back as ISO text.
    pub fn text(self, col: &str) -> String {
        format!("CAST({col} AS TEXT)")
    }
}

/// A connected, migrated database.
#[derive(Clone, Debug)]
pub struct Db {
    pub pool: AnyPool,
    pub dialect: Dialect,
    pub url_redacted: String,
}

/// The current time as stored: ISO-8601 UTC with milliseconds.
pub fn now_ts() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

impl Db {
    pub async fn connect(url: &str) -> Result<Db, StoreError> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Dialect::Postgres
        } else {
            return Err(StoreError::BadUrl(url.to_string()));
        };
        let url_redacted = redact(url);
        let mut url = url.to_string();
        let mut in_memory = false;
        if dialect == Dialect::Sqlite {
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            let path = path.split('?').next().unwrap_or("");
            if path == ":memory:" {
                // sqlx's `:memory:` names a new database each time the URL is parsed, and the
                // Any driver parses it once per pooled connection: every connection would get
                // its own empty database ("no such table"). One named, shared-cache database
                // for the whole pool instead.
                in_memory = true;
                url = shared_memory_url();
            } else if !path.is_empty() {
                if let Some(parent) = Path::new(path)
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                {
                    std::fs::create_dir_all(parent).map_err(|e| StoreError::Folder {
                        path: parent.display().to_string(),
                        source: e,
                    })?;
                }
            }
            if !url.contains('?') {
                url.push_str("?mode=rwc");
            }
        }
        let opts = AnyPoolOptions::new()
            .max_connections(if dialect == Dialect::Sqlite { 4 } else { 8 })
            .acquire_timeout(Duration::from_secs(5));
        // An in-memory database lives as long as one connection to it: keep one open for the
        // pool's life and never retire it (the default idle timeout and lifetime would).
        let opts = if in_memory {
            opts.min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            opts
        };
        let opts = if dialect == Dialect::Sqlite {
            opts.after_connect(|conn, _| {
                Box::pin(async move {
                    // One writer (our writer task) and many readers: WAL lets reads proceed
                    // during writes; busy_timeout absorbs other programs' short write locks.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA busy_timeout = 5000").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    Ok(())
                })
            })
        } else {
            opts
        };
        let pool = opts.connect(&url).await?;
        let db = Db {
            pool,
            dialect,
            url_redacted,
        };
        db.migrate().await?;
        Ok(db)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        match self.dialect {
            Dialect::Sqlite => sqlx::migrate!("migrations/sqlite").run(&self.pool).await?,
            Dialect::Postgres => {
                sqlx::migrate!("migrations/postgres")
                    .run(&self.pool)
                    .await?
            }
        }
        Ok(())
    }

    /// After a crash: calls that never got their end written are closed as `interrupted`.
    /// Every open row, whichever node wrote it: the single-node (SQLite) recovery. A node on
    /// a shared PostgreSQL uses [`nodes::finalize_own_calls`] instead.
    pub async fn finalize_dangling_calls(&self) -> Result<u64, StoreError> {
        let sql = format!(
            "UPDATE call_records SET ended_at = {}, disposition = 'interrupted', hangup_cause = 'server_restart' \
             WHERE ended_at IS NULL",
            self.dialect.ts(1)
        );
        let r: AnyQueryResult = sqlx::query(&sql).bind(now_ts()).execute(&self.pool).await?;
        Ok(r.rows_affected())
    }

    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}

/// `sqlite::memory:` as one named in-memory database shared by every connection of this
/// pool (unique per process and per `connect`, so two pools never share by accident).
fn shared_memory_url() -> String {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "sqlite:file:switchboard-memory-{}-{n}?mode=memory&cache=shared",
        std::process::id()
    )
}

fn redact(url: &str) -> String {
    // postgres://user:secret@host/db → postgres://user:***@host/db
    if let (Some(scheme_end), Some(at)) = (url.find("://"), url.rfind('@')) {
        let creds = &url[scheme_end + 3..at];
        if let Some(colon) = creds.find(':') {
            return format!(
                "{}{}:***{}",
                &url[..scheme_end + 3],
                &creds[..colon],
                &url[at..]
            );
        }
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://u:pw@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("sqlite://data/x.db"), "sqlite://data/x.db");
    }

    #[test]
    fn dialect_placeholders() {
        assert_eq!(Dialect::Sqlite.ts(2), "$2");
        assert_eq!(Dialect::Postgres.ts(2), "CAST($2 AS TIMESTAMPTZ)");
    }

    /// `sqlite::memory:` is one database for every pooled connection (it used to be one per
    /// connection: "no such table: tickets" on the second), and two pools do not share one.
    #[tokio::test]
    async fn in_memory_database_is_shared_by_the_pool() {
        let db = Db::connect("sqlite::memory:").await.expect("connect");
        assert_eq!(db.url_redacted, "sqlite::memory:");
        // Hold several connections at once so the pool must open more than one.
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(db.pool.acquire().await.expect("acquire"));
        }
        for conn in &mut held {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tickets")
                .fetch_one(&mut **conn)
                .await
                .expect("tickets table on every connection");
            assert_eq!(n, 0);
        }
        sqlx::query("INSERT INTO tickets (order_id, customer_name, phone, status) VALUES ('1', 'A', '+15550000001', 'shipped')")
            .execute(&mut *held[0])
            .await
            .expect("insert");
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tickets")
            .fetch_one(&mut *held[3])
            .await
            .expect("count");
        assert_eq!(n, 1, "a row written on one connection is seen on another");
        drop(held);
        let other = Db::connect("sqlite::memory:").await.expect("second pool");
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tickets")
            .fetch_one(&other.pool)
            .await
            .expect("count");
        assert_eq!(n, 0, "a second in-memory database starts empty");
    }

    #[allow(dead_code)]
    fn _result_type(_: AnyQueryResult) {}
}
