-- Post-call satisfaction surveys. See migrations/sqlite/0014_call_surveys.sql.
CREATE TABLE call_surveys (
    call_id    TEXT        PRIMARY KEY,
    ticket_id  BIGINT,
    agent      TEXT,
    queue      TEXT,
    score      BIGINT      NOT NULL CHECK (score BETWEEN 1 AND 5),
    recording  TEXT,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX call_surveys_agent ON call_surveys (agent, created_at);
CREATE INDEX call_surveys_queue ON call_surveys (queue, created_at);
