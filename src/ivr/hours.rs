//! Business hours and holidays: is the service open at a given instant, and when does it
//! open next (for "we will call you back tomorrow morning")? Pure: the caller passes the
//! time in, so tests use a fixed clock. The weekly hours are `[service]` in the config; the
//! holiday calendar is a file operators edit (`dialplans/holidays.toml`), parsed here with
//! file:line errors. See docs/dialplan.md (`hours`) and docs/configuration.md (`[service]`).

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde::Deserialize;

/// Why a calendar could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HoursError {
    #[error("'{0}' is not a time range HH:MM-HH:MM (start before end)")]
    Range(String),
    #[error("'{0}' is not a day (mon, tue, wed, thu, fri, sat, sun)")]
    Day(String),
    #[error("{file}:{line}: {reason}")]
    Holidays {
        file: String,
        line: usize,
        reason: String,
    },
}

/// The service's opening hours in its own time zone, and its closed days.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceHours {
    pub tz: Tz,
    /// Monday first: the open ranges of that weekday (local time, start < end).
    weekly: [Vec<(NaiveTime, NaiveTime)>; 7],
    holidays: BTreeSet<NaiveDate>,
}

/// `09:00-18:00` (several ranges: `09:00-12:00,13:00-18:00`; empty or `closed`: closed).
pub fn parse_ranges(s: &str) -> Result<Vec<(NaiveTime, NaiveTime)>, HoursError> {
    let s = s.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("closed") {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|r| {
            let bad = || HoursError::Range(r.trim().to_string());
            let (a, b) = r.trim().split_once('-').ok_or_else(bad)?;
            let a = NaiveTime::parse_from_str(a.trim(), "%H:%M").map_err(|_| bad())?;
            let b = if b.trim() == "24:00" {
                NaiveTime::from_hms_opt(23, 59, 59).ok_or_else(bad)?
            } else {
                NaiveTime::parse_from_str(b.trim(), "%H:%M").map_err(|_| bad())?
            };
            if a >= b {
                return Err(bad());
            }
            Ok((a, b))
        })
        .collect()
}

