//! `[security]`: the router's per-source guard (src/sip/guard.rs): trusted networks (every
//! trunk's `inbound_cidrs` added), scanner user agents, request rate limit and bans.

use serde::Deserialize;
use toml::Spanned;

use super::{Cidr, ConfigError, Trunk};

/// `[security]`: the router's per-source guard (src/sip/guard.rs).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSecurity {
    pub(super) trusted_cidrs: Option<Vec<String>>,
    pub(super) scanner_user_agents: Option<Vec<String>>,
    pub(super) request_limit: Option<u32>,
    pub(super) window_s: Option<u64>,
    pub(super) ban_s: Option<u64>,
}

pub(super) fn security_config(
    raw: Option<Spanned<RawSecurity>>,
    trunks: &[Trunk],
    err: &dyn Fn(usize, String) -> ConfigError,
) -> Result<crate::sip::guard::GuardConfig, ConfigError> {
    use std::time::Duration;
    let mut g = crate::sip::guard::GuardConfig::default();
    if let Some(raw) = raw {
        let at = raw.span().start;
        let raw = raw.into_inner();
        if let Some(list) = raw.trusted_cidrs {
            g.trusted = list
                .iter()
                .map(|c| {
                    Cidr::parse(c).ok_or_else(|| {
                        err(at, format!("[security] trusted_cidrs: '{c}' is not a CIDR"))
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(list) = raw.scanner_user_agents {
            g.scanners = list.iter().map(|s| s.to_ascii_lowercase()).collect();
        }
        if let Some(n) = raw.request_limit {
            if n == 0 {
                return Err(err(
                    at,
                    "[security] request_limit must be at least 1".into(),
                ));
            }
            g.request_limit = n;
        }
        if let Some(s) = raw.window_s {
            if s == 0 {
                return Err(err(at, "[security] window_s must be at least 1".into()));
            }
            g.window = Duration::from_secs(s);
        }
        if let Some(s) = raw.ban_s {
            g.ban = Duration::from_secs(s);
        }
    }
    for t in trunks {
        g.trusted.extend(t.inbound_cidrs.iter().copied());
    }
    Ok(g)
}
