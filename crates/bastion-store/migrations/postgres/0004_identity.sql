-- Users, API tokens and per-resource grants. Tokens are stored only as the SHA-256 of the
-- token; passwords only as argon2id PHC strings.
CREATE TABLE users (
    name          TEXT   PRIMARY KEY,
    role          TEXT   NOT NULL,
    password_hash TEXT,
    disabled_time BIGINT,
    created_time  BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    token_id       TEXT   PRIMARY KEY,
    token_hash     TEXT   NOT NULL UNIQUE,
    user_name      TEXT   NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    description    TEXT   NOT NULL,
    created_time   BIGINT NOT NULL,
    expires_time   BIGINT,
    revoked_time   BIGINT,
    last_used_time BIGINT
);
CREATE INDEX api_tokens_by_user ON api_tokens (user_name);

-- principal is 'user:<name>' or 'group:<name>'; resource is an experiment id or a registered
-- model name.
CREATE TABLE grants (
    principal     TEXT   NOT NULL,
    resource_kind TEXT   NOT NULL,
    resource      TEXT   NOT NULL,
    permission    TEXT   NOT NULL,
    created_time  BIGINT NOT NULL,
    PRIMARY KEY (principal, resource_kind, resource)
);
