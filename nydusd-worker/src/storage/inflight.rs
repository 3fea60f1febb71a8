//! In-flight chunk fetches: readers missing the same chunk wait on one
//! fetch instead of starting their own.
//!
//! Protocol: a reader `claim`s a chunk under the table lock. It gets `Ready`
//! if the cache already has it, `Waiter` if another thread is fetching it,
//! or `Owner` (and an entry is inserted). The owner fetches with no lock
//! held, stores the chunk (marking it ready in the cache first), then
//! `complete`s: the entry leaves the table and waiters get the data. So a
//! chunk is always either ready, in the table, or neither (claimable).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// (blob index, chunk index).
pub(crate) type ChunkKey = (u32, u32);

/// The outcome of one fetch: the uncompressed chunk, or failure (already
/// logged and counted by the owner).
pub(crate) type Outcome = Result<Arc<Vec<u8>>, ()>;

#[derive(Default)]
pub(crate) struct Slot {
    done: Mutex<Option<Outcome>>,
    cv: Condvar,
}

impl Slot {
    /// Blocks until the owner completes the fetch.
    pub(crate) fn wait(&self) -> Outcome {
        let mut g = lock(&self.done);
        loop {
            if let Some(o) = g.as_ref() {
                return o.clone();
            }
            g = self.cv.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }
}

pub(crate) enum Claim {
    Ready,
    Waiter(Arc<Slot>),
    Owner(Arc<Slot>),
}

#[derive(Default)]
pub(crate) struct Inflight {
    map: Mutex<HashMap<ChunkKey, Arc<Slot>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent, so a panic in
    // another holder does not make it unusable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inflight {
    /// `is_ready` is evaluated under the table lock, which makes the check
    /// and the claim atomic with respect to `complete`.
    pub(crate) fn claim(&self, key: ChunkKey, is_ready: impl FnOnce() -> bool) -> Claim {
        let mut map = lock(&self.map);
        if let Some(slot) = map.get(&key) {
            return Claim::Waiter(slot.clone());
        }
        if is_ready() {
            return Claim::Ready;
        }
        let slot = Arc::new(Slot::default());
        map.insert(key, slot.clone());
        Claim::Owner(slot)
    }

    /// Ends the fetch of `key` and wakes its waiters. `outcome` is only
    /// called when someone waits: the owner may hold the chunk in a buffer
    /// of its own and copy it out only for them.
    pub(crate) fn complete(
        &self,
        key: ChunkKey,
        slot: &Arc<Slot>,
        outcome: impl FnOnce() -> Outcome,
    ) {
        lock(&self.map).remove(&key);
        // Out of the table, the slot gains no new waiter: any reference
        // besides the owner's is one.
        let outcome = if Arc::strong_count(slot) > 1 {
            outcome()
        } else {
            Err(())
        };
        *lock(&slot.done) = Some(outcome);
        slot.cv.notify_all();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.map).len()
    }
}

/// The chunks one thread owns. Anything not completed when it is dropped
/// (an early return or a panic) is completed as failed, so no waiter can
/// hang on an abandoned fetch.
pub(crate) struct Owned<'a> {
    table: &'a Inflight,
    slots: HashMap<ChunkKey, Arc<Slot>>,
}

impl<'a> Owned<'a> {
    pub(crate) fn new(table: &'a Inflight) -> Self {
        Owned {
            table,
            slots: HashMap::new(),
        }
    }

    pub(crate) fn add(&mut self, key: ChunkKey, slot: Arc<Slot>) {
        self.slots.insert(key, slot);
    }

    pub(crate) fn complete(&mut self, key: ChunkKey, outcome: impl FnOnce() -> Outcome) {
        if let Some(slot) = self.slots.remove(&key) {
            self.table.complete(key, &slot, outcome);
        }
    }
}

impl Drop for Owned<'_> {
    fn drop(&mut self) {
        for (key, slot) in self.slots.drain() {
            self.table.complete(key, &slot, || Err(()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_owner_many_waiters_and_cleanup_on_drop() {
        let t = Inflight::default();
        let Claim::Owner(slot) = t.claim((0, 1), || false) else {
            panic!("first claim owns")
        };
        let Claim::Waiter(w) = t.claim((0, 1), || false) else {
            panic!("second claim waits")
        };
        std::thread::scope(|s| {
            let h = s.spawn(|| w.wait());
            let mut owned = Owned::new(&t);
            owned.add((0, 1), slot);
            drop(owned);
            assert_eq!(h.join().unwrap(), Err(()));
        });
        assert_eq!(t.len(), 0);
        assert!(matches!(t.claim((0, 1), || true), Claim::Ready));
    }
}
