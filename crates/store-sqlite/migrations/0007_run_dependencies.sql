-- The runs of other apps a run waits for before it starts (their apps are in its
-- `depends_on`): a JSON array of run ids, NULL for none.
ALTER TABLE runs ADD COLUMN waits_for TEXT;
