//! Ticket import and call export for operations (`switchboard tickets import FILE.csv`,
//! `switchboard calls export --since ...`), through the `csv` crate.
//!
//! Import: RFC 4180 CSV with a header naming the columns; every row is checked (order id
//! present, phone in E.164 after normalisation, known language, integer delay, ISO date)
//! and inserted in its own statement, so good rows land, bad rows are listed with their
//! line and reason, and no row is half-written. Duplicate order ids (in the file or already
//! in the database) are reported, never overwritten. The file is streamed record by record
//! (memory does not grow with its size, apart from the order ids seen, kept to refuse
//! duplicates), with progress reported every [`PROGRESS_EVERY`] rows. A UTF-8 byte-order
//! mark (what Excel writes for "CSV UTF-8") is skipped; a row that is not UTF-8 is refused
//! with its line like any other bad row.
//!
//! Export: every text cell that a spreadsheet would take for a formula (it starts with
//! `=`, `+`, `-`, `@`, TAB or CR: OWASP "CSV injection") gets a leading `'`, except a valid
//! E.164 number (`+` and 2–15 digits), which a spreadsheet reads as a number and which must
//! stay usable (see [`neutralise_cell`] and docs/operations.md).

use std::borrow::Cow;
use std::collections::HashSet;

use sqlx::Row;

use super::{now_ts, tickets::normalize_number, Db, StoreError};

/// Import progress is reported every this many data rows (and once at the end).
pub const PROGRESS_EVERY: u64 = 1000;

/// Where a running import is: data rows read so far and bytes of the file consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportProgress {
    pub rows: u64,
    pub bytes: u64,
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

/// Counts the line ends passing through to the CSV parser, so that a row is reported with
/// the line it starts on. (The `csv` crate's own record positions count CRLF, blank lines
/// and quoted line breaks inconsistently.) Keeps only the offsets of the line ends the
/// parser has not consumed yet, i.e. at most its buffer's worth.
struct LineCounter<R> {
    inner: R,
    offset: u64,
    /// Offsets of `\n` bytes read but not yet passed by [`LineCounter::line_of`].
    ahead: std::collections::VecDeque<u64>,
    /// How many `\n` were passed, and the offset of the last one.
    passed: u64,
    last_passed: Option<u64>,
}

impl<R: std::io::Read> std::io::Read for LineCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for (i, b) in buf[..n].iter().enumerate() {
            if *b == b'\n' {
                self.ahead.push_back(self.offset + i as u64);
            }
        }
        self.offset += n as u64;
        Ok(n)
    }
}

impl<R> LineCounter<R> {
    fn new(inner: R) -> Self {
        LineCounter {
            inner,
            offset: 0,
            ahead: std::collections::VecDeque::new(),
            passed: 0,
            last_passed: None,
        }
    }

    /// The 1-based line a record starts on, given the parser's byte position just after
    /// it (`end`, non-decreasing from call to call) and the line breaks inside its fields.
    fn line_of(&mut self, end: u64, breaks_inside: u64) -> usize {
        while self.ahead.front().is_some_and(|&o| o < end) {
            self.last_passed = self.ahead.pop_front();
            self.passed += 1;
        }
        // The parser has consumed an LF terminator, but only the CR of a CRLF one.
        let own_terminator = u64::from(end > 0 && self.last_passed == Some(end - 1));
        (self.passed - own_terminator - breaks_inside + 1) as usize
    }
}

/// One checked data row of a ticket CSV, with defaults applied (language `en`, segment
/// `standard`, timezone `UTC`, status `processing`, delay 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketRow {
    /// The 1-based line the row starts on.
    pub line: usize,
    pub order_id: String,
    pub customer_name: String,
    /// E.164 after normalisation.
    pub phone: String,
    pub language: String,
    pub segment: String,
    pub timezone: String,
    pub status: String,
    pub delay_days: i64,
    pub new_eta: Option<String>,
}

/// A ticket CSV read record by record: the header is checked on open, every data row is
/// checked by [`TicketCsv::next_row`] (the same rules for `switchboard tickets import` and
/// for a campaign created from an uploaded CSV).
pub struct TicketCsv<R: std::io::Read> {
    reader: ::csv::Reader<LineCounter<R>>,
    record: ::csv::ByteRecord,
    header: Vec<String>,
    default_cc: String,
    seen: HashSet<String>,
    rows: u64,
}

