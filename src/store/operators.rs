//! Operators: the operations staff who log in to `/console` and `/wallboard`, each with a
//! [`Role`] and an argon2id password hash (a PHC string: salt and parameters travel with the
//! hash, so stronger parameters later do not invalidate old hashes).
//!
//! Written by `switchboard operator add`; read by `POST /api/operator/login` and by the
//! API's guards on every cookie-authorised request (so a role change or a disabled operator
//! takes effect at once, not at the next login).

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, PasswordVerifier};
use sqlx::Row;

use super::{now_ts, Db, StoreError};

/// What an operator may do. `Admin`: everything the admin bearer token may. `Viewer`: the
/// wallboard, reports and every read endpoint; any change is refused with 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// An argon2id hash (the crate's default parameters: 19 MiB, 2 passes) of `password` with a
/// fresh random salt, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `hash` (false for a malformed hash).
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A hash nobody's password matches, verified for unknown names so a wrong name costs the
/// same time as a wrong password (timing says nothing about which names exist).
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("no operator has this password").unwrap_or_default())
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OperatorRow {
    pub id: i64,
    pub name: String,
    pub role: Role,
    #[serde(skip)]
    pub password_hash: String,
    pub enabled: bool,
}

/// Names as agents' (`agents::valid_name`): they appear in logs and cookies' session table.
pub fn valid_name(name: &str) -> bool {
    super::agents::valid_name(name)
}

/// Create or update operator `name` with `role` and an already computed `password_hash`.
pub async fn upsert(
    db: &Db,
    name: &str,
    role: Role,
    password_hash: &str,
) -> Result<i64, StoreError> {
    let d = db.dialect;
    let now = now_ts();
    let sql = format!(
        "INSERT INTO operators (name, role, password_hash, enabled, created_at, updated_at) \
         VALUES ($1, $2, $3, 1, {}, {}) \
         ON CONFLICT (name) DO UPDATE SET role = excluded.role, \
         password_hash = excluded.password_hash, enabled = 1, updated_at = excluded.updated_at",
        d.ts(4),
        d.ts(5)
    );
    sqlx::query(&sql)
        .bind(name)
        .bind(role.as_str())
        .bind(password_hash)
        .bind(&now)
        .bind(&now)
        .execute(&db.pool)
        .await?;
    let id: i64 = sqlx::query("SELECT id FROM operators WHERE name = $1")
        .bind(name)
        .fetch_one(&db.pool)
        .await?
        .try_get("id")?;
    Ok(id)
}

fn row(r: &sqlx::any::AnyRow) -> Result<OperatorRow, StoreError> {
    let role: String = r.try_get("role")?;
    Ok(OperatorRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        // The table's CHECK allows only these two; anything else reads as the weaker role.
        role: Role::parse(&role).unwrap_or(Role::Viewer),
        password_hash: r.try_get("password_hash")?,
        enabled: r.try_get::<i64, _>("enabled")? != 0,
    })
}

/// Operator `name`, if it exists.
pub async fn find(db: &Db, name: &str) -> Result<Option<OperatorRow>, StoreError> {
    let r =
        sqlx::query("SELECT id, name, role, password_hash, enabled FROM operators WHERE name = $1")
            .bind(name)
            .fetch_optional(&db.pool)
            .await?;
    r.as_ref().map(row).transpose()
}

/// Every operator, by name.
pub async fn list(db: &Db) -> Result<Vec<OperatorRow>, StoreError> {
    let rows =
        sqlx::query("SELECT id, name, role, password_hash, enabled FROM operators ORDER BY name")
            .fetch_all(&db.pool)
            .await?;
    rows.iter().map(row).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let a = hash_password("s3cret").expect("hash");
        let b = hash_password("s3cret").expect("hash");
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "a fresh salt each time");
        assert!(verify_password(&a, "s3cret"));
        assert!(!verify_password(&a, "s3cret "));
        assert!(!verify_password("not a hash", "s3cret"));
        assert!(!verify_password(dummy_hash(), ""));
    }

    #[test]
    fn roles_round_trip() {
        for r in [Role::Admin, Role::Viewer] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("supervisor"), None);
    }
}
