//! `nydusctl image create`: build a RAFS v5/v6 bootstrap and data blob from
//! a directory, with `nydus-image create`'s flag names and defaults.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use nydus_protocol::rafs::codec::{Compressor, Digester};
use nydus_protocol::rafs::writer::{self, ImageSpec};
use nydus_protocol::rafs::FsVersion;

use super::build::{self, data, scan};

#[derive(clap::Args)]
pub struct CreateArgs {
    /// Where to write the bootstrap (RAFS metadata).
    #[arg(short = 'B', long, value_name = "FILE")]
    pub bootstrap: PathBuf,
    /// Directory for the data blob, which is named by its blob id.
    #[arg(short = 'D', long, value_name = "DIR")]
    pub blob_dir: PathBuf,
    /// RAFS version: 5 or 6.
    #[arg(long, default_value = "6", value_parser = ["5", "6"])]
    pub fs_version: String,
    /// Chunk compression: none, lz4_block or zstd.
    #[arg(long, default_value = "zstd", value_parser = ["none", "lz4_block", "zstd"])]
    pub compressor: String,
    /// Chunk digest: blake3 or sha256.
    #[arg(long, default_value = "blake3", value_parser = ["blake3", "sha256"])]
    pub digester: String,
    /// Chunk size, hex (0x100000) or decimal; a power of two 0x1000..=0x1000000.
    #[arg(long, default_value = "0x100000", value_parser = parse_chunk_size)]
    pub chunk_size: u32,
    /// File listing absolute paths to prefetch, one per line.
    #[arg(long, value_name = "FILE")]
    pub prefetch_files: Option<PathBuf>,
    /// The directory to build from.
    pub source: PathBuf,
}

fn parse_chunk_size(s: &str) -> Result<u32, String> {
    let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    }
    .map_err(|_| format!("{s:?} is not a number (use hex 0x100000 or decimal)"))?;
    if !v.is_power_of_two() || !(0x1000..=0x100_0000).contains(&v) {
        return Err(format!(
            "{s}: must be a power of two from 0x1000 to 0x1000000"
        ));
    }
    Ok(v)
}

pub fn run(args: CreateArgs) -> Result<(), String> {
    let version = if args.fs_version == "5" {
        FsVersion::V5
    } else {
        FsVersion::V6
    };
    let compressor = Compressor::from_name(&args.compressor).unwrap_or(Compressor::Zstd);
    let digester = Digester::from_name(&args.digester).unwrap_or(Digester::Blake3);
    let prefetch = match &args.prefetch_files {
        Some(p) => read_prefetch(p)?,
        None => Vec::new(),
    };
    let tree = scan::scan(&args.source)?;

    fs::create_dir_all(&args.blob_dir).map_err(|e| format!("{}: {e}", args.blob_dir.display()))?;
    let tmp = args
        .blob_dir
        .join(format!(".nydusctl-create-{}.tmp", std::process::id()));
    let result = store_blob(&tree, &tmp, version, compressor, digester, args.chunk_size);
    let stored = match result {
        Ok(s) => s,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let blob_path = match &stored.blob {
        Some(b) => {
            let path = args.blob_dir.join(&b.id);
            fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))?;
            Some(path)
        }
        None => {
            let _ = fs::remove_file(&tmp);
            None
        }
    };

    let spec = ImageSpec {
        version,
        chunk_size: args.chunk_size,
        compressor,
        digester,
        explicit_uid_gid: true,
        root: build::to_node(tree.root, &tree.files, &stored.file_chunks),
        chunks: stored.chunks,
        blobs: stored.blob.into_iter().collect(),
        prefetch,
    };
    let bytes =
        writer::write_bootstrap(&spec).map_err(|e| format!("{}: {e}", args.source.display()))?;
    fs::write(&args.bootstrap, &bytes).map_err(|e| format!("{}: {e}", args.bootstrap.display()))?;

    // A closed stdout (e.g. piped into `head`) must not turn into a panic.
    let mut out = std::io::stdout().lock();
    let _ = match (spec.blobs.first(), blob_path) {
        (Some(b), Some(path)) => writeln!(
            out,
            "blob id: {}\nblob: {} ({} bytes)",
            b.id,
            path.display(),
            b.compressed_size
        ),
        _ => writeln!(out, "blob id: none (the tree has no file data)"),
    };
    let _ = writeln!(
        out,
        "bootstrap: {} ({} bytes)",
        args.bootstrap.display(),
        bytes.len()
    );
    Ok(())
}

fn store_blob(
    tree: &scan::Scan,
    tmp: &Path,
    version: FsVersion,
    compressor: Compressor,
    digester: Digester,
    chunk_size: u32,
) -> Result<data::Stored, String> {
    let file = fs::File::create(tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let opts = data::DataOptions {
        version,
        compressor,
        digester,
        chunk_size,
        threads,
    };
    let (stored, out) = data::store(
        &tree.files,
        &build::data_order(&tree.root, tree.files.len()),
        &opts,
        BufWriter::with_capacity(1 << 20, file),
    )?;
    let file = out
        .into_inner()
        .map_err(|e| format!("{}: {}", tmp.display(), e.error()))?;
    file.sync_all()
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    Ok(stored)
}

/// One absolute path per line; blank lines ignored.
fn read_prefetch(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    use std::os::unix::ffi::OsStrExt;
    let text = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if line.first() != Some(&b'/') {
            return Err(format!(
                "{} line {}: {:?} is not an absolute path (write /dir/file)",
                path.display(),
                n + 1,
                std::ffi::OsStr::from_bytes(line)
            ));
        }
        out.push(line.to_vec());
    }
    Ok(out)
}
