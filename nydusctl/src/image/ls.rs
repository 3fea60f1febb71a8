//! `nydusctl image ls`: list an image's tree, either `ls -lR` style or as
//! the manifest `shared/scripts/manifest.py` prints for a mount of it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nydus_protocol::rafs::file::{ChunkReader, DirBlobSource};
use nydus_protocol::rafs::manifest::{esc, major_minor, manifest, ManifestOptions};
use nydus_protocol::rafs::walk::{walk, Entry};
use nydus_protocol::rafs::{self, FileKind, Inode, Reader};

#[derive(clap::Args)]
pub struct LsArgs {
    /// Print the manifest.py lines (for diffing against a source tree).
    #[arg(long)]
    pub manifest: bool,
    /// Directory holding the data blobs, named by blob id; needed for the
    /// sha256 field of --manifest (printed as "*" without it).
    #[arg(long, value_name = "DIR")]
    pub blob_dir: Option<PathBuf>,
    /// uid reported when the image stores none (default: our euid, as nydusd).
    #[arg(long)]
    pub uid: Option<u32>,
    /// gid reported when the image stores none (default: our egid, as nydusd).
    #[arg(long)]
    pub gid: Option<u32>,
    /// The bootstrap file.
    pub bootstrap: PathBuf,
}

/// An opened image, the stem the blob-id rule needs (format doc §1.5) and
/// the file's bytes (for version-specific checks).
pub(super) struct Image {
    pub reader: Arc<dyn Reader>,
    pub stem: Option<String>,
    pub bytes: Arc<Vec<u8>>,
}

pub(super) fn open_image(path: &Path) -> Result<Image, String> {
    let bytes = Arc::new(std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let opened = rafs::open(bytes.clone(), name.as_deref())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Image {
        reader: opened.reader,
        stem: opened.meta_file_stem,
        bytes,
    })
}

pub fn run(args: LsArgs) -> Result<(), String> {
    let image = open_image(&args.bootstrap)?;
    let reader = image.reader.as_ref();
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    if !args.manifest {
        return quiet_on_epipe(listing(reader, &mut out).and_then(|()| out.flush().map_err(io)));
    }
    let source = args.blob_dir.as_ref().map(DirBlobSource::new);
    let chunks = source
        .as_ref()
        .map(|s| ChunkReader::new(reader, s, image.stem.clone()));
    let opts = ManifestOptions {
        default_uid: args.uid.unwrap_or_else(|| nix::unistd::geteuid().as_raw()),
        default_gid: args.gid.unwrap_or_else(|| nix::unistd::getegid().as_raw()),
    };
    let m = manifest(reader, chunks.as_ref(), &opts)
        .map_err(|e| format!("{}: {e}", args.bootstrap.display()))?;
    let written = m
        .lines
        .iter()
        .try_for_each(|line| writeln!(out, "{line}").map_err(io))
        .and_then(|()| out.flush().map_err(io));
    quiet_on_epipe(written)?;
    for e in &m.errors {
        eprintln!("nydusctl: {e}");
    }
    match m.errors.len() {
        0 => Ok(()),
        n => Err(format!("{n} files could not be read")),
    }
}

/// Output errors; a closed pipe (`| head`) becomes an empty message.
fn io(e: std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        String::new()
    } else {
        format!("writing the listing: {e}")
    }
}

/// A reader that stopped reading (`| head`) is not an error.
fn quiet_on_epipe(r: Result<(), String>) -> Result<(), String> {
    match r {
        Err(e) if e.is_empty() => Ok(()),
        other => other,
    }
}

/// `ls -lR`-like: each directory's path, then one line per entry.
fn listing(reader: &dyn Reader, out: &mut dyn Write) -> Result<(), String> {
    let mut dirs = Vec::new();
    walk(reader, &mut |e: &Entry<'_>| {
        if e.inode.kind() == Some(FileKind::Directory) {
            dirs.push((e.path.to_vec(), e.inode.ino));
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    for (i, (path, ino)) in dirs.iter().enumerate() {
        if i > 0 {
            writeln!(out).map_err(io)?;
        }
        writeln!(out, "{}:", String::from_utf8_lossy(path)).map_err(io)?;
        let mut children = Vec::new();
        reader
            .readdir(*ino, 0, &mut |d, _| {
                children.push((d.name.to_vec(), d.ino));
                true
            })
            .map_err(|e| e.to_string())?;
        for (name, child) in children {
            let inode = reader.inode(child).map_err(|e| e.to_string())?;
            let mut line = entry_line(&inode, &name);
            if inode.kind() == Some(FileKind::Symlink) {
                let target = reader.readlink(child).map_err(|e| e.to_string())?;
                line.push_str(" -> ");
                line.push_str(&esc(&target));
            }
            writeln!(out, "{line}").map_err(io)?;
        }
    }
    Ok(())
}

fn entry_line(i: &Inode, name: &[u8]) -> String {
    let size = match i.kind() {
        Some(FileKind::CharDevice | FileKind::BlockDevice) => {
            let (ma, mi) = major_minor(i.rdev);
            format!("{ma}, {mi}")
        }
        _ => i.size.to_string(),
    };
    format!(
        "{} {:>3} {:>5} {:>5} {:>10} {} {:>8} {}",
        mode_string(i.mode),
        i.nlink,
        i.uid,
        i.gid,
        size,
        utc(i.mtime),
        i.ino,
        esc(name)
    )
}

fn mode_string(mode: u32) -> String {
    let t = match FileKind::from_mode(mode) {
        Some(FileKind::Directory) => 'd',
        Some(FileKind::Symlink) => 'l',
        Some(FileKind::CharDevice) => 'c',
        Some(FileKind::BlockDevice) => 'b',
        Some(FileKind::Fifo) => 'p',
        Some(FileKind::Socket) => 's',
        _ => '-',
    };
    let mut s = String::from(t);
    for (shift, special, lower, upper) in [
        (6, 0o4000, 's', 'S'),
        (3, 0o2000, 's', 'S'),
        (0, 0o1000, 't', 'T'),
    ] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (mode & special != 0, bits & 1 != 0) {
            (true, true) => lower,
            (true, false) => upper,
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// `YYYY-MM-DD hh:mm:ss` in UTC (days-from-civil inverse, Howard Hinnant).
fn utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_600_000_000), "2020-09-13 12:26:40");
        assert_eq!(utc(-1), "1969-12-31 23:59:59");
        assert_eq!(mode_string(0o104755), "-rwsr-xr-x");
        assert_eq!(mode_string(0o041777), "drwxrwxrwt");
    }
}
