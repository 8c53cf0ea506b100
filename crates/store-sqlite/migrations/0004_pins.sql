-- A manual rollback pins (app, environment) to the release it returned to: nothing
-- newer is deployed there until someone lifts the pin.
ALTER TABLE deployments ADD COLUMN pinned_release_id INTEGER REFERENCES releases (id);
ALTER TABLE deployments ADD COLUMN pinned_by TEXT;
ALTER TABLE deployments ADD COLUMN pinned_at INTEGER;
ALTER TABLE deployments ADD COLUMN pin_reason TEXT;
