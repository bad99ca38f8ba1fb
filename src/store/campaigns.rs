//! Campaign persistence: campaigns, their contact lists, dial attempts and do-not-call.
//!
//! The rule "never dial the same contact twice for one attempt, also across restart and
//! kill -9" lives here: [`claim`] inserts the attempt row (unique per contact and attempt
//! number) and moves the contact to `dialing` in one transaction, guarded by the contact's
//! current state and attempt count (compare-and-set), before any INVITE is sent. A crash
//! after the claim leaves the contact `dialing`; [`recover_interrupted`] turns those into
//! counted, failed attempts that the retry policy schedules, never a silent re-dial.
//!
//! Several nodes on one PostgreSQL share campaigns through leases (`lease_owner`,
//! `lease_expires_at`; docs/adr/0007-cluster-state.md): [`due`] reserves a batch of due
//! contacts for this node with `FOR UPDATE SKIP LOCKED`, so nodes do not fight over the same
//! rows; [`claim`] (still the compare-and-set that makes an attempt happen once) makes this
//! node the owner of the dialing contact, and the node's heartbeat renews that lease. A node
//! that dies stops renewing: once it is declared dead and the lease has run out, a survivor
//! takes the contact over ([`take_orphans`]) and closes the attempt as interrupted, exactly
//! what a restart does with its own. SQLite serves one node: the leases are written but
//! never contended.

use sqlx::Row;

use super::{now_ts, Db, StoreError};

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CampaignRow {
    pub id: i64,
    pub name: String,
    pub dialplan: String,
    pub trunk: String,
    pub caller_id: String,
    pub state: String,
    pub spec: serde_json::Value,
    pub created_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ContactRow {
    pub id: i64,
    pub campaign_id: i64,
    pub ticket_id: i64,
    pub phone: String,
    pub timezone: String,
    pub priority: i64,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    pub last_disposition: Option<String>,
    pub outcome: Option<String>,
    pub last_call_id: Option<String>,
    /// SMS fallback: `pending`, `sending`, `sent` or `failed`; None: no SMS for this contact.
    pub sms: Option<String>,
    /// Why the SMS's last try failed (`failed`, or a retry pending).
    pub sms_error: Option<String>,
}

/// Which tickets a campaign calls.
#[derive(Debug, Clone, Default)]
pub struct TicketFilter {
    pub status: Option<String>,
    pub min_delay_days: Option<i64>,
    pub segment: Option<String>,
    pub ticket_ids: Option<Vec<i64>>,
    /// Skip tickets that already have a resolution (default).
    pub unresolved_only: bool,
}

/// The `campaigns` row of a new campaign (inside the caller's transaction); its id.
#[allow(clippy::too_many_arguments)]
async fn insert_campaign(
    db: &Db,
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    name: &str,
    dialplan: &str,
    trunk: &str,
    caller_id: &str,
    spec: &serde_json::Value,
    now: &str,
) -> Result<i64, StoreError> {
    let d = db.dialect;
    let sql = format!(
        "INSERT INTO campaigns (name, dialplan, trunk, caller_id, spec, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, {}, {})",
        d.ts(6),
        d.ts(7)
    );
    sqlx::query(&sql)
        .bind(name)
        .bind(dialplan)
        .bind(trunk)
        .bind(caller_id)
        .bind(spec.to_string())
        .bind(now)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(sqlx::query("SELECT id FROM campaigns WHERE name = $1")
        .bind(name)
        .fetch_one(&mut **tx)
        .await?
        .try_get("id")?)
}

/// What a campaign from checked CSV rows would hold, without writing anything: contacts
/// per segment (an order id already in the database counts with its stored ticket's
/// segment: that ticket is used as it is), and how many tickets are new or exist.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CsvPreview {
    pub contacts: u64,
    pub segments: std::collections::BTreeMap<String, u64>,
    pub new_tickets: u64,
    pub existing_tickets: u64,
}

/// Order ids already in `tickets` among `rows`, with their id and segment (looked up in
/// chunks so that no statement has too many parameters).
async fn existing_tickets<'e, E>(
    exec: &mut E,
    rows: &[crate::store::csv::TicketRow],
) -> Result<std::collections::HashMap<String, (i64, String)>, StoreError>
where
    for<'c> &'c mut E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let mut found = std::collections::HashMap::new();
    for chunk in rows.chunks(500) {
        let list: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT id, order_id, segment FROM tickets WHERE order_id IN ({})",
            list.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for r in chunk {
            q = q.bind(&r.order_id);
        }
        for r in q.fetch_all(&mut *exec).await? {
            found.insert(
                r.try_get::<String, _>("order_id")?,
                (
                    r.try_get::<i64, _>("id")?,
                    r.try_get::<String, _>("segment")?,
                ),
            );
        }
    }
    Ok(found)
}

/// The preview of [`create_from_rows`]: nothing is written.
pub async fn preview_rows(
    db: &Db,
    rows: &[crate::store::csv::TicketRow],
) -> Result<CsvPreview, StoreError> {
    let mut conn = db.pool.acquire().await?;
    let existing = existing_tickets(&mut *conn, rows).await?;
    let mut p = CsvPreview::default();
    for r in rows {
        let segment = match existing.get(&r.order_id) {
            Some((_, seg)) => {
                p.existing_tickets += 1;
                seg.clone()
            }
            None => {
                p.new_tickets += 1;
                r.segment.clone()
            }
        };
        p.contacts += 1;
        *p.segments.entry(segment).or_default() += 1;
    }
    Ok(p)
}