pub fn parse_day(s: &str) -> Result<Weekday, HoursError> {
    match s.to_ascii_lowercase().as_str() {
        "mon" => Ok(Weekday::Mon),
        "tue" => Ok(Weekday::Tue),
        "wed" => Ok(Weekday::Wed),
        "thu" => Ok(Weekday::Thu),
        "fri" => Ok(Weekday::Fri),
        "sat" => Ok(Weekday::Sat),
        "sun" => Ok(Weekday::Sun),
        _ => Err(HoursError::Day(s.to_string())),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHolidays {
    #[serde(default, rename = "holiday")]
    holidays: Vec<toml::Spanned<RawHoliday>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHoliday {
    date: String,
    /// Last day of a multi-day closure (inclusive), e.g. the Spring Festival week.
    until: Option<String>,
    #[allow(dead_code)] // for the operators reading the file
    name: Option<String>,
}

/// The closed days of a holiday file (`[[holiday]] date = "2026-10-01", until = "2026-10-07",
/// name = "National Day"`); errors carry the file and line.
pub fn parse_holidays(file: &str, src: &str) -> Result<BTreeSet<NaiveDate>, HoursError> {
    let line_of = |offset: usize| super::loader::line_of(src, offset);
    let raw: RawHolidays = toml::from_str(src).map_err(|e| HoursError::Holidays {
        file: file.to_string(),
        line: e.span().map_or(1, |s| line_of(s.start)),
        reason: e.message().to_string(),
    })?;
    let mut days = BTreeSet::new();
    for h in raw.holidays {
        let line = line_of(h.span().start);
        let err = |reason: String| HoursError::Holidays {
            file: file.to_string(),
            line,
            reason,
        };
        let h = h.into_inner();
        let date = |s: &str| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map_err(|_| err(format!("'{s}' is not a date YYYY-MM-DD")))
        };
        let first = date(&h.date)?;
        let last = match &h.until {
            Some(u) => date(u)?,
            None => first,
        };
        if last < first || (last - first).num_days() > 366 {
            return Err(err(format!(
                "until '{last}' is before date '{first}' or a year after"
            )));
        }
        let mut d = first;
        while d <= last {
            days.insert(d);
            d += Duration::days(1);
        }
    }
    Ok(days)
}

impl ServiceHours {
    /// `weekly`: (weekday, ranges) for the days that open; the rest are closed.
    pub fn new(
        tz: Tz,
        weekly: impl IntoIterator<Item = (Weekday, Vec<(NaiveTime, NaiveTime)>)>,
        holidays: BTreeSet<NaiveDate>,
    ) -> ServiceHours {
        let mut w: [Vec<(NaiveTime, NaiveTime)>; 7] = Default::default();
        for (day, ranges) in weekly {
            w[day.num_days_from_monday() as usize] = ranges;
        }
        ServiceHours {
            tz,
            weekly: w,
            holidays,
        }
    }

    /// The same hours with another holiday calendar (a reload of the holiday file).
    pub fn with_holidays(&self, holidays: BTreeSet<NaiveDate>) -> ServiceHours {
        ServiceHours {
            holidays,
            ..self.clone()
        }
    }

    pub fn is_open(&self, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&self.tz);
        let date = local.date_naive();
        if self.holidays.contains(&date) {
            return false;
        }
        let t = local.time();
        self.weekly[date.weekday().num_days_from_monday() as usize]
            .iter()
            .any(|(a, b)| *a <= t && t < *b)
    }

    /// The next opening after `at` (local time of the service), within 60 days; None when
    /// the service never opens.
    pub fn next_opening(&self, at: DateTime<Utc>) -> Option<DateTime<Tz>> {
        let local = at.with_timezone(&self.tz);
        for offset in 0..60 {
            let date = local.date_naive() + Duration::days(offset);
            if self.holidays.contains(&date) {
                continue;
            }
            let ranges = &self.weekly[date.weekday().num_days_from_monday() as usize];
            for (a, _) in ranges {
                let Some(start) = self.tz.from_local_datetime(&date.and_time(*a)).earliest() else {
                    continue;
                };
                if start > local {
                    return Some(start);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shanghai() -> ServiceHours {
        let week = parse_ranges("09:00-18:00").expect("range");
        let sat = parse_ranges("10:00-16:00").expect("range");
        let holidays = parse_holidays(
            "holidays.toml",
            "[[holiday]]\ndate = \"2026-10-01\"\nuntil = \"2026-10-07\"\nname = \"National Day\"\n",
        )
        .expect("holidays");
        ServiceHours::new(
            chrono_tz::Asia::Shanghai,
            [
                (Weekday::Mon, week.clone()),
                (Weekday::Tue, week.clone()),
                (Weekday::Wed, week.clone()),
                (Weekday::Thu, week.clone()),
                (Weekday::Fri, week),
                (Weekday::Sat, sat),
            ],
            holidays,
        )
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn open_in_local_hours_closed_outside() {
        let h = shanghai();
        // Wednesday 2026-12-09 10:00 in Shanghai is 02:00 UTC.
        assert!(h.is_open(utc("2026-12-09T02:00:00Z")));
        // 18:00 local is closing time (end exclusive).
        assert!(!h.is_open(utc("2026-12-09T10:00:00Z")));
        // 08:59 local.
        assert!(!h.is_open(utc("2026-12-09T00:59:00Z")));
        // Sunday closed all day, Saturday short hours.
        assert!(!h.is_open(utc("2026-12-13T03:00:00Z")));
        assert!(h.is_open(utc("2026-12-12T03:00:00Z")));
        assert!(!h.is_open(utc("2026-12-12T08:30:00Z")));
    }

    #[test]
    fn holidays_close_the_whole_day_and_next_opening_skips_them() {
        let h = shanghai();
        // Friday 2026-10-02 11:00 local: National Day week.
        assert!(!h.is_open(utc("2026-10-02T03:00:00Z")));
        let next = h.next_opening(utc("2026-10-02T03:00:00Z")).expect("opens");
        // 2026-10-08 is a Thursday, 09:00 local.
        assert_eq!(next.to_rfc3339(), "2026-10-08T09:00:00+08:00");
        // Friday evening: next Saturday 10:00.
        let next = h.next_opening(utc("2026-12-11T12:00:00Z")).expect("opens");
        assert_eq!(next.to_rfc3339(), "2026-12-12T10:00:00+08:00");
    }

    #[test]
    fn bad_input_is_refused_with_a_line() {
        assert!(parse_ranges("18:00-09:00").is_err());
        assert!(parse_ranges("9-5").is_err());
        assert_eq!(parse_ranges("closed"), Ok(vec![]));
        assert!(parse_day("monday").is_err());
        let e = parse_holidays("h.toml", "# c\n\n[[holiday]]\ndate = \"2026-13-01\"\n")
            .expect_err("bad date");
        assert!(
            matches!(&e, HoursError::Holidays { file, line: 3, .. } if file == "h.toml"),
            "{e:?}"
        );
    }
}
