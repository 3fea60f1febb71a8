//! Streams file data into the data blob: each file is read chunk by chunk,
//! batches of chunks are digested and compressed on a few threads, and the
//! results are appended in file order, so memory stays bounded by one batch
//! and the output does not depend on thread timing.

use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use nydus_protocol::rafs::codec::{Compressor, Digester};
use nydus_protocol::rafs::writer::{BlobDesc, BlobWriter, ChunkDesc, PreparedChunk};
use nydus_protocol::rafs::FsVersion;

use super::scan::FileRef;

pub struct DataOptions {
    pub version: FsVersion,
    pub compressor: Compressor,
    pub digester: Digester,
    pub chunk_size: u32,
    pub threads: usize,
}

pub struct Stored {
    /// `None` when no file has data: then there is no blob.
    pub blob: Option<BlobDesc>,
    pub chunks: Vec<ChunkDesc>,
    /// Per `FileRef`: its chunks (indexes into `chunks`) in file order.
    pub file_chunks: Vec<Vec<u32>>,
}

/// Chunks read but not yet stored, with the file each belongs to.
struct Batch {
    items: Vec<(usize, Vec<u8>)>,
    bytes: usize,
}

/// Stores the data of `files` in the order `order` lists them.
pub fn store<W: Write>(
    files: &[FileRef],
    order: &[usize],
    opts: &DataOptions,
    out: W,
) -> Result<(Stored, W), String> {
    let mut writer = BlobWriter::new(out, opts.version, opts.compressor, opts.digester, 0);
    let mut file_chunks: Vec<Vec<u32>> = vec![Vec::new(); files.len()];
    let chunk = opts.chunk_size as usize;
    // A few chunks per thread keeps every thread busy without holding much.
    let max_bytes = (chunk * opts.threads * 2).max(8 << 20);
    let mut batch = Batch {
        items: Vec::new(),
        bytes: 0,
    };
    let mut progress = Progress::new(files.iter().map(|f| f.size).sum());

    for &fi in order {
        let f = &files[fi];
        let err = |what: &str, e: std::io::Error| format!("{}: {what}: {e}", f.path.display());
        if f.size == 0 {
            continue;
        }
        let mut file = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&f.path)
            .map_err(|e| err("opening", e))?;
        let mut left = f.size;
        while left > 0 {
            let n = left.min(chunk as u64) as usize;
            let mut buf = vec![0u8; n];
            file.read_exact(&mut buf).map_err(|e| {
                err(
                    "reading (did the file shrink while building? rebuild from a quiet tree)",
                    e,
                )
            })?;
            left -= n as u64;
            batch.bytes += n;
            batch.items.push((fi, buf));
            if batch.bytes >= max_bytes || batch.items.len() >= 4096 {
                flush(&mut batch, opts, &mut writer, &mut file_chunks)?;
            }
            progress.add(n as u64);
        }
        let mut probe = [0u8; 1];
        if file.read(&mut probe).map_err(|e| err("reading", e))? != 0 {
            return Err(format!(
                "{}: the file grew while building; rebuild from a quiet tree",
                f.path.display()
            ));
        }
    }
    flush(&mut batch, opts, &mut writer, &mut file_chunks)?;
    progress.done();
    let (blob, chunks, out) = writer
        .finish()
        .map_err(|e| format!("writing the data blob: {e}"))?;
    Ok((
        Stored {
            blob,
            chunks,
            file_chunks,
        },
        out,
    ))
}

fn flush<W: Write>(
    batch: &mut Batch,
    opts: &DataOptions,
    writer: &mut BlobWriter<W>,
    file_chunks: &mut [Vec<u32>],
) -> Result<(), String> {
    let items = std::mem::take(&mut batch.items);
    batch.bytes = 0;
    let owners: Vec<usize> = items.iter().map(|(f, _)| *f).collect();
    let prepared = prepare_all(items.into_iter().map(|(_, d)| d).collect(), opts)?;
    for (owner, p) in owners.into_iter().zip(prepared) {
        let index = writer
            .add(p)
            .map_err(|e| format!("writing the data blob: {e}"))?;
        file_chunks[owner].push(index);
    }
    Ok(())
}

/// Prepares chunks on up to `opts.threads` threads, results in input order.
fn prepare_all(data: Vec<Vec<u8>>, opts: &DataOptions) -> Result<Vec<PreparedChunk>, String> {
    let prep = |d: Vec<u8>| {
        PreparedChunk::prepare(opts.compressor, opts.digester, d).map_err(|e| e.to_string())
    };
    if opts.threads <= 1 || data.len() <= 1 {
        return data.into_iter().map(prep).collect();
    }
    let per = data.len().div_ceil(opts.threads);
    let mut groups: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut it = data.into_iter().peekable();
    while it.peek().is_some() {
        groups.push(it.by_ref().take(per).collect());
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = groups
            .into_iter()
            .map(|g| s.spawn(move || g.into_iter().map(prep).collect::<Result<Vec<_>, String>>()))
            .collect();
        let mut out = Vec::new();
        for h in handles {
            out.extend(
                h.join()
                    .map_err(|_| "a compression thread failed".to_string())??,
            );
        }
        Ok(out)
    })
}

/// A one-line progress meter on stderr, only when stderr is a terminal.
struct Progress {
    enabled: bool,
    total: u64,
    done: u64,
    last: Instant,
}

impl Progress {
    fn new(total: u64) -> Self {
        Progress {
            enabled: std::io::stderr().is_terminal(),
            total,
            done: 0,
            last: Instant::now(),
        }
    }

    fn add(&mut self, n: u64) {
        self.done += n;
        if self.enabled && self.last.elapsed() >= Duration::from_millis(200) {
            self.last = Instant::now();
            eprint!(
                "\rstoring file data: {} / {} MiB",
                self.done >> 20,
                self.total >> 20
            );
        }
    }

    fn done(&self) {
        if self.enabled {
            eprintln!(
                "\rstoring file data: {} / {} MiB",
                self.done >> 20,
                self.total >> 20
            );
        }
    }
}
