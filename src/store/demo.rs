//! Demo tickets loaded at start (unless `--no-demo-data`), so a newcomer can call the hotline
//! and hear real answers. Inserting is idempotent by `order_id`; existing rows are untouched.

use super::{now_ts, Db, StoreError};

pub struct DemoTicket {
    pub order_id: &'static str,
    pub customer_name: &'static str,
    pub phone: &'static str,
    pub language: &'static str,
    pub segment: &'static str,
    pub timezone: &'static str,
    pub status: &'static str,
    pub delay_days: i64,
}

/// Order ids are digits so they can be keyed in on a phone.
pub const DEMO_TICKETS: &[DemoTicket] = &[
    DemoTicket {
        order_id: "1001",
        customer_name: "Alice Example",
        phone: "+15551230001",
        language: "en",
        segment: "standard",
        timezone: "America/New_York",
        status: "delayed",
        delay_days: 5,
    },
    DemoTicket {
        order_id: "1002",
        customer_name: "Bob Example",
        phone: "+15551230002",
        language: "en",
        segment: "vip",
        timezone: "America/Chicago",
        status: "delayed",
        delay_days: 12,
    },
    DemoTicket {
        order_id: "1003",
        customer_name: "Carol Example",
        phone: "+15551230003",
        language: "en",
        segment: "standard",
        timezone: "America/Los_Angeles",
        status: "shipped",
        delay_days: 0,
    },
    DemoTicket {
        order_id: "1004",
        customer_name: "Dan Example",
        phone: "+15551230004",
        language: "en",
        segment: "standard",
        timezone: "Europe/London",
        status: "processing",
        delay_days: 0,
    },
    DemoTicket {
        order_id: "1005",
        customer_name: "Erin Example",
        phone: "+15551230005",
        language: "en",
        segment: "standard",
        timezone: "America/Denver",
        status: "delivered",
        delay_days: 0,
    },
    DemoTicket {
        order_id: "2001",
        customer_name: "Wang Fang",
        phone: "+8613800138001",
        language: "zh",
        segment: "standard",
        timezone: "Asia/Shanghai",
        status: "delayed",
        delay_days: 3,
    },
    DemoTicket {
        order_id: "2002",
        customer_name: "Li Wei",
        phone: "+8613800138002",
        language: "zh",
        segment: "vip",
        timezone: "Asia/Shanghai",
        status: "shipped",
        delay_days: 0,
    },
    DemoTicket {
        order_id: "1006",
        customer_name: "Frank Example",
        phone: "+15551230006",
        language: "en",
        segment: "standard",
        timezone: "America/New_York",
        status: "delayed",
        delay_days: 1,
    },
];

/// Insert the demo tickets that are missing. Returns how many were inserted.
pub async fn load(db: &Db) -> Result<u64, StoreError> {
    let today = chrono::Utc::now().date_naive();
    let sql = format!(
        "INSERT INTO tickets (order_id, customer_name, phone, language, segment, timezone, status, delay_days, new_eta, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, {}, {}) ON CONFLICT (order_id) DO NOTHING",
        db.dialect.date(9),
        db.dialect.ts(10)
    );
    let mut inserted = 0;
    for t in DEMO_TICKETS {
        let eta = today + chrono::Days::new(3 + t.delay_days as u64);
        let r = sqlx::query(&sql)
            .bind(t.order_id)
            .bind(t.customer_name)
            .bind(t.phone)
            .bind(t.language)
            .bind(t.segment)
            .bind(t.timezone)
            .bind(t.status)
            .bind(t.delay_days)
            .bind(eta.format("%Y-%m-%d").to_string())
            .bind(now_ts())
            .execute(&db.pool)
            .await?;
        inserted += r.rows_affected();
    }
    Ok(inserted)
}
