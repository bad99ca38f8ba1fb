//! Ticket reads for the IVR: by calling number and by order id.
//!
//! Tickets are owned by other systems too; these reads take what is there at the moment of
//! the call, so a ticket inserted by another program is found by the next call.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

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
/// `00` international prefixes become `+`; a national number gets `default_cc`.
pub fn normalize_number(raw: &str, default_cc: &str) -> Option<String> {
    let raw = raw.trim();
    let plus = raw.starts_with('+');
    let digits: String = raw.chars().filter(|c| c.is_ascii_digit()).collect();
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    // Anything but digits and visual separators means it is not a number (e.g. "anonymous").
    if raw
        .chars()
        .any(|c| !(c.is_ascii_digit() || "+-(). ".contains(c)))
    {
        return None;
    }
    if plus {
        return Some(format!("+{digits}"));
    }
    if let Some(rest) = digits.strip_prefix("00") {
        return Some(format!("+{rest}"));
    }
    if default_cc == "1" && digits.len() == 11 && digits.starts_with('1') {
        return Some(format!("+{digits}"));
    }
    if digits.len() >= 10 && default_cc == "1" {
        return Some(format!("+1{digits}"));
    }
    Some(format!("+{default_cc}{}", digits.trim_start_matches('0')))
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
}
