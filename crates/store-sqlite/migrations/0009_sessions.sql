-- Web page sessions, kept on the server: the cookie holds a random id (never a token),
-- stored here only as its SHA-256, so signing out or revoking the token ends it.
CREATE TABLE sessions (
    id_hash    TEXT    PRIMARY KEY,
    token_id   TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
