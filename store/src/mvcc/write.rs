//! Put, DeleteRange and lease deletes, built on an all-or-nothing write batch.
//!
//! A [`Batch`] collects the changes of one write request at main revision
//! `current + 1`, numbering them with sub-revisions. They go into the index and
//! log at once, so later reads of the same request see them, but the store's
//! revision moves only on [`Store::commit`]; [`Store::rollback`] takes them
//! out again, which is how a failing txn leaves the store unchanged.

use etcd_client::proto::{PbDeleteRequest, PbDeleteResponse, PbEvent, PbKeyValue, PbPutRequest, PbPutResponse};

use super::{Error, Record, Revision, Store, EVENT_DELETE, EVENT_PUT};

/// Bytes counted per stored revision on top of its key and value (revision key,
/// encoded fields, index entry), so many tiny writes still count toward the quota.
const RECORD_OVERHEAD: i64 = 64;

/// The changes of one write request in progress.
#[derive(Debug, Default)]
pub(super) struct Batch {
    changes: Vec<Revision>,
    events: Vec<PbEvent>,
}

impl Store {
    /// Put a key, as etcd's Put RPC (checks first; nothing changes on error).
    ///
    /// `lease_exists` says whether a non-zero lease id is granted. Returns the
    /// response (header None: it is `revision()` afterwards) and the PUT event,
    /// with `prev_kv` filled when the key existed (a watcher without prev_kv clears it).
    pub fn put(
        &mut self,
        req: &PbPutRequest,
        lease_exists: &dyn Fn(i64) -> bool,
    ) -> Result<(PbPutResponse, Vec<PbEvent>), Error> {
        check_put_request(req)?;
        self.check_put(req, self.current, lease_exists)?;
        let mut batch = Batch::default();
        match self.apply_put(&mut batch, req) {
            Ok(resp) => Ok((PbPutResponse { header: None, ..resp }, self.commit(batch))),
            Err(err) => {
                self.rollback(batch);
                Err(err)
            }
        }
    }

    /// Delete the live keys of etcd's range `[key, range_end)` at one new
    /// revision; a delete that finds nothing does not bump the revision.
    /// Returns the response (header None) and one DELETE event per key.
    pub fn delete_range(&mut self, req: &PbDeleteRequest) -> Result<(PbDeleteResponse, Vec<PbEvent>), Error> {
        if req.key.is_empty() {
            return Err(Error::EmptyKey);
        }
        let mut batch = Batch::default();
        let resp = self.apply_delete(&mut batch, req);
        Ok((PbDeleteResponse { header: None, ..resp }, self.commit(batch)))
    }

    /// Delete these keys at one new revision (what a lease revoke does), in key
    /// order as etcd's lessor does; missing keys are skipped, and nothing
    /// happens (no revision bump) if none exist. Returns the DELETE events.
    pub fn delete_keys(&mut self, keys: &[Vec<u8>]) -> Vec<PbEvent> {
        let mut keys = keys.to_vec();
        keys.sort();
        keys.dedup();
        let mut batch = Batch::default();
        for key in &keys {
            self.write_delete(&mut batch, key);
        }
        self.commit(batch)
    }

    /// The lease and `ignore_*` checks etcd runs before a put (`checkPut`), reading at `at`.
    pub(super) fn check_put(
        &self,
        req: &PbPutRequest,
        at: i64,
        lease_exists: &dyn Fn(i64) -> bool,
    ) -> Result<(), Error> {
        if req.lease != 0 && !lease_exists(req.lease) {
            return Err(Error::LeaseNotFound);
        }
        if (req.ignore_value || req.ignore_lease) && self.get(&req.key, at).is_none() {
            return Err(Error::KeyNotFound);
        }
        Ok(())
    }

    /// The revision reads inside `batch` see: its own once it wrote something.
    pub(super) fn read_revision(&self, batch: &Batch) -> i64 {
        if batch.changes.is_empty() {
            self.current
        } else {
            self.current + 1
        }
    }

    /// Put as etcd's `txn.put`; the header carries the put's revision (as nested responses do).
    pub(super) fn apply_put(&mut self, batch: &mut Batch, req: &PbPutRequest) -> Result<PbPutResponse, Error> {
        let prev = self
            .get(&req.key, self.read_revision(batch))
            .map(|(rev, record)| record.to_kv(rev.main));
        let (mut value, mut lease) = (req.value.clone(), req.lease);
        if req.ignore_value || req.ignore_lease {
            let prev = prev.as_ref().ok_or(Error::KeyNotFound)?;
            if req.ignore_value {
                value = prev.value.clone();
            }
            if req.ignore_lease {
                lease = prev.lease;
            }
        }
        let revision = self.write_put(batch, &req.key, value, lease);
        Ok(PbPutResponse {
            header: Some(header(revision)),
            prev_kv: if req.prev_kv { prev } else { None },
        })
    }

