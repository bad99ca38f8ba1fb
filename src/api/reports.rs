//! Reports from the database (never from memory, so they survive restarts and add up over
//! several nodes): `GET /api/reports/queues` (per queue and interval: offered, answered,
//! abandoned, timed out, service level, ASA, AHT, post-call survey scores) and `GET /api/reports/calls` (per
//! interval, direction and disposition: calls, answered, talk time) and
//! `GET /api/reports/campaigns/{id}` (per segment: contacts, attempts, outcomes, resolution
//! rate, SMS sent) and `GET /api/reports/agents` (per agent and interval: answered, talk
//! time, post-call survey scores), as JSON or as CSV
//! (`Accept: text/csv` or `?format=csv`; cells neutralised against spreadsheet formulas as
//! `calls export` does).
//!
//! One grouped query each; the interval bucket is the only engine-specific SQL (SQLite keeps
//! timestamps as ISO text, PostgreSQL as `TIMESTAMPTZ`). Buckets are aligned to the Unix
//! epoch, i.e. to UTC (a 1-day interval runs from UTC midnight).
//!
//! A request whose interval is a multiple of 15 minutes (and, for the queue report, whose
//! service levels are among [`SL_TOTALS_S`]) is answered from the per-15-minute totals of
//! migration 0016 (`report_*_totals`, kept by triggers) for the whole 15-minute rows of its
//! range, plus the raw rows of the partial 15 minutes at either end (e.g. up to a `to` of
//! now): same figures, a few thousand rows read instead of a million
//! (docs/adr/0009-report-aggregates.md). Any other request groups the raw rows as before.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{ApiError, ApiState};
use crate::store::csv::neutralise_cell;
use crate::store::{Db, Dialect};

/// Shortest and longest interval, and the longest range one report may cover.
const MIN_INTERVAL_S: i64 = 60;
const MAX_INTERVAL_S: i64 = 31 * 86_400;
const MAX_RANGE_S: i64 = 366 * 86_400;

/// The width of one row of the `report_*_totals` tables (migration 0016).
const TOTALS_S: i64 = 900;
/// The service levels (seconds) the totals count connects for (`sl_<N>s` columns).
pub const SL_TOTALS_S: [u64; 8] = [10, 15, 20, 30, 45, 60, 90, 120];

/// Where a report's figures are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Every raw row of the range grouped (`queue_log`, `call_records`).
    Raw,
    /// The totals' whole 15-minute rows from `first` to `last` (Unix seconds, multiples of
    /// 900), plus the raw rows of the range before `first` and from `last` (less than 15
    /// minutes at each end; none when the range is aligned).
    Totals { first: i64, last: i64 },
}

/// The totals can answer `p` exactly when each interval is made of whole 15-minute rows
/// (the interval a multiple of 900 s; buckets are epoch-aligned, so their boundaries are
/// then 15-minute boundaries) and the range, after 1970, spans at least one whole row.
pub fn source(p: &Params) -> Source {
    if p.interval_s % TOTALS_S != 0 {
        return Source::Raw;
    }
    match whole_rows(&p.from, &p.to) {
        Some((first, last)) => Source::Totals { first, last },
        None => Source::Raw,
    }
}

/// The whole 15-minute rows of the totals between `from` and `to`: the first boundary at
/// or after `from` and the last at or before `to` (Unix seconds), if `from` is after 1970
/// and at least one whole row lies between them. The wallboard's "today" uses it too.
pub(crate) fn whole_rows(from: &Utc, to: &Utc) -> Option<(i64, i64)> {
    let start = from.timestamp();
    if start < 0 {
        return None;
    }
    // A fraction of a second rounds up.
    let start_up = start + i64::from(from.timestamp_subsec_nanos() > 0);
    let first = (start_up + TOTALS_S - 1) / TOTALS_S * TOTALS_S;
    let last = to.timestamp().div_euclid(TOTALS_S) * TOTALS_S;
    (first < last).then_some((first, last))
}

/// Binds of a [`Source::Totals`] query, in order: the raw head (`$1`, `$2`), the totals
/// (`$3`, `$4`), the raw tail (`$5`, `$6`).
fn bind_edges<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    p: &Params,
    first: i64,
    last: i64,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    q.bind(ts(&p.from))
        .bind(epoch_ts(first))
        .bind(first)
        .bind(last)
        .bind(epoch_ts(last))
        .bind(ts(&p.to))
}

/// One column of a [`Source::Totals`] read, in the order of the raw query's columns.
enum Col<'a> {
    /// A grouping key: its name in the raw query and its column in the totals table.
    Key(&'a str, &'a str),
    /// The interval's start.
    Bucket,
    /// A summed figure: its name and what the totals table sums for it (its column, or an
    /// expression such as a `CASE` over the `sl_<N>s` columns).
    Sum(&'a str, String),
}

