-- Image builds of a project, newest last. A row is inserted as 'running'
-- when a build starts, so a gateway crash mid-build leaves a trace that the
-- next start closes as failed. The Dockerfile is kept with each build: it
-- is the history of the project's image.
CREATE TABLE builds (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	user_name   TEXT    NOT NULL,
	project     TEXT    NOT NULL,
	started_at  INTEGER NOT NULL,
	duration_ns INTEGER NOT NULL DEFAULT 0,
	result      TEXT    NOT NULL CHECK (result IN ('running', 'ok', 'failed')),
	image_id    TEXT    NOT NULL DEFAULT '',
	reason      TEXT    NOT NULL DEFAULT '',
	failed_step TEXT    NOT NULL DEFAULT '',
	error       TEXT    NOT NULL DEFAULT '',
	dockerfile  TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX builds_project ON builds(user_name, project, id);
CREATE INDEX builds_result ON builds(result);
