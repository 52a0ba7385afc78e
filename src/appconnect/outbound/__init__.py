"""Everything the server sends to a CRM: the client with its retries and limits, and the HTTP/1.1 wire below it.

`wire` is the connection pool and the protocol (limits on every read from a CRM), `client` the one place every
outbound call goes through (timeouts, retries, error mapping, the per-account limiter), `limits` the rate-limit
types and the in-process parts of the limiter, `observe` the hook metrics use, `types` the shapes connectors see.
"""