/// Insert a campaign whose contacts are CSV rows, in one transaction: new order ids become
/// tickets, existing ones are used as stored (never overwritten), every row one contact.
/// Returns the id and the preview of what was written.
#[allow(clippy::too_many_arguments)]
pub async fn create_from_rows(
    db: &Db,
    name: &str,
    dialplan: &str,
    trunk: &str,
    caller_id: &str,
    spec: &serde_json::Value,
    rows: &[crate::store::csv::TicketRow],
    priorities: &[(String, i64)],
    default_priority: i64,
) -> Result<(i64, CsvPreview), StoreError> {
    let now = now_ts();
    let mut tx = db.pool.begin().await?;
    let id = insert_campaign(db, &mut tx, name, dialplan, trunk, caller_id, spec, &now).await?;
    let existing = existing_tickets(&mut *tx, rows).await?;
    let ticket_sql = crate::store::csv::insert_ticket_sql(db);
    let contact_sql = format!(
        "INSERT INTO campaign_contacts (campaign_id, ticket_id, phone, timezone, priority, segment, updated_at) \
         SELECT $1, id, phone, timezone, $2, segment, {} FROM tickets WHERE order_id = $3",
        db.dialect.ts(4)
    );
    let mut p = CsvPreview::default();
    for r in rows {
        let segment = match existing.get(&r.order_id) {
            Some((_, seg)) => {
                p.existing_tickets += 1;
                seg.clone()
            }
            None => {
                crate::store::csv::bind_ticket(&ticket_sql, r, now.clone())
                    .execute(&mut *tx)
                    .await?;
                p.new_tickets += 1;
                r.segment.clone()
            }
        };
        let priority = priorities
            .iter()
            .find(|(s, _)| *s == segment)
            .map_or(default_priority, |(_, p)| *p);
        p.contacts += sqlx::query(&contact_sql)
            .bind(id)
            .bind(priority)
            .bind(&r.order_id)
            .bind(&now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        *p.segments.entry(segment).or_default() += 1;
    }
    tx.commit().await?;
    Ok((id, p))
}

/// Insert a campaign and build its contact list from the tickets in one transaction.
#[allow(clippy::too_many_arguments)]
/// `priorities` maps a segment to its priority (lower first); others get `default_priority`.
pub async fn create(
    db: &Db,
    name: &str,
    dialplan: &str,
    trunk: &str,
    caller_id: &str,
    spec: &serde_json::Value,
    filter: &TicketFilter,
    priorities: &[(String, i64)],
    default_priority: i64,
) -> Result<(i64, u64), StoreError> {
    let d = db.dialect;
    let now = now_ts();
    let mut tx = db.pool.begin().await?;
    let id = insert_campaign(db, &mut tx, name, dialplan, trunk, caller_id, spec, &now).await?;

    // Priority: a CASE over the segment rules (values are bound, never spliced).
    let mut case = String::from("CASE");
    let mut n = 3;
    for _ in priorities {
        case.push_str(&format!(" WHEN segment = ${} THEN ${}", n, n + 1));
        n += 2;
    }
    if priorities.is_empty() {
        // Cast so PostgreSQL does not have to guess a bare parameter's type.
        case = format!("CAST(${n} AS BIGINT)");
    } else {
        case.push_str(&format!(" ELSE ${n} END"));
    }
    n += 1;
    let mut conds = Vec::new();
    if filter.status.is_some() {
        conds.push(format!("status = ${n}"));
        n += 1;
    }
    if filter.min_delay_days.is_some() {
        conds.push(format!("delay_days >= ${n}"));
        n += 1;
    }
    if filter.segment.is_some() {
        conds.push(format!("segment = ${n}"));
        n += 1;
    }
    if let Some(ids) = &filter.ticket_ids {
        let list: Vec<String> = (0..ids.len()).map(|i| format!("${}", n + i)).collect();
        conds.push(format!(
            "id IN ({})",
            if list.is_empty() {
                "NULL".to_string()
            } else {
                list.join(", ")
            }
        ));
    }
    if filter.unresolved_only {
        conds.push("resolution IS NULL".into());
    }
    let where_clause = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    };
    let sql = format!(
        "INSERT INTO campaign_contacts (campaign_id, ticket_id, phone, timezone, priority, segment, updated_at) \
         SELECT $1, id, phone, timezone, {case}, segment, {} FROM tickets {where_clause}",
        d.ts(2)
    );
    let mut q = sqlx::query(&sql).bind(id).bind(&now);
    for (seg, prio) in priorities {
        q = q.bind(seg.clone()).bind(*prio);
    }
    q = q.bind(default_priority);
    if let Some(s) = &filter.status {
        q = q.bind(s.clone());
    }
    if let Some(m) = filter.min_delay_days {
        q = q.bind(m);
    }
    if let Some(s) = &filter.segment {
        q = q.bind(s.clone());
    }
    if let Some(ids) = &filter.ticket_ids {
        for i in ids {
            q = q.bind(*i);
        }
    }
    let inserted = q.execute(&mut *tx).await?.rows_affected();
    tx.commit().await?;
    Ok((id, inserted))
}

const CAMPAIGN_COLUMNS: &str =
    "id, name, dialplan, trunk, caller_id, state, spec, CAST(created_at AS TEXT) AS created_at, \
     CAST(started_at AS TEXT) AS started_at, CAST(ended_at AS TEXT) AS ended_at";

