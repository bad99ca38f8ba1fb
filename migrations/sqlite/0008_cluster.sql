-- Cluster state (docs/adr/0007-cluster-state.md). A SQLite database serves one node; the
-- same columns exist so that both schemas stay alike and the node's row is visible.

-- The node (`[server] node_id`) whose process handled the call. NULL: written before 0008.
ALTER TABLE call_records ADD COLUMN node TEXT;
CREATE INDEX call_records_open_node ON call_records (node) WHERE ended_at IS NULL;

-- One row per node: its heartbeat, and whether it is running, draining, dead or stopped.
CREATE TABLE nodes (
    node_id      TEXT PRIMARY KEY,
    started_at   TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('running', 'draining', 'dead', 'stopped')),
    version      TEXT NOT NULL,
    sip_addr     TEXT,
    http_addr    TEXT,
    updated_at   TEXT NOT NULL
);

-- Campaign contact leases (owner node and expiry); see the PostgreSQL migration.
ALTER TABLE campaign_contacts ADD COLUMN lease_owner TEXT;
ALTER TABLE campaign_contacts ADD COLUMN lease_expires_at TEXT;
CREATE INDEX campaign_contacts_lease ON campaign_contacts (lease_owner) WHERE state = 'dialing';