/// The key and bucket columns of `cols`, in order: a report's grouping and its order.
fn order_by(cols: &[Col]) -> String {
    cols.iter()
        .filter_map(|c| match c {
            Col::Key(name, _) => Some(*name),
            Col::Bucket => Some("bucket"),
            Col::Sum(..) => None,
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A report's rows from `src`: the raw query (`raw(t1, t2)`, the range bound at `$t1`,
/// `$t2`) ordered by the key and bucket columns, or the totals of `table` with the raw rows
/// of the partial ends ([`totals_sql`], [`bind_edges`]).
async fn read_rows(
    db: &Db,
    p: &Params,
    src: Source,
    raw: &(dyn Fn(usize, usize) -> String + Sync),
    table: &str,
    cols: &[Col<'_>],
    having: &str,
) -> Result<Vec<sqlx::any::AnyRow>, sqlx::Error> {
    match src {
        Source::Raw => {
            sqlx::query(&format!("{} ORDER BY {}", raw(1, 2), order_by(cols)))
                .bind(ts(&p.from))
                .bind(ts(&p.to))
                .fetch_all(&db.pool)
                .await
        }
        Source::Totals { first, last } => {
            let sql = totals_sql(table, cols, p.interval_s, &raw(1, 2), &raw(5, 6), having);
            bind_edges(sqlx::query(&sql), p, first, last)
                .fetch_all(&db.pool)
                .await
        }
    }
}

/// The totals table's column `name`, summed under the same name.
fn total(name: &str) -> Col<'_> {
    Col::Sum(name, format!("t.{name}"))
}

/// The statement of a [`Source::Totals`] read ([`bind_edges`] binds it): the raw rows of
/// the partial 15 minutes before `$2` (`head`) and from `$5` (`tail`) and the whole
/// 15-minute rows of `table` in between, summed per key and interval. The grouping and the
/// order are the key and bucket columns in the order of `cols`; `having` drops the
/// intervals where nothing happened.
fn totals_sql(table: &str, cols: &[Col], iv: i64, head: &str, tail: &str, having: &str) -> String {
    let tb = format!("(t.bucket / {iv}) * {iv}");
    let (mut outer, mut inner, mut group, mut t_group) = (vec![], vec![], vec![], vec![]);
    for col in cols {
        match col {
            Col::Key(name, column) => {
                outer.push(name.to_string());
                inner.push(format!("t.{column} AS {name}"));
                group.push(name.to_string());
                t_group.push(format!("t.{column}"));
            }
            Col::Bucket => {
                outer.push("bucket".to_string());
                inner.push(format!("{tb} AS bucket"));
                group.push("bucket".to_string());
                t_group.push(tb.clone());
            }
            Col::Sum(name, total) => {
                outer.push(format!("CAST(SUM({name}) AS BIGINT) AS {name}"));
                inner.push(format!("SUM({total}) AS {name}"));
            }
        }
    }
    let group = group.join(", ");
    // (`order_by` below is the same list: the raw reads are ordered as the totals reads.)
    format!(
        "SELECT {outer} FROM ({head} UNION ALL SELECT {inner} FROM {table} t \
         WHERE t.bucket >= $3 AND t.bucket < $4 GROUP BY {t_group} UNION ALL {tail}) u \
         GROUP BY {group} HAVING {having} ORDER BY {group}",
        outer = outer.join(", "),
        inner = inner.join(", "),
        t_group = t_group.join(", "),
    )
}

/// The totals' column counting connects within `ms`, if there is one.
pub(crate) fn sl_column(ms: u64) -> Option<String> {
    (ms.is_multiple_of(1000) && SL_TOTALS_S.contains(&(ms / 1000)))
        .then(|| format!("sl_{}s", ms / 1000))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// Start, inclusive: RFC 3339 (`2026-12-06T08:00:00Z`) or a date (UTC midnight).
    pub from: Option<String>,
    /// End, exclusive; default now.
    pub to: Option<String>,
    /// Bucket width: seconds, or `15m`, `1h`, `1d`; default 15 minutes.
    pub interval: Option<String>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParamError {
    #[error("{0}: '{1}' is not a date (YYYY-MM-DD) or an RFC 3339 timestamp")]
    Time(&'static str, String),
    #[error("interval: '{0}' is not a duration such as 900, 15m, 1h or 1d")]
    Interval(String),
    #[error("interval: must be {MIN_INTERVAL_S} s to {MAX_INTERVAL_S} s")]
    IntervalRange,
    #[error("from, to: from must be before to and at most 366 days before it")]
    Range,
    #[error("format: '{0}' is neither json nor csv")]
    Format(String),
}

pub(crate) type Utc = chrono::DateTime<chrono::Utc>;

fn parse_time(field: &'static str, s: &str) -> Result<Utc, ParamError> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| ParamError::Time(field, s.to_string()))
}

/// `900`, `15m`, `1h`, `1d` → seconds.
pub fn parse_interval(s: &str) -> Result<i64, ParamError> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: i64 = num
        .parse()
        .map_err(|_| ParamError::Interval(s.to_string()))?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(ParamError::Interval(s.to_string())),
    };
    let secs = n
        .checked_mul(mult)
        .ok_or_else(|| ParamError::Interval(s.to_string()))?;
    if !(MIN_INTERVAL_S..=MAX_INTERVAL_S).contains(&secs) {
        return Err(ParamError::IntervalRange);
    }
    Ok(secs)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub from: Utc,
    pub to: Utc,
    pub interval_s: i64,
    pub csv: bool,
}

/// The query checked; defaults: from = today 00:00 UTC, to = now, 15-minute interval; CSV
/// when `format=csv` or, without `format`, when `Accept` names `text/csv`.
pub fn params(q: &ReportQuery, accept: Option<&str>, now: Utc) -> Result<Params, ParamError> {
    let to = match &q.to {
        Some(s) => parse_time("to", s)?,
        None => now,
    };
    let from = match &q.from {
        Some(s) => parse_time("from", s)?,
        None => now
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc())
            .unwrap_or(now),
    };
    if from >= to || (to - from).num_seconds() > MAX_RANGE_S {
        return Err(ParamError::Range);
    }
    let interval_s = match &q.interval {
        Some(s) => parse_interval(s)?,
        None => 900,
    };
    let csv = match q.format.as_deref() {
        Some("csv") => true,
        Some("json") => false,
        Some(other) => return Err(ParamError::Format(other.to_string())),
        None => accept.is_some_and(|a| a.contains("text/csv")),
    };
    Ok(Params {
        from,
        to,
        interval_s,
        csv,
    })
}

fn ts(t: &Utc) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The interval's start of column `col`, in Unix seconds, aligned to `iv` seconds.
fn bucket(d: Dialect, col: &str, iv: i64) -> String {
    match d {
        Dialect::Sqlite => format!("((CAST(strftime('%s', {col}) AS INTEGER) / {iv}) * {iv})"),
        Dialect::Postgres => {
            format!("(CAST(FLOOR(EXTRACT(EPOCH FROM {col}) / {iv}) AS BIGINT) * {iv})")
        }
    }
}

fn sum(expr: &str) -> String {
    // PostgreSQL sums BIGINT into NUMERIC, which the `Any` driver does not decode.
    format!("CAST(COALESCE(SUM({expr}), 0) AS BIGINT)")
}

fn ratio(num: i64, den: i64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

fn epoch_ts(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| ts(&t))
        .unwrap_or_default()
}

/// One queue over one interval.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QueueInterval {
    pub queue: String,
    pub interval_start: String,
    pub offered: i64,
    pub answered: i64,
    pub answered_within_sl: i64,
    pub abandoned: i64,
    pub timed_out: i64,
    pub service_level_s: u64,
    /// Answered within `service_level_s` over answered + abandoned (as the wallboard).
    pub service_level: Option<f64>,
    pub asa_s: Option<f64>,
    pub aht_s: Option<f64>,
    pub abandon_rate: Option<f64>,
    /// Post-call surveys given in the interval for calls of this queue (`call_surveys`).
    pub surveys: i64,
    /// Their mean score (1–5).
    pub survey_score_avg: Option<f64>,
}

/// Per queue and interval from `queue_log` (index `queue_log_at`). `sl_ms`: each configured
/// queue's service-level threshold; other queues use 30 s.
pub async fn queues(
    db: &Db,
    p: &Params,
    sl_ms: &[(String, u64)],
) -> Result<Vec<QueueInterval>, sqlx::Error> {
    queues_from(db, p, sl_ms, source(p)).await
}

/// [`queues`] read from `src` (the tests compare the sources).
pub async fn queues_from(
    db: &Db,
    p: &Params,
    sl_ms: &[(String, u64)],
    src: Source,
) -> Result<Vec<QueueInterval>, sqlx::Error> {
    let d = db.dialect;
    // The totals count connects within the service levels of their `sl_<N>s` columns only
    // (unconfigured queues: 30 s).
    let sl_cols: Option<Vec<String>> = sl_ms.iter().map(|(_, ms)| sl_column(*ms)).collect();
    let src = match sl_cols {
        Some(_) => src,
        None => Source::Raw,
    };
    // The queue names are bound after the range: `$3…` alone, `$7…` with the totals.
    let names = if src == Source::Raw { 3 } else { 7 };
    // No configured queue: every queue has the 30 s default (`CASE queue ELSE … END` with
    // no WHEN is not SQL).
    let mut case = String::from("30000");
    if !sl_ms.is_empty() {
        case = String::from("CASE queue");
        for (i, (_, ms)) in sl_ms.iter().enumerate() {
            case.push_str(&format!(" WHEN ${} THEN {ms}", i + names));
        }
        case.push_str(" ELSE 30000 END");
    }
    let c = |cond: &str| sum(&format!("CASE WHEN {cond} THEN 1 ELSE 0 END"));
    let v = |cond: &str, col: &str| sum(&format!("CASE WHEN {cond} THEN {col} ELSE 0 END"));
    let raw = |t1: usize, t2: usize| {
        format!(
            "SELECT queue, {b} AS bucket, CAST(COUNT(*) AS BIGINT) AS events, \
             {offered} AS offered, {answered} AS answered, \
             {within} AS within_sl, {abandoned} AS abandoned, {timeout} AS timed_out, \
             {completed} AS completed, {wait} AS wait_ms, {talk} AS talk_ms \
             FROM queue_log WHERE at >= {t1} AND at < {t2} \
             AND event IN ('enter', 'connect', 'abandon', 'timeout', 'complete') \
             GROUP BY queue, {b}",
            b = bucket(d, "at", p.interval_s),
            offered = c("event = 'enter'"),
            answered = c("event = 'connect'"),
            within = c(&format!("event = 'connect' AND wait_ms <= ({case})")),
            abandoned = c("event = 'abandon'"),
            timeout = c("event = 'timeout'"),
            completed = c("event = 'complete'"),
            wait = v("event = 'connect'", "wait_ms"),
            talk = v("event = 'complete'", "talk_ms"),
            t1 = d.ts(t1),
            t2 = d.ts(t2),
        )
    };
    let sql = match src {
        Source::Raw => format!("{} ORDER BY queue, bucket", raw(1, 2)),
        Source::Totals { .. } => {
            let mut within = String::from("t.sl_30s");
            if let Some(cols) = sl_cols.filter(|c| !c.is_empty()) {
                within = String::from("CASE t.queue");
                for (i, col) in cols.iter().enumerate() {
                    within.push_str(&format!(" WHEN ${} THEN t.{col}", i + names));
                }
                within.push_str(" ELSE t.sl_30s END");
            }
            totals_sql(
                "report_queue_totals",
                &[
                    Col::Key("queue", "queue"),
                    Col::Bucket,
                    total("events"),
                    total("offered"),
                    total("answered"),
                    Col::Sum("within_sl", within),
                    total("abandoned"),
                    total("timed_out"),
                    total("completed"),
                    total("wait_ms"),
                    total("talk_ms"),
                ],
                p.interval_s,
                &raw(1, 2),
                &raw(5, 6),
                "SUM(events) > 0",
            )
        }
    };
    let mut q = match src {
        Source::Raw => sqlx::query(&sql).bind(ts(&p.from)).bind(ts(&p.to)),
        Source::Totals { first, last } => bind_edges(sqlx::query(&sql), p, first, last),
    };
    for (name, _) in sl_ms {
        q = q.bind(name.clone());
    }
    let mut out = Vec::new();
    for r in q.fetch_all(&db.pool).await? {
        let queue: String = r.try_get("queue")?;
        let int = |col: &str| r.try_get::<i64, _>(col).unwrap_or(0);
        let (answered, abandoned, completed) =
            (int("answered"), int("abandoned"), int("completed"));
        let within = int("within_sl");
        let sl_s = sl_ms
            .iter()
            .find(|(n, _)| *n == queue)
            .map(|(_, ms)| ms / 1000)
            .unwrap_or(30);
        out.push(QueueInterval {
            interval_start: epoch_ts(int("bucket")),
            offered: int("offered"),
            answered,
            answered_within_sl: within,
            abandoned,
            timed_out: int("timed_out"),
            service_level_s: sl_s,
            service_level: ratio(within, answered + abandoned),
            asa_s: ratio(int("wait_ms"), answered).map(|v| v / 1000.0),
            aht_s: ratio(int("talk_ms"), completed).map(|v| v / 1000.0),
            abandon_rate: ratio(abandoned, answered + abandoned),
            surveys: 0,
            survey_score_avg: None,
            queue,
        });
    }
    // Surveys by the queue that served the call and the interval they were given in; an
    // interval with surveys but no queue_log row (a survey after the interval's end) gets
    // a row of its own.
    for (queue, bucket, n, total) in surveys(db, p, "queue").await? {
        let at = epoch_ts(bucket);
        let i = match out
            .iter()
            .position(|r| r.queue == queue && r.interval_start == at)
        {
            Some(i) => i,
            None => {
                let sl_s = sl_ms
                    .iter()
                    .find(|(n, _)| *n == queue)
                    .map(|(_, ms)| ms / 1000)
                    .unwrap_or(30);
                out.push(QueueInterval {
                    queue: queue.clone(),
                    interval_start: at,
                    offered: 0,
                    answered: 0,
                    answered_within_sl: 0,
                    abandoned: 0,
                    timed_out: 0,
                    service_level_s: sl_s,
                    service_level: None,
                    asa_s: None,
                    aht_s: None,
                    abandon_rate: None,
                    surveys: 0,
                    survey_score_avg: None,
                });
                out.len() - 1
            }
        };
        out[i].surveys = n;
        out[i].survey_score_avg = ratio(total, n);
    }
    out.sort_by(|a, b| (&a.queue, &a.interval_start).cmp(&(&b.queue, &b.interval_start)));
    Ok(out)
}

/// `call_surveys` grouped by `by` (`queue` or `agent`) and interval: (key, bucket start,
/// surveys, sum of scores). Rows without that key are left out. Index `call_surveys_<by>`.
async fn surveys(
    db: &Db,
    p: &Params,
    by: &'static str,
) -> Result<Vec<(String, i64, i64, i64)>, sqlx::Error> {
    let d = db.dialect;
    let sql = format!(
        "SELECT {by} AS k, {b} AS bucket, {n} AS n, {total} AS total FROM call_surveys \
         WHERE {by} IS NOT NULL AND created_at >= {t1} AND created_at < {t2} \
         GROUP BY {by}, {b} ORDER BY k, bucket",
        b = bucket(d, "created_at", p.interval_s),
        n = sum("1"),
        total = sum("score"),
        t1 = d.ts(1),
        t2 = d.ts(2),
    );
    let rows = sqlx::query(&sql)
        .bind(ts(&p.from))
        .bind(ts(&p.to))
        .fetch_all(&db.pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get::<String, _>("k")?,
                r.try_get::<i64, _>("bucket")?,
                r.try_get::<i64, _>("n")?,
                r.try_get::<i64, _>("total")?,
            ))
        })
        .collect()
}

