//! A version-neutral listing of on-disk structures, for `nydusctl image inspect`.

use serde::Serialize;

/// One structure of the file: where it is, what it is, its decoded fields.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// Absolute byte offset in the file.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// What it is, e.g. "v6 extended superblock" or "inode 1234 (/etc/passwd)".
    pub name: String,
    /// Decoded fields, in on-disk order, as (name, printable value).
    pub fields: Vec<(String, String)>,
}

impl Item {
    pub fn new(offset: u64, size: u64, name: impl Into<String>) -> Self {
        Item {
            offset,
            size,
            name: name.into(),
            fields: Vec::new(),
        }
    }

    /// Adds a field; chainable.
    pub fn field(mut self, name: &str, value: impl ToString) -> Self {
        self.fields.push((name.to_string(), value.to_string()));
        self
    }
}
