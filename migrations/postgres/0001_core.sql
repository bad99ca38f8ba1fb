-- switchboard core schema (PostgreSQL, the shared ticket database). Public contract:
-- docs/schema.md. Same tables, columns and meanings as migrations/sqlite/0001_core.sql.

CREATE TABLE tickets (
    id            BIGSERIAL   PRIMARY KEY,
    order_id      TEXT        NOT NULL UNIQUE,
    customer_name TEXT        NOT NULL DEFAULT '',
    phone         TEXT        NOT NULL,
    language      TEXT        NOT NULL DEFAULT 'en',
    segment       TEXT        NOT NULL DEFAULT 'standard',
    timezone      TEXT        NOT NULL DEFAULT 'UTC',
    status        TEXT        NOT NULL DEFAULT 'processing',
    delay_days    BIGINT      NOT NULL DEFAULT 0,
    new_eta       DATE,
    resolution    TEXT,
    resolved_at   TIMESTAMPTZ,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX tickets_phone ON tickets (phone);
CREATE INDEX tickets_status ON tickets (status);

CREATE TABLE call_records (
    id             TEXT        PRIMARY KEY,
    sip_call_id    TEXT        NOT NULL,
    direction      TEXT        NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    from_uri       TEXT        NOT NULL,
    to_uri         TEXT        NOT NULL,
    caller         TEXT,
    ticket_id      BIGINT,
    campaign_id    BIGINT,
    dialplan       TEXT,
    started_at     TIMESTAMPTZ NOT NULL,
    answered_at    TIMESTAMPTZ,
    ended_at       TIMESTAMPTZ,
    disposition    TEXT,
    hangup_cause   TEXT,
    sip_status     BIGINT,
    queue          TEXT,
    agent          TEXT,
    wait_ms        BIGINT,
    recording_path TEXT
);
CREATE INDEX call_records_sip_call_id ON call_records (sip_call_id);
CREATE INDEX call_records_started_at ON call_records (started_at);
CREATE INDEX call_records_ticket ON call_records (ticket_id);

CREATE TABLE call_events (
    id      BIGSERIAL   PRIMARY KEY,
    call_id TEXT        NOT NULL,
    seq     BIGINT      NOT NULL,
    at      TIMESTAMPTZ NOT NULL,
    kind    TEXT        NOT NULL,
    detail  TEXT        NOT NULL DEFAULT '',
    UNIQUE (call_id, seq)
);

CREATE TABLE call_outcomes (
    id        BIGSERIAL   PRIMARY KEY,
    call_id   TEXT        NOT NULL UNIQUE,
    ticket_id BIGINT,
    choice    TEXT        NOT NULL,
    at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX call_outcomes_ticket ON call_outcomes (ticket_id);

CREATE TABLE refund_requests (
    id           BIGSERIAL   PRIMARY KEY,
    ticket_id    BIGINT      NOT NULL,
    call_id      TEXT        NOT NULL UNIQUE,
    requested_at TIMESTAMPTZ NOT NULL,
    status       TEXT        NOT NULL DEFAULT 'pending'
);
