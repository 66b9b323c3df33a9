//! Txn: compares, then the success or failure ops, all at one revision.
//!
//! As in etcd, a txn runs in four steps, so that it either applies whole or
//! fails before changing anything:
//! 1. request checks (`checkTxnRequest` and the duplicate-key `checkIntervals` of v3rpc);
//! 2. every compare, nested ones included, against the state before the txn,
//!    which fixes the branch each (nested) txn takes: a [`Plan`];
//! 3. the state checks of the chosen ops (revisions, leases, `ignore_*`);
//! 4. execution in one write batch, rolled back on error.

use std::collections::BTreeSet;

use etcd_client::proto::{
    PbCompare, PbCompareTarget, PbDeleteRequest, PbEvent, PbKeyValue, PbPutRequest, PbRangeRequest, PbResponseOp,
    PbTargetUnion, PbTxnOpRequest, PbTxnOpResponse, PbTxnRequest, PbTxnRequestOp, PbTxnResponse,
};

use super::range::check_range_request;
use super::write::{check_put_request, Batch};
use super::{Error, Store};

/// `Compare.CompareResult` values.
pub(super) const COMPARE_EQUAL: i32 = 0;
pub(super) const COMPARE_GREATER: i32 = 1;
pub(super) const COMPARE_LESS: i32 = 2;
pub(super) const COMPARE_NOT_EQUAL: i32 = 3;

/// A txn with its branch chosen by its compares (etcd's `txnPath`).
struct Plan<'a> {
    succeeded: bool,
    ops: Vec<Step<'a>>,
}

