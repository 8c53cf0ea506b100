-- How a release's images are built (the app's `build:`), JSON; NULL when it builds none.
ALTER TABLE releases ADD COLUMN build TEXT;

-- Every image launchway built, by the reference it was built as (`repo:tag`): what it
-- deploys for that reference from then on (`repo@sha256:…` when pushed, else the
-- engine's image id). A reference is built once.
CREATE TABLE built_images (
    reference TEXT PRIMARY KEY,
    image TEXT NOT NULL,
    app TEXT NOT NULL,
    container TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    built_at INTEGER NOT NULL
);
