//! The shared ticket database: connection, migrations, the SQL dialect differences between
//! SQLite (embedded default) and PostgreSQL (the shared deployment), ticket reads, and the
//! batched, spooling record writer.
//!
//! Calls never await this module on their media path: they `submit` [`ops::StoreOp`]s to the
//! writer's bounded mailbox and read tickets from a spawned task. See docs/schema.md.

pub mod agents;
pub mod campaigns;
pub mod csv;
pub mod demo;
pub mod journal;
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
        let mut url = url.to_string();
        if dialect == Dialect::Sqlite {
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            let path = path.split('?').next().unwrap_or("");
            if path != ":memory:" && !path.is_empty() {
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
            url_redacted: redact(&url),
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

    #[allow(dead_code)]
    fn _result_type(_: AnyQueryResult) {}
}
