-- SMS fallback, one text per campaign contact. See migrations/sqlite/0007_campaign_sms.sql.
CREATE TABLE campaign_sms (
    contact_id   BIGINT      PRIMARY KEY,
    campaign_id  BIGINT      NOT NULL,
    ticket_id    BIGINT      NOT NULL,
    phone        TEXT        NOT NULL,
    body         TEXT        NOT NULL,
    state        TEXT        NOT NULL DEFAULT 'pending',
    tries        BIGINT      NOT NULL DEFAULT 0,
    next_try_at  TIMESTAMPTZ NOT NULL,
    last_error   TEXT,
    created_at   TIMESTAMPTZ NOT NULL,
    sent_at      TIMESTAMPTZ,
    updated_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX campaign_sms_due ON campaign_sms (state, next_try_at);
