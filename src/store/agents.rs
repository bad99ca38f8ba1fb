//! Agent accounts (SIP credentials as HA1, queues, skills) and registrar bindings.
//!
//! Written by the `switchboard agent add` command (and the API later); read by the registrar
//! into its credential cache (at start, every few seconds, and for a user it does not know
//! yet) and by the ACD. Passwords never reach the database: only
//! `HA1 = H(name:realm:password)` for MD5 and SHA-256 (RFC 8760).

use std::collections::HashMap;

use sqlx::Row;

use super::{now_ts, Db, StoreError};
use crate::sip::auth::{ha1, Algorithm};

#[derive(Debug, Clone)]
pub struct AgentSpec {
    pub name: String,
    pub password: String,
    pub extension: Option<String>,
    pub queues: Vec<String>,
    pub skills: Vec<(String, i64)>,
    pub realm: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AgentRow {
    pub id: i64,
    pub name: String,
    pub extension: Option<String>,
    pub realm: String,
    #[serde(skip)]
    pub ha1_md5: String,
    #[serde(skip)]
    pub ha1_sha256: String,
    pub max_calls: i64,
    pub enabled: bool,
    pub queues: Vec<String>,
    pub skills: Vec<(String, i64)>,
}

impl AgentRow {
    pub fn ha1(&self, alg: Algorithm) -> &str {
        match alg {
            Algorithm::Md5 => &self.ha1_md5,
            Algorithm::Sha256 => &self.ha1_sha256,
        }
    }
}

/// Parse `S=LEVEL` (level 1..=10).
pub fn parse_skill(s: &str) -> Option<(String, i64)> {
    let (name, level) = s.rsplit_once('=')?;
    let level: i64 = level.trim().parse().ok()?;
    (!name.trim().is_empty() && (0..=10).contains(&level)).then(|| (name.trim().to_string(), level))
}

/// Names are SIP user parts: keep them to unreserved characters.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Create or update an agent; its queues and skills are replaced by the given ones.
pub async fn upsert(db: &Db, spec: &AgentSpec) -> Result<i64, StoreError> {
    let d = db.dialect;
    let now = now_ts();
    let md5 = ha1(Algorithm::Md5, &spec.name, &spec.realm, &spec.password);
    let sha = ha1(Algorithm::Sha256, &spec.name, &spec.realm, &spec.password);
    let mut tx = db.pool.begin().await?;
    let sql = format!(
        "INSERT INTO agents (name, extension, realm, ha1_md5, ha1_sha256, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, {}, {}) \
         ON CONFLICT (name) DO UPDATE SET extension = excluded.extension, realm = excluded.realm, \
         ha1_md5 = excluded.ha1_md5, ha1_sha256 = excluded.ha1_sha256, updated_at = excluded.updated_at",
        d.ts(6),
        d.ts(7)
    );
    sqlx::query(&sql)
        .bind(&spec.name)
        .bind(spec.extension.clone())
        .bind(&spec.realm)
        .bind(md5)
        .bind(sha)
        .bind(&now)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
    let id: i64 = sqlx::query("SELECT id FROM agents WHERE name = $1")
        .bind(&spec.name)
        .fetch_one(&mut *tx)
        .await?
        .try_get("id")?;
    sqlx::query("DELETE FROM agent_queues WHERE agent_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM agent_skills WHERE agent_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    for q in &spec.queues {
        sqlx::query(
            "INSERT INTO agent_queues (agent_id, queue) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(q)
        .execute(&mut *tx)
        .await?;
    }
    for (skill, level) in &spec.skills {
        sqlx::query("INSERT INTO agent_skills (agent_id, skill, level) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(id)
            .bind(skill)
            .bind(*level)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(id)
}

const AGENT_COLUMNS: &str = "id, name, extension, realm, ha1_md5, ha1_sha256, max_calls, enabled";

async fn fill(db: &Db, row: &sqlx::any::AnyRow) -> Result<AgentRow, StoreError> {
    let id: i64 = row.try_get("id")?;
    let queues = sqlx::query("SELECT queue FROM agent_queues WHERE agent_id = $1 ORDER BY queue")
        .bind(id)
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>("queue"))
        .collect::<Result<Vec<_>, _>>()?;
    let skills =
        sqlx::query("SELECT skill, level FROM agent_skills WHERE agent_id = $1 ORDER BY skill")
            .bind(id)
            .fetch_all(&db.pool)
            .await?
            .iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>("skill")?,
                    r.try_get::<i64, _>("level")?,
                ))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
    row_with(row, queues, skills)
}

/// An `agents` row (`AGENT_COLUMNS`) with its queues and skills.
fn row_with(
    row: &sqlx::any::AnyRow,
    queues: Vec<String>,
    skills: Vec<(String, i64)>,
) -> Result<AgentRow, StoreError> {
    Ok(AgentRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        extension: row.try_get("extension")?,
        realm: row.try_get("realm")?,
        ha1_md5: row.try_get("ha1_md5")?,
        ha1_sha256: row.try_get("ha1_sha256")?,
        max_calls: row.try_get("max_calls")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        queues,
        skills,
    })
}

