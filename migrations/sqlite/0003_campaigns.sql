-- Outbound campaigns, their contacts and every dial attempt; the do-not-call list.
CREATE TABLE campaigns (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL UNIQUE,
    dialplan    TEXT    NOT NULL,
    trunk       TEXT    NOT NULL,
    caller_id   TEXT    NOT NULL,
    state       TEXT    NOT NULL DEFAULT 'created', -- created|running|paused|stopped|completed
    spec        TEXT    NOT NULL,                   -- the validated creation JSON
    created_at  TEXT    NOT NULL,
    started_at  TEXT,
    ended_at    TEXT,
    updated_at  TEXT    NOT NULL
);

CREATE TABLE campaign_contacts (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    campaign_id      INTEGER NOT NULL,
    ticket_id        INTEGER NOT NULL,
    phone            TEXT    NOT NULL,
    timezone         TEXT    NOT NULL,
    priority         INTEGER NOT NULL DEFAULT 0,     -- lower dials first
    state            TEXT    NOT NULL DEFAULT 'pending', -- pending|dialing|answered|completed|retry|failed|dnc|opted_out
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT,
    last_disposition TEXT,
    outcome          TEXT,
    last_call_id     TEXT,
    updated_at       TEXT    NOT NULL,
    UNIQUE (campaign_id, ticket_id)
);
CREATE INDEX campaign_contacts_due ON campaign_contacts (campaign_id, state, priority, id);

CREATE TABLE campaign_attempts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    contact_id  INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,                   -- 1, 2, 3 ... per contact
    phone       TEXT    NOT NULL,
    call_id     TEXT,                               -- call_records.id once known
    started_at  TEXT    NOT NULL,
    ended_at    TEXT,
    disposition TEXT,
    UNIQUE (contact_id, attempt)                    -- one dial per attempt, ever
);
CREATE INDEX campaign_attempts_phone ON campaign_attempts (phone, started_at);

CREATE TABLE do_not_call (
    phone    TEXT PRIMARY KEY,
    reason   TEXT NOT NULL DEFAULT '',
    added_at TEXT NOT NULL
);
