//! `nydusctl image inspect`: every on-disk structure of a bootstrap with its
//! offset, readable or as JSON. A data blob with an inlined bootstrap is
//! accepted too: its trailer is listed, then the extracted bootstrap.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nydus_protocol::rafs::blob::{self, Trailer};
use nydus_protocol::rafs::dump::Item;
use nydus_protocol::rafs::file::{BlobSource, DirBlobSource};
use nydus_protocol::rafs::{detect, open, v5, v6, Detected, Reader};

#[derive(clap::Args)]
pub struct InspectArgs {
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    /// Directory of the data blobs (named by blob id): also list each v6
    /// blob's ci header and every chunk it describes.
    #[arg(long, value_name = "DIR")]
    pub blob_dir: Option<PathBuf>,
    /// The bootstrap file (or a data blob with an inlined bootstrap).
    pub bootstrap: PathBuf,
}

#[derive(serde::Serialize)]
struct Report {
    file: String,
    /// "v5" or "v6".
    version: &'static str,
    /// Structures of the blob trailer, when the file was a data blob; the
    /// offsets in `structures` are then relative to the extracted bootstrap.
    blob_trailer: Vec<Item>,
    structures: Vec<Item>,
    /// With --blob-dir: per blob, its ci header and chunks (offsets in the
    /// blob file).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    blobs: Vec<BlobReport>,
}

#[derive(serde::Serialize)]
struct BlobReport {
    index: u32,
    id: String,
    items: Vec<Item>,
}

pub fn run(args: InspectArgs) -> Result<(), String> {
    let path = args.bootstrap.display().to_string();
    let bytes = std::fs::read(&args.bootstrap).map_err(|e| format!("{path}: {e}"))?;
    let mut report = inspect(&path, &bytes).map_err(|e| format!("{path}: {e}"))?;
    if let Some(dir) = &args.blob_dir {
        let img = open(
            Arc::new(bytes),
            args.bootstrap.file_name().and_then(|n| n.to_str()),
        )
        .map_err(|e| format!("{path}: {e}"))?;
        report.blobs = blob_reports(img.reader.as_ref(), img.meta_file_stem.as_deref(), dir)?;
    }
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        serde_json::to_writer_pretty(&mut out, &report)
            .map_err(std::io::Error::other)
            .and_then(|()| writeln!(out))
    } else {
        print_text(&mut out, &report)
    };
    match written {
        // A closed pipe (`| head`) is not an error worth reporting.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(|e| format!("writing output: {e}")),
    }
}

fn inspect(path: &str, bytes: &[u8]) -> nydus_protocol::rafs::Result<Report> {
    let mut blob_trailer = Vec::new();
    let extracted;
    let boot: &[u8] = match detect(bytes) {
        Detected::Other => {
            blob_trailer = trailer_items(bytes)?;
            extracted = blob::extract_bootstrap(bytes)?;
            &extracted
        }
        _ => bytes,
    };
    let (version, structures) = match detect(boot) {
        Detected::V5 => ("v5", v5::structures(boot)?),
        Detected::V6 => ("v6", v6::structures(boot)?),
        Detected::Other => {
            return Err(nydus_protocol::rafs::RafsError::corrupt(
                "inlined bootstrap",
                0,
                "is neither a RAFS v5 nor a v6 bootstrap",
            ))
        }
    };
    Ok(Report {
        file: path.to_string(),
        version,
        blob_trailer,
        structures,
        blobs: Vec::new(),
    })
}

fn trailer_items(bytes: &[u8]) -> nydus_protocol::rafs::Result<Vec<Item>> {
    let tar = blob::TAR_HEADER_SIZE as u64;
    Ok(match blob::read_trailer(bytes)? {
        Trailer::Bootstrap {
            header_offset,
            size,
        } => vec![
            Item::new(header_offset - size, size, "inlined bootstrap (raw)"),
            Item::new(header_offset, tar, "tar header image.boot").field("size", size),
        ],
        Trailer::Toc {
            header_offset,
            entries,
        } => {
            let mut items: Vec<Item> = entries
                .iter()
                .map(|e| {
                    Item::new(
                        e.offset,
                        blob::TOC_ENTRY_SIZE as u64,
                        format!("ToC entry {}", e.name),
                    )
                    .field("flags", format!("{:#x}", e.flags))
                    .field("digest", hex::encode(e.digest))
                    .field("compressed_offset", format!("{:#x}", e.compressed_offset))
                    .field("compressed_size", e.compressed_size)
                    .field("uncompressed_size", e.uncompressed_size)
                })
                .collect();
            items.push(Item::new(header_offset, tar, "tar header rafs.blob.toc"));
            items
        }
    })
}

