-- Customers' SMS replies to the delay notice. See migrations/sqlite/0011_sms_replies.sql.
CREATE TABLE sms_replies (
    message_id  TEXT        PRIMARY KEY,
    contact_id  BIGINT      NOT NULL,
    ticket_id   BIGINT      NOT NULL,
    phone       TEXT        NOT NULL,
    body        TEXT        NOT NULL,
    choice      TEXT,
    help_sent   BIGINT      NOT NULL DEFAULT 0,
    received_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX sms_replies_contact ON sms_replies (contact_id);

ALTER TABLE call_outcomes ADD COLUMN channel TEXT NOT NULL DEFAULT 'call';