fn campaign_from(r: &sqlx::any::AnyRow) -> Result<CampaignRow, sqlx::Error> {
    let spec: String = r.try_get("spec")?;
    Ok(CampaignRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        dialplan: r.try_get("dialplan")?,
        trunk: r.try_get("trunk")?,
        caller_id: r.try_get("caller_id")?,
        state: r.try_get("state")?,
        spec: serde_json::from_str(&spec).unwrap_or(serde_json::Value::Null),
        created_at: r.try_get("created_at")?,
        started_at: r.try_get("started_at")?,
        ended_at: r.try_get("ended_at")?,
    })
}

pub async fn get(db: &Db, id: i64) -> Result<Option<CampaignRow>, StoreError> {
    let r = sqlx::query(&format!(
        "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&db.pool)
    .await?;
    Ok(r.as_ref().map(campaign_from).transpose()?)
}

pub async fn list(db: &Db) -> Result<Vec<CampaignRow>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {CAMPAIGN_COLUMNS} FROM campaigns ORDER BY id"
    ))
    .fetch_all(&db.pool)
    .await?;
    Ok(rows
        .iter()
        .map(campaign_from)
        .collect::<Result<Vec<_>, _>>()?)
}

pub async fn by_state(db: &Db, state: &str) -> Result<Vec<CampaignRow>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE state = $1 ORDER BY id"
    ))
    .bind(state)
    .fetch_all(&db.pool)
    .await?;
    Ok(rows
        .iter()
        .map(campaign_from)
        .collect::<Result<Vec<_>, _>>()?)
}

/// A campaign's state (`created`, `running`, `paused`, `stopped`, `completed`), or None when
/// it does not exist. Runners re-read it to follow a pause or stop made through another
/// node's API.
pub async fn state(db: &Db, id: i64) -> Result<Option<String>, StoreError> {
    let r = sqlx::query("SELECT state FROM campaigns WHERE id = $1")
        .bind(id)
        .fetch_optional(&db.pool)
        .await?;
    Ok(r.map(|r| r.try_get("state")).transpose()?)
}

/// Move a campaign between states; `from` guards the transition. Returns false when the
/// campaign was not in one of `from`.
pub async fn set_state(db: &Db, id: i64, from: &[&str], to: &str) -> Result<bool, StoreError> {
    let d = db.dialect;
    let placeholders: Vec<String> = (0..from.len()).map(|i| format!("${}", i + 4)).collect();
    let extra = match to {
        "running" => format!(", started_at = COALESCE(started_at, {})", d.ts(3)),
        "stopped" | "completed" => format!(", ended_at = {}", d.ts(3)),
        _ => String::new(),
    };
    let sql = format!(
        "UPDATE campaigns SET state = $1, updated_at = {}{extra} WHERE id = $2 AND state IN ({})",
        d.ts(3),
        placeholders.join(", ")
    );
    let mut q = sqlx::query(&sql).bind(to).bind(id).bind(now_ts());
    for f in from {
        q = q.bind(*f);
    }
    Ok(q.execute(&db.pool).await?.rows_affected() == 1)
}

const CONTACT_COLUMNS: &str =
    "id, campaign_id, ticket_id, phone, timezone, priority, state, attempts, \
     CAST(next_attempt_at AS TEXT) AS next_attempt_at, last_disposition, outcome, last_call_id, \
     (SELECT s.state FROM campaign_sms s WHERE s.contact_id = campaign_contacts.id) AS sms, \
     (SELECT s.last_error FROM campaign_sms s WHERE s.contact_id = campaign_contacts.id) AS sms_error";

fn contact_from(r: &sqlx::any::AnyRow) -> Result<ContactRow, sqlx::Error> {
    Ok(ContactRow {
        id: r.try_get("id")?,
        campaign_id: r.try_get("campaign_id")?,
        ticket_id: r.try_get("ticket_id")?,
        phone: r.try_get("phone")?,
        timezone: r.try_get("timezone")?,
        priority: r.try_get("priority")?,
        state: r.try_get("state")?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        last_disposition: r.try_get("last_disposition")?,
        outcome: r.try_get("outcome")?,
        last_call_id: r.try_get("last_call_id")?,
        sms: r.try_get("sms")?,
        sms_error: r.try_get("sms_error")?,
    })
}

/// Which of a campaign's contacts a listing shows (every filter optional).
#[derive(Debug, Clone, Default)]
pub struct ContactFilter {
    pub state: Option<String>,
    /// The ticket's segment.
    pub segment: Option<String>,
    /// The outcome key: the IVR choice, else how the last attempt ended.
    pub outcome: Option<String>,
}

/// A contact as listed: the row plus its ticket's order id, name and segment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ContactListRow {
    #[serde(flatten)]
    pub contact: ContactRow,
    pub order_id: Option<String>,
    pub customer_name: Option<String>,
    pub segment: Option<String>,
}

/// `WHERE` conditions of a filter, parameters from `$2` (`$1` is the campaign).
fn contact_conditions(f: &ContactFilter) -> (String, Vec<String>) {
    let mut conds = vec!["campaign_id = $1".to_string()];
    let mut binds = Vec::new();
    let mut n = 2;
    for (value, cond) in [
        (&f.state, "state = ${}"),
        (
            &f.segment,
            // The contact's copy of its ticket's segment (0015), else the ticket's.
            "COALESCE(segment, (SELECT t.segment FROM tickets t WHERE t.id = ticket_id)) = ${}",
        ),
        (&f.outcome, "COALESCE(outcome, last_disposition) = ${}"),
    ] {
        if let Some(v) = value {
            conds.push(cond.replace("${}", &format!("${n}")));
            binds.push(v.clone());
            n += 1;
        }
    }
    (conds.join(" AND "), binds)
}

