-- Every ACD event (docs/schema.md "queue_log"), one row each, written by switchboard's ACD.
-- Events: enter, offer, ringnoanswer, connect, abandon, timeout, exitempty, joinempty, full,
-- complete, pause, unpause, login, logout.
CREATE TABLE queue_log (
    id       TEXT    PRIMARY KEY,                -- UUID, so a replayed row is not duplicated
    at       TEXT    NOT NULL,
    queue    TEXT    NOT NULL,
    call_id  TEXT,                               -- call_records.id of the caller
    agent    TEXT,                               -- agents.name
    event    TEXT    NOT NULL,
    position INTEGER,                            -- place in line (enter, abandon, timeout)
    wait_ms  INTEGER,                            -- time waited (connect, abandon, timeout)
    talk_ms  INTEGER,                            -- time connected (complete)
    reason   TEXT                                -- why (abandon, ringnoanswer, pause, complete: who hung up)
);
CREATE INDEX queue_log_queue_at ON queue_log (queue, at);
CREATE INDEX queue_log_call ON queue_log (call_id);
