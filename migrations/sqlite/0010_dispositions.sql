-- An agent's after-call disposition from the workspace (POST /api/agent/disposition):
-- the outcome from `[acd] dispositions`, a free note, and what the agent did to the ticket
-- (`resolution`: wait | refund | unchanged). One per call and agent (a transferred call can
-- have one from each agent). See docs/schema.md#dispositions.
CREATE TABLE dispositions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id     TEXT    NOT NULL,                -- call_records.id
    ticket_id   INTEGER,                         -- tickets.id (NULL: no ticket known)
    agent       TEXT    NOT NULL,                -- agents.name
    outcome     TEXT    NOT NULL,
    note        TEXT    NOT NULL DEFAULT '',
    resolution  TEXT    NOT NULL CHECK (resolution IN ('wait', 'refund', 'unchanged')),
    created_at  TEXT    NOT NULL,
    UNIQUE (call_id, agent)
);
CREATE INDEX dispositions_ticket ON dispositions (ticket_id);
