-- GET /api/reports/campaigns/{id} and the console's contacts list (src/api/reports.rs):
-- one campaign's contacts grouped by state and outcome, joined to their tickets, read from
-- the index alone (covering), so the report does not touch the table rows.
CREATE INDEX campaign_contacts_report
    ON campaign_contacts (campaign_id, ticket_id, state, outcome, last_disposition, attempts);
