-- A verification token carries the password hash chosen in the sign-up that sent it, so the
-- link confirms that password only: an earlier sign-up by someone else with the same address
-- cannot have its password confirmed by the owner following their own link.
ALTER TABLE one_time_tokens ADD COLUMN password_hash TEXT;
