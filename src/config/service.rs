//! `[service]` and `[language]`: the service's local time and weekly business hours (the
//! dialplan `hours` step), and the calling-number prefixes that choose a call's language
//! before the first word when no ticket says.

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Source};

/// `[service]`: the service's local time and business hours (the dialplan `hours` step);
/// holidays are `holidays.toml` in the dialplan folder.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    /// IANA zone, e.g. "Asia/Shanghai" (default UTC).
    pub(super) timezone: Option<String>,
    /// Day (`mon`..`sun`) -> "HH:MM-HH:MM[,HH:MM-HH:MM]"; days not listed are closed.
    pub(super) hours: Option<std::collections::BTreeMap<String, String>>,
}

/// `[language]`: how a call's language is chosen before the first word when the caller's
/// ticket does not say (src/ivr/language.rs).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLanguage {
    /// E.164 prefix (`"+86"`) -> language (`"zh"`); replaces the built-in table.
    pub(super) prefixes: Option<std::collections::BTreeMap<String, String>>,
}

/// Check `[language] prefixes` (the built-in table without it).
pub(super) fn language_prefixes(
    raw: Option<&Spanned<RawLanguage>>,
    s: &Source<'_>,
) -> Result<crate::ivr::language::PrefixTable, ConfigError> {
    let err = |offset: usize, reason: String| s.err(offset, reason);
    let language_prefixes = match raw {
        Some(sp) => match sp.get_ref().prefixes.as_ref() {
            Some(map) => {
                for (prefix, lang) in map {
                    let digits = prefix.strip_prefix('+').unwrap_or("");
                    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
                        return Err(err(
                            sp.span().start,
                            format!("[language] prefixes: '{prefix}' is not '+' and digits"),
                        ));
                    }
                    if lang.is_empty() {
                        return Err(err(
                            sp.span().start,
                            format!("[language] prefixes: '{prefix}' has an empty language"),
                        ));
                    }
                }
                crate::ivr::language::PrefixTable::new(
                    map.iter().map(|(p, l)| (p.clone(), l.clone())),
                )
            }
            None => crate::ivr::language::PrefixTable::default(),
        },
        None => crate::ivr::language::PrefixTable::default(),
    };
    Ok(language_prefixes)
}

/// Check `[service]`; None: no hours configured.
pub(super) fn service_hours(
    raw: Option<&Spanned<RawService>>,
    s: &Source<'_>,
) -> Result<Option<crate::ivr::hours::ServiceHours>, ConfigError> {
    let err = |offset: usize, reason: String| s.err(offset, reason);
    let service_hours = match raw {
        None => None,
        Some(sp) => {
            let r = sp.get_ref();
            let at = sp.span().start;
            let tz = match r.timezone.as_deref() {
                None => chrono_tz::UTC,
                Some(z) => z.parse::<chrono_tz::Tz>().map_err(|_| {
                    err(
                        at,
                        format!("[service] timezone '{z}' is not an IANA time zone"),
                    )
                })?,
            };
            match &r.hours {
                None => None,
                Some(map) => {
                    let mut weekly = Vec::new();
                    for (day, ranges) in map {
                        let d = crate::ivr::hours::parse_day(day)
                            .map_err(|e| err(at, format!("[service] hours: {e}")))?;
                        let rs = crate::ivr::hours::parse_ranges(ranges)
                            .map_err(|e| err(at, format!("[service] hours.{day}: {e}")))?;
                        weekly.push((d, rs));
                    }
                    Some(crate::ivr::hours::ServiceHours::new(
                        tz,
                        weekly,
                        Default::default(),
                    ))
                }
            }
        }
    };
    Ok(service_hours)
}
