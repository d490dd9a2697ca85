//! One shared copy of each distinct set of customer keys and of each
//! customer id. A drop of 12 million transactions names about a million
//! customers: rows hold a pointer to their keys and customer instead of
//! their own strings (~60 bytes a row), and identity resolution runs once
//! per key set instead of once per row.
//!
//! Written here rather than taken from an interning crate: the copies belong
//! to one run (no global table outliving it), and lookups take a borrowed
//! view, so a stored row's keys are matched before any string is allocated.

use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, Mutex, PoisonError};

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use rustc_hash::FxBuildHasher;

use crate::record::{Keys, KeysView};

/// Independent tables, so parallel parsers rarely wait for each other.
const SHARDS: usize = 64;

/// Shared copies of values, looked up by a borrowed form `Q` that hashes as
/// the value does; usable from many threads.
struct Interner<T: ?Sized> {
    shards: Box<[Mutex<HashTable<Arc<T>>>]>,
    hash_of: fn(&T) -> u64,
}

impl<T: ?Sized> Interner<T> {
    fn new(hash_of: fn(&T) -> u64) -> Interner<T> {
        Interner {
            shards: (0..SHARDS).map(|_| Mutex::new(HashTable::new())).collect(),
            hash_of,
        }
    }

    /// The shared copy of the value `is` recognises (whose hash is `hash`),
    /// made by `make` when there is none yet.
    fn get_or_make(
        &self,
        hash: u64,
        is: impl Fn(&T) -> bool,
        make: impl FnOnce() -> Arc<T>,
    ) -> Arc<T> {
        // The top bits pick the shard; the table uses the low ones.
        let shard = &self.shards[(hash >> 58) as usize % SHARDS];
        // A panic elsewhere cannot leave a table half-changed: each call
        // finds or inserts whole values.
        let mut table = shard.lock().unwrap_or_else(PoisonError::into_inner);
        let hash_of = self.hash_of;
        match table.entry(hash, |v| is(v), |v| hash_of(v)) {
            Entry::Occupied(e) => Arc::clone(e.get()),
            Entry::Vacant(e) => Arc::clone(e.insert(make()).get()),
        }
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

fn hash_one<Q: Hash + ?Sized>(q: &Q) -> u64 {
    FxBuildHasher.hash_one(q)
}

/// A run's shared key sets and customer ids.
pub struct KeySets {
    keys: Interner<Keys>,
    ids: Interner<str>,
}

impl Default for KeySets {
    fn default() -> Self {
        KeySets {
            keys: Interner::new(|k| hash_one(&k.view())),
            ids: Interner::new(hash_one),
        }
    }
}

impl std::fmt::Debug for KeySets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySets")
            .field("key_sets", &self.keys.len())
            .field("ids", &self.ids.len())
            .finish()
    }
}

impl KeySets {
    /// The shared copy of the keys `view` shows.
    pub fn keys(&self, view: KeysView<'_>) -> Arc<Keys> {
        self.keys.get_or_make(
            hash_one(&view),
            |k| k.view() == view,
            || Arc::new(view.to_keys()),
        )
    }

    /// The shared copy of `keys`: `keys` itself when they are the first.
    pub fn share(&self, keys: &Arc<Keys>) -> Arc<Keys> {
        let view = keys.view();
        self.keys
            .get_or_make(hash_one(&view), |k| k.view() == view, || Arc::clone(keys))
    }

    /// The shared copy of customer id `id`.
    pub fn id(&self, id: &str) -> Arc<str> {
        self.ids
            .get_or_make(hash_one(id), |v| v == id, || Arc::from(id))
    }

    /// How many distinct key sets.
    pub fn key_sets(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;
    use rayon::prelude::*;

    fn view<'a>(id: Option<&'a str>, email: Option<&'a str>) -> KeysView<'a> {
        KeysView {
            customer_id: id,
            email,
            phone: None,
        }
    }

    #[test]
    fn equal_keys_share_one_copy_and_different_keys_do_not() {
        let sets = KeySets::default();
        let a = sets.keys(view(Some("C1"), Some("a@x.io")));
        let b = sets.share(&Arc::new(view(Some("C1"), Some("a@x.io")).to_keys()));
        assert!(Arc::ptr_eq(&a, &b));
        // The same strings in other fields are other keys.
        let c = sets.keys(view(None, Some("C1")));
        let d = sets.keys(view(Some("C1"), None));
        assert!(!Arc::ptr_eq(&a, &c) && !Arc::ptr_eq(&c, &d));
        assert_eq!(d.customer_id.as_deref(), Some("C1"));
        assert_eq!(sets.key_sets(), 3);
        assert!(Arc::ptr_eq(&sets.id("C1"), &sets.id("C1")));
    }

    #[test]
    fn parallel_callers_get_one_copy_per_distinct_value() {
        let sets = KeySets::default();
        let names: Vec<String> = (0..20_000).map(|i| format!("C{}", i % 5_000)).collect();
        let shared: Vec<Arc<Keys>> = names
            .par_iter()
            .map(|n| sets.keys(view(Some(n), None)))
            .collect();
        assert_eq!(sets.key_sets(), 5_000);
        for (i, k) in shared.iter().enumerate() {
            assert!(Arc::ptr_eq(k, &shared[i % 5_000]));
        }
    }
}
