-- RFC 3327 Path of a registration (docs/adr/0008-registrar-behind-the-edge.md): the proxies
-- a phone registered through (the Kamailio edge adds itself with add_path_received()), as one
-- Path header field value, in order (`<sip:10.0.0.10;lr;received=sip:192.0.2.7:5090>`).
-- Requests to the contact carry them as their Route headers and go to the first one. NULL:
-- registered directly (and every row written before this migration).
ALTER TABLE registrations ADD COLUMN path TEXT;
