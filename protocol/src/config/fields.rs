//! Typed access to the keys of one object, with errors naming key and place.
//!
//! Every reader takes the keys it knows; whatever is left when the object is
//! finished is reported as an unknown key (a warning, as upstream ignores
//! them too, but silently).

use super::error::{one_line, warning, ConfigError, Pos};
use super::json::{Member, Node, Value};

/// What a parse carries along: where the text came from and what to warn.
pub(crate) struct Ctx<'a> {
    pub origin: &'a str,
    pub warnings: Vec<String>,
}

impl Ctx<'_> {
    pub fn error(&self, key: &str, pos: Option<Pos>, msg: impl Into<String>) -> ConfigError {
        ConfigError::new(self.origin, Some(key), pos, msg)
    }

    pub fn warn(&mut self, key: &str, pos: Option<Pos>, what: &str) {
        self.warnings.push(warning(self.origin, key, pos, what));
    }
}

/// One object of the config being read, and which of its keys were used.
pub(crate) struct Obj<'n> {
    path: String,
    pub pos: Option<Pos>,
    members: &'n [Member],
    used: Vec<bool>,
}

impl<'n> Obj<'n> {
    /// Views `node` as the object at dotted `path`, or says it is not one.
    pub fn of(ctx: &mut Ctx<'_>, node: &'n Node, path: &str) -> Result<Self, ConfigError> {
        let Value::Obj(members) = &node.value else {
            let found = node.type_name();
            let what = if path.is_empty() {
                "the document"
            } else {
                path
            };
            return Err(ConfigError::new(
                ctx.origin,
                Some(path),
                node.pos,
                format!("{what} must be an object, found {found}"),
            ));
        };
        let mut seen = std::collections::HashSet::new();
        for m in members {
            if !seen.insert(m.key.as_str()) {
                ctx.warn(
                    &join(path, &m.key),
                    m.key_pos,
                    "duplicate key, the last one is used",
                );
            }
        }
        Ok(Obj {
            path: path.to_string(),
            pos: node.pos,
            members,
            used: vec![false; members.len()],
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Dotted path of one of this object's keys.
    pub fn key(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// True if `key` is present (even as null).
    pub fn has(&self, key: &str) -> bool {
        self.members.iter().any(|m| m.key == key)
    }

    /// Marks `key` used and returns its (last) value; `null` counts as absent.
    pub fn take(&mut self, key: &str) -> Option<&'n Node> {
        let mut found = None;
        for (i, m) in self.members.iter().enumerate() {
            if m.key == key {
                self.used[i] = true;
                found = Some(&m.node);
            }
        }
        found.filter(|n| n.value != Value::Null)
    }

    /// Position of `key` itself (for "removed key" warnings).
    pub fn key_pos(&self, key: &str) -> Option<Pos> {
        self.members
            .iter()
            .rev()
            .find(|m| m.key == key)
            .and_then(|m| m.key_pos)
    }

    fn wrong_type(&self, ctx: &Ctx<'_>, key: &str, node: &Node, expected: &str) -> ConfigError {
        ctx.error(
            &self.key(key),
            node.pos,
            format!("expected {expected}, found {}", node.type_name()),
        )
    }

    pub fn bool(&mut self, ctx: &Ctx<'_>, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.take(key) {
            None => Ok(default),
            Some(Node {
                value: Value::Bool(b),
                ..
            }) => Ok(*b),
            Some(n) => Err(self.wrong_type(ctx, key, n, "true or false")),
        }
    }

    /// An unsigned integer no larger than `max` (and than `T` holds).
    pub fn uint<T: TryFrom<u64>>(
        &mut self,
        ctx: &Ctx<'_>,
        key: &str,
        default: T,
        max: u64,
    ) -> Result<T, ConfigError> {
        let Some(node) = self.take(key) else {
            return Ok(default);
        };
        let range = format!("an integer in 0..={max}");
        let Value::Num(text) = &node.value else {
            return Err(self.wrong_type(ctx, key, node, &range));
        };
        text.parse::<u64>()
            .ok()
            .filter(|v| *v <= max)
            .and_then(|v| T::try_from(v).ok())
            .ok_or_else(|| {
                ctx.error(
                    &self.key(key),
                    node.pos,
                    format!("expected {range}, found {text}"),
                )
            })
    }

    pub fn string(&mut self, ctx: &Ctx<'_>, key: &str) -> Result<Option<String>, ConfigError> {
        match self.take(key) {
            None => Ok(None),
            Some(Node {
                value: Value::Str(s),
                ..
            }) => Ok(Some(s.clone())),
            Some(n) => Err(self.wrong_type(ctx, key, n, "a string")),
        }
    }

    pub fn string_or(
        &mut self,
        ctx: &Ctx<'_>,
        key: &str,
        default: &str,
    ) -> Result<String, ConfigError> {
        Ok(self
            .string(ctx, key)?
            .unwrap_or_else(|| default.to_string()))
    }

    /// One of `allowed` (compared exactly); the message lists them.
    pub fn choice(
        &mut self,
        ctx: &Ctx<'_>,
        key: &str,
        default: &str,
        allowed: &[&str],
    ) -> Result<String, ConfigError> {
        let pos = self
            .members
            .iter()
            .rev()
            .find(|m| m.key == key)
            .and_then(|m| m.node.pos);
        let value = self.string_or(ctx, key, default)?;
        if allowed.contains(&value.as_str()) {
            return Ok(value);
        }
        let list: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
        Err(ctx.error(
            &self.key(key),
            pos,
            format!(
                "\"{}\" is not allowed; allowed: {}",
                value.escape_debug(),
                list.join(", ")
            ),
        ))
    }

    pub fn strings(&mut self, ctx: &Ctx<'_>, key: &str) -> Result<Vec<String>, ConfigError> {
        let Some(node) = self.take(key) else {
            return Ok(Vec::new());
        };
        let Value::Arr(items) = &node.value else {
            return Err(self.wrong_type(ctx, key, node, "an array of strings"));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match &item.value {
                Value::Str(s) => Ok(s.clone()),
                _ => Err(ctx.error(
                    &format!("{}[{i}]", self.key(key)),
                    item.pos,
                    format!("expected a string, found {}", item.type_name()),
                )),
            })
            .collect()
    }

    /// A string-to-string map (headers, external backend settings).
    pub fn string_map(
        &mut self,
        ctx: &mut Ctx<'_>,
        key: &str,
    ) -> Result<Vec<(String, String)>, ConfigError> {
        let Some(mut obj) = self.obj(ctx, key)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for m in obj.members {
            match &m.node.value {
                Value::Str(s) => out.push((m.key.clone(), s.clone())),
                Value::Num(n) => out.push((m.key.clone(), n.clone())),
                Value::Bool(b) => out.push((m.key.clone(), b.to_string())),
                _ => {
                    return Err(ctx.error(
                        &obj.key(&m.key),
                        m.node.pos,
                        format!("expected a string, found {}", m.node.type_name()),
                    ))
                }
            }
        }
        obj.used.iter_mut().for_each(|u| *u = true);
        Ok(out)
    }

    /// The object under `key`, if present and not null.
    pub fn obj(&mut self, ctx: &mut Ctx<'_>, key: &str) -> Result<Option<Obj<'n>>, ConfigError> {
        let path = self.key(key);
        match self.take(key) {
            None => Ok(None),
            Some(node) => Obj::of(ctx, node, &path).map(Some),
        }
    }

    /// The array under `key` (empty if absent).
    pub fn array(&mut self, ctx: &Ctx<'_>, key: &str) -> Result<&'n [Node], ConfigError> {
        match self.take(key) {
            None => Ok(&[]),
            Some(Node {
                value: Value::Arr(items),
                ..
            }) => Ok(items),
            Some(n) => Err(self.wrong_type(ctx, key, n, "an array")),
        }
    }

    /// Accepts a key that no longer does anything, and says so.
    pub fn obsolete(&mut self, ctx: &mut Ctx<'_>, key: &str, why: &str) {
        if self.has(key) {
            let pos = self.key_pos(key);
            self.take(key);
            ctx.warn(&self.key(key), pos, why);
        }
    }

    /// Warns about every key nobody asked for.
    pub fn finish(self, ctx: &mut Ctx<'_>) {
        for (m, used) in self.members.iter().zip(&self.used) {
            if !used {
                let at = m.key_pos.map(|p| format!(" ({p})")).unwrap_or_default();
                let key = join(&self.path, &m.key);
                ctx.warnings.push(one_line(&format!(
                    "config {}: unknown key `{key}`{at}, ignored",
                    ctx.origin
                )));
            }
        }
    }
}

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}
