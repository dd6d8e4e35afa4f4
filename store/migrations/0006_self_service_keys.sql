-- How a key came to be registered: 'admin' (ds01-gateway user add / user
-- key add) or 'key-add' (the user, over ssh), and the client address that
-- added it ('' for the admin).
ALTER TABLE keys ADD COLUMN added_via  TEXT NOT NULL DEFAULT 'admin';
ALTER TABLE keys ADD COLUMN added_from TEXT NOT NULL DEFAULT '';
-- The fingerprint of a key the user added with key-add since this key last
-- logged in ('' when none): the next login with this key says so once, so a
-- key added by someone else who got in is noticed. Read with the key by the
-- auth lookup, so a login without a notice costs nothing more.
ALTER TABLE keys ADD COLUMN notice TEXT NOT NULL DEFAULT '';
