//! The sign-in throttle (OWASP; ASVS 5.0 6.3.1): guessing stays slow without giving anyone
//! who knows an address a way to lock its owner out.
//!
//! Every attempt is counted before the password is verified (the check and the count are
//! one atomic step on the store, so parallel guesses at the moment a lock expires are all
//! counted), in up to two counters:
//!
//! - **this address at this account** (an IPv4 address, or an IPv6 /64): from the
//!   `lock_after`-th unsuccessful attempt in the sliding `window` that pair is locked 1 s,
//!   2 s, 4 s... up to `max_lock`. Never capped: it locks only whoever sends from there.
//! - **the account, from unfamiliar addresses**: attempts from an address the account has
//!   not signed in from successfully lately ([`FAMILIAR_FOR`]) also count here, locked the
//!   same way, and past `hard_cap` of them only a password reset lets a *new* address in.
//!   Guessing spread over many addresses is thereby slowed and finally stopped, while the
//!   owner, at an address they signed in from before, is judged by their own pair only.
//!
//! A locked pair or account answers 429 whatever the password, so the lock reveals
//! nothing, and unknown addresses are throttled alike (the counters are keyed by hashes of
//! the address).

use crate::error::ApiError;
use crate::users::{ProviderError, SignedIn, UserProvider};
use authflow_shared::client_ip;
use authflow_shared::digest::hash_hex;
use authflow_shared::store::{Attempt, LoginThrottle, ThrottlePolicy};
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long a capped account reports itself locked (new addresses stay locked out until a
/// reset).
const CAPPED_RETRY: Duration = Duration::from_secs(3600);

/// How long after its last successful sign-in an address stays familiar to an account.
pub const FAMILIAR_FOR: Duration = Duration::from_secs(90 * 86_400);

pub struct SignInThrottle {
    counters: Arc<dyn LoginThrottle>,
    policy: ThrottlePolicy,
    /// Where the addresses each account signed in from are kept (the user provider).
    history: Arc<dyn UserProvider>,
}

/// Which counter refused an attempt, for the log.
#[derive(Debug, Clone, Copy)]
enum Counter {
    Pair,
    Account,
    /// Second-factor codes of one account.
    Code,
}

impl SignInThrottle {
    pub fn new(
        counters: Arc<dyn LoginThrottle>,
        policy: ThrottlePolicy,
        history: Arc<dyn UserProvider>,
    ) -> Self {
        SignInThrottle {
            counters,
            policy,
            history,
        }
    }

    /// Runs `check` (the password verification) for `email` from `client` unless this
    /// address or (for an unfamiliar address) the account is locked; on success remembers
    /// the address and returns who signed in and when the attempt began (the store's
    /// clock, for [`authflow_shared::store::SessionStore::create`]).
    pub async fn guard(
        &self,
        email: &str,
        client: IpAddr,
        check: impl Future<Output = Result<SignedIn, ProviderError>>,
    ) -> Result<(SignedIn, u64), ApiError> {
        let account = account_key(email);
        let address = address_of(client);
        let pair = pair_key(&account, &address);
        let familiar = self.familiar(&account, &address).await;
        let began = self
            .begin(&pair, &self.pair_policy(), Counter::Pair)
            .await?;
        if !familiar {
            self.begin(&account, &self.policy, Counter::Account).await?;
        }
        let who = check.await?;
        self.counters.clear_attempts(&pair).await?;
        if !familiar {
            self.counters.clear_attempts(&account).await?;
        }
        if let Err(e) = self.history.remember_address(&account, &address).await {
            tracing::warn!(error = %e, "sign-in address not remembered");
        }
        Ok((who, began))
    }

    /// After a password reset made from `client`: the account starts afresh (its count from
    /// unfamiliar addresses, the cap with it, and the addresses it knew, since whoever
    /// guessed the old password may have signed in with it), and so does that address, which
    /// becomes the one familiar address.
    pub async fn reset(&self, email: &str, client: IpAddr) -> Result<(), ApiError> {
        let account = account_key(email);
        self.counters.clear_attempts(&account).await?;
        self.counters
            .clear_attempts(&pair_key(&account, &address_of(client)))
            .await?;
        self.history.forget_addresses(&account).await?;
        // The owner, who could read the reset mail, is at this address: it stays familiar,
        // or every reset would put their usual address back under the account-wide count
        // that anyone guessing from elsewhere can lock (the lock-out weapon again).
        let address = address_of(client);
        if let Err(e) = self.history.remember_address(&account, &address).await {
            tracing::warn!(error = %e, "reset address not remembered");
        }
        Ok(())
    }

    /// Runs `check` (a second-factor code's) for account `user_id` unless its codes are
    /// locked. One counter per account, whatever the address, counted before the check in
    /// the shared store: six digits must not be guessable by spreading guesses over
    /// addresses, parallel requests or auth instances. A success clears it.
    pub async fn guard_code<T>(
        &self,
        user_id: &str,
        check: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        let key = hash_hex(format!("second-factor\n{user_id}").as_bytes());
        self.begin(&key, &self.pair_policy(), Counter::Code).await?;
        let out = check.await?;
        self.counters.clear_attempts(&key).await?;
        Ok(out)
    }

    /// The pair's policy: the account's locks, no cap.
    fn pair_policy(&self) -> ThrottlePolicy {
        ThrottlePolicy {
            hard_cap: u32::MAX,
            ..self.policy
        }
    }

    /// Whether the account signed in from `address` lately. When the history cannot say,
    /// the address is treated as new: stricter, never looser.
    async fn familiar(&self, account: &str, address: &str) -> bool {
        self.history
            .familiar_address(account, address, FAMILIAR_FOR)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "sign-in history unavailable: address taken as new");
                false
            })
    }

    /// Counts an attempt against `key`; the time it began, or the refusal.
    async fn begin(
        &self,
        key: &str,
        policy: &ThrottlePolicy,
        counter: Counter,
    ) -> Result<u64, ApiError> {
        match self.counters.begin_attempt(key, policy).await? {
            Attempt::Allowed { at_us } => Ok(at_us),
            Attempt::Locked(left) => {
                crate::metrics::locked_out();
                tracing::info!(?counter, "sign-in refused: locked");
                Err(ApiError::AccountLocked(left))
            }
            Attempt::Capped => {
                crate::metrics::locked_out();
                tracing::warn!(
                    "sign-in refused: the account is past the attempt cap for new addresses until a reset"
                );
                Err(ApiError::AccountLocked(CAPPED_RETRY))
            }
        }
    }
}

/// The account's counter key: a hash of the normalized address, alike for accounts that
/// do not exist.
fn account_key(email: &str) -> String {
    hash_hex(email.as_bytes())
}

/// The key of one address's attempts at one account.
fn pair_key(account: &str, address: &str) -> String {
    hash_hex(format!("{account}\n{address}").as_bytes())
}

/// The part of a client's address one party controls: an IPv4 address, or the /64 of an
/// IPv6 one (a host is commonly given a whole /64, so counting its addresses one by one
/// would give it 2^64 fresh counters).
pub fn address_of(ip: IpAddr) -> String {
    match client_ip::canonical(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_host_is_its_64_and_mapped_ipv4_is_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(address_of(a), "2001:db8:1:2::/64");
        assert_eq!(address_of(a), address_of(b));
        assert_ne!(address_of(a), address_of(c));
        let mapped: IpAddr = "::ffff:203.0.113.7".parse().expect("ip");
        assert_eq!(address_of(mapped), "203.0.113.7");
        assert_ne!(
            pair_key("acc", "203.0.113.7"),
            pair_key("acc", "203.0.113.8")
        );
        assert_ne!(pair_key("acc", "203.0.113.7"), account_key("acc"));
    }
}