/// One agent over one interval.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AgentInterval {
    pub agent: String,
    pub interval_start: String,
    /// Queue calls the agent answered (`queue_log` `connect`).
    pub answered: i64,
    /// Talk time of the calls the agent completed in the interval.
    pub talk_s: f64,
    pub aht_s: Option<f64>,
    /// Post-call surveys for the agent's calls, and their mean score (1–5).
    pub surveys: i64,
    pub survey_score_avg: Option<f64>,
}

/// Per agent and interval from `queue_log` (answered, talk) and `call_surveys`.
pub async fn agents(db: &Db, p: &Params) -> Result<Vec<AgentInterval>, sqlx::Error> {
    agents_from(db, p, source(p)).await
}

/// [`agents`] read from `src`.
pub async fn agents_from(
    db: &Db,
    p: &Params,
    src: Source,
) -> Result<Vec<AgentInterval>, sqlx::Error> {
    let d = db.dialect;
    let c = |cond: &str| sum(&format!("CASE WHEN {cond} THEN 1 ELSE 0 END"));
    let v = |cond: &str, col: &str| sum(&format!("CASE WHEN {cond} THEN {col} ELSE 0 END"));
    let raw = |t1: usize, t2: usize| {
        format!(
            "SELECT agent, {b} AS bucket, {answered} AS answered, {completed} AS completed, \
             {talk} AS talk_ms FROM queue_log WHERE at >= {t1} AND at < {t2} \
             AND agent IS NOT NULL AND event IN ('connect', 'complete') \
             GROUP BY agent, {b}",
            b = bucket(d, "at", p.interval_s),
            answered = c("event = 'connect'"),
            completed = c("event = 'complete'"),
            talk = v("event = 'complete'", "talk_ms"),
            t1 = d.ts(t1),
            t2 = d.ts(t2),
        )
    };
    let mut out = Vec::new();
    let cols = [
        Col::Key("agent", "agent"),
        Col::Bucket,
        total("answered"),
        total("completed"),
        total("talk_ms"),
    ];
    let having = "SUM(answered) + SUM(completed) > 0";
    let rows = read_rows(db, p, src, &raw, "report_agent_totals", &cols, having).await?;
    for r in rows {
        let int = |col: &str| r.try_get::<i64, _>(col).unwrap_or(0);
        let talk_ms = int("talk_ms");
        out.push(AgentInterval {
            agent: r.try_get("agent")?,
            interval_start: epoch_ts(int("bucket")),
            answered: int("answered"),
            talk_s: talk_ms as f64 / 1000.0,
            aht_s: ratio(talk_ms, int("completed")).map(|v| v / 1000.0),
            surveys: 0,
            survey_score_avg: None,
        });
    }
    for (agent, bucket, n, total) in surveys(db, p, "agent").await? {
        let at = epoch_ts(bucket);
        let i = match out
            .iter()
            .position(|r| r.agent == agent && r.interval_start == at)
        {
            Some(i) => i,
            None => {
                out.push(AgentInterval {
                    agent,
                    interval_start: at,
                    answered: 0,
                    talk_s: 0.0,
                    aht_s: None,
                    surveys: 0,
                    survey_score_avg: None,
                });
                out.len() - 1
            }
        };
        out[i].surveys = n;
        out[i].survey_score_avg = ratio(total, n);
    }
    out.sort_by(|a, b| (&a.agent, &a.interval_start).cmp(&(&b.agent, &b.interval_start)));
    Ok(out)
}

