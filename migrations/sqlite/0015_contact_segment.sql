-- GET /api/reports/campaigns/{id} (src/api/reports.rs) groups a campaign's contacts by their
-- ticket's segment. Joining every contact to `tickets` for it cost ~1.4 s of CPU for a
-- million contacts, so the segment is kept on the contact row, copied from the ticket when
-- the contact is created (store::campaigns::create and create_from_rows). NULL on rows
-- written by code that does not set it: the report then falls back to the ticket's segment.
ALTER TABLE campaign_contacts ADD COLUMN segment TEXT;
UPDATE campaign_contacts
   SET segment = (SELECT t.segment FROM tickets t WHERE t.id = campaign_contacts.ticket_id);
-- The report and the console's contacts filters (campaign, then segment, state, outcome)
-- read this index alone (covering, ticket_id for the fallback and the segment filter); it
-- replaces 0013's index, which led with ticket_id for the join this removes.
DROP INDEX campaign_contacts_report;
CREATE INDEX campaign_contacts_segment_report
    ON campaign_contacts (campaign_id, segment, state, outcome, last_disposition, attempts, ticket_id);
