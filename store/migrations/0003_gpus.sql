-- How many GPUs a project's container gets when the login does not say:
-- -1 means the default (1 where the host has GPUs, 0 elsewhere).
ALTER TABLE projects ADD COLUMN gpus INTEGER NOT NULL DEFAULT -1;

-- GPU slots held by containers, one row per slot. The slot's UUID is the
-- key, so the database itself refuses to record one slot for two
-- containers. Rebuilt from the containers' Docker labels on every start.
CREATE TABLE gpu_allocations (
	uuid       TEXT    PRIMARY KEY,
	container  TEXT    NOT NULL,
	user_name  TEXT    NOT NULL,
	uid        INTEGER NOT NULL,
	project    TEXT    NOT NULL,
	gpueq      REAL    NOT NULL,
	since      INTEGER NOT NULL
);
CREATE INDEX gpu_allocations_container ON gpu_allocations(container);
