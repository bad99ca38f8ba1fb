-- Indexes for the wallboard's figures of the day (src/api/wallboard.rs): queue_log and
-- call_records read by time across every queue, campaign calls and SMS by campaign.
CREATE INDEX queue_log_at ON queue_log (at);
CREATE INDEX call_records_campaign ON call_records (campaign_id);
CREATE INDEX campaign_sms_campaign ON campaign_sms (campaign_id, state);
