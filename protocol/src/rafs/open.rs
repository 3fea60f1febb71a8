//! Opening an image whatever its version (§1.6): a v5 or v6 bootstrap, or
//! a data blob with an inlined bootstrap (§4.7, §6.5).

use std::path::Path;
use std::sync::Arc;

use super::error::{RafsError, Result};
use super::types::FEATURE_INLINED_FS_META;
use super::{blob, v5, v6, Backing, Reader};

/// An opened image and what the blob-id rule (§1.5) needs to know about it.
pub struct OpenedImage {
    pub reader: Arc<dyn Reader>,
    /// The metadata file's name with every extension stripped, when the
    /// daemon "knows the meta file name" in the §1.5 sense: the file was a
    /// data blob with an inlined bootstrap, or a standalone bootstrap that
    /// still lists INLINED_FS_META blobs. Pass it to `BlobInfo::effective_id`.
    pub meta_file_stem: Option<String>,
    /// The bootstrap was extracted from a data blob.
    pub inlined: bool,
}

/// Which format the bytes are, per §1.6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    V5,
    V6,
    /// Neither: possibly a data blob with an inlined bootstrap.
    Other,
}

pub fn detect(bytes: &[u8]) -> Detected {
    if v5::detect(bytes) {
        Detected::V5
    } else if bytes.get(1024..1028) == Some(&0xE0F5_E1E2u32.to_le_bytes()[..]) {
        // A short file with the magic is a truncated v6 bootstrap: let the
        // v6 parser say so rather than calling it a blob.
        Detected::V6
    } else {
        Detected::Other
    }
}

/// Opens `backing`; `file_name` is the name (or path) it was read from.
pub fn open(backing: Backing, file_name: Option<&str>) -> Result<OpenedImage> {
    let stem = file_name.map(file_stem);
    let (reader, inlined) = match detect((*backing).as_ref()) {
        Detected::Other => {
            let boot = blob::extract_bootstrap((*backing).as_ref())?;
            (open_bootstrap(Arc::new(boot))?, true)
        }
        _ => (open_bootstrap(backing)?, false),
    };
    let lists_inlined = reader
        .blobs()
        .iter()
        .any(|b| b.features & FEATURE_INLINED_FS_META != 0);
    let meta_file_stem = if inlined || lists_inlined {
        stem.filter(|s| !s.is_empty())
    } else {
        None
    };
    Ok(OpenedImage {
        reader,
        meta_file_stem,
        inlined,
    })
}

fn open_bootstrap(backing: Backing) -> Result<Arc<dyn Reader>> {
    Ok(match detect((*backing).as_ref()) {
        Detected::V5 => Arc::new(v5::V5Reader::open(backing)?),
        Detected::V6 => Arc::new(v6::V6Reader::open(backing)?),
        Detected::Other => {
            return Err(RafsError::corrupt(
                "inlined bootstrap",
                0,
                "is neither a RAFS v5 nor a v6 bootstrap",
            ));
        }
    })
}

/// Reads the whole file at `path` and opens it; errors name the path.
pub fn open_file(path: &Path) -> Result<OpenedImage> {
    let bytes =
        std::fs::read(path).map_err(|e| RafsError::Io(format!("{}: {e}", path.display())))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    open(Arc::new(bytes), name.as_deref()).map_err(|e| match e {
        RafsError::Io(m) => RafsError::Io(format!("{}: {m}", path.display())),
        RafsError::Unsupported(m) => RafsError::Unsupported(format!("{}: {m}", path.display())),
        RafsError::NotFound(m) => RafsError::NotFound(format!("{}: {m}", path.display())),
        RafsError::Codec(m) => RafsError::Codec(format!("{}: {m}", path.display())),
        RafsError::Corrupt {
            structure,
            offset,
            reason,
        } => RafsError::Corrupt {
            structure,
            offset,
            reason: format!("{reason} (in {})", path.display()),
        },
    })
}

/// The base name with every extension removed (`abc.tar.gz` → `abc`).
pub fn file_stem(name: &str) -> String {
    let mut stem = Path::new(name)
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    while let Some(s) = Path::new(&stem)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
    {
        if s == stem {
            break;
        }
        stem = s;
    }
    stem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_strip_every_extension() {
        assert_eq!(file_stem("abc.boot"), "abc");
        assert_eq!(file_stem("/x/y/abc.tar.gz"), "abc");
        assert_eq!(file_stem("abc"), "abc");
        assert_eq!(file_stem(".hidden"), ".hidden");
    }

    #[test]
    fn garbage_is_neither_bootstrap_nor_blob() {
        let e = open(Arc::new(vec![7u8; 100]), Some("x"))
            .err()
            .expect("must fail");
        assert!(e.to_string().contains("blob tar header"), "{e}");
        let e = open(Arc::new(vec![0u8; 8192]), Some("x"))
            .err()
            .expect("must fail");
        assert!(e.to_string().contains("tar"), "{e}");
    }
}
