-- Operations staff who log in to /console and /wallboard (`switchboard operator add`).
-- `password_hash` is an argon2id PHC string (salt and parameters inside); the password
-- itself is never stored. `role`: admin (everything) or viewer (wallboard, reports, reads).
-- See docs/schema.md#operators.
CREATE TABLE operators (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL UNIQUE,
    role          TEXT    NOT NULL CHECK (role IN ('admin', 'viewer')),
    password_hash TEXT    NOT NULL,
    enabled       INTEGER NOT NULL DEFAULT 1,
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL
);