/// One page of a campaign's contacts in id order.
pub async fn contacts(
    db: &Db,
    campaign: i64,
    filter: &ContactFilter,
    limit: i64,
    offset: i64,
) -> Result<Vec<ContactListRow>, StoreError> {
    let (cond, binds) = contact_conditions(filter);
    let n = binds.len() + 2;
    let sql = format!(
        "SELECT x.*, t.order_id AS order_id, t.customer_name AS customer_name, t.segment AS segment FROM \
         (SELECT {CONTACT_COLUMNS} FROM campaign_contacts WHERE {cond} ORDER BY id LIMIT ${n} OFFSET ${}) x \
         LEFT JOIN tickets t ON t.id = x.ticket_id ORDER BY x.id",
        n + 1
    );
    let mut q = sqlx::query(&sql).bind(campaign);
    for b in &binds {
        q = q.bind(b.clone());
    }
    let rows = q.bind(limit).bind(offset).fetch_all(&db.pool).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(ContactListRow {
            contact: contact_from(r)?,
            order_id: r.try_get("order_id")?,
            customer_name: r.try_get("customer_name")?,
            segment: r.try_get("segment")?,
        });
    }
    Ok(out)
}

/// How many contacts a filter matches (for paging).
pub async fn count_contacts(
    db: &Db,
    campaign: i64,
    filter: &ContactFilter,
) -> Result<i64, StoreError> {
    let (cond, binds) = contact_conditions(filter);
    let sql = format!("SELECT CAST(COUNT(*) AS BIGINT) AS n FROM campaign_contacts WHERE {cond}");
    let mut q = sqlx::query(&sql).bind(campaign);
    for b in &binds {
        q = q.bind(b.clone());
    }
    Ok(q.fetch_one(&db.pool).await?.try_get("n")?)
}

/// Who leases contacts, and for how long a lease lasts without renewal.
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    pub node: &'a str,
    pub ttl_s: i64,
}

/// Other nodes alive by their heartbeat (PostgreSQL; `$n` is minus the dead-after seconds).
fn other_live_nodes(db: &Db, me: usize, n: usize) -> String {
    format!(
        "SELECT 1 FROM nodes WHERE node_id <> ${me} AND state IN ('running', 'draining') AND heartbeat_at >= {}",
        db.dialect.now_plus(n)
    )
}

/// Contacts that may be due now: pending, or retry whose time has come. Window, DNC and caps
/// are checked by the dialer core on each candidate.
///
/// On PostgreSQL the batch is reserved for `lease.node` (rows another node reserved and whose
/// reservation has not run out are skipped, and rows being reserved right now by another
/// node are skipped rather than waited for: `FOR UPDATE SKIP LOCKED`). A reservation only
/// spreads work: [`claim`] decides who dials.
pub async fn due(
    db: &Db,
    campaign: i64,
    now: &str,
    limit: i64,
    lease: Lease<'_>,
) -> Result<Vec<ContactRow>, StoreError> {
    if db.dialect == super::Dialect::Postgres {
        let sql = format!(
            "UPDATE campaign_contacts SET lease_owner = $4, lease_expires_at = {exp} \
             WHERE id IN (SELECT id FROM campaign_contacts WHERE campaign_id = $1 AND \
               state IN ('pending', 'retry') AND (next_attempt_at IS NULL OR next_attempt_at <= {ts}) \
               AND (lease_owner IS NULL OR lease_owner = $4 OR lease_expires_at IS NULL OR lease_expires_at < now()) \
               ORDER BY priority, id LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING {CONTACT_COLUMNS}",
            exp = db.dialect.now_plus(5),
            ts = db.dialect.ts(2)
        );
        let rows = sqlx::query(&sql)
            .bind(campaign)
            .bind(now)
            .bind(limit)
            .bind(lease.node)
            .bind(lease.ttl_s)
            .fetch_all(&db.pool)
            .await?;
        let mut out = rows
            .iter()
            .map(contact_from)
            .collect::<Result<Vec<_>, _>>()?;
        // RETURNING has no order.
        out.sort_by_key(|c| (c.priority, c.id));
        return Ok(out);
    }
    let sql = format!(
        "SELECT {CONTACT_COLUMNS} FROM campaign_contacts WHERE campaign_id = $1 AND \
         state IN ('pending', 'retry') AND (next_attempt_at IS NULL OR next_attempt_at <= {}) ORDER BY priority, id LIMIT $3",
        db.dialect.ts(2)
    );
    let rows = sqlx::query(&sql)
        .bind(campaign)
        .bind(now)
        .bind(limit)
        .fetch_all(&db.pool)
        .await?;
    Ok(rows
        .iter()
        .map(contact_from)
        .collect::<Result<Vec<_>, _>>()?)
}

/// PostgreSQL: give back the contacts `node` reserved ([`due`]) but has not claimed, when
/// its runner stops (pause, stop, drain), so another node may take them at once rather than
/// after the reservation runs out. SQLite: nothing to do (one node, no reservations).
pub async fn release_reservations(db: &Db, campaign: i64, node: &str) -> Result<u64, StoreError> {
    if db.dialect != super::Dialect::Postgres {
        return Ok(0);
    }
    Ok(sqlx::query(
        "UPDATE campaign_contacts SET lease_owner = NULL, lease_expires_at = NULL \
         WHERE campaign_id = $1 AND lease_owner = $2 AND state IN ('pending', 'retry')",
    )
    .bind(campaign)
    .bind(node)
    .execute(&db.pool)
    .await?
    .rows_affected())
}

