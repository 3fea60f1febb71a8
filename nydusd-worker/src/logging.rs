//! The process logger: `[time LEVEL module] message` lines to stderr or to
//! `--log-file`, with optional size-based rotation and a level that the API
//! can change at run time.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{LevelFilter, Log, Metadata, Record};

/// Parses `trace|debug|info|warn|error` (upstream's names; `off` too).
pub fn parse_level(text: &str) -> Option<LevelFilter> {
    Some(match text.to_ascii_lowercase().as_str() {
        "trace" => LevelFilter::Trace,
        "debug" => LevelFilter::Debug,
        "info" => LevelFilter::Info,
        "warn" | "warning" => LevelFilter::Warn,
        "error" => LevelFilter::Error,
        "off" => LevelFilter::Off,
        _ => return None,
    })
}

/// Upstream appends `.log` to a log file name without an extension.
pub fn log_file_path(path: &Path) -> PathBuf {
    if path.extension().is_some() {
        path.to_path_buf()
    } else {
        let mut s = path.as_os_str().to_os_string();
        s.push(".log");
        PathBuf::from(s)
    }
}

enum Sink {
    Stderr,
    File {
        path: PathBuf,
        file: File,
        written: u64,
        /// 0: never rotate.
        rotate_at: u64,
    },
}

struct Logger {
    sink: Mutex<Sink>,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // fuse-backend-rs logs benign umount races at info; keep its
        // chatter out unless debugging.
        let target = record.target();
        if target.starts_with("fuse_backend_rs") && log::max_level() < LevelFilter::Debug {
            if record.level() > log::Level::Warn {
                return;
            }
            // Forgets of inodes of an unmounted instance are expected; the
            // library warns about each one over three lines.
            if record.args().to_string().starts_with("vfs::forget") {
                return;
            }
        }
        let line = format!(
            "[{} {:<5} {}] {}\n",
            timestamp(),
            record.level(),
            target,
            record.args()
        );
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *sink {
            Sink::Stderr => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
            Sink::File {
                path,
                file,
                written,
                rotate_at,
            } => {
                if *rotate_at > 0 && *written + line.len() as u64 > *rotate_at {
                    rotate(path, file, written);
                }
                if file.write_all(line.as_bytes()).is_ok() {
                    *written += line.len() as u64;
                }
            }
        }
    }

    fn flush(&self) {
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        if let Sink::File { file, .. } = &mut *sink {
            let _ = file.flush();
        }
    }
}

/// Keeps one old generation as `<file>.1`; a failed rotation keeps writing
/// to the current file rather than losing lines.
fn rotate(path: &Path, file: &mut File, written: &mut u64) {
    let mut old = path.as_os_str().to_os_string();
    old.push(".1");
    if std::fs::rename(path, &old).is_err() {
        return;
    }
    if let Ok(f) = OpenOptions::new().create(true).append(true).open(path) {
        *file = f;
        *written = 0;
    }
}

static TO_FILE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether log lines go to a file (else stderr).
pub fn to_file() -> bool {
    TO_FILE.load(std::sync::atomic::Ordering::Relaxed)
}

/// Installs the logger. Errors name the flag and what to do.
pub fn init(level: &str, file: Option<&Path>, rotation_mb: u64) -> Result<(), String> {
    let level = parse_level(level).ok_or_else(|| {
        format!("--log-level {level:?} is not a log level: use trace, debug, info, warn or error")
    })?;
    let sink = match file {
        None => Sink::Stderr,
        Some(p) => {
            let path = log_file_path(p);
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| format!("--log-file {}: {e}", path.display()))?;
            TO_FILE.store(true, std::sync::atomic::Ordering::Relaxed);
            let written = file.metadata().map(|m| m.len()).unwrap_or(0);
            Sink::File {
                path,
                file,
                written,
                rotate_at: rotation_mb.saturating_mul(1 << 20),
            }
        }
    };
    let logger = Box::new(Logger {
        sink: Mutex::new(sink),
    });
    // A second init (tests) keeps the first logger; only the level changes.
    let _ = log::set_logger(Box::leak(logger));
    log::set_max_level(level);
    Ok(())
}

/// UTC `YYYY-MM-DDTHH:MM:SS.mmmZ` without a date library.
fn timestamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's method).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn levels_and_file_names() {
        assert_eq!(parse_level("INFO"), Some(LevelFilter::Info));
        assert_eq!(parse_level("verbose"), None);
        assert_eq!(
            log_file_path(Path::new("/x/nydusd")),
            Path::new("/x/nydusd.log")
        );
        assert_eq!(log_file_path(Path::new("/x/d.txt")), Path::new("/x/d.txt"));
    }
}
