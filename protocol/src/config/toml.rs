//! TOML text into the same positioned tree the JSON reader makes, so v2
//! TOML gets the same key checks and line/column messages as JSON.

use toml_edit::{ImDocument, Item, Table, Value as TomlValue};

use super::error::{ConfigError, Pos};
use super::json::{Member, Node, Value};

pub(crate) fn parse(text: &str, origin: &str) -> Result<Node, ConfigError> {
    let doc = ImDocument::parse(text).map_err(|e| {
        let pos = e.span().map(|s| pos_of(text, s.start));
        let first = e.message().lines().next().unwrap_or("syntax error").trim();
        ConfigError::new(origin, None, pos, format!("invalid TOML: {first}"))
    })?;
    let lines = LineIndex::new(text);
    Ok(table(
        &lines,
        doc.as_table(),
        Some(Pos { line: 1, column: 1 }),
    ))
}

fn pos_of(text: &str, offset: usize) -> Pos {
    LineIndex::new(text).pos(offset)
}

/// Byte offset to line/column, without rescanning the text per lookup.
struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    fn pos(&self, offset: usize) -> Pos {
        let line = self.starts.partition_point(|s| *s <= offset).max(1);
        let start = self.starts[line - 1];
        let column = self
            .text
            .get(start..offset.min(self.text.len()))
            .map_or(1, |s| s.chars().count() + 1);
        Pos {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        }
    }

    fn span(&self, span: Option<std::ops::Range<usize>>) -> Option<Pos> {
        span.map(|s| self.pos(s.start))
    }
}

fn table(lines: &LineIndex<'_>, t: &Table, pos: Option<Pos>) -> Node {
    let mut members = Vec::new();
    for (k, item) in t.iter() {
        let key_pos = t
            .get_key_value(k)
            .and_then(|(key, _)| lines.span(key.span()));
        if let Some(node) = item_node(lines, item, key_pos) {
            members.push(Member {
                key: k.to_string(),
                key_pos,
                node,
            });
        }
    }
    Node::new(Value::Obj(members), lines.span(t.span()).or(pos))
}

fn item_node(lines: &LineIndex<'_>, item: &Item, key_pos: Option<Pos>) -> Option<Node> {
    match item {
        Item::None => None,
        Item::Value(v) => Some(value(lines, v, key_pos)),
        Item::Table(t) => Some(table(lines, t, key_pos)),
        Item::ArrayOfTables(a) => {
            let items = a.iter().map(|t| table(lines, t, key_pos)).collect();
            Some(Node::new(
                Value::Arr(items),
                lines.span(a.span()).or(key_pos),
            ))
        }
    }
}

fn value(lines: &LineIndex<'_>, v: &TomlValue, key_pos: Option<Pos>) -> Node {
    let pos = lines.span(v.span()).or(key_pos);
    let value = match v {
        TomlValue::String(s) => Value::Str(s.value().clone()),
        TomlValue::Integer(i) => Value::Num(i.value().to_string()),
        TomlValue::Float(f) => Value::Num(f.value().to_string()),
        TomlValue::Boolean(b) => Value::Bool(*b.value()),
        TomlValue::Datetime(d) => Value::Str(d.value().to_string()),
        TomlValue::Array(a) => Value::Arr(a.iter().map(|v| value(lines, v, pos)).collect()),
        TomlValue::InlineTable(t) => {
            let mut members = Vec::new();
            for (k, v) in t.iter() {
                let kp = t
                    .get_key_value(k)
                    .and_then(|(key, _)| lines.span(key.span()));
                members.push(Member {
                    key: k.to_string(),
                    key_pos: kp,
                    node: value(lines, v, kp),
                });
            }
            Value::Obj(members)
        }
    };
    Node::new(value, pos)
}