/// Counts by state and by outcome for progress reports.
pub async fn progress(
    db: &Db,
    campaign: i64,
) -> Result<(Vec<(String, i64)>, Vec<(String, i64)>), StoreError> {
    let states = sqlx::query("SELECT state, COUNT(*) AS n FROM campaign_contacts WHERE campaign_id = $1 GROUP BY state ORDER BY state")
        .bind(campaign)
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get::<String, _>("state")?, r.try_get::<i64, _>("n")?)))
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let outcomes = sqlx::query(
        "SELECT COALESCE(outcome, last_disposition) AS o, COUNT(*) AS n FROM campaign_contacts \
         WHERE campaign_id = $1 AND (outcome IS NOT NULL OR last_disposition IS NOT NULL) GROUP BY COALESCE(outcome, last_disposition) ORDER BY 1",
    )
    .bind(campaign)
    .fetch_all(&db.pool)
    .await?
    .iter()
    .map(|r| Ok((r.try_get::<String, _>("o")?, r.try_get::<i64, _>("n")?)))
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok((states, outcomes))
}

/// Attempts on a number in the last 30 days, across all campaigns.
pub async fn attempts_last_30_days(db: &Db, phone: &str, since: &str) -> Result<i64, StoreError> {
    let sql = format!(
        "SELECT COUNT(*) AS n FROM campaign_attempts WHERE phone = $1 AND started_at >= {}",
        db.dialect.ts(2)
    );
    Ok(sqlx::query(&sql)
        .bind(phone)
        .bind(since)
        .fetch_one(&db.pool)
        .await?
        .try_get("n")?)
}

pub async fn on_dnc(db: &Db, phone: &str) -> Result<bool, StoreError> {
    Ok(
        sqlx::query("SELECT 1 AS x FROM do_not_call WHERE phone = $1")
            .bind(phone)
            .fetch_optional(&db.pool)
            .await?
            .is_some(),
    )
}