/// Calls of one direction and disposition over one interval.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CallsInterval {
    pub interval_start: String,
    pub direction: String,
    /// `call_records.disposition`; `in_progress` for calls not ended yet.
    pub disposition: String,
    pub calls: i64,
    pub answered: i64,
    /// Seconds from answer to end, summed over the answered, ended calls.
    pub talk_s_total: i64,
}

/// Per interval, direction and disposition from `call_records` (by `started_at`).
pub async fn calls(db: &Db, p: &Params) -> Result<Vec<CallsInterval>, sqlx::Error> {
    calls_from(db, p, source(p)).await
}

/// [`calls`] read from `src`.
pub async fn calls_from(
    db: &Db,
    p: &Params,
    src: Source,
) -> Result<Vec<CallsInterval>, sqlx::Error> {
    let d = db.dialect;
    let talk = match d {
        Dialect::Sqlite => {
            "CAST(ROUND((julianday(ended_at) - julianday(answered_at)) * 86400) AS INTEGER)"
                .to_string()
        }
        Dialect::Postgres => {
            "CAST(ROUND(EXTRACT(EPOCH FROM (ended_at - answered_at))) AS BIGINT)".to_string()
        }
    };
    let raw = |t1: usize, t2: usize| {
        format!(
            "SELECT {b} AS bucket, direction, COALESCE(disposition, 'in_progress') AS disp, \
             CAST(COUNT(*) AS BIGINT) AS calls, \
             {answered} AS answered, {talk_sum} AS talk_s \
             FROM call_records WHERE started_at >= {t1} AND started_at < {t2} \
             GROUP BY {b}, direction, COALESCE(disposition, 'in_progress')",
            b = bucket(d, "started_at", p.interval_s),
            answered = sum("CASE WHEN answered_at IS NOT NULL THEN 1 ELSE 0 END"),
            talk_sum = sum(&format!(
                "CASE WHEN answered_at IS NOT NULL AND ended_at IS NOT NULL THEN {talk} ELSE 0 END"
            )),
            t1 = d.ts(t1),
            t2 = d.ts(t2),
        )
    };
    let cols = [
        Col::Bucket,
        Col::Key("direction", "direction"),
        Col::Key("disp", "disposition"),
        total("calls"),
        total("answered"),
        total("talk_s"),
    ];
    let rows = read_rows(
        db,
        p,
        src,
        &raw,
        "report_call_totals",
        &cols,
        "SUM(calls) > 0",
    )
    .await?;
    let mut out = Vec::new();
    for r in rows {
        let int = |col: &str| r.try_get::<i64, _>(col).unwrap_or(0);
        out.push(CallsInterval {
            interval_start: epoch_ts(int("bucket")),
            direction: r.try_get("direction")?,
            disposition: r.try_get("disp")?,
            calls: int("calls"),
            answered: int("answered"),
            talk_s_total: int("talk_s"),
        });
    }
    Ok(out)
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.4}")).unwrap_or_default()
}

