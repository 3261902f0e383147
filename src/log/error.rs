//! The log engine's errors: an I/O call that failed (which, where), a record or header
//! that is damaged (which file, which offset, why), or an engine that stopped after a
//! fatal write/fdatasync error and accepts nothing more.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// `op` (e.g. "fdatasync", "write") on `segment` (a segment file, or the log dir for
    /// directory operations) at byte `offset` failed.
    #[error("{op} of {} at offset {offset}: {source}", segment.display())]
    Io {
        op: &'static str,
        segment: PathBuf,
        offset: u64,
        #[source]
        source: io::Error,
    },
    /// Bytes that should be a valid header or record are not (startup refuses: naming
    /// the file and offset is what the operator needs).
    #[error("corrupt record in {} at offset {offset}: {reason}", path.display())]
    Corrupt { path: PathBuf, offset: u64, reason: String },
    /// A write or fdatasync failed earlier: the engine acknowledges nothing more.
    #[error("log engine stopped: {reason}")]
    Stopped { reason: String },
}

impl LogError {
    pub(crate) fn io(op: &'static str, segment: impl Into<PathBuf>, offset: u64, source: io::Error) -> LogError {
        LogError::Io { op, segment: segment.into(), offset, source }
    }
}

/// A record recovery found intact but whose owner (the Raft glue) cannot accept it; the
/// engine reports it as [`LogError::Corrupt`] at the record's place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejected(pub String);
