-- SMS fallback after a contact's last failed attempt: at most one text per campaign contact,
-- ever (the primary key), with its tries and how it ended. Written by the dialer's SMS sender.
CREATE TABLE campaign_sms (
    contact_id   INTEGER PRIMARY KEY,           -- campaign_contacts.id: one SMS per contact
    campaign_id  INTEGER NOT NULL,
    ticket_id    INTEGER NOT NULL,
    phone        TEXT    NOT NULL,
    body         TEXT    NOT NULL,              -- the text as rendered from the template
    state        TEXT    NOT NULL DEFAULT 'pending', -- pending|sending|sent|failed
    tries        INTEGER NOT NULL DEFAULT 0,    -- requests made to the gateway
    next_try_at  TEXT    NOT NULL,
    last_error   TEXT,                          -- why the last try failed (kept once sent)
    created_at   TEXT    NOT NULL,
    sent_at      TEXT,
    updated_at   TEXT    NOT NULL
);
CREATE INDEX campaign_sms_due ON campaign_sms (state, next_try_at);
