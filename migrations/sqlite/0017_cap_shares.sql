-- Trunk and campaign caps held across nodes (docs/adr/0010-shared-caps.md). A SQLite
-- database serves one node, which holds every cap alone and never writes this table; it
-- exists so that both schemas stay alike. See the PostgreSQL migration for the meanings.
CREATE TABLE cap_shares (
    scope      TEXT    NOT NULL CHECK (scope IN ('trunk', 'campaign')),
    key        TEXT    NOT NULL,
    node       TEXT    NOT NULL,
    channels   INTEGER NOT NULL CHECK (channels >= 0),
    wants      INTEGER NOT NULL DEFAULT 0,
    expires_at TEXT    NOT NULL,
    PRIMARY KEY (scope, key, node)
);
