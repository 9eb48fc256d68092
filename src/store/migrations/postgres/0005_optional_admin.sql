-- A target without an admin credential, postgres flavour. Keep in step with ../sqlite/0005_optional_admin.sql.

-- SSH hosts whose users change their own passwords and keys need no admin: admin_secret is NULL.
ALTER TABLE targets ALTER COLUMN admin_secret DROP NOT NULL;