    /// DeleteRange as etcd's `txn.deleteRange`; the header carries the revision after it.
    pub(super) fn apply_delete(&mut self, batch: &mut Batch, req: &PbDeleteRequest) -> PbDeleteResponse {
        let at = self.read_revision(batch);
        let live: Vec<PbKeyValue> = self
            .live_range(&req.key, &req.range_end, at)
            .map(|(rev, record)| record.to_kv(rev.main))
            .collect();
        for kv in &live {
            self.write_delete(batch, &kv.key);
        }
        PbDeleteResponse {
            header: Some(header(self.read_revision(batch))),
            deleted: live.len() as i64,
            prev_kvs: if req.prev_kv { live } else { Vec::new() },
        }
    }

    /// Record a put of `key` in `batch`; returns its main revision.
    fn write_put(&mut self, batch: &mut Batch, key: &[u8], value: Vec<u8>, lease: i64) -> i64 {
        let main = self.current + 1;
        let prev = self.get(key, main).map(|(rev, record)| record.to_kv(rev.main));
        let (create_revision, version) = prev
            .as_ref()
            .map_or((main, 1), |kv| (kv.create_revision, kv.version + 1));
        let record = Record {
            key: key.to_vec(),
            value,
            create_revision,
            version,
            lease,
            tombstone: false,
        };
        batch.events.push(PbEvent {
            r#type: EVENT_PUT,
            kv: Some(record.to_kv(main)),
            prev_kv: prev,
        });
        self.insert(batch, record);
        main
    }

    /// Record a tombstone for `key` in `batch` if it is live.
    fn write_delete(&mut self, batch: &mut Batch, key: &[u8]) {
        let main = self.current + 1;
        let Some(prev) = self.get(key, main).map(|(rev, record)| record.to_kv(rev.main)) else {
            return;
        };
        let record = Record {
            key: key.to_vec(),
            value: Vec::new(),
            create_revision: 0,
            version: 0,
            lease: 0,
            tombstone: true,
        };
        let kv = PbKeyValue {
            key: key.to_vec(),
            mod_revision: main,
            ..Default::default()
        };
        batch.events.push(PbEvent {
            r#type: EVENT_DELETE,
            kv: Some(kv),
            prev_kv: Some(prev),
        });
        self.insert(batch, record);
    }

    fn insert(&mut self, batch: &mut Batch, record: Record) {
        let rev = Revision {
            main: self.current + 1,
            sub: batch.changes.len() as i64,
        };
        batch.changes.push(rev);
        self.bytes += record_size(&record);
        self.index.entry(record.key.clone()).or_default().push(rev);
        self.log.insert(rev, record);
    }

    /// Make the batch's changes current (one revision bump if any); returns its events.
    pub(super) fn commit(&mut self, batch: Batch) -> Vec<PbEvent> {
        if !batch.changes.is_empty() {
            self.current += 1;
        }
        batch.events
    }

    /// Take the batch's changes out again, newest first.
    pub(super) fn rollback(&mut self, batch: Batch) {
        for rev in batch.changes.iter().rev() {
            let Some(record) = self.log.remove(rev) else { continue };
            self.bytes -= record_size(&record);
            if let Some(revs) = self.index.get_mut(&record.key) {
                revs.retain(|r| r != rev);
                if revs.is_empty() {
                    self.index.remove(&record.key);
                }
            }
        }
    }
}

/// Bytes [`Store::size_bytes`] counts for one stored revision.
pub(super) fn record_size(record: &Record) -> i64 {
    (record.key.len() + record.value.len()) as i64 + RECORD_OVERHEAD
}

/// A nested response's header: etcd fills only the revision there.
pub(super) fn header(revision: i64) -> etcd_client::proto::PbResponseHeader {
    etcd_client::proto::PbResponseHeader {
        revision,
        ..Default::default()
    }
}

/// The request checks of etcd's `checkPutRequest` (v3rpc), before any state is read.
pub(super) fn check_put_request(req: &PbPutRequest) -> Result<(), Error> {
    if req.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(Error::ValueProvided);
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(Error::LeaseProvided);
    }
    Ok(())
}

#[cfg(test)]
#[path = "write_tests.rs"]
mod tests;