/// The ci header and rows of every blob that has a ci table.
fn blob_reports(r: &dyn Reader, stem: Option<&str>, dir: &Path) -> Result<Vec<BlobReport>, String> {
    let source = DirBlobSource::new(dir);
    let mut out = Vec::new();
    for b in r.blobs() {
        let id = b.effective_id(stem);
        let Some(m) = b.meta.as_ref().filter(|m| m.ci_compressed_size > 0) else {
            continue;
        };
        let fail = |e: nydus_protocol::rafs::RafsError| format!("blob {id}: {e}");
        let at = m.ci_offset.saturating_add(m.ci_compressed_size);
        let mut raw = vec![0u8; blob::CI_HEADER_SIZE];
        source.read_at(&id, at, &mut raw).map_err(fail)?;
        let h = blob::CiHeader::parse(&raw, at).map_err(fail)?;
        let mut items = vec![
            Item::new(m.ci_offset, m.ci_compressed_size, "ci table (stored)")
                .field("ci_compressor", m.ci_compressor.name())
                .field("ci_uncompressed_size", m.ci_uncompressed_size),
            Item::new(at, blob::CI_HEADER_SIZE as u64, "ci header")
                .field("features", format!("{:#x}", h.features))
                .field("ci_compressor", h.ci_compressor)
                .field("ci_entries", h.ci_entries)
                .field("ci_offset", format!("{:#x}", h.ci_offset))
                .field("ci_compressed_size", h.ci_compressed_size)
                .field("ci_uncompressed_size", h.ci_uncompressed_size)
                .field("ctx_offset", h.ctx_offset)
                .field("ctx_size", h.ctx_size)
                .field("ctx_count", h.ctx_count),
        ];
        let table = blob::CiTable::load(b, &id, &source).map_err(fail)?;
        for i in 0..table.len() as u32 {
            let c = table.row(i).map_err(fail)?;
            let how = if c.compressed { "compressed" } else { "raw" };
            items.push(
                Item::new(
                    c.compressed_offset,
                    u64::from(c.compressed_size),
                    format!("chunk {i} ({how})"),
                )
                .field(
                    "uncompressed",
                    format!("{:#x}+{:#x}", c.uncompressed_offset, c.uncompressed_size),
                )
                .field(
                    "digest",
                    c.digest.map(hex::encode).unwrap_or_else(|| "-".into()),
                ),
            );
        }
        items.sort_by_key(|i| i.offset);
        out.push(BlobReport {
            index: b.index,
            id,
            items,
        });
    }
    Ok(out)
}

fn print_text(out: &mut dyn Write, r: &Report) -> std::io::Result<()> {
    writeln!(out, "{}: RAFS {}", r.file, r.version)?;
    if !r.blob_trailer.is_empty() {
        writeln!(out, "data blob trailer:")?;
        print_items(out, &r.blob_trailer)?;
        writeln!(out, "inlined bootstrap (offsets within it):")?;
    }
    print_items(out, &r.structures)?;
    for b in &r.blobs {
        writeln!(out, "blob {} {} (offsets within the blob):", b.index, b.id)?;
        print_items(out, &b.items)?;
    }
    Ok(())
}

fn print_items(out: &mut dyn Write, items: &[Item]) -> std::io::Result<()> {
    for item in items {
        writeln!(out, "{:#010x} {:>8}  {}", item.offset, item.size, item.name)?;
        for (k, v) in &item.fields {
            writeln!(out, "    {k}: {v}")?;
        }
    }
    Ok(())
}