/// Rows as CSV: a header, then one line per row; every text cell neutralised.
fn csv_body(header: &[&str], rows: Vec<Vec<String>>) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header)?;
    for r in rows {
        w.write_record(r.iter().map(|c| neutralise_cell(c).into_owned()))?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

/// A report row: its CSV header (the JSON field names, in order) and its cells.
trait ReportRow: Serialize {
    const HEADER: &'static [&'static str];
    fn cells(&self) -> Vec<String>;
}

impl ReportRow for QueueInterval {
    const HEADER: &'static [&'static str] = &[
        "queue",
        "interval_start",
        "offered",
        "answered",
        "answered_within_sl",
        "abandoned",
        "timed_out",
        "service_level_s",
        "service_level",
        "asa_s",
        "aht_s",
        "abandon_rate",
        "surveys",
        "survey_score_avg",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.queue.clone(),
            self.interval_start.clone(),
            self.offered.to_string(),
            self.answered.to_string(),
            self.answered_within_sl.to_string(),
            self.abandoned.to_string(),
            self.timed_out.to_string(),
            self.service_level_s.to_string(),
            opt(self.service_level),
            opt(self.asa_s),
            opt(self.aht_s),
            opt(self.abandon_rate),
            self.surveys.to_string(),
            opt(self.survey_score_avg),
        ]
    }
}

impl ReportRow for CallsInterval {
    const HEADER: &'static [&'static str] = &[
        "interval_start",
        "direction",
        "disposition",
        "calls",
        "answered",
        "talk_s_total",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.interval_start.clone(),
            self.direction.clone(),
            self.disposition.clone(),
            self.calls.to_string(),
            self.answered.to_string(),
            self.talk_s_total.to_string(),
        ]
    }
}

impl ReportRow for AgentInterval {
    const HEADER: &'static [&'static str] = &[
        "agent",
        "interval_start",
        "answered",
        "talk_s",
        "aht_s",
        "surveys",
        "survey_score_avg",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.agent.clone(),
            self.interval_start.clone(),
            self.answered.to_string(),
            format!("{:.3}", self.talk_s),
            opt(self.aht_s),
            self.surveys.to_string(),
            opt(self.survey_score_avg),
        ]
    }
}

/// The rows (or the database's failure) as JSON or CSV, as the request asked.
fn answer<T: ReportRow>(p: &Params, rows: Result<Vec<T>, sqlx::Error>) -> Response {
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => return db_error(e).into_response(),
    };
    if p.csv {
        return match csv_body(T::HEADER, rows.iter().map(T::cells).collect()) {
            Ok(body) => ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response(),
            Err(e) => {
                ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("csv: {e}")).into_response()
            }
        };
    }
    Json(serde_json::json!({
        "from": ts(&p.from),
        "to": ts(&p.to),
        "interval_s": p.interval_s,
        "rows": rows,
    }))
    .into_response()
}

fn checked(
    q: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
    headers: &HeaderMap,
) -> Result<Params, ApiError> {
    let Query(q) = q.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    params(&q, accept, chrono::Utc::now())
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))
}

fn db_error(e: sqlx::Error) -> ApiError {
    ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}"))
}

/// `GET /api/reports/agents?from=&to=&interval=&format=`.
pub async fn agents_report(
    State(st): State<Arc<ApiState>>,
    headers: HeaderMap,
    q: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match checked(q, &headers) {
        Ok(p) => answer(&p, agents(&st.ctx.db, &p).await),
        Err(e) => e.into_response(),
    }
}

/// `GET /api/reports/queues?from=&to=&interval=&format=`.
pub async fn queues_report(
    State(st): State<Arc<ApiState>>,
    headers: HeaderMap,
    q: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let p = match checked(q, &headers) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let sl: Vec<(String, u64)> = st
        .ctx
        .config
        .queue_settings
        .iter()
        .map(|q| (q.acd.name.clone(), q.acd.service_level.as_millis() as u64))
        .collect();
    answer(&p, queues(&st.ctx.db, &p, &sl).await)
}

/// `GET /api/reports/calls?from=&to=&interval=&format=`.
pub async fn calls_report(
    State(st): State<Arc<ApiState>>,
    headers: HeaderMap,
    q: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    match checked(q, &headers) {
        Ok(p) => answer(&p, calls(&st.ctx.db, &p).await),
        Err(e) => e.into_response(),
    }
}

/// One segment of a campaign (or, with `segment` = `*`, the whole campaign).
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct CampaignSegment {
    pub segment: String,
    pub contacts: i64,
    /// Dial attempts made (each contact's `attempts`, summed).
    pub attempts: i64,
    /// Contacts settled (completed, failed, opted out, do-not-call).
    pub closed: i64,
    /// Settled contacts by outcome: the IVR choice, else how the last attempt ended (the
    /// keys of `/api/campaigns/{id}` and the wallboard, every key present).
    pub outcomes: std::collections::BTreeMap<String, i64>,
    /// Customers who got the news: answered calls (completed or opted out) plus SMS sent.
    pub notified: i64,
    /// `wait` + `refund`.
    pub resolved: i64,
    /// `resolved / notified`; absent while nobody was notified.
    pub resolution_rate: Option<f64>,
    pub sms_sent: i64,
}

