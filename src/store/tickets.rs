//! Ticket reads for the IVR: by calling number and by order id.
//!
//! Tickets are owned by other systems too; these reads take what is there at the moment of
//! the call, so a ticket inserted by another program is found by the next call.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use phonenumber::Mode;
use sqlx::Row;

use super::{Db, StoreError};

/// Why a lookup made during a call has no answer: the call then takes its "unavailable"
/// path instead of waiting (docs/dialplan.md `lookup_ticket`).
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No answer within the budget: PostgreSQL stopped or unreachable (the pool keeps
    /// trying to connect until its own 5 s acquire timeout), a lock held, a slow disk.
    #[error("no answer from the database within {0:?}")]
    Timeout(Duration),
}

/// Run a ticket read for a call, giving up after `budget`. The read is dropped (cancelled)
/// at the deadline, so it never delivers a late answer to a call that has moved on.
pub async fn within<F>(
    budget: Duration,
    read: F,
) -> Result<Option<HashMap<String, String>>, LookupError>
where
    F: Future<Output = Result<Option<HashMap<String, String>>, StoreError>>,
{
    match tokio::time::timeout(budget, read).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(LookupError::Timeout(budget)),
    }
}

/// Bring a calling number to E.164 (`+` and digits) so it matches `tickets.phone`.
///
/// Parsed by libphonenumber's rules (the `phonenumber` crate's metadata): a national number is
/// read as a number of the main country of `default_cc` (e.g. `1` → US, `44` → GB, `39` → IT),
/// so the national trunk prefix is removed only where that country's plan says so (UK
/// `020…` → `+4420…`, but Italy keeps its 0: `06…` → `+3906…`). `+` numbers and the country's
/// own international prefix (`011` from the US, `00` from most others) are read as
/// international; `00` is also read as international for every country, as it always was here
/// (no NANP number starts with 0). The number is not required to be *assigned* (demo and test
/// numbers such as `+1 555 123 0001` normalise), only well formed. None for anything that is
/// not a number (`anonymous`, empty, letters) or that the country's plan cannot read.
pub fn normalize_number(raw: &str, default_cc: &str) -> Option<String> {
    let raw = raw.trim();
    let digits = raw.chars().filter(char::is_ascii_digit).count();
    if digits == 0 || digits > 17 {
        return None;
    }
    // Anything but digits and visual separators means it is not a number (e.g. "anonymous");
    // libphonenumber would read letters as a vanity number, which a caller ID never is.
    if raw
        .chars()
        .any(|c| !(c.is_ascii_digit() || "+-(). ".contains(c)))
    {
        return None;
    }
    let compact: String = raw
        .chars()
        .filter(|c| *c == '+' || c.is_ascii_digit())
        .collect();
    let text = match compact.strip_prefix("00") {
        Some(rest) if !rest.is_empty() => format!("+{rest}"),
        _ => compact,
    };
    // An international number is read without a default region: given one, the crate strips
    // that region's trunk prefix from the other country's number (`+39 06…` read with GB
    // would lose Italy's 0).
    let region = if text.starts_with('+') {
        None
    } else {
        default_region(default_cc)
    };
    let number = phonenumber::parse(region, &text).ok()?;
    let mut out = String::new();
    // The formatter fails (instead of panicking through `to_string`) on an unknown country code.
    fmt::write(
        &mut out,
        format_args!("{}", number.format().mode(Mode::E164)),
    )
    .ok()?;
    let e164_digits = out.strip_prefix('+')?;
    (!e164_digits.is_empty()
        && e164_digits.len() <= 15
        && e164_digits.bytes().all(|b| b.is_ascii_digit()))
    .then_some(out)
}

/// The main region of a country calling code (`"1"` → US, `"44"` → GB), for reading national
/// numbers. None for a code the metadata does not know (then only `+` numbers parse).
fn default_region(cc: &str) -> Option<phonenumber::country::Id> {
    let code: u16 = cc.trim().trim_start_matches('+').parse().ok()?;
    let regions = phonenumber::metadata::DATABASE.region(&code)?;
    // The database lists the code's main country first.
    regions.first()?.parse().ok()
}

const COLUMNS: &str =
    "id, order_id, customer_name, phone, language, segment, timezone, status, delay_days, \
                       CAST(new_eta AS TEXT) AS new_eta, resolution";

fn row_to_map(row: &sqlx::any::AnyRow) -> Result<HashMap<String, String>, sqlx::Error> {
    let mut m = HashMap::new();
    m.insert("id".into(), row.try_get::<i64, _>("id")?.to_string());
    for col in [
        "order_id",
        "customer_name",
        "phone",
        "language",
        "segment",
        "timezone",
        "status",
    ] {
        m.insert(col.into(), row.try_get::<String, _>(col)?);
    }
    m.insert(
        "delay_days".into(),
        row.try_get::<i64, _>("delay_days")?.to_string(),
    );
    m.insert(
        "new_eta".into(),
        row.try_get::<Option<String>, _>("new_eta")?
            .unwrap_or_default(),
    );
    m.insert(
        "resolution".into(),
        row.try_get::<Option<String>, _>("resolution")?
            .unwrap_or_default(),
    );
    Ok(m)
}

