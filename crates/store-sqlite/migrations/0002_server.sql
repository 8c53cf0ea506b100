-- What `launchway server` adds: approvals, tokens, webhook deliveries, published images.

ALTER TABLE releases ADD COLUMN committed_at INTEGER;
ALTER TABLE releases ADD COLUMN origin TEXT;

-- One approval request per run; the first decision wins.
CREATE TABLE approvals (
    run_id       INTEGER PRIMARY KEY REFERENCES runs (id),
    requested_at INTEGER NOT NULL,
    expires_at   INTEGER,
    decision     TEXT,       -- approved | rejected; NULL while waiting
    decided_by   TEXT,
    comment      TEXT,
    decided_at   INTEGER
);

-- API tokens. Only a hash of the secret part is kept.
CREATE TABLE tokens (
    id           TEXT    PRIMARY KEY,
    name         TEXT    NOT NULL,
    subject      TEXT    NOT NULL,
    role         TEXT    NOT NULL,
    apps         TEXT    NOT NULL DEFAULT '[]',
    envs         TEXT    NOT NULL DEFAULT '[]',
    secret_hash  TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);

-- Webhook deliveries seen, so that a redelivery starts nothing.
CREATE TABLE deliveries (
    provider    TEXT    NOT NULL,
    delivery_id TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (provider, delivery_id)
);

-- Images CI published for an app in an environment, applied over the manifest's.
CREATE TABLE published_images (
    app          TEXT    NOT NULL,
    env          TEXT    NOT NULL,
    images       TEXT    NOT NULL,
    published_by TEXT    NOT NULL,
    published_at INTEGER NOT NULL,
    PRIMARY KEY (app, env)
);

-- The environment's approval policy when the run was created (JSON; NULL: none).
ALTER TABLE runs ADD COLUMN approval_policy TEXT;
