-- The root-owned directory above the user's part of a project's workspace
-- path: the gateway walks from it to the workspace without following a
-- symlink. Kept with the path, so a project's workspace stays where it was
-- created whatever happens later to the configuration or to user lookups
-- ('' in rows from before: filled in from the configuration on first use).
ALTER TABLE projects ADD COLUMN workspace_anchor TEXT NOT NULL DEFAULT '';