/// One op of the chosen branch.
enum Step<'a> {
    Range(&'a PbRangeRequest),
    Put(&'a PbPutRequest),
    Delete(&'a PbDeleteRequest),
    Txn(Plan<'a>),
}

impl Store {
    /// Whole txn at one revision, as etcd's Txn RPC: compares, then success or
    /// failure ops (nested txns allowed). Reads inside see earlier writes of
    /// the same txn; compares (nested ones too) see the state before it. Any
    /// error leaves the store unchanged. A txn without writes does not bump the
    /// revision. The response header is None (its revision is `revision()`);
    /// nested responses carry etcd's partial headers.
    pub fn txn(
        &mut self,
        req: &PbTxnRequest,
        lease_exists: &dyn Fn(i64) -> bool,
    ) -> Result<(PbTxnResponse, Vec<PbEvent>), Error> {
        check_txn_request(req)?;
        check_intervals(&req.success)?;
        check_intervals(&req.failure)?;
        let plan = self.plan(req);
        self.check_plan(&plan, lease_exists)?;
        let mut batch = Batch::default();
        match self.execute(&mut batch, &plan) {
            Ok(resp) => Ok((PbTxnResponse { header: None, ..resp }, self.commit(batch))),
            Err(err) => {
                self.rollback(batch);
                Err(err)
            }
        }
    }

    /// Evaluate the compares of `req` and of the nested txns on the chosen path.
    fn plan<'a>(&self, req: &'a PbTxnRequest) -> Plan<'a> {
        let succeeded = req.compare.iter().all(|c| self.compare(c));
        let branch = if succeeded { &req.success } else { &req.failure };
        let ops = branch
            .iter()
            .filter_map(|op| match op.request.as_ref()? {
                PbTxnOpRequest::RequestRange(r) => Some(Step::Range(r)),
                PbTxnOpRequest::RequestPut(p) => Some(Step::Put(p)),
                PbTxnOpRequest::RequestDeleteRange(d) => Some(Step::Delete(d)),
                PbTxnOpRequest::RequestTxn(t) => Some(Step::Txn(self.plan(t))),
            })
            .collect();
        Plan { succeeded, ops }
    }

    /// etcd's `checkTxn`: the chosen ops' checks against the state before the txn.
    fn check_plan(&self, plan: &Plan<'_>, lease_exists: &dyn Fn(i64) -> bool) -> Result<(), Error> {
        for step in &plan.ops {
            match step {
                Step::Range(r) if r.revision == 0 => {}
                Step::Range(r) if r.revision > self.current => return Err(Error::FutureRevision),
                Step::Range(r) if r.revision < self.compacted => return Err(Error::Compacted),
                Step::Range(_) | Step::Delete(_) => {}
                Step::Put(p) => self.check_put(p, self.current, lease_exists)?,
                Step::Txn(nested) => self.check_plan(nested, lease_exists)?,
            }
        }
        Ok(())
    }

    fn execute(&mut self, batch: &mut Batch, plan: &Plan<'_>) -> Result<PbTxnResponse, Error> {
        let mut responses = Vec::with_capacity(plan.ops.len());
        for step in &plan.ops {
            let response = match step {
                Step::Range(r) => PbTxnOpResponse::ResponseRange(self.range_at(r, self.read_revision(batch))?),
                Step::Put(p) => PbTxnOpResponse::ResponsePut(self.apply_put(batch, p)?),
                Step::Delete(d) => PbTxnOpResponse::ResponseDeleteRange(self.apply_delete(batch, d)),
                Step::Txn(nested) => PbTxnOpResponse::ResponseTxn(self.execute(batch, nested)?),
            };
            responses.push(PbResponseOp {
                response: Some(response),
            });
        }
        // etcd leaves a nested txn's header empty; the caller clears the top one.
        Ok(PbTxnResponse {
            header: Some(Default::default()),
            succeeded: plan.succeeded,
            responses,
        })
    }

    /// etcd's `applyCompare`: every key in the range must pass; an empty range
    /// compares as a zero kv, except that a VALUE compare then fails.
    fn compare(&self, c: &PbCompare) -> bool {
        let kvs: Vec<PbKeyValue> = self
            .live_range(&c.key, &c.range_end, self.current)
            .map(|(rev, record)| record.to_kv(rev.main))
            .collect();
        if kvs.is_empty() {
            return c.target != PbCompareTarget::Value as i32 && compare_kv(c, &PbKeyValue::default());
        }
        kvs.iter().all(|kv| compare_kv(c, kv))
    }
}

/// etcd's `compareKV`; a target_union of another kind counts as zero/empty,
/// and unknown targets or results compare as etcd's switch falls through.
fn compare_kv(c: &PbCompare, kv: &PbKeyValue) -> bool {
    let union = c.target_union.as_ref();
    let ordering = match PbCompareTarget::try_from(c.target) {
        Ok(PbCompareTarget::Value) => {
            let value = match union {
                Some(PbTargetUnion::Value(v)) => v.as_slice(),
                _ => &[],
            };
            kv.value.as_slice().cmp(value)
        }
        Ok(PbCompareTarget::Version) => kv.version.cmp(match union {
            Some(PbTargetUnion::Version(v)) => v,
            _ => &0,
        }),
        Ok(PbCompareTarget::Create) => kv.create_revision.cmp(match union {
            Some(PbTargetUnion::CreateRevision(v)) => v,
            _ => &0,
        }),
        Ok(PbCompareTarget::Mod) => kv.mod_revision.cmp(match union {
            Some(PbTargetUnion::ModRevision(v)) => v,
            _ => &0,
        }),
        Ok(PbCompareTarget::Lease) => kv.lease.cmp(match union {
            Some(PbTargetUnion::Lease(v)) => v,
            _ => &0,
        }),
        Err(_) => std::cmp::Ordering::Equal,
    };
    match c.result {
        COMPARE_EQUAL => ordering.is_eq(),
        COMPARE_NOT_EQUAL => ordering.is_ne(),
        COMPARE_GREATER => ordering.is_gt(),
        COMPARE_LESS => ordering.is_lt(),
        _ => true,
    }
}

/// etcd's `checkTxnRequest` (v3rpc) minus the operator's max-ops limit, which
/// is configuration the gRPC layer checks.
fn check_txn_request(req: &PbTxnRequest) -> Result<(), Error> {
    if req.compare.iter().any(|c| c.key.is_empty()) {
        return Err(Error::EmptyKey);
    }
    for op in req.success.iter().chain(&req.failure) {
        match &op.request {
            Some(PbTxnOpRequest::RequestRange(r)) => check_range_request(r)?,
            Some(PbTxnOpRequest::RequestPut(p)) => check_put_request(p)?,
            Some(PbTxnOpRequest::RequestDeleteRange(d)) if d.key.is_empty() => return Err(Error::EmptyKey),
            Some(PbTxnOpRequest::RequestDeleteRange(_)) => {}
            Some(PbTxnOpRequest::RequestTxn(t)) => check_txn_request(t)?,
            None => return Err(Error::KeyNotFound),
        }
    }
    Ok(())
}

/// A delete's keys for the duplicate check, as etcd's affine string intervals:
/// `[begin, end)`, an empty `end` being unbounded. A range_end of "\0" is not
/// special here (an empty interval), exactly as in etcd.
struct Interval {
    begin: Vec<u8>,
    end: Vec<u8>,
}

impl Interval {
    fn of(d: &PbDeleteRequest) -> Self {
        let end = if d.range_end.is_empty() {
            [d.key.as_slice(), b"\0"].concat()
        } else {
            d.range_end.clone()
        };
        Interval {
            begin: d.key.clone(),
            end,
        }
    }

    fn contains(&self, key: &[u8]) -> bool {
        self.begin.as_slice() <= key && (self.end.is_empty() || key < self.end.as_slice())
    }
}

/// etcd's `checkIntervals`: no key may be written twice by one branch of
/// ops, nested txns included; returns the branch's put keys and deletes.
fn check_intervals(ops: &[PbTxnRequestOp]) -> Result<(BTreeSet<Vec<u8>>, Vec<Interval>), Error> {
    let mut dels: Vec<Interval> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(PbTxnOpRequest::RequestDeleteRange(d)) => Some(Interval::of(d)),
            _ => None,
        })
        .collect();
    let deleted = |dels: &[Interval], key: &[u8]| dels.iter().any(|iv| iv.contains(key));
    let mut puts = BTreeSet::new();
    for op in ops {
        let Some(PbTxnOpRequest::RequestTxn(t)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for key in &puts_then {
            if puts.contains(key) || deleted(&dels, key) {
                return Err(Error::DuplicateKey);
            }
            puts.insert(key.clone());
        }
        for key in &puts_else {
            // Only one branch runs, so else may repeat a key of then.
            if (puts.contains(key) && !puts_then.contains(key)) || deleted(&dels, key) {
                return Err(Error::DuplicateKey);
            }
            puts.insert(key.clone());
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        let Some(PbTxnOpRequest::RequestPut(p)) = &op.request else {
            continue;
        };
        if puts.contains(&p.key) || deleted(&dels, &p.key) {
            return Err(Error::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

#[cfg(test)]
#[path = "txn_tests.rs"]
mod tests;
