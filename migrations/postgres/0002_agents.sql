-- Agents, queues, skills and registrar bindings. See migrations/sqlite/0002_agents.sql.
CREATE TABLE agents (
    id          BIGSERIAL   PRIMARY KEY,
    name        TEXT        NOT NULL UNIQUE,
    extension   TEXT        UNIQUE,
    realm       TEXT        NOT NULL,
    ha1_md5     TEXT        NOT NULL,
    ha1_sha256  TEXT        NOT NULL,
    max_calls   BIGINT      NOT NULL DEFAULT 1,
    enabled     BIGINT      NOT NULL DEFAULT 1,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE agent_queues (
    agent_id BIGINT NOT NULL,
    queue    TEXT   NOT NULL,
    PRIMARY KEY (agent_id, queue)
);

CREATE TABLE agent_skills (
    agent_id BIGINT NOT NULL,
    skill    TEXT   NOT NULL,
    level    BIGINT NOT NULL,
    PRIMARY KEY (agent_id, skill)
);

CREATE TABLE registrations (
    aor         TEXT        NOT NULL,
    contact     TEXT        NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    source      TEXT        NOT NULL,
    user_agent  TEXT        NOT NULL DEFAULT '',
    call_id     TEXT        NOT NULL DEFAULT '',
    cseq        BIGINT      NOT NULL DEFAULT 0,
    PRIMARY KEY (aor, contact)
);
