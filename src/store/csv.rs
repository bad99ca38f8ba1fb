//! Ticket import and call export for operations (`switchboard tickets import FILE.csv`,
//! `switchboard calls export --since ...`).
//!
//! Import: RFC 4180 CSV with a header naming the columns; every row is checked (order id
//! present, phone in E.164 after normalisation, known language, integer delay, ISO date)
//! and inserted in its own statement, so good rows land, bad rows are listed with their
//! line and reason, and no row is half-written. Duplicate order ids (in the file or already
//! in the database) are reported, never overwritten.

use std::collections::HashSet;

use sqlx::Row;

use super::{now_ts, tickets::normalize_number, Db, StoreError};

/// Split CSV text into records (quoted fields may hold commas, quotes and newlines).
/// Returns (line number where the record starts, fields).
pub fn parse_csv(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut records = Vec::new();
    let mut field = String::new();
    let mut fields = Vec::new();
    let mut in_quotes = false;
    let mut line = 1;
    let mut start_line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, in_quotes) {
            ('"', true) => {
                if chars.peek() == Some(&'"') {
                    field.push('"');
                    chars.next();
                } else {
                    in_quotes = false;
                }
            }
            ('"', false) if field.is_empty() => in_quotes = true,
            (',', false) => fields.push(std::mem::take(&mut field)),
            ('\r', false) => {}
            ('\n', false) => {
                fields.push(std::mem::take(&mut field));
                if !(fields.len() == 1 && fields[0].is_empty()) {
                    records.push((start_line, std::mem::take(&mut fields)));
                } else {
                    fields.clear();
                }
                line += 1;
                start_line = line;
            }
            (c, _) => {
                if c == '\n' {
                    line += 1;
                }
                field.push(c);
            }
        }
    }
    if !field.is_empty() || !fields.is_empty() {
        fields.push(field);
        records.push((start_line, fields));
    }
    records
}

#[derive(Debug, Default)]
pub struct ImportReport {
    pub imported: u64,
    pub errors: Vec<(usize, String)>,
}

const COLUMNS: &[&str] = &[
    "order_id",
    "customer_name",
    "phone",
    "language",
    "segment",
    "timezone",
    "status",
    "delay_days",
    "new_eta",
];

