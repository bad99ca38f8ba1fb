-- Which [[trunk]] carried an outbound call (the failover trunk when the first one refused
-- or did not answer). NULL for inbound calls and agent legs; written by the call actor
-- each time it sends an INVITE through a trunk, so the last value is the carrying trunk.
ALTER TABLE call_records ADD COLUMN trunk TEXT;
