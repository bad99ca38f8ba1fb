-- switchboard core schema (SQLite). The public contract is documented in docs/schema.md;
-- keep names and meanings in step with migrations/postgres/0001_core.sql.
-- Timestamps are ISO-8601 UTC text ("2026-11-23T15:26:08.123Z"); dates are "YYYY-MM-DD".

CREATE TABLE tickets (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id      TEXT    NOT NULL UNIQUE,
    customer_name TEXT    NOT NULL DEFAULT '',
    phone         TEXT    NOT NULL,              -- E.164, e.g. +15551230001
    language      TEXT    NOT NULL DEFAULT 'en',
    segment       TEXT    NOT NULL DEFAULT 'standard',
    timezone      TEXT    NOT NULL DEFAULT 'UTC', -- IANA name
    status        TEXT    NOT NULL DEFAULT 'processing',
    delay_days    INTEGER NOT NULL DEFAULT 0,
    new_eta       TEXT,                          -- date
    resolution    TEXT,                          -- NULL | wait | refund | opt_out | ...
    resolved_at   TEXT,
    updated_at    TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX tickets_phone ON tickets (phone);
CREATE INDEX tickets_status ON tickets (status);

CREATE TABLE call_records (
    id             TEXT    PRIMARY KEY,          -- UUID chosen by switchboard
    sip_call_id    TEXT    NOT NULL,
    direction      TEXT    NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    from_uri       TEXT    NOT NULL,
    to_uri         TEXT    NOT NULL,
    caller         TEXT,                         -- normalised calling number
    ticket_id      INTEGER,
    campaign_id    INTEGER,
    dialplan       TEXT,
    started_at     TEXT    NOT NULL,
    answered_at    TEXT,
    ended_at       TEXT,
    disposition    TEXT,   -- answered|busy|no_answer|failed|cancelled|machine|interrupted
    hangup_cause   TEXT,
    sip_status     INTEGER,
    queue          TEXT,
    agent          TEXT,
    wait_ms        INTEGER,
    recording_path TEXT
);
CREATE INDEX call_records_sip_call_id ON call_records (sip_call_id);
CREATE INDEX call_records_started_at ON call_records (started_at);
CREATE INDEX call_records_ticket ON call_records (ticket_id);

CREATE TABLE call_events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT    NOT NULL,                    -- call_records.id
    seq     INTEGER NOT NULL,                    -- order within the call; makes replays idempotent
    at      TEXT    NOT NULL,
    kind    TEXT    NOT NULL,                    -- dtmf | menu | prompt | lookup | ...
    detail  TEXT    NOT NULL DEFAULT '',
    UNIQUE (call_id, seq)
);

CREATE TABLE call_outcomes (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id   TEXT    NOT NULL UNIQUE,           -- call_records.id
    ticket_id INTEGER,
    choice    TEXT    NOT NULL,                  -- wait | refund | agent | opt_out | no_choice | callback
    at        TEXT    NOT NULL
);
CREATE INDEX call_outcomes_ticket ON call_outcomes (ticket_id);

CREATE TABLE refund_requests (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id    INTEGER NOT NULL,
    call_id      TEXT    NOT NULL UNIQUE,
    requested_at TEXT    NOT NULL,
    status       TEXT    NOT NULL DEFAULT 'pending'  -- finance moves it on
);
