-- Where CI built the images it published: the application commit and its author, whom
-- the approval author rule is about.
ALTER TABLE published_images ADD COLUMN commit_id TEXT;
ALTER TABLE published_images ADD COLUMN author TEXT;
