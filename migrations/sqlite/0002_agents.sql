-- Agents (SIP accounts for softphones and desk phones), their queues and skills, and the
-- registrar's bindings (kept across restarts). Credentials are stored as HA1 digests only.
CREATE TABLE agents (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL UNIQUE,         -- SIP username and call_records.agent
    extension   TEXT    UNIQUE,
    realm       TEXT    NOT NULL,
    ha1_md5     TEXT    NOT NULL,                -- MD5(name:realm:password), hex
    ha1_sha256  TEXT    NOT NULL,                -- SHA-256(name:realm:password), hex
    max_calls   INTEGER NOT NULL DEFAULT 1,
    enabled     INTEGER NOT NULL DEFAULT 1,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL
);

CREATE TABLE agent_queues (
    agent_id INTEGER NOT NULL,
    queue    TEXT    NOT NULL,
    PRIMARY KEY (agent_id, queue)
);

CREATE TABLE agent_skills (
    agent_id INTEGER NOT NULL,
    skill    TEXT    NOT NULL,                   -- e.g. lang:zh, refunds
    level    INTEGER NOT NULL,                   -- 1..10, higher is better
    PRIMARY KEY (agent_id, skill)
);

CREATE TABLE registrations (
    aor         TEXT NOT NULL,                   -- agent name
    contact     TEXT NOT NULL,                   -- Contact URI as registered
    expires_at  TEXT NOT NULL,
    source      TEXT NOT NULL,                   -- transport:ip:port the REGISTER came from
    user_agent  TEXT NOT NULL DEFAULT '',
    call_id     TEXT NOT NULL DEFAULT '',
    cseq        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (aor, contact)
);
