-- Cluster state (docs/adr/0007-cluster-state.md). Same tables, columns and meanings as
-- migrations/sqlite/0008_cluster.sql.

-- The node (`[server] node_id`) whose process handled the call. NULL: written before
-- 0008 by a single node. Crash recovery finalises only its own node's open rows.
ALTER TABLE call_records ADD COLUMN node TEXT;
CREATE INDEX call_records_open_node ON call_records (node) WHERE ended_at IS NULL;

-- One row per node: its heartbeat, and whether it is running, draining or dead. A survivor
-- declares a node dead when its heartbeat is older than `[cluster] dead_after_s`.
CREATE TABLE nodes (
    node_id      TEXT        PRIMARY KEY,
    started_at   TIMESTAMPTZ NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL,
    state        TEXT        NOT NULL CHECK (state IN ('running', 'draining', 'dead', 'stopped')),
    version      TEXT        NOT NULL,
    sip_addr     TEXT,
    http_addr    TEXT,
    updated_at   TIMESTAMPTZ NOT NULL
);

-- Campaign contact leases: the node that holds a contact (reserved while pending, owning
-- its attempt while dialing) and until when; the owner renews the leases of its dialing
-- contacts with its heartbeat.
ALTER TABLE campaign_contacts ADD COLUMN lease_owner TEXT;
ALTER TABLE campaign_contacts ADD COLUMN lease_expires_at TIMESTAMPTZ;
CREATE INDEX campaign_contacts_lease ON campaign_contacts (lease_owner) WHERE state = 'dialing';
