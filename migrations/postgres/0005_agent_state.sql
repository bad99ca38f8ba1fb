-- See migrations/sqlite/0005_agent_state.sql.
CREATE TABLE agent_state (
    agent          TEXT        PRIMARY KEY,
    logged_out     BIGINT      NOT NULL DEFAULT 0,
    paused_reason  TEXT,
    updated_at     TIMESTAMPTZ NOT NULL
);
