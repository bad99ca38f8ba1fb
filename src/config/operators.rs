//! `[[operator]]`: console and wallboard logins kept in the file (besides `switchboard
//! operator add`, which writes the `operators` table): the raw table, the checked form and
//! its parser.

use serde::Deserialize;
use toml::Spanned;

use super::ConfigError;

/// One `[[operator]]` as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOperator {
    pub(super) name: String,
    pub(super) role: String,
    /// An argon2 PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`), e.g. the
    /// `password_hash` column written by `switchboard operator add`, or `argon2` CLI output.
    pub(super) password_hash: String,
}

/// A checked `[[operator]]`. For its name it takes precedence over a row of the
/// `operators` table (docs/configuration.md#operator): the file is what was deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigOperator {
    pub name: String,
    pub role: crate::store::operators::Role,
    pub password_hash: String,
}

/// Check every `[[operator]]`: a valid, unique name, role `admin` or `viewer`, and a
/// password hash that is an argon2 PHC string (so a plain password put there by mistake
/// is refused at start, not silently never matching).
pub(super) fn operators_config(
    raw: &[Spanned<RawOperator>],
    err: &dyn Fn(usize, String) -> ConfigError,
) -> Result<Vec<ConfigOperator>, ConfigError> {
    use crate::store::operators::{valid_name, Role};
    let mut out: Vec<ConfigOperator> = Vec::with_capacity(raw.len());
    for item in raw {
        let at = item.span().start;
        let o = item.get_ref();
        if !valid_name(&o.name) {
            return Err(err(
                at,
                format!("[[operator]] name '{}' is not a valid name", o.name),
            ));
        }
        if out.iter().any(|x| x.name == o.name) {
            return Err(err(
                at,
                format!("[[operator]] '{}' is listed twice", o.name),
            ));
        }
        let role = Role::parse(&o.role).ok_or_else(|| {
            err(
                at,
                format!(
                    "[[operator]] '{}': role '{}' must be admin or viewer",
                    o.name, o.role
                ),
            )
        })?;
        let argon2 = argon2::PasswordHash::new(&o.password_hash)
            .is_ok_and(|h| h.algorithm.as_str().starts_with("argon2"));
        if !argon2 {
            return Err(err(
                at,
                format!(
                    "[[operator]] '{}': password_hash must be an argon2 PHC string ($argon2id$v=19$...); \
                     make one with `switchboard operator hash --password-stdin`",
                    o.name
                ),
            ));
        }
        out.push(ConfigOperator {
            name: o.name.clone(),
            role,
            password_hash: o.password_hash.clone(),
        });
    }
    Ok(out)
}
