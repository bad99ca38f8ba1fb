-- Customers' SMS replies to the delay notice (POST /api/sms/inbound). One row per gateway
-- message (its id: a re-delivery is recorded once). A reply that chose records its outcome in
-- call_outcomes like a keypad choice, with call_id 'sms:<message_id>' and channel 'sms'.
-- See docs/schema.md#sms-replies.
CREATE TABLE sms_replies (
    message_id  TEXT    PRIMARY KEY,             -- the gateway's id
    contact_id  INTEGER NOT NULL,                -- campaign_contacts.id of the notice answered
    ticket_id   INTEGER NOT NULL,
    phone       TEXT    NOT NULL,
    body        TEXT    NOT NULL,                -- the text as received
    choice      TEXT,                            -- wait|refund|callback|opt_out; NULL: not understood
    help_sent   INTEGER NOT NULL DEFAULT 0,      -- 1: this reply got the help text
    received_at TEXT    NOT NULL
);
CREATE INDEX sms_replies_contact ON sms_replies (contact_id);

-- How an outcome was given: 'call' (keypad on a call) or 'sms' (a reply to the notice).
ALTER TABLE call_outcomes ADD COLUMN channel TEXT NOT NULL DEFAULT 'call';
