//! The daemon config file: v1 JSON, v2 JSON and v2 TOML (reference §3).
//!
//! One entry point, [`parse_daemon_config`], detects the format, checks
//! every key, and returns one model. Unknown keys are warnings; a wrong type
//! or value is an error naming the key, the line and column, and what is
//! allowed. Secrets are held in [`Secret`] and never printed.

mod backend;
mod common;
mod error;
mod fields;
mod helpers;
mod json;
mod render;
mod secret;
mod toml;
mod types;
mod v1;
mod v2;

pub use error::{ConfigError, Pos};
pub use helpers::{apply_image_pull_auth, localfs_dir_config};
pub use secret::{Secret, REDACTED};
pub use types::*;

use fields::Ctx;
use json::Value;

/// A parsed config and the warnings to log about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub config: DaemonConfig,
    pub format: ConfigFormat,
    /// One line each, e.g. "config FILE: unknown key `device.cache.foo` (line 3, column 5), ignored".
    pub warnings: Vec<String>,
}

/// Parses a config file's text. `origin` names it in messages (a path, or
/// "mount request").
///
/// Format detection (reference §3.1): JSON with a top-level `version` is v2,
/// other JSON is v1, anything that is not JSON is read as v2 TOML. When
/// neither reads, the error is the JSON one if the text starts with `{`.
pub fn parse_daemon_config(text: &str, origin: &str) -> Result<Parsed, ConfigError> {
    let mut ctx = Ctx {
        origin,
        warnings: Vec::new(),
    };
    if text.trim_start_matches('\u{feff}').trim().is_empty() {
        let msg = "the file is empty; expected a v1 JSON, v2 JSON or v2 TOML config";
        return Err(ConfigError::new(origin, None, None, msg));
    }
    let (root, json_format) = match json::parse(text, origin, &mut ctx.warnings) {
        Ok(root) => (root, true),
        Err(json_err) => match toml::parse(text, origin) {
            Ok(root) => {
                ctx.warnings.clear();
                (root, false)
            }
            Err(_) if looks_like_json(text) => return Err(json_err),
            Err(toml_err) => return Err(toml_err),
        },
    };
    if !matches!(root.value, Value::Obj(_)) {
        return Err(ctx.error("", root.pos, "the document must be an object"));
    }
    let (config, format) = match (json_format, root.member("version").is_some()) {
        (true, false) => (v1::read(&mut ctx, &root)?, ConfigFormat::V1Json),
        (true, true) => (v2::read(&mut ctx, &root)?, ConfigFormat::V2Json),
        (false, _) => (v2::read(&mut ctx, &root)?, ConfigFormat::V2Toml),
    };
    Ok(Parsed {
        config,
        format,
        warnings: ctx.warnings,
    })
}

/// True if the first thing after blanks and `//` comments is `{`.
fn looks_like_json(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .map(|l| l.trim_start_matches('\u{feff}'))
        .find(|l| !l.is_empty() && !l.starts_with("//"))
        .is_some_and(|l| l.starts_with('{') || l.starts_with("/*"))
}

#[cfg(test)]
mod tests;
