//! Expectations: what a controller is still waiting to see in its cache.
//!
//! A ReplicaSet that has just created three pods must not create three
//! more because its pod informer has not caught up yet. Before writing, the
//! controller records how many creations and which deletions it expects;
//! the pod event handlers count them off as they arrive; until everything
//! expected has been observed (or [`TIMEOUT`] passes, in case an event was
//! lost), the controller only updates status and does not act on counts.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an expectation is trusted before it is ignored.
pub const TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
struct Expected {
    adds: i64,
    deletes: HashSet<String>,
    since: Instant,
}

/// Expectations per controller key.
#[derive(Debug, Default)]
pub struct Expectations {
    entries: Mutex<HashMap<String, Expected>>,
}

impl Expectations {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Expected>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the controller may act on what its cache shows for `key`.
    pub fn satisfied(&self, key: &str) -> bool {
        match self.entries().get(key) {
            None => true,
            Some(e) => (e.adds <= 0 && e.deletes.is_empty()) || e.since.elapsed() > TIMEOUT,
        }
    }

    /// About to create `adds` objects and delete the ones under `deletes`
    /// (their cache keys).
    pub fn expect(&self, key: &str, adds: i64, deletes: impl IntoIterator<Item = String>) {
        self.entries().insert(
            key.to_string(),
            Expected {
                adds,
                deletes: deletes.into_iter().collect(),
                since: Instant::now(),
            },
        );
    }

    /// One creation seen, or one that will never happen (it failed).
    pub fn creation_observed(&self, key: &str) {
        if let Some(e) = self.entries().get_mut(key) {
            e.adds -= 1;
        }
    }

    /// The deletion of the object under `object_key` seen, or given up.
    pub fn deletion_observed(&self, key: &str, object_key: &str) {
        if let Some(e) = self.entries().get_mut(key) {
            e.deletes.remove(object_key);
        }
    }

    /// The controller's object is gone: forget what it waited for.
    pub fn forget(&self, key: &str) {
        self.entries().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn satisfied_once_everything_expected_was_seen() {
        let e = Expectations::default();
        assert!(e.satisfied("ns/rs"));
        e.expect("ns/rs", 2, ["ns/p1".to_string()]);
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        e.creation_observed("ns/rs");
        assert!(!e.satisfied("ns/rs"));
        // A deletion seen twice (update with deletionTimestamp, then delete) counts once.
        e.deletion_observed("ns/rs", "ns/p2");
        assert!(!e.satisfied("ns/rs"));
        e.deletion_observed("ns/rs", "ns/p1");
        assert!(e.satisfied("ns/rs"));
        e.forget("ns/rs");
        assert!(e.satisfied("ns/rs"));
    }
}
