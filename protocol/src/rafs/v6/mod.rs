//! RAFS v6: an EROFS image with a RAFS extension (format doc §3).

use super::error::{RafsError, Result};
use super::Backing;

/// Read access to a v6 bootstrap.
pub struct V6Reader {
    _backing: Backing,
}

impl V6Reader {
    pub fn open(backing: Backing) -> Result<Self> {
        let _ = backing;
        Err(RafsError::Unsupported(
            "RAFS v6 reader: work in progress".into(),
        ))
    }
}