/// Every agent with its queues and skills, by name: three queries whatever the number of
/// agents (the registrar reloads its credential cache with it every few seconds).
pub async fn list(db: &Db) -> Result<Vec<AgentRow>, StoreError> {
    let rows = sqlx::query(&format!("SELECT {AGENT_COLUMNS} FROM agents ORDER BY name"))
        .fetch_all(&db.pool)
        .await?;
    let mut queues: HashMap<i64, Vec<String>> = HashMap::new();
    for r in sqlx::query("SELECT agent_id, queue FROM agent_queues ORDER BY agent_id, queue")
        .fetch_all(&db.pool)
        .await?
    {
        queues
            .entry(r.try_get("agent_id")?)
            .or_default()
            .push(r.try_get("queue")?);
    }
    let mut skills: HashMap<i64, Vec<(String, i64)>> = HashMap::new();
    for r in sqlx::query("SELECT agent_id, skill, level FROM agent_skills ORDER BY agent_id, skill")
        .fetch_all(&db.pool)
        .await?
    {
        skills
            .entry(r.try_get("agent_id")?)
            .or_default()
            .push((r.try_get("skill")?, r.try_get("level")?));
    }
    rows.iter()
        .map(|r| {
            let id: i64 = r.try_get("id")?;
            row_with(
                r,
                queues.remove(&id).unwrap_or_default(),
                skills.remove(&id).unwrap_or_default(),
            )
        })
        .collect()
}

/// An agent by SIP user part: its name or its extension.
pub async fn find_by_user(db: &Db, user: &str) -> Result<Option<AgentRow>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {AGENT_COLUMNS} FROM agents WHERE name = $1 OR extension = $1 ORDER BY id LIMIT 1"
    ))
    .bind(user)
    .fetch_optional(&db.pool)
    .await?;
    match row {
        Some(r) => Ok(Some(fill(db, &r).await?)),
        None => Ok(None),
    }
}

/// One registrar binding as stored (written through the record writer:
/// [`crate::store::ops::StoreOp::BindingSaved`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingRow {
    pub aor: String,
    pub contact: String,
    pub expires_at: String,
    pub source: String,
    pub user_agent: String,
    pub call_id: String,
    pub cseq: i64,
    /// The REGISTER's Path (RFC 3327) as one header field value; None: registered directly
    /// (and every row written before migration 0018).
    pub path: Option<String>,
}

pub async fn load_bindings(db: &Db) -> Result<Vec<BindingRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT aor, contact, CAST(expires_at AS TEXT) AS expires_at, source, user_agent, call_id, cseq, path \
         FROM registrations",
    )
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(BindingRow {
                aor: r.try_get("aor")?,
                contact: r.try_get("contact")?,
                expires_at: r.try_get("expires_at")?,
                source: r.try_get("source")?,
                user_agent: r.try_get("user_agent")?,
                call_id: r.try_get("call_id")?,
                cseq: r.try_get("cseq")?,
                path: r.try_get("path")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(StoreError::from)
}

/// Persisted agent choices: (name, logged out on purpose, pause reason).
pub async fn load_states(db: &Db) -> Result<Vec<(String, bool, Option<String>)>, StoreError> {
    let rows = sqlx::query("SELECT agent, logged_out, paused_reason FROM agent_state")
        .fetch_all(&db.pool)
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let name: String = r.try_get("agent").ok()?;
            let out: i64 = r.try_get("logged_out").unwrap_or(0);
            let paused: Option<String> = r.try_get("paused_reason").ok().flatten();
            Some((name, out != 0, paused))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skills_and_names() {
        assert_eq!(parse_skill("lang:en=5"), Some(("lang:en".into(), 5)));
        assert_eq!(parse_skill("refunds=11"), None);
        assert_eq!(parse_skill("=3"), None);
        assert!(valid_name("agent-1.x"));
        assert!(!valid_name("a b"));
        assert!(!valid_name("a@b"));
    }
}
