-- Outbound campaigns, contacts, attempts, do-not-call. See migrations/sqlite/0003_campaigns.sql.
CREATE TABLE campaigns (
    id          BIGSERIAL   PRIMARY KEY,
    name        TEXT        NOT NULL UNIQUE,
    dialplan    TEXT        NOT NULL,
    trunk       TEXT        NOT NULL,
    caller_id   TEXT        NOT NULL,
    state       TEXT        NOT NULL DEFAULT 'created',
    spec        TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    started_at  TIMESTAMPTZ,
    ended_at    TIMESTAMPTZ,
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE campaign_contacts (
    id               BIGSERIAL   PRIMARY KEY,
    campaign_id      BIGINT      NOT NULL,
    ticket_id        BIGINT      NOT NULL,
    phone            TEXT        NOT NULL,
    timezone         TEXT        NOT NULL,
    priority         BIGINT      NOT NULL DEFAULT 0,
    state            TEXT        NOT NULL DEFAULT 'pending',
    attempts         BIGINT      NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ,
    last_disposition TEXT,
    outcome          TEXT,
    last_call_id     TEXT,
    updated_at       TIMESTAMPTZ NOT NULL,
    UNIQUE (campaign_id, ticket_id)
);
CREATE INDEX campaign_contacts_due ON campaign_contacts (campaign_id, state, priority, id);

CREATE TABLE campaign_attempts (
    id          BIGSERIAL   PRIMARY KEY,
    contact_id  BIGINT      NOT NULL,
    attempt     BIGINT      NOT NULL,
    phone       TEXT        NOT NULL,
    call_id     TEXT,
    started_at  TIMESTAMPTZ NOT NULL,
    ended_at    TIMESTAMPTZ,
    disposition TEXT,
    UNIQUE (contact_id, attempt)
);
CREATE INDEX campaign_attempts_phone ON campaign_attempts (phone, started_at);

CREATE TABLE do_not_call (
    phone    TEXT        PRIMARY KEY,
    reason   TEXT        NOT NULL DEFAULT '',
    added_at TIMESTAMPTZ NOT NULL
);
