"""The HTTPS gateway: agencies that do not speak NATS (e.g. behind an X-Road security server)
send the same commands and read the same feed over HTTP with mutual TLS. The gateway is thin:
it maps each request to the NATS subject the agency itself would use, over a connection
signed in as that agency, so the hub's parsing, rules and NATS permissions all still apply
(docs/GATEWAY.md)."""