/// Per segment of campaign `id`, without joining the whole list to `tickets`.
///
/// - Contacts per (segment, state, outcome, last disposition) from `campaign_contacts`
///   (covering index `campaign_contacts_segment_report`, migration 0015; on SQLite read in
///   its order, so grouped as it is read, without a sort): the segment is the contact's
///   copy of its ticket's. Rows written without it (NULL) take the ticket's, in a second
///   branch that joins only them to `tickets`.
/// - SMS sent: on PostgreSQL in the same scan (a hash join with `campaign_sms`, the
///   smaller table); on SQLite, where that join is a primary-key probe per contact, in a
///   second query from `campaign_sms`'s index `campaign_sms_campaign (campaign_id, state)`,
///   each SMS joined to its contact by primary key.
///
/// Joining every contact to its ticket and its SMS row instead cost ~1.2–1.6 s of CPU at a
/// million contacts on SQLite; see docs/benchmarks.md, "Reports".
/// Segments in name order; the total is not included.
pub async fn campaign(db: &Db, id: i64) -> Result<Vec<CampaignSegment>, sqlx::Error> {
    let one_scan = db.dialect == Dialect::Postgres;
    let (sms_join, sms_col) = if one_scan {
        (
            "LEFT JOIN campaign_sms s ON s.contact_id = c.id",
            sum("CASE WHEN s.state = 'sent' THEN 1 ELSE 0 END"),
        )
    } else {
        ("", "CAST(0 AS BIGINT)".to_string())
    };
    let contacts_sql = format!(
        "SELECT c.segment AS segment, c.state AS state, c.outcome AS outcome, \
         c.last_disposition AS disp, CAST(COUNT(*) AS BIGINT) AS n, {attempts} AS attempts, \
         {sms_col} AS sms FROM campaign_contacts c {sms_join} \
         WHERE c.campaign_id = $1 AND c.segment IS NOT NULL \
         GROUP BY c.segment, c.state, c.outcome, c.last_disposition \
         UNION ALL \
         SELECT t.segment AS segment, c.state AS state, c.outcome AS outcome, \
         c.last_disposition AS disp, CAST(COUNT(*) AS BIGINT) AS n, {attempts} AS attempts, \
         {sms_col} AS sms FROM campaign_contacts c JOIN tickets t ON t.id = c.ticket_id {sms_join} \
         WHERE c.campaign_id = $1 AND c.segment IS NULL \
         GROUP BY t.segment, c.state, c.outcome, c.last_disposition",
        attempts = sum("c.attempts"),
    );
    let seg = "COALESCE(c.segment, (SELECT t.segment FROM tickets t WHERE t.id = c.ticket_id), '')";
    let sms_sql = format!(
        "SELECT {seg} AS segment, c.state AS state, c.outcome AS outcome, \
         c.last_disposition AS disp, CAST(COUNT(*) AS BIGINT) AS n \
         FROM campaign_sms s JOIN campaign_contacts c ON c.id = s.contact_id \
         WHERE s.campaign_id = $1 AND s.state = 'sent' \
         GROUP BY {seg}, c.state, c.outcome, c.last_disposition"
    );
    // (segment, state, outcome or else last disposition) → (contacts, attempts, SMS sent)
    type Key = (String, String, Option<String>);
    let mut groups: std::collections::BTreeMap<Key, (i64, i64, i64)> = Default::default();
    let key = |r: &sqlx::any::AnyRow| -> Result<Key, sqlx::Error> {
        let outcome: Option<String> = r.try_get("outcome")?;
        let disp: Option<String> = r.try_get("disp")?;
        Ok((
            r.try_get::<Option<String>, _>("segment")?
                .unwrap_or_default(),
            r.try_get("state")?,
            outcome.or(disp),
        ))
    };
    for r in sqlx::query(&contacts_sql)
        .bind(id)
        .fetch_all(&db.pool)
        .await?
    {
        let g = groups.entry(key(&r)?).or_default();
        g.0 += r.try_get::<i64, _>("n").unwrap_or(0);
        g.1 += r.try_get::<i64, _>("attempts").unwrap_or(0);
        g.2 += r.try_get::<i64, _>("sms").unwrap_or(0);
    }
    if !one_scan {
        for r in sqlx::query(&sms_sql).bind(id).fetch_all(&db.pool).await? {
            groups.entry(key(&r)?).or_default().2 += r.try_get::<i64, _>("n").unwrap_or(0);
        }
    }
    let mut by: std::collections::BTreeMap<String, CampaignSegment> = Default::default();
    for ((segment, state, o), (n, attempts, sms)) in groups {
        let e = by
            .entry(segment.clone())
            .or_insert_with(|| empty_segment(&segment));
        e.contacts += n;
        e.attempts += attempts;
        e.sms_sent += sms;
        *e.outcomes.entry("sms_sent".into()).or_default() += sms;
        let answered = matches!(state.as_str(), "completed" | "opted_out");
        e.notified += if answered { n } else { sms };
        if matches!(state.as_str(), "completed" | "failed" | "opted_out" | "dnc") {
            e.closed += n;
            let key = match o.as_deref() {
                Some("opted_out") | Some("opt_out") => "opt_out",
                Some(o) => o,
                None => "failed",
            };
            *e.outcomes.entry(key.to_string()).or_default() += n;
            if matches!(key, "wait" | "refund") {
                e.resolved += n;
            }
        }
    }
    let mut out: Vec<CampaignSegment> = by.into_values().collect();
    for s in &mut out {
        s.resolution_rate = ratio(s.resolved, s.notified);
    }
    Ok(out)
}

fn empty_segment(name: &str) -> CampaignSegment {
    CampaignSegment {
        segment: name.to_string(),
        outcomes: super::wallboard::CAMPAIGN_OUTCOMES
            .iter()
            .map(|o| (o.to_string(), 0))
            .collect(),
        ..Default::default()
    }
}

