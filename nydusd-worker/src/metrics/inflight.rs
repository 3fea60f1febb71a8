//! FUSE requests being served right now, for `GET /api/v1/metrics/inflight`
//! (nydus-snapshotter counts entries older than 10 s as hung I/O).
//!
//! Each FUSE thread owns one [`InflightSlot`] and passes it to
//! `Server::handle_message` as its `MetricsHook`; fuse-backend-rs calls
//! `collect` before and `release` after every request. A slot has its own
//! lock, so threads never contend with each other, only with a reader.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use fuse_backend_rs::abi::fuse_abi::{InHeader, OutHeader};
use fuse_backend_rs::api::server::MetricsHook;
use nydus_protocol::api::InflightOp;

type Cell = Arc<Mutex<Option<InflightOp>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Default)]
pub struct InflightTable {
    slots: Mutex<Vec<Cell>>,
}

impl InflightTable {
    /// A new slot for one FUSE thread; it leaves the table when dropped.
    #[allow(dead_code)] // until fuse_service's threads take their slots
    pub fn slot(self: &Arc<Self>) -> InflightSlot {
        let cell = Cell::default();
        lock(&self.slots).push(cell.clone());
        InflightSlot {
            table: self.clone(),
            cell,
        }
    }

    /// The requests in flight, oldest first; `None` when no FUSE thread has
    /// a slot (virtio-fs, or before the session started): not tracked.
    pub fn snapshot(&self) -> Option<Vec<InflightOp>> {
        let slots = lock(&self.slots);
        if slots.is_empty() {
            return None;
        }
        let mut ops: Vec<InflightOp> = slots.iter().filter_map(|c| *lock(c)).collect();
        ops.sort_by_key(|op| (op.timestamp_secs, op.unique));
        Some(ops)
    }
}

/// One FUSE thread's entry in the table.
pub struct InflightSlot {
    table: Arc<InflightTable>,
    cell: Cell,
}

impl MetricsHook for InflightSlot {
    fn collect(&self, ih: &InHeader) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        *lock(&self.cell) = Some(InflightOp {
            inode: ih.nodeid,
            opcode: ih.opcode,
            unique: ih.unique,
            timestamp_secs: now.as_secs(),
        });
    }

    fn release(&self, _oh: Option<&OutHeader>) {
        *lock(&self.cell) = None;
    }
}

impl Drop for InflightSlot {
    fn drop(&mut self) {
        lock(&self.table.slots).retain(|c| !Arc::ptr_eq(c, &self.cell));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(opcode: u32, unique: u64, nodeid: u64) -> InHeader {
        InHeader {
            opcode,
            unique,
            nodeid,
            ..InHeader::default()
        }
    }

    #[test]
    fn metrics_inflight_slots() {
        let table = Arc::new(InflightTable::default());
        assert_eq!(table.snapshot(), None);
        let a = table.slot();
        let b = table.slot();
        assert_eq!(table.snapshot(), Some(vec![]));
        a.collect(&header(15, 7, 3));
        b.collect(&header(1, 8, 1));
        let ops = table.snapshot().unwrap_or_default();
        assert_eq!(ops.len(), 2);
        assert_eq!((ops[0].opcode, ops[0].unique, ops[0].inode), (15, 7, 3));
        assert!(ops[0].timestamp_secs > 0);
        a.release(None);
        assert_eq!(table.snapshot().map(|o| o.len()), Some(1));
        drop(b);
        assert_eq!(table.snapshot(), Some(vec![]));
        drop(a);
        assert_eq!(table.snapshot(), None);
    }
}
