-- Which process reads the event log for a named reader (notifications) now, so that
-- a server and CLI commands sharing the database never both send the same message.
CREATE TABLE reader_leases (
    name       TEXT    PRIMARY KEY,
    owner      TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);
