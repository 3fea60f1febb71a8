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
mod json;
mod secret;
mod types;
mod v1;

pub use error::{ConfigError, Pos};
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
pub fn parse_daemon_config(text: &str, origin: &str) -> Result<Parsed, ConfigError> {
    let mut ctx = Ctx {
        origin,
        warnings: Vec::new(),
    };
    let root = json::parse(text, origin, &mut ctx.warnings)?;
    if root.member("version").is_some() {
        return Err(ConfigError::new(
            origin,
            Some("version"),
            None,
            "v2 configs are not supported yet",
        ));
    }
    if !matches!(root.value, Value::Obj(_)) {
        return Err(ctx.error("", root.pos, "the document must be an object"));
    }
    let config = v1::read(&mut ctx, &root)?;
    Ok(Parsed {
        config,
        format: ConfigFormat::V1Json,
        warnings: ctx.warnings,
    })
}

#[cfg(test)]
mod tests;
