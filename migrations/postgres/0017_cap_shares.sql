-- Trunk and campaign caps held across nodes (docs/adr/0010-shared-caps.md). Same table,
-- columns and meanings as migrations/sqlite/0017_cap_shares.sql.

-- Each node's block of a cap: `channels` of trunk `key`'s `max_channels` (scope 'trunk')
-- or of campaign `key`'s `max_channels` (scope 'campaign', key = the campaign id). The
-- sum of the unexpired rows of one (scope, key) never exceeds the cap: a node grows its
-- row only in a transaction that holds the key's advisory lock and counts the others'.
-- `wants` > 0: the node's block is full and it has work (holders above their fair share
-- give channels back). The holder renews `expires_at` with its heartbeat; a dead node's
-- rows simply expire ([cluster] dead_after_s) and their channels count for nobody.
CREATE TABLE cap_shares (
    scope      TEXT        NOT NULL CHECK (scope IN ('trunk', 'campaign')),
    key        TEXT        NOT NULL,
    node       TEXT        NOT NULL,
    channels   INTEGER     NOT NULL CHECK (channels >= 0),
    wants      INTEGER     NOT NULL DEFAULT 0,
    expires_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (scope, key, node)
);
