//! The one error type of the RAFS reader and writer.

use std::fmt;

/// A RAFS error: says which structure and which byte offset were wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RafsError {
    /// The bytes do not form a valid structure.
    #[error("corrupt {structure} at byte offset {offset:#x}: {reason}")]
    Corrupt {
        structure: &'static str,
        offset: u64,
        reason: String,
    },
    /// A valid but optional variant this implementation refuses.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// An inode number, name or index that the image does not have.
    #[error("not found: {0}")]
    NotFound(String),
    /// Compression, decompression or digest failure on chunk data.
    #[error("chunk data: {0}")]
    Codec(String),
    /// An I/O error from reading or writing files (writer, blob sources).
    #[error("{0}")]
    Io(String),
}

impl RafsError {
    /// Shorthand for a corrupt-structure error.
    pub fn corrupt(structure: &'static str, offset: u64, reason: impl fmt::Display) -> Self {
        RafsError::Corrupt {
            structure,
            offset,
            reason: reason.to_string(),
        }
    }
}

impl From<std::io::Error> for RafsError {
    fn from(e: std::io::Error) -> Self {
        RafsError::Io(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, RafsError>;
