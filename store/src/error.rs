//! The store's errors, with etcd's messages and gRPC codes.
//!
//! etcd clients recognise errors by gRPC code and message text (etcdctl
//! prints the message; client libraries match on it), so every error here
//! carries etcd's exact wording, and [`From<Error> for tonic::Status`] is
//! the one place they become wire errors. The type is serialisable because
//! an error found while applying a command travels back with the command's
//! result (from the state machine, possibly across a forwarded proposal).

use serde::{Deserialize, Serialize};
use tonic::Code;

use crate::mvcc;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Error {
    /// A request the keyspace refused (bad key, lease, revision …), with
    /// the keyspace's own etcd message.
    #[error(transparent)]
    Keyspace(#[from] mvcc::Error),
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    #[error("etcdserver: request timed out, leader transfer took too long")]
    LeaderTransferTimeout,
    #[error("election: not leader")]
    ElectionNotLeader,
    #[error("election: no leader")]
    ElectionNoLeader,
    #[error("etcdserver: {0}")]
    InvalidArgument(String),
    #[error("etcdserver: {0}")]
    Unimplemented(String),
    #[error("etcdserver: {0}")]
    Internal(String),
}

impl Error {
    /// The gRPC code etcd uses for this error.
    pub fn code(&self) -> Code {
        use Error::*;
        match self {
            Keyspace(mvcc::Error::Compacted | mvcc::Error::FutureRevision) | LeaseTtlTooLarge => Code::OutOfRange,
            Keyspace(mvcc::Error::LeaseNotFound) | MemberNotFound => Code::NotFound,
            Keyspace(_) | TooManyOps | RequestTooLarge | InvalidArgument(_) => Code::InvalidArgument,
            LeaseExists | PeerUrlExists | MemberNotLearner | LearnerNotReady | ElectionNotLeader | ElectionNoLeader => {
                Code::FailedPrecondition
            }
            NoSpace => Code::ResourceExhausted,
            NoLeader | Timeout | Stopped | LeaderTransferTimeout => Code::Unavailable,
            NotLeader | BadLeaderTransferee => Code::FailedPrecondition,
            Unimplemented(_) => Code::Unimplemented,
            Internal(_) => Code::Internal,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        tonic::Status::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_etcds_code_and_text() {
        let s: tonic::Status = Error::from(mvcc::Error::Compacted).into();
        assert_eq!(s.code(), Code::OutOfRange);
        assert_eq!(s.message(), "etcdserver: mvcc: required revision has been compacted");
        let s: tonic::Status = Error::from(mvcc::Error::LeaseNotFound).into();
        assert_eq!(
            (s.code(), s.message()),
            (Code::NotFound, "etcdserver: requested lease not found")
        );
    }
}
