//! The config error: one line naming the file, the key, where, and what is allowed.

use std::fmt;

/// A position in the config text, both 1-based; the column counts characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// Why a config was refused. `Display` is always a single line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file path (or "mount request", ...) the text came from.
    pub origin: String,
    /// Dotted key path such as `device.backend.config.timeout`, when one is at fault.
    pub key: Option<String>,
    /// Where in the text, when known (TOML values have no positions).
    pub pos: Option<Pos>,
    /// What is wrong and what is allowed. Never contains a secret value.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(
        origin: &str,
        key: Option<&str>,
        pos: Option<Pos>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            origin: origin.to_string(),
            key: key.filter(|k| !k.is_empty()).map(str::to_string),
            pos,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config {}: ", one_line(&self.origin))?;
        if let Some(key) = &self.key {
            write!(f, "`{}` ", one_line(key))?;
        }
        if let Some(pos) = self.pos {
            write!(f, "({pos}) ")?;
        }
        write!(f, "{}", one_line(&self.message))
    }
}

impl std::error::Error for ConfigError {}

/// Keeps messages on one line even if a path or key contains a newline.
pub(crate) fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// Formats a warning the same way errors are formatted.
pub(crate) fn warning(origin: &str, key: &str, pos: Option<Pos>, what: &str) -> String {
    let at = pos.map(|p| format!(" ({p})")).unwrap_or_default();
    one_line(&format!("config {origin}: `{key}`{at}: {what}"))
}
