-- What the lifecycle policy knows about a running container (last activity,
-- warnings given, keep-alive leases), kept so that a gateway restart adopts a
-- detached container with its deadlines instead of starting them over. The
-- state is the session layer's own encoding; the store does not read it.
-- Times are unix nanoseconds, as everywhere in this database.
CREATE TABLE container_lifecycle (
	container  TEXT    PRIMARY KEY,
	state      TEXT    NOT NULL,
	updated_at INTEGER NOT NULL
);

-- Lifecycle notices (warnings, stops) for a user. seen = 1 once a live
-- session printed it or the next login showed it; the unseen ones are shown
-- once at the user's next login.
CREATE TABLE notices (
	id        INTEGER PRIMARY KEY AUTOINCREMENT,
	time      INTEGER NOT NULL,
	user_name TEXT    NOT NULL,
	project   TEXT    NOT NULL DEFAULT '',
	container TEXT    NOT NULL DEFAULT '',
	text      TEXT    NOT NULL,
	seen      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX notices_user_seen ON notices(user_name, seen);