/// Import tickets; `progress(done, total)` is called every few hundred rows.
pub async fn import_tickets(
    db: &Db,
    text: &str,
    default_cc: &str,
    mut progress: impl FnMut(usize, usize),
) -> Result<ImportReport, StoreError> {
    let mut report = ImportReport::default();
    let records = parse_csv(text);
    let Some(((_, header), rows)) = records.split_first() else {
        report.errors.push((1, "empty file".into()));
        return Ok(report);
    };
    let header: Vec<String> = header
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    for h in &header {
        if !COLUMNS.contains(&h.as_str()) {
            report.errors.push((
                1,
                format!("unknown column '{h}' (expected {})", COLUMNS.join(", ")),
            ));
        }
    }
    for required in ["order_id", "phone"] {
        if !header.iter().any(|h| h == required) {
            report
                .errors
                .push((1, format!("missing column '{required}'")));
        }
    }
    if !report.errors.is_empty() {
        return Ok(report);
    }
    let col = |row: &[String], name: &str| -> String {
        header
            .iter()
            .position(|h| h == name)
            .and_then(|i| row.get(i))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let sql = format!(
        "INSERT INTO tickets (order_id, customer_name, phone, language, segment, timezone, status, delay_days, new_eta, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, {}, {}) ON CONFLICT (order_id) DO NOTHING",
        db.dialect.date(9),
        db.dialect.ts(10)
    );
    let mut seen = HashSet::new();
    let total = rows.len();
    for (i, (line, row)) in rows.iter().enumerate() {
        if i % 500 == 0 {
            progress(i, total);
        }
        if row.len() != header.len() {
            report.errors.push((
                *line,
                format!("{} fields, header has {}", row.len(), header.len()),
            ));
            continue;
        }
        let order_id = col(row, "order_id");
        if order_id.is_empty() {
            report.errors.push((*line, "order_id is empty".into()));
            continue;
        }
        let raw_phone = col(row, "phone");
        let Some(phone) =
            normalize_number(&raw_phone, default_cc).filter(|p| (8..=16).contains(&p.len()))
        else {
            report
                .errors
                .push((*line, format!("phone '{raw_phone}' is not a phone number")));
            continue;
        };
        let delay = col(row, "delay_days");
        let delay_days: i64 = if delay.is_empty() {
            0
        } else {
            match delay.parse() {
                Ok(n) if n >= 0 => n,
                _ => {
                    report.errors.push((
                        *line,
                        format!("delay_days '{delay}' is not a whole number >= 0"),
                    ));
                    continue;
                }
            }
        };
        let eta = col(row, "new_eta");
        if !eta.is_empty() && chrono::NaiveDate::parse_from_str(&eta, "%Y-%m-%d").is_err() {
            report
                .errors
                .push((*line, format!("new_eta '{eta}' is not YYYY-MM-DD")));
            continue;
        }
        let tz = col(row, "timezone");
        if !tz.is_empty() && tz.parse::<chrono_tz::Tz>().is_err() {
            report
                .errors
                .push((*line, format!("timezone '{tz}' is not an IANA zone")));
            continue;
        }
        if !seen.insert(order_id.clone()) {
            report.errors.push((
                *line,
                format!("duplicate order_id '{order_id}' in the file"),
            ));
            continue;
        }
        let or = |v: String, d: &str| if v.is_empty() { d.to_string() } else { v };
        let r = sqlx::query(&sql)
            .bind(&order_id)
            .bind(col(row, "customer_name"))
            .bind(&phone)
            .bind(or(col(row, "language"), "en"))
            .bind(or(col(row, "segment"), "standard"))
            .bind(or(tz, "UTC"))
            .bind(or(col(row, "status"), "processing"))
            .bind(delay_days)
            .bind(if eta.is_empty() { None } else { Some(eta) })
            .bind(now_ts())
            .execute(&db.pool)
            .await?;
        if r.rows_affected() == 1 {
            report.imported += 1;
        } else {
            report.errors.push((
                *line,
                format!("order_id '{order_id}' already exists in the database"),
            ));
        }
    }
    progress(total, total);
    Ok(report)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Call records since `since` (ISO date or timestamp) with their outcome, as CSV.
pub async fn export_calls(
    db: &Db,
    since: &str,
    out: &mut impl std::io::Write,
) -> Result<u64, StoreError> {
    let sql = format!(
        "SELECT r.id, r.sip_call_id, r.direction, r.from_uri, r.to_uri, r.caller, r.ticket_id, r.campaign_id, \
         CAST(r.started_at AS TEXT) AS started_at, CAST(r.answered_at AS TEXT) AS answered_at, CAST(r.ended_at AS TEXT) AS ended_at, \
         r.disposition, r.hangup_cause, r.sip_status, r.queue, r.agent, r.wait_ms, o.choice \
         FROM call_records r LEFT JOIN call_outcomes o ON o.call_id = r.id WHERE r.started_at >= {} ORDER BY r.started_at",
        db.dialect.ts(1)
    );
    let since = if since.len() == 10 {
        format!("{since}T00:00:00.000Z")
    } else {
        since.to_string()
    };
    let rows = sqlx::query(&sql).bind(since).fetch_all(&db.pool).await?;
    let cols = [
        "id",
        "sip_call_id",
        "direction",
        "from_uri",
        "to_uri",
        "caller",
        "ticket_id",
        "campaign_id",
        "started_at",
        "answered_at",
        "ended_at",
        "disposition",
        "hangup_cause",
        "sip_status",
        "queue",
        "agent",
        "wait_ms",
        "choice",
    ];
    let io = |e: std::io::Error| StoreError::Folder {
        path: "<output>".into(),
        source: e,
    };
    writeln!(out, "{}", cols.join(",")).map_err(io)?;
    for r in &rows {
        let mut line = Vec::with_capacity(cols.len());
        for c in cols {
            let v = match c {
                "ticket_id" | "campaign_id" | "sip_status" | "wait_ms" => r
                    .try_get::<Option<i64>, _>(c)?
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
                _ => r.try_get::<Option<String>, _>(c)?.unwrap_or_default(),
            };
            line.push(csv_field(&v));
        }
        writeln!(out, "{}", line.join(",")).map_err(io)?;
    }
    Ok(rows.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_commas_and_newlines() {
        let recs = parse_csv("a,b,c\n1,\"x, \"\"y\"\"\",3\n\n4,\"multi\nline\",6\r\n");
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[1].1, vec!["1", "x, \"y\"", "3"]);
        assert_eq!(
            recs[2],
            (
                4,
                vec!["4".to_string(), "multi\nline".to_string(), "6".to_string()]
            )
        );
        assert_eq!(csv_field("a,b"), "\"a,b\"");
    }

    #[tokio::test]
    async fn import_reports_bad_rows_and_keeps_good_ones() {
        let dir = tempfile::tempdir().expect("dir");
        let db = Db::connect(&format!("sqlite://{}", dir.path().join("t.db").display()))
            .await
            .expect("db");
        let csv = "order_id,customer_name,phone,status,delay_days,new_eta,timezone\n\
                   5001,Ann,+15550001111,delayed,3,2026-12-24,America/Chicago\n\
                   5002,Bob,not-a-phone,delayed,3,2026-12-24,\n\
                   5001,Dup,+15550001112,delayed,1,,\n\
                   5003,Cy,(555) 000-1113,shipped,x,,\n\
                   5004,Di,5550001114,shipped,0,2026-13-01,\n\
                   5005,Ed,5550001115,shipped,0,,Mars/Base\n\
                   5006,Flo,5550001116,processing,,,\n";
        let r = import_tickets(&db, csv, "1", |_, _| {})
            .await
            .expect("import");
        assert_eq!(r.imported, 2, "{:?}", r.errors);
        let lines: Vec<usize> = r.errors.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, vec![3, 4, 5, 6, 7]);
        let again = import_tickets(&db, "order_id,phone\n5006,+15550001116\n", "1", |_, _| {})
            .await
            .expect("import");
        assert_eq!(again.imported, 0);
        assert!(again.errors[0].1.contains("already exists"));
        let mut out = Vec::new();
        assert_eq!(
            export_calls(&db, "2020-01-01", &mut out)
                .await
                .expect("export"),
            0
        );
        assert!(String::from_utf8_lossy(&out).starts_with("id,sip_call_id"));
    }
}
