-- Nonces the API accepted, shared by every server on this store, sqlite flavour. Keep in step
-- with ../postgres/0010_api_nonces.sql.

-- `nonce`: the first 16 bytes of the SignatureNonce's SHA-256 (small, fixed-size rows; nonces
-- are not secret). `signed_at`: the request's signed time (ms); a row is pruned once no request
-- signed then can pass the timestamp check. The primary key is what refuses a second use: an
-- insert that conflicts, on any server, is a replay.
CREATE TABLE api_nonces (
    nonce     BLOB PRIMARY KEY,
    signed_at INTEGER NOT NULL
);
CREATE INDEX api_nonces_signed_at ON api_nonces (signed_at);
