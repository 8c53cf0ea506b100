-- Releases: immutable desired states. Never updated.
CREATE TABLE releases (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    app         TEXT    NOT NULL,
    env         TEXT    NOT NULL,
    revision    TEXT    NOT NULL,
    spec        TEXT    NOT NULL,   -- AppSpec as JSON
    target      TEXT    NOT NULL,   -- the environment's TargetSpec as JSON
    commit_id   TEXT,
    summary     TEXT,
    author      TEXT,
    created_at  INTEGER NOT NULL
);
CREATE INDEX releases_by_app_env ON releases (app, env, id);

CREATE TABLE runs (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    app                 TEXT    NOT NULL,
    env                 TEXT    NOT NULL,
    kind                TEXT    NOT NULL,
    state               TEXT    NOT NULL,
    release_id          INTEGER NOT NULL REFERENCES releases (id),
    previous_release_id INTEGER REFERENCES releases (id),
    reason              TEXT,
    plan                TEXT,
    trigger             TEXT    NOT NULL,
    attempt             INTEGER NOT NULL DEFAULT 0,
    lease_owner         TEXT,
    lease_expires_at    INTEGER,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    finished_at         INTEGER
);
-- Two runs never act on the same (app, environment) at once.
CREATE UNIQUE INDEX runs_one_unfinished_per_app_env ON runs (app, env) WHERE finished_at IS NULL;
CREATE INDEX runs_by_app_env ON runs (app, env, id);

CREATE TABLE steps (
    run_id      INTEGER NOT NULL REFERENCES runs (id),
    name        TEXT    NOT NULL,
    attempt     INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    outcome     TEXT,
    detail      TEXT,
    PRIMARY KEY (run_id, name, attempt)
);

-- The audit trail. Append-only: the triggers below refuse any change.
CREATE TABLE events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    run_id  INTEGER REFERENCES runs (id),
    app     TEXT,
    env     TEXT,
    kind    TEXT    NOT NULL,
    message TEXT    NOT NULL,
    data    TEXT    NOT NULL DEFAULT 'null'
);
CREATE INDEX events_by_run ON events (run_id, id);
CREATE INDEX events_by_app_env ON events (app, env, id);
CREATE TRIGGER events_are_never_updated BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event log is append-only');
END;
CREATE TRIGGER events_are_never_deleted BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event log is append-only');
END;

-- What each (app, environment) runs now, and what it can roll back to.
CREATE TABLE deployments (
    app                TEXT    NOT NULL,
    env                TEXT    NOT NULL,
    current_release_id INTEGER NOT NULL REFERENCES releases (id),
    good_release_id    INTEGER REFERENCES releases (id),
    commit_id          TEXT,
    updated_at         INTEGER NOT NULL,
    PRIMARY KEY (app, env)
);