impl<R: std::io::Read> TicketCsv<R> {
    /// Read and check the header. `Err(errors)`: the header's problems, all on line 1.
    pub fn open(
        input: R,
        default_cc: &str,
    ) -> Result<Result<Self, Vec<(usize, String)>>, StoreError> {
        // Not `has_headers`: the header is read (and its BOM removed) here; `flexible`: a row
        // with the wrong number of fields is a per-row error, not the end of the import.
        let mut reader = ::csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(LineCounter::new(input));
        let mut record = ::csv::ByteRecord::new();
        if !reader.read_byte_record(&mut record)? {
            return Ok(Err(vec![(1, "empty file".into())]));
        }
        let mut header = Vec::with_capacity(record.len());
        for (i, field) in record.iter().enumerate() {
            let Ok(h) = std::str::from_utf8(field) else {
                return Ok(Err(vec![(
                    1,
                    "header is not UTF-8 (save the file as CSV UTF-8)".into(),
                )]));
            };
            // Excel's "CSV UTF-8" starts the file with a byte-order mark.
            let h = if i == 0 {
                h.trim_start_matches('\u{feff}')
            } else {
                h
            };
            header.push(h.trim().to_ascii_lowercase());
        }
        let mut errors = Vec::new();
        for h in &header {
            if !COLUMNS.contains(&h.as_str()) {
                errors.push((
                    1,
                    format!("unknown column '{h}' (expected {})", COLUMNS.join(", ")),
                ));
            }
        }
        for required in ["order_id", "phone"] {
            if !header.iter().any(|h| h == required) {
                errors.push((1, format!("missing column '{required}'")));
            }
        }
        if !errors.is_empty() {
            return Ok(Err(errors));
        }
        Ok(Ok(TicketCsv {
            reader,
            record,
            header,
            default_cc: default_cc.to_string(),
            seen: HashSet::new(),
            rows: 0,
        }))
    }

    /// Where the reading is (data rows read, bytes consumed).
    pub fn progress(&self) -> ImportProgress {
        ImportProgress {
            rows: self.rows,
            bytes: self.reader.position().byte(),
        }
    }

    /// The next data row, checked: `Ok(None)` at the end, `Ok(Some(Err((line, reason))))`
    /// for a bad row. An order id seen earlier in the file is a bad row.
    #[allow(clippy::type_complexity)]
    pub fn next_row(&mut self) -> Result<Option<Result<TicketRow, (usize, String)>>, StoreError> {
        if !self.reader.read_byte_record(&mut self.record)? {
            return Ok(None);
        }
        self.rows += 1;
        let breaks = self
            .record
            .iter()
            .map(|f| f.iter().filter(|&&b| b == b'\n').count() as u64)
            .sum();
        let end = self.reader.position().byte();
        let line = self.reader.get_mut().line_of(end, breaks);
        let mut fields: Vec<&str> = Vec::with_capacity(self.header.len());
        for f in self.record.iter() {
            match std::str::from_utf8(f) {
                Ok(f) => fields.push(f),
                Err(_) => {
                    return Ok(Some(Err((
                        line,
                        "not UTF-8 (save the file as CSV UTF-8)".to_string(),
                    ))))
                }
            }
        }
        let checked = check_row(&self.header, &fields, &self.default_cc, line);
        Ok(Some(match checked {
            Ok(row) if !self.seen.insert(row.order_id.clone()) => Err((
                line,
                format!("duplicate order_id '{}' in the file", row.order_id),
            )),
            other => other.map_err(|e| (line, e)),
        }))
    }
}

