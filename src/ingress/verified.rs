//! Tokens already verified, so a token the registration processor reuses for many calls is
//! verified once, not at every call. Held until the token's `exp` (plus the leeway the
//! verification allows); keyed by the token's SHA-256, so the tokens themselves are not kept.
//! A token whose key the issuer withdraws stays accepted until it expires, as it would be by
//! any verifier that does not re-fetch the keys for each request.

use std::{collections::HashMap, sync::Mutex};

use sha2::{Digest, Sha256};

/// Entries held at most; when full, the expired ones go, and if none has expired, all of them.
const CAPACITY: usize = 4096;

pub(super) struct VerifiedTokens {
    leeway: u64,
    entries: Mutex<HashMap<[u8; 32], (String, u64)>>,
}

impl VerifiedTokens {
    pub(super) fn new(leeway: u64) -> VerifiedTokens {
        VerifiedTokens {
            leeway,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The `app_id` of `token` if it was verified and has not expired at `now` (Unix seconds).
    pub(super) fn get(&self, token: &str, now: u64) -> Option<String> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&digest(token))
            .filter(|(_, exp)| now < exp.saturating_add(self.leeway))
            .map(|(app_id, _)| app_id.clone())
    }

    /// Remembers a verified `token` of `app_id`, expiring at `exp` (Unix seconds).
    pub(super) fn insert(&self, token: &str, app_id: String, exp: u64, now: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CAPACITY {
            entries.retain(|_, (_, exp)| now < exp.saturating_add(self.leeway));
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(digest(token), (app_id, exp));
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verified_token_is_remembered_until_it_expires() {
        let verified = VerifiedTokens::new(60);
        assert_eq!(verified.get("t", 1_000), None);
        verified.insert("t", "rp".into(), 2_000, 1_000);
        assert_eq!(verified.get("t", 1_000).as_deref(), Some("rp"));
        assert_eq!(
            verified.get("t", 2_059).as_deref(),
            Some("rp"),
            "within the leeway"
        );
        assert_eq!(verified.get("t", 2_060), None, "expired");
        assert_eq!(verified.get("u", 1_000), None, "another token");
    }

    #[test]
    fn a_full_cache_drops_the_expired_entries_first() {
        let verified = VerifiedTokens::new(0);
        for n in 0..CAPACITY {
            let exp = if n == 0 { 2_000 } else { 1_500 };
            verified.insert(&n.to_string(), "rp".into(), exp, 1_000);
        }
        verified.insert("new", "rp".into(), 3_000, 1_600);
        assert_eq!(
            verified.get("0", 1_600).as_deref(),
            Some("rp"),
            "unexpired, kept"
        );
        assert_eq!(verified.get("new", 1_600).as_deref(), Some("rp"));
        assert_eq!(verified.entries.lock().unwrap().len(), 2);
    }
}
