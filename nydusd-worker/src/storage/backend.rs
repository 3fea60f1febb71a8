//! Blob backends: where chunk data comes from. `LocalFs` reads blob files
//! from local directories; registry/OSS/S3 implement the same trait.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// A source of blob bytes, shared by every reader thread.
///
/// Implementations do their own retries and timeouts; an error returned
/// here is final for this read (the next read tries again).
pub trait Backend: Send + Sync {
    /// Reads up to `buf.len()` bytes at `offset` of blob `blob_id` (the
    /// effective id). Returns fewer only at the end of the blob.
    fn read_at(&self, blob_id: &str, offset: u64, buf: &mut [u8]) -> io::Result<usize>;

    /// Size of blob `blob_id` in bytes (for whole-blob prefetch).
    #[allow(dead_code)] // the prefetch-all walker is not written yet
    fn blob_size(&self, blob_id: &str) -> io::Result<u64>;

    /// Metric name of the backend type (`localfs`, `registry`, `oss`, ...).
    fn kind(&self) -> &'static str;

    /// Checks, when an image is mounted, that blob `blob_id` is there at
    /// all: a missing blob is then a start-up error naming it, not `EIO` on
    /// every read. Remote backends are not asked (a round trip per blob at
    /// mount time; an outage then is for reads to retry).
    fn check_blob(&self, _blob_id: &str) -> io::Result<()> {
        Ok(())
    }

    /// Whether a request costs no more than a local file read: then reading
    /// past what was asked saves no round trip, it only makes one reader
    /// decode chunks the kernel's own readahead asks other threads for.
    fn is_local(&self) -> bool {
        false
    }

    /// Wire-level counters of a network backend (requests, retries, proxy,
    /// auth); `None` for local backends.
    fn http_metrics(&self) -> Option<super::http::HttpMetrics> {
        None
    }

    /// New registry credentials at run time (`PUT /api/v1/config` key
    /// `registry_auth`): base64 of `user:password`, `None` for anonymous.
    fn set_auth(&self, _auth: Option<nydus_protocol::config::Secret>) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("the {} backend has no registry credentials", self.kind()),
        ))
    }

    /// A new P2P proxy URL at run time (`PUT /api/v1/config` key
    /// `proxy_url`; empty: no proxy).
    fn set_proxy_url(&self, _url: &nydus_protocol::config::Secret) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("the {} backend has no proxy", self.kind()),
        ))
    }
}

/// The localfs backend (reference §4.5): `<dir>/<id>`, else the first
/// non-empty `<alt_dir>/<id>`, or one `blob_file` for every id.
pub struct LocalFs {
    dir: Option<PathBuf>,
    blob_file: Option<PathBuf>,
    alt_dirs: Vec<PathBuf>,
    /// Open handles by blob id, kept for the life of the backend. Failed
    /// opens are not remembered: the blob may appear later.
    files: RwLock<HashMap<String, Arc<File>>>,
}

impl LocalFs {
    /// At least one of `dir` and `blob_file` is required.
    pub fn new(
        dir: Option<PathBuf>,
        blob_file: Option<PathBuf>,
        alt_dirs: Vec<PathBuf>,
    ) -> io::Result<Self> {
        let nonempty = |p: Option<PathBuf>| p.filter(|p| !p.as_os_str().is_empty());
        let (dir, blob_file) = (nonempty(dir), nonempty(blob_file));
        if dir.is_none() && blob_file.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "localfs backend: one of `dir` and `blob_file` is required",
            ));
        }
        Ok(LocalFs {
            dir,
            blob_file,
            alt_dirs,
            files: RwLock::new(HashMap::new()),
        })
    }

    /// The file that holds `blob_id`, by the lookup rule above.
    fn path_of(&self, blob_id: &str) -> io::Result<PathBuf> {
        if let Some(f) = &self.blob_file {
            return Ok(f.clone());
        }
        // A blob id names a file in the directory, never a path out of it.
        if blob_id.is_empty() || blob_id == "." || blob_id == ".." || blob_id.contains(['/', '\0'])
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("localfs: blob id {blob_id:?} is not a file name"),
            ));
        }
        let nonempty = |p: &Path| std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false);
        if let Some(dir) = &self.dir {
            let p = dir.join(blob_id);
            if self.alt_dirs.is_empty() || nonempty(&p) {
                return Ok(p);
            }
        }
        self.alt_dirs
            .iter()
            .map(|d| d.join(blob_id))
            .find(|p| nonempty(p))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("localfs: blob {blob_id} not found (or empty) in dir or alt_dirs"),
                )
            })
    }

    fn file(&self, blob_id: &str) -> io::Result<Arc<File>> {
        if let Some(f) = read_lock(&self.files).get(blob_id) {
            return Ok(f.clone());
        }
        let path = self.path_of(blob_id)?;
        let file = path.canonicalize().and_then(File::open).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("localfs: blob {blob_id}: open {}: {e}", path.display()),
            )
        })?;
        let mut files = self.files.write().unwrap_or_else(|e| e.into_inner());
        Ok(files
            .entry(blob_id.to_string())
            .or_insert(Arc::new(file))
            .clone())
    }
}

fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // The map only ever holds complete entries; a panic elsewhere while
    // holding the lock leaves it consistent.
    l.read().unwrap_or_else(|e| e.into_inner())
}

impl Backend for LocalFs {
    fn read_at(&self, blob_id: &str, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let file = self.file(blob_id)?;
        let mut done = 0;
        while done < buf.len() {
            let at = offset.checked_add(done as u64).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "offset overflows u64")
            })?;
            match file.read_at(&mut buf[done..], at) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("localfs: blob {blob_id}: read at offset {at:#x}: {e}"),
                    ))
                }
            }
        }
        Ok(done)
    }

    fn blob_size(&self, blob_id: &str) -> io::Result<u64> {
        let file = self.file(blob_id)?;
        let meta = file
            .metadata()
            .map_err(|e| io::Error::new(e.kind(), format!("localfs: blob {blob_id}: stat: {e}")))?;
        Ok(meta.len())
    }

    fn kind(&self) -> &'static str {
        "localfs"
    }

    fn check_blob(&self, blob_id: &str) -> io::Result<()> {
        let path = self.path_of(blob_id)?;
        // Only a stat: an open handle would keep a blob deleted later
        // readable, which reads of a never-opened blob cannot match.
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("localfs: blob {blob_id}: {} is not a file", path.display()),
            )),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!(
                    "localfs: blob {blob_id}: {}: {e}; put the blob there or set the \
                     localfs `dir` or `blob_file` to where it is",
                    path.display()
                ),
            )),
        }
    }

    fn is_local(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(dir: &Path, name: &str, data: &[u8]) {
        std::fs::write(dir.join(name), data).unwrap();
    }

    #[test]
    fn dir_then_alt_dirs_first_nonempty_wins() {
        let t = tempfile::tempdir().unwrap();
        let (d, a1, a2) = (t.path().join("d"), t.path().join("a1"), t.path().join("a2"));
        for p in [&d, &a1, &a2] {
            std::fs::create_dir(p).unwrap();
        }
        put(&d, "empty", b"");
        put(&a1, "empty", b"");
        put(&a2, "empty", b"from-a2");
        put(&d, "main", b"from-d");
        put(&a1, "main", b"from-a1");
        let fs = LocalFs::new(Some(d), None, vec![a1, a2]).unwrap();
        let mut buf = [0u8; 16];
        let n = fs.read_at("empty", 0, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"from-a2");
        let n = fs.read_at("main", 5, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"d");
        assert_eq!(fs.blob_size("main").unwrap(), 6);
        let e = fs.read_at("missing", 0, &mut buf).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        fs.check_blob("main").unwrap();
        fs.check_blob("empty").unwrap();
        let e = fs.check_blob("missing").unwrap_err().to_string();
        assert!(e.contains("blob missing not found"), "{e}");
        assert!(fs.read_at("../d/main", 0, &mut buf).is_err());
        assert_eq!(fs.kind(), "localfs");
    }

    #[test]
    fn blob_file_serves_every_id_and_short_reads_at_eof() {
        let t = tempfile::tempdir().unwrap();
        put(t.path(), "one", b"0123456789");
        let fs = LocalFs::new(None, Some(t.path().join("one")), vec![]).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(fs.read_at("anything", 6, &mut buf).unwrap(), 4);
        assert_eq!(&buf[..4], b"6789");
        assert_eq!(fs.read_at("other", 10, &mut buf).unwrap(), 0);
        fs.check_blob("anything").unwrap();
        let only_dir = LocalFs::new(Some(t.path().to_path_buf()), None, vec![]).unwrap();
        let e = only_dir.check_blob("absent").unwrap_err().to_string();
        let named = t.path().join("absent").display().to_string();
        assert!(e.contains(&named) && e.contains("`dir`"), "{e}");
        assert!(LocalFs::new(None, Some(PathBuf::new()), vec![]).is_err());
    }
}