/// The checks on one data row (all but duplicates, which need the rows before it).
fn check_row(
    header: &[String],
    row: &[&str],
    default_cc: &str,
    line: usize,
) -> Result<TicketRow, String> {
    if row.len() != header.len() {
        return Err(format!("{} fields, header has {}", row.len(), header.len()));
    }
    let col = |name: &str| -> String {
        header
            .iter()
            .position(|h| h == name)
            .and_then(|i| row.get(i))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let order_id = col("order_id");
    if order_id.is_empty() {
        return Err("order_id is empty".into());
    }
    let raw_phone = col("phone");
    let Some(phone) =
        normalize_number(&raw_phone, default_cc).filter(|p| (8..=16).contains(&p.len()))
    else {
        return Err(format!("phone '{raw_phone}' is not a phone number"));
    };
    let delay = col("delay_days");
    let delay_days: i64 = if delay.is_empty() {
        0
    } else {
        match delay.parse() {
            Ok(n) if n >= 0 => n,
            _ => return Err(format!("delay_days '{delay}' is not a whole number >= 0")),
        }
    };
    let eta = col("new_eta");
    if !eta.is_empty() && chrono::NaiveDate::parse_from_str(&eta, "%Y-%m-%d").is_err() {
        return Err(format!("new_eta '{eta}' is not YYYY-MM-DD"));
    }
    let tz = col("timezone");
    if !tz.is_empty() && tz.parse::<chrono_tz::Tz>().is_err() {
        return Err(format!("timezone '{tz}' is not an IANA zone"));
    }
    let or = |v: String, d: &str| if v.is_empty() { d.to_string() } else { v };
    Ok(TicketRow {
        line,
        order_id,
        customer_name: col("customer_name"),
        phone,
        language: or(col("language"), "en"),
        segment: or(col("segment"), "standard"),
        timezone: or(tz, "UTC"),
        status: or(col("status"), "processing"),
        delay_days,
        new_eta: if eta.is_empty() { None } else { Some(eta) },
    })
}

/// Every row of a ticket CSV held in memory (bounded by the caller, e.g. the API's upload
/// limit): the good rows and the bad ones by line. Nothing is written.
#[derive(Debug, Default)]
pub struct CheckedCsv {
    pub rows: Vec<TicketRow>,
    pub errors: Vec<(usize, String)>,
}

/// Check a whole ticket CSV without writing anything.
pub fn check_tickets(input: &[u8], default_cc: &str) -> Result<CheckedCsv, StoreError> {
    let mut out = CheckedCsv::default();
    let mut csv = match TicketCsv::open(input, default_cc)? {
        Ok(c) => c,
        Err(errors) => {
            out.errors = errors;
            return Ok(out);
        }
    };
    while let Some(row) = csv.next_row()? {
        match row {
            Ok(r) => out.rows.push(r),
            Err(e) => out.errors.push(e),
        }
    }
    if out.rows.is_empty() && out.errors.is_empty() {
        out.errors.push((1, "no data rows".into()));
    }
    Ok(out)
}

/// The statement inserting one ticket; an existing order id is left as it is.
pub(crate) fn insert_ticket_sql(db: &Db) -> String {
    format!(
        "INSERT INTO tickets (order_id, customer_name, phone, language, segment, timezone, status, delay_days, new_eta, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, {}, {}) ON CONFLICT (order_id) DO NOTHING",
        db.dialect.date(9),
        db.dialect.ts(10)
    )
}

/// Bind a row to [`insert_ticket_sql`].
pub(crate) fn bind_ticket<'q>(
    sql: &'q str,
    row: &'q TicketRow,
    now: String,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    sqlx::query(sql)
        .bind(&row.order_id)
        .bind(&row.customer_name)
        .bind(&row.phone)
        .bind(&row.language)
        .bind(&row.segment)
        .bind(&row.timezone)
        .bind(&row.status)
        .bind(row.delay_days)
        .bind(row.new_eta.clone())
        .bind(now)
}

/// Import tickets from CSV read from `input` (streamed). `progress` is called every
/// [`PROGRESS_EVERY`] rows and once at the end. The reading is blocking I/O (meant for the
/// operator command, whose runtime does nothing else).
pub async fn import_tickets(
    db: &Db,
    input: impl std::io::Read,
    default_cc: &str,
    mut progress: impl FnMut(ImportProgress),
) -> Result<ImportReport, StoreError> {
    let mut report = ImportReport::default();
    let mut csv = match TicketCsv::open(input, default_cc)? {
        Ok(c) => c,
        Err(errors) => {
            report.errors = errors;
            return Ok(report);
        }
    };
    let sql = insert_ticket_sql(db);
    while let Some(row) = csv.next_row()? {
        let p = csv.progress();
        if p.rows.is_multiple_of(PROGRESS_EVERY) {
            progress(p);
        }
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                report.errors.push(e);
                continue;
            }
        };
        let r = bind_ticket(&sql, &row, now_ts()).execute(&db.pool).await?;
        if r.rows_affected() == 1 {
            report.imported += 1;
        } else {
            report.errors.push((
                row.line,
                format!("order_id '{}' already exists in the database", row.order_id),
            ));
        }
    }
    progress(csv.progress());
    Ok(report)
}

