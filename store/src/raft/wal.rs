//! The Raft log's write-ahead file: durability at the cost of one
//! `fdatasync` of the bytes just written.
//!
//! A redb commit that must survive a crash rewrites B-tree pages and its
//! header and syncs them: about half a millisecond here, four times a bare
//! `fdatasync`. Raft pays for that fsync twice in every write's path (the
//! leader's own append, which openraft 0.9 waits for before it replicates,
//! then the followers'), so the log store writes each durable group of
//! changes here first, syncs only this file, and commits the same changes
//! to redb without syncing. Every so often (when this file is full) redb
//! commits durably — a *checkpoint* — and the file starts over.
//!
//! The file is preallocated, so a sync flushes data, not file metadata.
//! Each record is `magic, epoch, length, crc32, payload`. The epoch is the
//! checkpoint generation, kept in redb: a checkpoint stores epoch + 1 in the
//! same durable commit, after which records of older epochs (still in the
//! file beyond the new tail) are stale. Recovery reads the records of the
//! current epoch from the start of the file and stops at the first one that
//! is torn, of another epoch or fails its checksum; those before it are
//! exactly what was synced, and replaying them over redb's last durable
//! state restores what the crash lost (the changes are assignments, so
//! replaying one already in redb is harmless).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Marks the start of a record ("KWAL").
const MAGIC: u32 = 0x4b57_414c;
/// magic (4) + epoch (8) + length (4) + crc32 (4).
const HEADER: usize = 20;

/// The write-ahead file.
pub struct Wal {
    file: File,
    capacity: u64,
    epoch: u64,
    /// Where the next record goes.
    tail: u64,
}

impl Wal {
    /// Opens the file at `path` (creating and preallocating `capacity`
    /// bytes if needed) and returns it with the payloads of the valid
    /// records of `epoch`, in order. The next record is written after them.
    pub fn open(path: &Path, capacity: u64, epoch: u64) -> io::Result<(Wal, Vec<Vec<u8>>)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        if file.metadata()?.len() < capacity {
            // Real blocks, so that a sync later need not allocate them;
            // where the file system cannot, a sparse file still works.
            if rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, capacity).is_err() {
                file.set_len(capacity)?;
            }
            file.sync_all()?;
            if let Some(dir) = path.parent() {
                File::open(dir)?.sync_all()?;
            }
        }
        let mut wal = Wal {
            file,
            capacity,
            epoch,
            tail: 0,
        };
        let records = wal.read_records()?;
        Ok((wal, records))
    }

    fn read_records(&mut self) -> io::Result<Vec<Vec<u8>>> {
        let mut records = Vec::new();
        let mut header = [0u8; HEADER];
        loop {
            if self.tail + HEADER as u64 > self.capacity {
                break;
            }
            self.file.read_exact_at(&mut header, self.tail)?;
            let field = |at: usize, len: usize| &header[at..at + len];
            let u32_at = |at: usize| u32::from_le_bytes(field(at, 4).try_into().unwrap_or_default());
            let epoch = u64::from_le_bytes(field(4, 8).try_into().unwrap_or_default());
            let len = u32_at(12) as u64;
            if u32_at(0) != MAGIC || epoch != self.epoch || self.tail + HEADER as u64 + len > self.capacity {
                break;
            }
            let mut payload = vec![0u8; len as usize];
            self.file.read_exact_at(&mut payload, self.tail + HEADER as u64)?;
            if checksum(epoch, &payload) != u32_at(16) {
                break;
            }
            records.push(payload);
            self.tail += HEADER as u64 + len;
        }
        Ok(records)
    }

    /// Whether records of these sizes fit after the tail.
    pub fn fits(&self, sizes: impl Iterator<Item = usize>) -> bool {
        let needed: u64 = sizes.map(|n| (HEADER + n) as u64).sum();
        self.tail + needed <= self.capacity
    }

    /// Writes `payloads` as records after the tail (one write; not yet
    /// durable: see [`Wal::sync`]).
    pub fn append(&mut self, payloads: &[Vec<u8>]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(payloads.iter().map(|p| HEADER + p.len()).sum());
        for payload in payloads {
            let len = u32::try_from(payload.len()).map_err(|_| io::Error::other("WAL record over 4 GiB"))?;
            buf.extend_from_slice(&MAGIC.to_le_bytes());
            buf.extend_from_slice(&self.epoch.to_le_bytes());
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(&checksum(self.epoch, payload).to_le_bytes());
            buf.extend_from_slice(payload);
        }
        if self.tail + buf.len() as u64 > self.capacity {
            return Err(io::Error::other("WAL records do not fit; checkpoint first"));
        }
        self.file.write_all_at(&buf, self.tail)?;
        self.tail += buf.len() as u64;
        Ok(())
    }

    /// Makes everything written so far durable.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Starts over at the beginning with `epoch`, once a checkpoint has
    /// made every earlier record redundant (and stored `epoch` durably).
    pub fn restart(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.tail = 0;
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }
}

fn checksum(epoch: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&epoch.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, epoch: u64) -> (Wal, Vec<Vec<u8>>) {
        Wal::open(&dir.join("raft.wal"), 4096, epoch).expect("open")
    }

    #[test]
    fn synced_records_of_the_current_epoch_come_back_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut wal, records) = open(dir.path(), 7);
        assert!(records.is_empty());
        wal.append(&[b"one".to_vec(), b"two".to_vec()]).expect("append");
        wal.append(&[vec![3u8; 100]]).expect("append");
        wal.sync().expect("sync");
        drop(wal);
        let (_, records) = open(dir.path(), 7);
        assert_eq!(records, vec![b"one".to_vec(), b"two".to_vec(), vec![3u8; 100]]);
        // Another epoch's reader sees none of them.
        assert!(open(dir.path(), 8).1.is_empty());
    }

    #[test]
    fn a_restart_hides_older_records_and_a_torn_record_ends_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut wal, _) = open(dir.path(), 1);
        wal.append(&[vec![1u8; 300], vec![2u8; 300], vec![3u8; 300]])
            .expect("append");
        wal.restart(2);
        wal.append(&[vec![9u8; 10]]).expect("append");
        drop(wal);
        // Epoch 2 holds one record; the epoch-1 records after it are stale.
        assert_eq!(open(dir.path(), 2).1, vec![vec![9u8; 10]]);

        let (mut wal, _) = open(dir.path(), 2);
        wal.append(&[vec![4u8; 50], vec![5u8; 50]]).expect("append");
        drop(wal);
        // Tear the last record: flip a payload byte.
        let file = OpenOptions::new()
            .write(true)
            .open(dir.path().join("raft.wal"))
            .expect("reopen");
        let last_payload = (HEADER + 10 + HEADER + 50 + HEADER + 10) as u64;
        file.write_all_at(&[0xff], last_payload).expect("tear");
        assert_eq!(open(dir.path(), 2).1, vec![vec![9u8; 10], vec![4u8; 50]]);
    }

    #[test]
    fn records_that_would_overflow_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut wal, _) = open(dir.path(), 1);
        assert!(wal.fits([4000].into_iter()));
        assert!(!wal.fits([4096].into_iter()));
        assert!(wal.append(&[vec![0u8; 4096]]).is_err());
        wal.append(&[vec![0u8; 4000]]).expect("fits");
        assert!(!wal.fits([100].into_iter()));
    }
}
