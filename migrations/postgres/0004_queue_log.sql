-- Every ACD event. See migrations/sqlite/0004_queue_log.sql.
CREATE TABLE queue_log (
    id       TEXT        PRIMARY KEY,
    at       TIMESTAMPTZ NOT NULL,
    queue    TEXT        NOT NULL,
    call_id  TEXT,
    agent    TEXT,
    event    TEXT        NOT NULL,
    position BIGINT,
    wait_ms  BIGINT,
    talk_ms  BIGINT,
    reason   TEXT
);
CREATE INDEX queue_log_queue_at ON queue_log (queue, at);
CREATE INDEX queue_log_call ON queue_log (call_id);
