-- See migrations/sqlite/0008_dispositions.sql.
CREATE TABLE dispositions (
    id          BIGSERIAL   PRIMARY KEY,
    call_id     TEXT        NOT NULL,
    ticket_id   BIGINT,
    agent       TEXT        NOT NULL,
    outcome     TEXT        NOT NULL,
    note        TEXT        NOT NULL DEFAULT '',
    resolution  TEXT        NOT NULL CHECK (resolution IN ('wait', 'refund', 'unchanged')),
    created_at  TIMESTAMPTZ NOT NULL,
    UNIQUE (call_id, agent)
);
CREATE INDEX dispositions_ticket ON dispositions (ticket_id);