pub async fn add_dnc(db: &Db, phone: &str, reason: &str) -> Result<(), StoreError> {
    let sql = format!("INSERT INTO do_not_call (phone, reason, added_at) VALUES ($1, $2, {}) ON CONFLICT (phone) DO NOTHING", db.dialect.ts(3));
    sqlx::query(&sql)
        .bind(phone)
        .bind(reason)
        .bind(now_ts())
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Postpone a contact that may not be dialed yet (outside its calling window).
pub async fn postpone(db: &Db, contact: i64, until: &str) -> Result<(), StoreError> {
    let sql = format!(
        "UPDATE campaign_contacts SET next_attempt_at = {}, updated_at = {} WHERE id = $3 AND state IN ('pending', 'retry')",
        db.dialect.ts(1),
        db.dialect.ts(2)
    );
    sqlx::query(&sql)
        .bind(until)
        .bind(now_ts())
        .bind(contact)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Mark a contact without dialing it (dnc, opted_out, failed by cap).
pub async fn set_contact_state(
    db: &Db,
    contact: i64,
    state: &str,
    reason: Option<&str>,
) -> Result<(), StoreError> {
    let sql = format!(
        "UPDATE campaign_contacts SET state = $1, last_disposition = COALESCE($2, last_disposition), updated_at = {} WHERE id = $4",
        db.dialect.ts(3)
    );
    sqlx::query(&sql)
        .bind(state)
        .bind(reason.map(str::to_string))
        .bind(now_ts())
        .bind(contact)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Claim the next attempt of a contact before dialing it. Ok(Some(attempt number)) when this
/// dialer now owns the attempt; Ok(None) when someone else did or the contact moved on.
///
/// The claim makes `lease.node` the contact's owner until `lease.ttl_s` from now (renewed by
/// the node's heartbeat). A contact another node holds a live reservation on is left to it.
///
/// Only a `running` campaign's contacts are claimed, checked in the same statement: a pause
/// or stop through any node's API ends the claims of every node at once. On PostgreSQL the
/// check share-locks the campaign row (`FOR SHARE`), so a claim and a state change are
/// serialised: a claim in flight when an operator pauses either commits before the pause
/// does (its call is one "in progress" at the pause) or waits and then sees `paused`.
/// SQLite serialises writers anyway.
pub async fn claim(db: &Db, c: &ContactRow, lease: Lease<'_>) -> Result<Option<i64>, StoreError> {
    let d = db.dialect;
    let attempt = c.attempts + 1;
    let now = now_ts();
    let share = if d == super::Dialect::Postgres {
        " FOR SHARE"
    } else {
        ""
    };
    let mut tx = db.pool.begin().await?;
    let sql = format!(
        "UPDATE campaign_contacts SET state = 'dialing', attempts = $1, updated_at = {}, \
         lease_owner = $5, lease_expires_at = {} \
         WHERE id = $3 AND attempts = $4 AND state IN ('pending', 'retry') \
         AND (lease_owner IS NULL OR lease_owner = $5 OR lease_expires_at IS NULL OR lease_expires_at < {}) \
         AND EXISTS (SELECT 1 FROM campaigns WHERE campaigns.id = campaign_contacts.campaign_id \
           AND campaigns.state = 'running'{share})",
        d.ts(2),
        d.now_plus(6),
        d.now()
    );
    let moved = sqlx::query(&sql)
        .bind(attempt)
        .bind(&now)
        .bind(c.id)
        .bind(c.attempts)
        .bind(lease.node)
        .bind(lease.ttl_s)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if moved != 1 {
        tx.rollback().await?;
        return Ok(None);
    }
    let sql = format!(
        "INSERT INTO campaign_attempts (contact_id, attempt, phone, started_at) VALUES ($1, $2, $3, {}) \
         ON CONFLICT (contact_id, attempt) DO NOTHING",
        d.ts(4)
    );
    let inserted = sqlx::query(&sql)
        .bind(c.id)
        .bind(attempt)
        .bind(&c.phone)
        .bind(&now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if inserted != 1 {
        tx.rollback().await?;
        return Ok(None);
    }
    tx.commit().await?;
    Ok(Some(attempt))
}

/// Record how an attempt ended and where the contact goes next.
#[allow(clippy::too_many_arguments)]
pub async fn finish_attempt(
    db: &Db,
    contact: i64,
    attempt: i64,
    call_id: Option<&str>,
    disposition: &str,
    outcome: Option<&str>,
    next_state: &str,
    next_attempt_at: Option<&str>,
) -> Result<(), StoreError> {
    let d = db.dialect;
    let now = now_ts();
    let mut tx = db.pool.begin().await?;
    let sql = format!(
        "UPDATE campaign_attempts SET ended_at = {}, disposition = $2, call_id = COALESCE($3, call_id) \
         WHERE contact_id = $4 AND attempt = $5",
        d.ts(1)
    );
    sqlx::query(&sql)
        .bind(&now)
        .bind(disposition)
        .bind(call_id.map(str::to_string))
        .bind(contact)
        .bind(attempt)
        .execute(&mut *tx)
        .await?;
    let sql = format!(
        "UPDATE campaign_contacts SET state = $1, next_attempt_at = {}, last_disposition = $3, \
         outcome = COALESCE($4, outcome), last_call_id = COALESCE($5, last_call_id), updated_at = {}, \
         lease_owner = NULL, lease_expires_at = NULL \
         WHERE id = $7 AND attempts = $8",
        d.ts(2),
        d.ts(6)
    );
    sqlx::query(&sql)
        .bind(next_state)
        .bind(next_attempt_at.map(str::to_string))
        .bind(disposition)
        .bind(outcome.map(str::to_string))
        .bind(call_id.map(str::to_string))
        .bind(&now)
        .bind(contact)
        .bind(attempt)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// After a crash: attempts that were claimed but never finished. They were possibly dialed,
/// so they count; the caller decides their retry.
///
/// SQLite (one node): every dialing contact. PostgreSQL: this node's own (`lease_owner`),
/// and those without an owner (claimed before leases existed) only when no other node is
/// heart-beating; another node's are taken over by [`take_orphans`] once it is dead.
pub async fn interrupted_contacts(
    db: &Db,
    campaign: i64,
    node: &str,
    dead_after_s: i64,
) -> Result<Vec<ContactRow>, StoreError> {
    let rows = if db.dialect == super::Dialect::Postgres {
        sqlx::query(&format!(
            "SELECT {CONTACT_COLUMNS} FROM campaign_contacts WHERE campaign_id = $1 AND state = 'dialing' \
             AND (lease_owner = $2 OR (lease_owner IS NULL AND NOT EXISTS ({})))",
            other_live_nodes(db, 2, 3)
        ))
        .bind(campaign)
        .bind(node)
        .bind(-dead_after_s)
        .fetch_all(&db.pool)
        .await?
    } else {
        sqlx::query(&format!("SELECT {CONTACT_COLUMNS} FROM campaign_contacts WHERE campaign_id = $1 AND state = 'dialing'"))
            .bind(campaign)
            .fetch_all(&db.pool)
            .await?
    };
    Ok(rows
        .iter()
        .map(contact_from)
        .collect::<Result<Vec<_>, _>>()?)
}

/// PostgreSQL: take over the dialing contacts of nodes that are gone — the lease has run out
/// and the owner is not running or draining (declared dead, or stopped before its calls
/// ended). Each row moves to exactly one survivor (`FOR UPDATE SKIP LOCKED`, then the lease
/// is this node's); the caller closes the attempt as interrupted and the retry policy
/// decides, as for its own crashed attempts. SQLite: none (one node).
pub async fn take_orphans(
    db: &Db,
    campaign: i64,
    lease: Lease<'_>,
) -> Result<Vec<ContactRow>, StoreError> {
    if db.dialect != super::Dialect::Postgres {
        return Ok(Vec::new());
    }
    let sql = format!(
        "UPDATE campaign_contacts SET lease_owner = $2, lease_expires_at = {} \
         WHERE id IN (SELECT c.id FROM campaign_contacts c WHERE c.campaign_id = $1 AND c.state = 'dialing' \
           AND c.lease_owner IS NOT NULL AND c.lease_owner <> $2 \
           AND (c.lease_expires_at IS NULL OR c.lease_expires_at < now()) \
           AND NOT EXISTS (SELECT 1 FROM nodes n WHERE n.node_id = c.lease_owner AND n.state IN ('running', 'draining')) \
           FOR UPDATE SKIP LOCKED) \
         RETURNING {CONTACT_COLUMNS}",
        db.dialect.now_plus(3)
    );
    let rows = sqlx::query(&sql)
        .bind(campaign)
        .bind(lease.node)
        .bind(lease.ttl_s)
        .fetch_all(&db.pool)
        .await?;
    Ok(rows
        .iter()
        .map(contact_from)
        .collect::<Result<Vec<_>, _>>()?)
}

/// How many contacts still have work (for completion).
pub async fn open_contacts(db: &Db, campaign: i64) -> Result<i64, StoreError> {
    Ok(sqlx::query("SELECT COUNT(*) AS n FROM campaign_contacts WHERE campaign_id = $1 AND state IN ('pending', 'retry', 'dialing')")
        .bind(campaign)
        .fetch_one(&db.pool)
        .await?
        .try_get("n")?)
}

/// An SMS the sender has to (re)try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsRow {
    pub contact_id: i64,
    pub campaign_id: i64,
    pub phone: String,
    pub body: String,
    pub tries: i64,
}

/// Queue the fallback SMS of a contact. The contact id is the primary key: a second call
/// (a restart replaying the contact's end) changes nothing. Ok(true) when it was queued now.
pub async fn enqueue_sms(
    db: &Db,
    contact: &ContactRow,
    body: &str,
    now: &str,
) -> Result<bool, StoreError> {
    let d = db.dialect;
    let sql = format!(
        "INSERT INTO campaign_sms (contact_id, campaign_id, ticket_id, phone, body, state, tries, \
         next_try_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'pending', 0, {}, {}, {}) \
         ON CONFLICT (contact_id) DO NOTHING",
        d.ts(6),
        d.ts(7),
        d.ts(8)
    );
    Ok(sqlx::query(&sql)
        .bind(contact.id)
        .bind(contact.campaign_id)
        .bind(contact.ticket_id)
        .bind(&contact.phone)
        .bind(body)
        .bind(now)
        .bind(now)
        .bind(now)
        .execute(&db.pool)
        .await?
        .rows_affected()
        == 1)
}

/// Texts whose next try is due, oldest first.
pub async fn sms_due(db: &Db, now: &str, limit: i64) -> Result<Vec<SmsRow>, StoreError> {
    let sql = format!(
        "SELECT contact_id, campaign_id, phone, body, tries FROM campaign_sms \
         WHERE state = 'pending' AND next_try_at <= {} ORDER BY next_try_at, contact_id LIMIT $2",
        db.dialect.ts(1)
    );
    let rows = sqlx::query(&sql)
        .bind(now)
        .bind(limit)
        .fetch_all(&db.pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(SmsRow {
                contact_id: r.try_get("contact_id")?,
                campaign_id: r.try_get("campaign_id")?,
                phone: r.try_get("phone")?,
                body: r.try_get("body")?,
                tries: r.try_get("tries")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(StoreError::from)
}

/// Record a try before it is made (`sending`, tries + 1), guarded by the tries seen: only
/// one sender makes it. Ok(false): someone else did, or the row moved on.
pub async fn sms_begin_try(
    db: &Db,
    contact: i64,
    tries: i64,
    now: &str,
) -> Result<bool, StoreError> {
    let sql = format!(
        "UPDATE campaign_sms SET state = 'sending', tries = $1, updated_at = {} \
         WHERE contact_id = $3 AND tries = $4 AND state = 'pending'",
        db.dialect.ts(2)
    );
    Ok(sqlx::query(&sql)
        .bind(tries + 1)
        .bind(now)
        .bind(contact)
        .bind(tries)
        .execute(&db.pool)
        .await?
        .rows_affected()
        == 1)
}

/// Record how a try ended: `sent`, `failed` (given up), or `pending` again with the time of
/// the next try.
pub async fn sms_end_try(
    db: &Db,
    contact: i64,
    state: &str,
    error: Option<&str>,
    next_try_at: &str,
    now: &str,
) -> Result<(), StoreError> {
    let d = db.dialect;
    let sent = if state == "sent" {
        d.ts(5)
    } else {
        "sent_at".to_string()
    };
    let sql = format!(
        "UPDATE campaign_sms SET state = $1, last_error = COALESCE($2, last_error), next_try_at = {}, \
         updated_at = {}, sent_at = {sent} WHERE contact_id = $6 AND state = 'sending'",
        d.ts(3),
        d.ts(4)
    );
    sqlx::query(&sql)
        .bind(state)
        .bind(error.map(str::to_string))
        .bind(next_try_at)
        .bind(now)
        .bind(now)
        .bind(contact)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// At start: a try that was being made when the server stopped may have reached the
/// gateway, so it is not made again (at most one text per contact): it ends `failed`.
pub async fn sms_fail_interrupted(db: &Db, now: &str) -> Result<u64, StoreError> {
    let sql = format!(
        "UPDATE campaign_sms SET state = 'failed', \
         last_error = 'interrupted while sending (not retried: the gateway may have taken it)', \
         updated_at = {} WHERE state = 'sending'",
        db.dialect.ts(1)
    );
    Ok(sqlx::query(&sql)
        .bind(now)
        .execute(&db.pool)
        .await?
        .rows_affected())
}

/// SMS counts by state for a campaign's progress.
pub async fn sms_progress(db: &Db, campaign: i64) -> Result<Vec<(String, i64)>, StoreError> {
    sqlx::query(
        "SELECT state, COUNT(*) AS n FROM campaign_sms WHERE campaign_id = $1 GROUP BY state ORDER BY state",
    )
    .bind(campaign)
    .fetch_all(&db.pool)
    .await?
    .iter()
    .map(|r| Ok((r.try_get::<String, _>("state")?, r.try_get::<i64, _>("n")?)))
    .collect::<Result<Vec<_>, sqlx::Error>>()
    .map_err(StoreError::from)
}

/// A sent delay notice a customer's reply can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenNotice {
    pub contact_id: i64,
    pub campaign_id: i64,
    pub ticket_id: i64,
}

/// The notice a text from `phone` answers: the newest SMS sent to that number whose contact
/// has not chosen by SMS yet. None: no open notice (never texted, or already answered).
pub async fn sms_open_notice(db: &Db, phone: &str) -> Result<Option<OpenNotice>, StoreError> {
    let row = sqlx::query(
        "SELECT s.contact_id, s.campaign_id, s.ticket_id FROM campaign_sms s \
         WHERE s.phone = $1 AND s.state = 'sent' AND NOT EXISTS \
         (SELECT 1 FROM sms_replies r WHERE r.contact_id = s.contact_id AND r.choice IS NOT NULL) \
         ORDER BY s.sent_at DESC, s.contact_id DESC LIMIT 1",
    )
    .bind(phone)
    .fetch_optional(&db.pool)
    .await?;
    row.map(|r| {
        Ok(OpenNotice {
            contact_id: r.try_get("contact_id")?,
            campaign_id: r.try_get("campaign_id")?,
            ticket_id: r.try_get("ticket_id")?,
        })
    })
    .transpose()
    .map_err(|e: sqlx::Error| StoreError::from(e))
}

/// A reply as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsReplyRow {
    pub contact_id: i64,
    pub ticket_id: i64,
    pub choice: Option<String>,
    pub help_sent: bool,
}

/// The reply recorded under a gateway message id (a re-delivery finds the first one).
pub async fn sms_reply(db: &Db, message_id: &str) -> Result<Option<SmsReplyRow>, StoreError> {
    let row = sqlx::query(
        "SELECT contact_id, ticket_id, choice, help_sent FROM sms_replies WHERE message_id = $1",
    )
    .bind(message_id)
    .fetch_optional(&db.pool)
    .await?;
    row.map(|r| {
        Ok(SmsReplyRow {
            contact_id: r.try_get("contact_id")?,
            ticket_id: r.try_get("ticket_id")?,
            choice: r.try_get("choice")?,
            help_sent: r.try_get::<i64, _>("help_sent")? != 0,
        })
    })
    .transpose()
    .map_err(|e: sqlx::Error| StoreError::from(e))
}

/// Whether a contact already got the help text (it is sent once per notice).
pub async fn sms_help_given(db: &Db, contact: i64) -> Result<bool, StoreError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sms_replies WHERE contact_id = $1 AND help_sent <> 0",
    )
    .bind(contact)
    .fetch_one(&db.pool)
    .await?;
    Ok(n > 0)
}

/// Record a reply in one transaction. A choice is applied through the same op a keypad
/// choice is (`StoreOp::Outcome`: `call_outcomes`, the ticket's resolution, a refund request),
/// keyed `sms:<message id>` with channel `sms`; the contact ends `completed` (`opted_out` for
/// opt_out, and the number goes on the do-not-call list), so no campaign dials it again for
/// this notice. Ok(false): the message id was recorded before (nothing written).
#[allow(clippy::too_many_arguments)]
pub async fn record_sms_reply(
    db: &Db,
    message_id: &str,
    notice: &OpenNotice,
    phone: &str,
    body: &str,
    choice: Option<&str>,
    help_sent: bool,
    at: &str,
) -> Result<bool, StoreError> {
    let d = db.dialect;
    let mut tx = db.pool.begin().await?;
    let sql = format!(
        "INSERT INTO sms_replies (message_id, contact_id, ticket_id, phone, body, choice, help_sent, received_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, {}) ON CONFLICT (message_id) DO NOTHING",
        d.ts(8)
    );
    let inserted = sqlx::query(&sql)
        .bind(message_id)
        .bind(notice.contact_id)
        .bind(notice.ticket_id)
        .bind(phone)
        .bind(body)
        .bind(choice.map(str::to_string))
        .bind(i64::from(help_sent))
        .bind(at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if inserted != 1 {
        tx.rollback().await?;
        return Ok(false);
    }
    if let Some(choice) = choice {
        let call_id = format!("sms:{message_id}");
        let op = super::ops::StoreOp::Outcome {
            call_id: call_id.clone(),
            ticket_id: Some(notice.ticket_id),
            choice: choice.to_string(),
            at: at.to_string(),
        };
        super::ops::apply(&mut tx, d, &op).await?;
        sqlx::query("UPDATE call_outcomes SET channel = 'sms' WHERE call_id = $1")
            .bind(&call_id)
            .execute(&mut *tx)
            .await?;
        let state = if choice == "opt_out" {
            "opted_out"
        } else {
            "completed"
        };
        let sql = format!(
            "UPDATE campaign_contacts SET outcome = $1, state = $2, next_attempt_at = NULL, updated_at = {} \
             WHERE id = $4 AND state IN ('pending', 'retry', 'failed', 'completed')",
            d.ts(3)
        );
        sqlx::query(&sql)
            .bind(choice)
            .bind(state)
            .bind(at)
            .bind(notice.contact_id)
            .execute(&mut *tx)
            .await?;
        if choice == "opt_out" {
            let sql = format!(
                "INSERT INTO do_not_call (phone, reason, added_at) VALUES ($1, $2, {}) \
                 ON CONFLICT (phone) DO NOTHING",
                d.ts(3)
            );
            sqlx::query(&sql)
                .bind(phone)
                .bind("opted out by SMS reply to a campaign notice")
                .bind(at)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(true)
}
