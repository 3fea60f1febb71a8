//! `nydusctl image inspect`: every on-disk structure of a bootstrap with its
//! offset, readable or as JSON. A data blob with an inlined bootstrap is
//! accepted too: its trailer is listed, then the extracted bootstrap.

use std::io::Write;
use std::path::PathBuf;

use nydus_protocol::rafs::blob::{self, Trailer};
use nydus_protocol::rafs::dump::Item;
use nydus_protocol::rafs::{detect, v5, v6, Detected};

#[derive(clap::Args)]
pub struct InspectArgs {
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
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
}

pub fn run(args: InspectArgs) -> Result<(), String> {
    let path = args.bootstrap.display().to_string();
    let bytes = std::fs::read(&args.bootstrap).map_err(|e| format!("{path}: {e}"))?;
    let report = inspect(&path, &bytes).map_err(|e| format!("{path}: {e}"))?;
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

fn print_text(out: &mut dyn Write, r: &Report) -> std::io::Result<()> {
    writeln!(out, "{}: RAFS {}", r.file, r.version)?;
    if !r.blob_trailer.is_empty() {
        writeln!(out, "data blob trailer:")?;
        print_items(out, &r.blob_trailer)?;
        writeln!(out, "inlined bootstrap (offsets within it):")?;
    }
    print_items(out, &r.structures)
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