/// The whole campaign: the segments added up (segment `*`).
pub fn campaign_total(segments: &[CampaignSegment]) -> CampaignSegment {
    let mut t = empty_segment("*");
    for s in segments {
        t.contacts += s.contacts;
        t.attempts += s.attempts;
        t.closed += s.closed;
        t.notified += s.notified;
        t.resolved += s.resolved;
        t.sms_sent += s.sms_sent;
        for (k, v) in &s.outcomes {
            *t.outcomes.entry(k.clone()).or_default() += v;
        }
    }
    t.resolution_rate = ratio(t.resolved, t.notified);
    t
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormatQuery {
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

/// CSV wanted: `format=csv`, or without `format` an `Accept` naming `text/csv`.
pub fn wants_csv(format: Option<&str>, headers: &HeaderMap) -> Result<bool, ApiError> {
    match format {
        Some("csv") => Ok(true),
        Some("json") => Ok(false),
        Some(other) => Err(ApiError(
            StatusCode::BAD_REQUEST,
            ParamError::Format(other.to_string()).to_string(),
        )),
        None => Ok(headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/csv"))),
    }
}

/// `GET /api/reports/campaigns/{id}?format=`: per segment, plus the total.
pub async fn campaign_report(
    State(st): State<Arc<ApiState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
    q: Result<Query<FormatQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let run = async {
        let Query(q) = q.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
        let csv = wants_csv(q.format.as_deref(), &headers)?;
        let id: i64 = id.parse().map_err(|_| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("id: '{id}' is not a campaign id"),
            )
        })?;
        let Some(c) = crate::store::campaigns::get(&st.ctx.db, id)
            .await
            .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}")))?
        else {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("campaign {id} does not exist"),
            ));
        };
        let segments = campaign(&st.ctx.db, id).await.map_err(db_error)?;
        let total = campaign_total(&segments);
        if !csv {
            return Ok(Json(serde_json::json!({
                "id": c.id, "name": c.name, "state": c.state,
                "segments": segments, "total": total,
            }))
            .into_response());
        }
        let mut header: Vec<&str> = vec!["segment", "contacts", "attempts", "closed"];
        header.extend(super::wallboard::CAMPAIGN_OUTCOMES);
        header.extend(["notified", "resolved", "resolution_rate"]);
        let rows = segments
            .iter()
            .chain(std::iter::once(&total))
            .map(|s| {
                let mut r = vec![
                    s.segment.clone(),
                    s.contacts.to_string(),
                    s.attempts.to_string(),
                    s.closed.to_string(),
                ];
                for o in super::wallboard::CAMPAIGN_OUTCOMES {
                    r.push(s.outcomes.get(o).copied().unwrap_or(0).to_string());
                }
                r.extend([
                    s.notified.to_string(),
                    s.resolved.to_string(),
                    opt(s.resolution_rate),
                ]);
                r
            })
            .collect();
        csv_body(&header, rows)
            .map(|body| ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response())
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("csv: {e}")))
    };
    match run.await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(from: Option<&str>, to: Option<&str>, iv: Option<&str>, f: Option<&str>) -> ReportQuery {
        ReportQuery {
            from: from.map(Into::into),
            to: to.map(Into::into),
            interval: iv.map(Into::into),
            format: f.map(Into::into),
        }
    }

    #[test]
    fn intervals_and_ranges_are_checked() {
        assert_eq!(parse_interval("900"), Ok(900));
        assert_eq!(parse_interval("15m"), Ok(900));
        assert_eq!(parse_interval("1h"), Ok(3600));
        assert_eq!(parse_interval("1d"), Ok(86_400));
        assert_eq!(parse_interval("10s"), Err(ParamError::IntervalRange));
        assert!(matches!(parse_interval("1w"), Err(ParamError::Interval(_))));
        assert!(matches!(parse_interval("x"), Err(ParamError::Interval(_))));
        let now = parse_time("to", "2026-12-06T18:20:00Z").expect("now");
        let p = params(&q(None, None, None, None), None, now).expect("defaults");
        assert_eq!(ts(&p.from), "2026-12-06T00:00:00.000Z");
        assert_eq!(p.to, now);
        assert_eq!(p.interval_s, 900);
        assert!(!p.csv);
        let p = params(
            &q(
                Some("2026-12-01"),
                Some("2026-12-02T00:00:00+01:00"),
                Some("1h"),
                None,
            ),
            Some("text/csv"),
            now,
        )
        .expect("explicit");
        assert_eq!(ts(&p.to), "2026-12-01T23:00:00.000Z");
        assert!(p.csv, "Accept: text/csv");
        assert!(matches!(
            params(&q(Some("yesterday"), None, None, None), None, now),
            Err(ParamError::Time("from", _))
        ));
        assert_eq!(
            params(&q(Some("2026-12-07"), None, None, None), None, now),
            Err(ParamError::Range)
        );
        assert_eq!(
            params(&q(Some("2024-01-01"), None, None, None), None, now),
            Err(ParamError::Range)
        );
        assert!(matches!(
            params(&q(None, None, None, Some("xml")), None, now),
            Err(ParamError::Format(_))
        ));
        assert!(
            !params(&q(None, None, None, Some("json")), Some("text/csv"), now)
                .expect("json")
                .csv
        );
    }

    #[test]
    fn totals_answer_whole_15_minute_rows_and_known_service_levels() {
        let p = |from: &str, to: &str, iv: i64| Params {
            from: parse_time("from", from).expect("from"),
            to: parse_time("to", to).expect("to"),
            interval_s: iv,
            csv: false,
        };
        let at = |t: &str| parse_time("t", t).expect("t").timestamp();
        assert_eq!(
            source(&p("2026-11-01", "2026-12-01", 86_400)),
            Source::Totals {
                first: at("2026-11-01T00:00:00Z"),
                last: at("2026-12-01T00:00:00Z")
            }
        );
        // Partial 15 minutes at either end (the default `to` is now): raw rows there.
        assert_eq!(
            source(&p("2026-11-01T08:10:00Z", "2026-11-01T10:44:59.5Z", 1800)),
            Source::Totals {
                first: at("2026-11-01T08:15:00Z"),
                last: at("2026-11-01T10:30:00Z")
            }
        );
        assert_eq!(
            source(&p("2026-11-01T08:14:59.5Z", "2026-11-02", 900)),
            Source::Totals {
                first: at("2026-11-01T08:15:00Z"),
                last: at("2026-11-02T00:00:00Z")
            }
        );
        // A bucket of 5 minutes, no whole 15-minute row, a range before 1970: raw rows.
        assert_eq!(source(&p("2026-11-01", "2026-12-01", 300)), Source::Raw);
        assert_eq!(
            source(&p("2026-11-01T08:01:00Z", "2026-11-01T08:14:00Z", 900)),
            Source::Raw
        );
        assert_eq!(source(&p("1969-12-31", "1970-01-02", 86_400)), Source::Raw);
        assert_eq!(sl_column(30_000).as_deref(), Some("sl_30s"));
        assert_eq!(sl_column(120_000).as_deref(), Some("sl_120s"));
        assert_eq!(sl_column(25_000), None);
        assert_eq!(sl_column(30_500), None);
    }

    #[test]
    fn csv_cells_are_neutralised() {
        let body = csv_body(&["queue", "n"], vec![vec!["=cmd()".into(), "1".into()]]).expect("csv");
        assert_eq!(String::from_utf8_lossy(&body), "queue,n\n'=cmd(),1\n");
    }

    #[tokio::test]
    async fn queue_and_call_figures_per_interval_on_sqlite() {
        let db = crate::store::Db::connect("sqlite::memory:")
            .await
            .expect("db");
        // Two 15-minute buckets: 08:00 (2 offered, 1 answered in 10 s, 1 abandoned) and
        // 08:15 (1 offered, answered in 40 s: outside a 30 s service level).
        let rows = [
            ("a1", "2026-12-06T08:01:00.000Z", "enter", None, None),
            (
                "a2",
                "2026-12-06T08:01:10.000Z",
                "connect",
                Some(10_000),
                None,
            ),
            (
                "a3",
                "2026-12-06T08:05:00.000Z",
                "complete",
                None,
                Some(120_000),
            ),
            ("b1", "2026-12-06T08:02:00.000Z", "enter", None, None),
            (
                "b2",
                "2026-12-06T08:03:00.000Z",
                "abandon",
                Some(60_000),
                None,
            ),
            ("c1", "2026-12-06T08:16:00.000Z", "enter", None, None),
            (
                "c2",
                "2026-12-06T08:16:40.000Z",
                "connect",
                Some(40_000),
                None,
            ),
            ("d1", "2026-12-06T09:00:00.000Z", "enter", None, None),
        ];
        for (id, at, ev, wait, talk) in rows {
            sqlx::query("INSERT INTO queue_log (id, at, queue, call_id, event, wait_ms, talk_ms) VALUES ($1, $2, 'support', $1, $3, $4, $5)")
                .bind(id).bind(at).bind(ev).bind(wait).bind(talk)
                .execute(&db.pool).await.expect("insert");
        }
        let p = Params {
            from: parse_time("from", "2026-12-06T08:00:00Z").expect("t"),
            to: parse_time("to", "2026-12-06T09:00:00Z").expect("t"),
            interval_s: 900,
            csv: false,
        };
        let r = queues(&db, &p, &[("support".into(), 30_000)])
            .await
            .expect("report");
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(r[0].interval_start, "2026-12-06T08:00:00.000Z");
        assert_eq!(
            (
                r[0].offered,
                r[0].answered,
                r[0].abandoned,
                r[0].answered_within_sl
            ),
            (2, 1, 1, 1)
        );
        assert_eq!(r[0].service_level, Some(0.5));
        assert_eq!(r[0].asa_s, Some(10.0));
        assert_eq!(r[0].aht_s, Some(120.0));
        assert_eq!(r[1].interval_start, "2026-12-06T08:15:00.000Z");
        assert_eq!(
            (r[1].offered, r[1].answered, r[1].answered_within_sl),
            (1, 1, 0)
        );
        assert_eq!(r[1].service_level, Some(0.0));
        let c = calls(&db, &p).await.expect("calls report");
        assert!(c.is_empty(), "{c:?}");
    }

    #[tokio::test]
    async fn survey_scores_in_the_queue_and_agent_reports_on_sqlite() {
        let db = crate::store::Db::connect("sqlite::memory:")
            .await
            .expect("db");
        for (id, at, ev, talk) in [
            ("q1", "2026-12-06T08:01:00.000Z", "connect", None),
            ("q2", "2026-12-06T08:04:00.000Z", "complete", Some(90_000)),
            ("q3", "2026-12-06T08:05:00.000Z", "connect", None),
        ] {
            sqlx::query("INSERT INTO queue_log (id, at, queue, call_id, agent, event, talk_ms) VALUES ($1, $2, 'support', $1, 'alice', $3, $4)")
                .bind(id).bind(at).bind(ev).bind(talk)
                .execute(&db.pool).await.expect("insert");
        }
        // Two surveys for alice in 08:00 (scores 5 and 2), one in 08:15 (4, no queue_log
        // row there), and one without an agent or queue (not counted anywhere).
        for (call, agent, queue, score, at) in [
            (
                "c1",
                Some("alice"),
                Some("support"),
                5,
                "2026-12-06T08:06:00.000Z",
            ),
            (
                "c2",
                Some("alice"),
                Some("support"),
                2,
                "2026-12-06T08:07:00.000Z",
            ),
            (
                "c3",
                Some("alice"),
                Some("support"),
                4,
                "2026-12-06T08:20:00.000Z",
            ),
            ("c4", None, None, 1, "2026-12-06T08:08:00.000Z"),
        ] {
            sqlx::query("INSERT INTO call_surveys (call_id, agent, queue, score, created_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(call).bind(agent).bind(queue).bind(score).bind(at)
                .execute(&db.pool).await.expect("insert survey");
        }
        let p = Params {
            from: parse_time("from", "2026-12-06T08:00:00Z").expect("t"),
            to: parse_time("to", "2026-12-06T09:00:00Z").expect("t"),
            interval_s: 900,
            csv: false,
        };
        let q = queues(&db, &p, &[]).await.expect("queues");
        assert_eq!(q.len(), 2, "{q:?}");
        assert_eq!((q[0].surveys, q[0].survey_score_avg), (2, Some(3.5)));
        assert_eq!(q[1].interval_start, "2026-12-06T08:15:00.000Z");
        assert_eq!((q[1].answered, q[1].surveys), (0, 1));
        let a = agents(&db, &p).await.expect("agents");
        assert_eq!(a.len(), 2, "{a:?}");
        assert_eq!(a[0].agent, "alice");
        assert_eq!(
            (a[0].answered, a[0].talk_s, a[0].aht_s),
            (2, 90.0, Some(90.0))
        );
        assert_eq!((a[0].surveys, a[0].survey_score_avg), (2, Some(3.5)));
        assert_eq!(
            (a[1].answered, a[1].surveys, a[1].survey_score_avg),
            (0, 1, Some(4.0))
        );
    }
}