/// The ticket a caller most likely calls about: an unresolved delayed one first, then any
/// unresolved one, then the most recent.
pub async fn by_phone(db: &Db, phone: &str) -> Result<Option<HashMap<String, String>>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM tickets WHERE phone = $1 ORDER BY \
         CASE WHEN status = 'delayed' AND resolution IS NULL THEN 0 WHEN resolution IS NULL THEN 1 ELSE 2 END, id DESC LIMIT 1"
    );
    let row = sqlx::query(&sql)
        .bind(phone)
        .fetch_optional(&db.pool)
        .await?;
    Ok(row.as_ref().map(row_to_map).transpose()?)
}

pub async fn by_order_id(
    db: &Db,
    order_id: &str,
) -> Result<Option<HashMap<String, String>>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM tickets WHERE order_id = $1");
    let row = sqlx::query(&sql)
        .bind(order_id)
        .fetch_optional(&db.pool)
        .await?;
    Ok(row.as_ref().map(row_to_map).transpose()?)
}

/// One ticket by id (the dialer reads it just before calling, so the notice is current).
pub async fn by_id(db: &Db, id: i64) -> Result<Option<HashMap<String, String>>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM tickets WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(&db.pool).await?;
    Ok(row.as_ref().map(row_to_map).transpose()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_read_that_does_not_answer_in_time_is_given_up() {
        let slow = async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(None)
        };
        let t0 = std::time::Instant::now();
        let r = within(Duration::from_millis(100), slow).await;
        assert!(matches!(r, Err(LookupError::Timeout(_))), "{r:?}");
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(100) && took < Duration::from_secs(5),
            "{took:?}"
        );
        let quick = async { Ok(Some(HashMap::new())) };
        assert!(matches!(
            within(Duration::from_millis(100), quick).await,
            Ok(Some(_))
        ));
    }

    #[test]
    fn normalizes_numbers() {
        assert_eq!(
            normalize_number("+1 (555) 123-0001", "1").as_deref(),
            Some("+15551230001")
        );
        assert_eq!(
            normalize_number("15551230001", "1").as_deref(),
            Some("+15551230001")
        );
        assert_eq!(
            normalize_number("5551230001", "1").as_deref(),
            Some("+15551230001")
        );
        assert_eq!(
            normalize_number("0044201234567", "1").as_deref(),
            Some("+44201234567")
        );
        assert_eq!(
            normalize_number("02012345678", "44").as_deref(),
            Some("+442012345678")
        );
        assert_eq!(normalize_number("anonymous", "1"), None);
        assert_eq!(normalize_number("", "1"), None);
    }

    /// libphonenumber rules per country: the national trunk prefix goes only where the plan
    /// drops it. Italy keeps its leading 0 (`+39 06…`), which the old "strip every leading 0
    /// after a non-US country code" rule got wrong.
    #[test]
    fn normalizes_by_each_countrys_plan() {
        let n = |raw: &str, cc: &str| normalize_number(raw, cc);
        // Italy: a Rome landline keeps its 0, nationally and internationally written.
        assert_eq!(n("06 6982 1234", "39").as_deref(), Some("+390669821234"));
        assert_eq!(n("+39 06 6982 1234", "1").as_deref(), Some("+390669821234"));
        assert_eq!(
            n("0039 06 6982 1234", "44").as_deref(),
            Some("+390669821234")
        );
        // Italian mobiles have no 0.
        assert_eq!(n("312 345 6789", "39").as_deref(), Some("+393123456789"));
        // UK and Germany: trunk 0 dropped.
        assert_eq!(n("020 7946 0018", "44").as_deref(), Some("+442079460018"));
        assert_eq!(n("030 1234567", "49").as_deref(), Some("+49301234567"));
        // China: trunk 0 dropped from a Beijing landline.
        assert_eq!(n("010 1234 5678", "86").as_deref(), Some("+861012345678"));
        // Australia (Sydney landline), Brazil (São Paulo mobile).
        assert_eq!(n("(02) 9374 4000", "61").as_deref(), Some("+61293744000"));
        assert_eq!(
            n("+55 11 91234-5678", "1").as_deref(),
            Some("+5511912345678")
        );
        // The US international prefix 011, and a Canadian number from the US default.
        assert_eq!(
            n("011 44 20 7946 0018", "1").as_deref(),
            Some("+442079460018")
        );
        assert_eq!(n("1 (416) 555-0199", "1").as_deref(), Some("+14165550199"));
        // Not numbers.
        assert_eq!(n("+", "1"), None);
        assert_eq!(n("sip:alice", "1"), None);
        assert_eq!(n("12345678901234567890", "1"), None);
    }
}
