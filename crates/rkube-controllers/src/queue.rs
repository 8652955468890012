//! A controller's work queue, as client-go's rate-limited work queue behaves for one
//! worker: a key is queued at most once however often it is added (adding it again only
//! brings it forward), a key that failed comes back after an exponential back-off, and a key
//! that failed [`MAX_RETRIES`] times in a row is dropped until something adds it again.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

/// Failures in a row after which a key is dropped (kube-controller-manager's `maxRetries`
/// for its endpoints controller: the last wait before giving up is about 82 s).
pub const MAX_RETRIES: u32 = 15;
/// The first retry delay (client-go's `DefaultControllerRateLimiter`: 5 ms, doubling).
pub const BASE_DELAY: Duration = Duration::from_millis(5);
/// The longest retry delay.
pub const MAX_DELAY: Duration = Duration::from_secs(1000);

/// Keys waiting to be worked on, each with the time it is due.
pub struct Queue<K> {
    due: HashMap<K, Instant>,
    by_time: BTreeSet<(Instant, K)>,
    failures: HashMap<K, u32>,
}

impl<K: Clone + Ord + Hash> Default for Queue<K> {
    fn default() -> Self {
        Queue { due: HashMap::new(), by_time: BTreeSet::new(), failures: HashMap::new() }
    }
}

/// The delay before the `n`th retry (n ≥ 1).
pub fn backoff(n: u32) -> Duration {
    let factor = 1u32 << n.saturating_sub(1).min(30);
    BASE_DELAY.saturating_mul(factor).min(MAX_DELAY)
}

impl<K: Clone + Ord + Hash> Queue<K> {
    /// Queues `key` now (a key already waiting is brought forward, never queued twice).
    pub fn add(&mut self, key: K) {
        self.add_at(key, Instant::now());
    }

    /// Queues `key` for `at` unless it is already due sooner.
    pub fn add_at(&mut self, key: K, at: Instant) {
        match self.due.get(&key) {
            Some(&when) if when <= at => {}
            Some(&when) => {
                self.by_time.remove(&(when, key.clone()));
                self.by_time.insert((at, key.clone()));
                self.due.insert(key, at);
            }
            None => {
                self.by_time.insert((at, key.clone()));
                self.due.insert(key, at);
            }
        }
    }

    /// Records a failure of `key` and queues it after its back-off; returns false (and
    /// forgets the key's failures) when it has failed [`MAX_RETRIES`] times: the caller
    /// drops it.
    pub fn add_rate_limited(&mut self, key: K) -> bool {
        let n = self.failures.entry(key.clone()).or_insert(0);
        if *n >= MAX_RETRIES {
            self.failures.remove(&key);
            return false;
        }
        *n += 1;
        let delay = backoff(*n);
        self.add_at(key, Instant::now() + delay);
        true
    }

    /// Forgets the failures of `key` (it succeeded).
    pub fn forget(&mut self, key: &K) {
        self.failures.remove(key);
    }

    /// Failures of `key` in a row so far.
    pub fn failures(&self, key: &K) -> u32 {
        self.failures.get(key).copied().unwrap_or(0)
    }

    /// Takes the key due first if it is due by `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        let first = self.by_time.first().filter(|(when, _)| *when <= now).cloned()?;
        self.by_time.remove(&first);
        self.due.remove(&first.1);
        Some(first.1)
    }

    /// When the next key is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.by_time.first().map(|(when, _)| *when)
    }

    pub fn len(&self) -> usize {
        self.due.len()
    }

    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_five_milliseconds() {
        let got: Vec<u128> = (1..=4).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(got, vec![5, 10, 20, 40]);
        assert_eq!(backoff(15), Duration::from_millis(5 << 14));
        assert_eq!(backoff(40), MAX_DELAY);
    }

    #[test]
    fn keys_are_queued_once_and_retried_until_dropped() {
        let mut q: Queue<&str> = Queue::default();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        let now = Instant::now();
        assert_eq!(q.pop_due(now), Some("a"));
        assert_eq!(q.pop_due(now), Some("b"));
        assert_eq!(q.pop_due(now), None);

        assert!(q.add_rate_limited("a"));
        assert_eq!(q.pop_due(now), None, "backing off");
        assert!(q.next_due().is_some_and(|d| d >= now + BASE_DELAY));
        // Adding it again brings it forward.
        q.add("a");
        assert_eq!(q.pop_due(Instant::now()), Some("a"));
        for _ in 1..MAX_RETRIES {
            assert!(q.add_rate_limited("a"));
        }
        assert_eq!(q.failures(&"a"), MAX_RETRIES);
        assert!(!q.add_rate_limited("a"), "dropped after MAX_RETRIES failures");
        assert_eq!(q.failures(&"a"), 0);
        q.forget(&"a");
    }
}
