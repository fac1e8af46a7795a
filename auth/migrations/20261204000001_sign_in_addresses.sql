-- The addresses each account signed in from successfully, for the sign-in throttle: guesses
-- from anywhere else never lock the owner out of these (auth/src/throttle.rs). `account` is
-- the SHA-256 of the normalized email (the throttle's key, known before any password is
-- checked, alike for addresses without an account); `address` the SHA-256 of an IPv4
-- address or IPv6 /64, so the table is no readable list of where a person has been.
CREATE TABLE IF NOT EXISTS sign_in_addresses (
    account TEXT NOT NULL,
    address TEXT NOT NULL,
    last_success_at BIGINT NOT NULL,
    PRIMARY KEY (account, address)
);