/// A cell as written by the export: a value a spreadsheet would evaluate as a formula
/// (first character `=`, `+`, `-`, `@`, TAB or CR — OWASP's list) is prefixed with `'`,
/// which makes it text. A valid E.164 number (`+`, then 2–15 digits, the first not 0) is
/// left alone: it is the common value of `caller`, a spreadsheet reads it as a plain
/// number (nothing is executed), and a prefixed number would no longer be one.
pub fn neutralise_cell(s: &str) -> Cow<'_, str> {
    if !s.starts_with(['=', '+', '-', '@', '\t', '\r']) || is_e164(s) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(format!("'{s}"))
}

fn is_e164(s: &str) -> bool {
    s.strip_prefix('+').is_some_and(|d| {
        (2..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
    })
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
    // `\n` line ends, quoting only where needed: the format the export always had.
    let mut w = ::csv::WriterBuilder::new()
        .terminator(::csv::Terminator::Any(b'\n'))
        .from_writer(out);
    w.write_record(cols)?;
    let mut line: Vec<String> = Vec::with_capacity(cols.len());
    for r in &rows {
        line.clear();
        for c in cols {
            let v = match c {
                "ticket_id" | "campaign_id" | "sip_status" | "wait_ms" => r
                    .try_get::<Option<i64>, _>(c)?
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
                // Text, much of it chosen by the caller (From URI, display name,
                // Call-ID): never a formula in the operator's spreadsheet.
                _ => neutralise_cell(&r.try_get::<Option<String>, _>(c)?.unwrap_or_default())
                    .into_owned(),
            };
            line.push(v);
        }
        w.write_record(&line)?;
    }
    w.flush().map_err(::csv::Error::from)?;
    Ok(rows.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised_and_e164_numbers_kept() {
        for (raw, want) in [
            (
                "=HYPERLINK(\"http://x\",\"y\")",
                "'=HYPERLINK(\"http://x\",\"y\")",
            ),
            ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "'\r=1"),
            ("+", "'+"),
            ("+0123456", "'+0123456"),
            ("+1 555 123 0001", "'+1 555 123 0001"),
            ("+1234567890123456", "'+1234567890123456"),
            ("+15551230001", "+15551230001"),
            ("+44201234567", "+44201234567"),
            ("sip:+15551230001@127.0.0.1", "sip:+15551230001@127.0.0.1"),
            ("Ann =1", "Ann =1"),
            ("", ""),
        ] {
            assert_eq!(neutralise_cell(raw), want, "{raw:?}");
        }
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
        let r = import_tickets(&db, csv.as_bytes(), "1", |_| {})
            .await
            .expect("import");
        assert_eq!(r.imported, 2, "{:?}", r.errors);
        let lines: Vec<usize> = r.errors.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, vec![3, 4, 5, 6, 7]);
        let again = import_tickets(
            &db,
            &b"order_id,phone\n5006,+15550001116\n"[..],
            "1",
            |_| {},
        )
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

    async fn sqlite(dir: &tempfile::TempDir) -> Db {
        Db::connect(&format!("sqlite://{}", dir.path().join("t.db").display()))
            .await
            .expect("db")
    }

    /// Hands out at most 100 bytes per read: the import must not need the whole file.
    struct Trickle<'a>(&'a [u8]);

    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(100).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[tokio::test]
    async fn import_accepts_an_excel_bom_and_streams_with_progress() {
        for eol in ["\r\n", "\n"] {
            let dir = tempfile::tempdir().expect("dir");
            let db = sqlite(&dir).await;
            // Excel "CSV UTF-8": BOM, CRLF line ends, quoted fields.
            let mut file = format!("\u{feff}order_id,customer_name,phone{eol}").into_bytes();
            for i in 0..2500 {
                file.extend(format!("{},\"Name, {i}\",+1555{i:07}{eol}", 10_000 + i).as_bytes());
            }
            // A blank line, a quoted name over two lines, a row in Latin-1 (not UTF-8),
            // a row with a field too many, blank lines again.
            file.extend(format!("{eol}20000,\"Two{eol}lines\",+15559990001{eol}").as_bytes());
            file.extend(b"20001,Jos\xe9,+15559990002");
            file.extend(format!("{eol}20002,José,+15559990003,x{eol}{eol}{eol}").as_bytes());
            file.extend(format!("20003,José,+15559990004{eol}").as_bytes());
            let mut seen = Vec::new();
            let r = import_tickets(&db, Trickle(&file), "1", |p| seen.push(p))
                .await
                .expect("import");
            // Line 1 header, 2..=2501 rows, 2502 blank, 2503-2504 the two-line row.
            let lines: Vec<usize> = r.errors.iter().map(|(l, _)| *l).collect();
            assert_eq!(lines, [2505, 2506], "{eol:?}: {:?}", r.errors);
            assert!(r.errors[0].1.contains("not UTF-8"), "{:?}", r.errors);
            assert!(
                r.errors[1].1.contains("4 fields, header has 3"),
                "{:?}",
                r.errors
            );
            assert_eq!(r.imported, 2502);
            let rows: Vec<u64> = seen.iter().map(|p| p.rows).collect();
            assert_eq!(rows, vec![1000, 2000, 2504]);
            assert!(seen.windows(2).all(|w| w[0].bytes < w[1].bytes), "{seen:?}");
            assert_eq!(seen.last().map(|p| p.bytes), Some(file.len() as u64));
            let name: String =
                sqlx::query("SELECT customer_name FROM tickets WHERE order_id = '20000'")
                    .fetch_one(&db.pool)
                    .await
                    .expect("row")
                    .try_get(0)
                    .expect("name");
            assert_eq!(name, format!("Two{eol}lines"));
        }
        let dir = tempfile::tempdir().expect("dir");
        let db = sqlite(&dir).await;
        let empty = import_tickets(&db, &b"\xef\xbb\xbf"[..], "1", |_| {})
            .await
            .expect("import");
        assert_eq!(empty.errors, [(1, "empty file".to_string())]);
    }

    #[tokio::test]
    async fn export_neutralises_formulas_from_callers() {
        let dir = tempfile::tempdir().expect("dir");
        let db = sqlite(&dir).await;
        for (id, call_id, from, caller) in [
            (
                "c1",
                "=1+1@evil",
                "=HYPERLINK(\"http://evil\",\"x\")",
                "@SUM(A1)",
            ),
            (
                "c2",
                "ok@host",
                "sip:+15551230001@127.0.0.1",
                "+15551230001",
            ),
            ("c3", "-3@host", "+cmd|' /C calc'!A0", "-1"),
        ] {
            sqlx::query(
                "INSERT INTO call_records (id, sip_call_id, direction, from_uri, to_uri, caller, started_at) \
                 VALUES ($1, $2, 'inbound', $3, 'sip:hotline@127.0.0.1', $4, $5)",
            )
            .bind(id)
            .bind(call_id)
            .bind(from)
            .bind(caller)
            .bind(format!("2026-11-23T08:00:0{}.000Z", &id[1..]))
            .execute(&db.pool)
            .await
            .expect("insert");
        }
        let mut out = Vec::new();
        assert_eq!(
            export_calls(&db, "2026-11-01", &mut out)
                .await
                .expect("export"),
            3
        );
        let mut rd = ::csv::Reader::from_reader(&out[..]);
        let cells: Vec<Vec<String>> = rd
            .records()
            .map(|r| r.expect("record").iter().map(str::to_string).collect())
            .collect();
        let pick = |row: usize| {
            (
                cells[row][1].as_str(),
                cells[row][3].as_str(),
                cells[row][5].as_str(),
            )
        };
        assert_eq!(
            pick(0),
            (
                "'=1+1@evil",
                "'=HYPERLINK(\"http://evil\",\"x\")",
                "'@SUM(A1)"
            )
        );
        assert_eq!(
            pick(1),
            ("ok@host", "sip:+15551230001@127.0.0.1", "+15551230001")
        );
        assert_eq!(pick(2), ("'-3@host", "'+cmd|' /C calc'!A0", "'-1"));
        // No cell of the file starts a formula.
        for row in &cells {
            for c in row {
                assert!(!c.starts_with(['=', '@', '-']), "{c:?}");
                assert!(!c.starts_with('+') || c == "+15551230001", "{c:?}");
            }
        }
    }
}
