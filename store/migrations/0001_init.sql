-- Users are Linux accounts the gateway maps SSH keys onto; uid is unique
-- because two gateway users sharing a uid could read each other's files.
CREATE TABLE users (
	name       TEXT    PRIMARY KEY,
	uid        INTEGER NOT NULL UNIQUE,
	gid        INTEGER NOT NULL,
	group_name TEXT    NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL
);

-- A fingerprint identifies exactly one user, so it is the primary key:
-- the auth path looks users up by it.
CREATE TABLE keys (
	fingerprint    TEXT    PRIMARY KEY,
	user_name      TEXT    NOT NULL REFERENCES users(name) ON DELETE CASCADE,
	type           TEXT    NOT NULL,
	authorized_key TEXT    NOT NULL,
	comment        TEXT    NOT NULL DEFAULT '',
	created_at     INTEGER NOT NULL
);
CREATE INDEX keys_user_name ON keys(user_name);

-- Projects, containers and events deliberately carry no foreign key to users:
-- they are history and must survive the removal of the user.
CREATE TABLE projects (
	user_name  TEXT    NOT NULL,
	name       TEXT    NOT NULL,
	workspace  TEXT    NOT NULL,
	created_at INTEGER NOT NULL,
	last_used  INTEGER NOT NULL,
	PRIMARY KEY (user_name, name)
);

CREATE TABLE containers (
	id         TEXT    PRIMARY KEY,
	name       TEXT    NOT NULL,
	user_name  TEXT    NOT NULL,
	project    TEXT    NOT NULL,
	image      TEXT    NOT NULL,
	state      TEXT    NOT NULL CHECK (state IN ('running', 'retired')),
	created_at INTEGER NOT NULL,
	retired_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX containers_state ON containers(state);

CREATE TABLE events (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	time        INTEGER NOT NULL,
	type        TEXT    NOT NULL,
	user_name   TEXT    NOT NULL DEFAULT '',
	project     TEXT    NOT NULL DEFAULT '',
	container   TEXT    NOT NULL DEFAULT '',
	duration_ns INTEGER NOT NULL DEFAULT 0,
	details     TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX events_time ON events(time);
CREATE INDEX events_user_time ON events(user_name, time);

CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
