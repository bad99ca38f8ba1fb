-- An agent's own choices that must survive a restart (written by the ACD when they change):
-- logged out on purpose (a phone registering again does not log the agent back in) and a
-- pause with its reason. Live states (on call, wrap-up, ...) are never stored: they are
-- rebuilt from live calls.
CREATE TABLE agent_state (
    agent          TEXT    PRIMARY KEY,          -- agents.name
    logged_out     INTEGER NOT NULL DEFAULT 0,   -- 1: logged out by API or feature code
    paused_reason  TEXT,                         -- NULL: not paused
    updated_at     TEXT    NOT NULL
);
