-- How far a reader of the event log has got (the server's notifications, say), so that
-- it carries on from there after a restart.
CREATE TABLE cursors (
    name     TEXT    PRIMARY KEY,
    event_id INTEGER NOT NULL
);
