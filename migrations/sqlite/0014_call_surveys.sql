-- Post-call satisfaction surveys (issue 19): after an agent call whose `enqueue` step has
-- `after_agent`, the dialplan's `survey` step records the caller's score (1-5) and maybe a
-- recorded message. One row per call (a replayed op writes it once).
-- See docs/schema.md#call_surveys.
CREATE TABLE call_surveys (
    call_id    TEXT    PRIMARY KEY,               -- call_records.id
    ticket_id  INTEGER,                           -- the caller's ticket, when known
    agent      TEXT,                              -- the agent who took the call
    queue      TEXT,                              -- the queue it came through
    score      INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5),
    recording  TEXT,                              -- path of the caller's message, if any
    created_at TEXT    NOT NULL
);
CREATE INDEX call_surveys_agent ON call_surveys (agent, created_at);
CREATE INDEX call_surveys_queue ON call_surveys (queue, created_at);
