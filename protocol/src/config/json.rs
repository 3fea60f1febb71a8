//! A lenient JSON reader that remembers where every value and key is.
//!
//! Accepts what upstream's documentation shows in its example configs but
//! strict JSON does not: `//` and `/* */` comments, trailing commas and a
//! missing comma between two members on separate lines (warned about).
//! Nesting is capped so hostile input cannot overflow the stack.

use super::error::{ConfigError, Pos};

/// Deepest nesting accepted; real configs use fewer than ten levels.
const MAX_DEPTH: usize = 64;

/// A parsed value. Deliberately not `Debug`: it may hold secrets.
#[derive(Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    /// Number text as written (JSON) or formatted (TOML); typed on use.
    Num(String),
    Str(String),
    Arr(Vec<Node>),
    Obj(Vec<Member>),
}

#[derive(Clone, PartialEq)]
pub(crate) struct Node {
    pub value: Value,
    pub pos: Option<Pos>,
}

#[derive(Clone, PartialEq)]
pub(crate) struct Member {
    pub key: String,
    pub key_pos: Option<Pos>,
    pub node: Node,
}

impl Node {
    pub fn new(value: Value, pos: Option<Pos>) -> Self {
        Node { value, pos }
    }

    /// A short name of the type, for "expected X, found Y" messages.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Num(_) => "a number",
            Value::Str(_) => "a string",
            Value::Arr(_) => "an array",
            Value::Obj(_) => "an object",
        }
    }

    pub fn member(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Obj(members) => members.iter().rev().find(|m| m.key == key).map(|m| &m.node),
            _ => None,
        }
    }
}

/// Parses `text`; `warnings` receives notes about accepted non-JSON forms.
pub(crate) fn parse(
    text: &str,
    origin: &str,
    warnings: &mut Vec<String>,
) -> Result<Node, ConfigError> {
    let mut p = Parser {
        chars: text.trim_start_matches('\u{feff}').chars().collect(),
        at: 0,
        line: 1,
        column: 1,
        origin,
        warnings,
    };
    p.skip_blank()?;
    let node = p.value(0)?;
    p.skip_blank()?;
    if p.peek().is_some() {
        return Err(p.error("unexpected text after the end of the document"));
    }
    Ok(node)
}

struct Parser<'a> {
    chars: Vec<char>,
    at: usize,
    line: u32,
    column: u32,
    origin: &'a str,
    warnings: &'a mut Vec<String>,
}

impl Parser<'_> {
    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column,
        }
    }

    fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::new(self.origin, None, Some(self.pos()), message)
    }

    fn error_at(&self, pos: Pos, message: impl Into<String>) -> ConfigError {
        ConfigError::new(self.origin, None, Some(pos), message)
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += 1;
        if c == '\n' {
            self.line = self.line.saturating_add(1);
            self.column = 1;
        } else {
            self.column = self.column.saturating_add(1);
        }
        Some(c)
    }

    /// Skips white space and comments.
    fn skip_blank(&mut self) -> Result<(), ConfigError> {
        loop {
            match (self.peek(), self.chars.get(self.at + 1).copied()) {
                (Some(c), _) if c.is_whitespace() => {
                    self.bump();
                }
                (Some('/'), Some('/')) => {
                    while let Some(c) = self.peek() {
                        if c == '\n' {
                            break;
                        }
                        self.bump();
                    }
                }
                (Some('/'), Some('*')) => {
                    let start = self.pos();
                    self.bump();
                    self.bump();
                    loop {
                        match self.bump() {
                            None => return Err(self.error_at(start, "unterminated `/*` comment")),
                            Some('*') if self.peek() == Some('/') => {
                                self.bump();
                                break;
                            }
                            Some(_) => {}
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, ConfigError> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        let pos = Some(self.pos());
        let value = match self.peek() {
            None => return Err(self.error("unexpected end of text, expected a value")),
            Some('{') => self.object(depth)?,
            Some('[') => self.array(depth)?,
            Some('"') => Value::Str(self.string()?),
            Some(c) if c == '-' || c.is_ascii_digit() => Value::Num(self.number()?),
            Some(c) if c.is_ascii_alphabetic() => self.word()?,
            Some(c) => return Err(self.error(unexpected(c, "a value"))),
        };
        Ok(Node::new(value, pos))
    }

    fn word(&mut self) -> Result<Value, ConfigError> {
        let start = self.pos();
        let mut word = String::new();
        while let Some(c) = self
            .peek()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        {
            word.push(c);
            self.bump();
        }
        match word.as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            "null" => Ok(Value::Null),
            _ => Err(self.error_at(
                start,
                "expected a value (string in double quotes, number, true, false, null, object or array)",
            )),
        }
    }

    fn number(&mut self) -> Result<String, ConfigError> {
        let start = self.pos();
        let mut text = String::new();
        while let Some(c) = self
            .peek()
            .filter(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'))
        {
            text.push(c);
            self.bump();
        }
        if text.parse::<f64>().is_err() || text.starts_with('+') {
            return Err(self.error_at(start, "malformed number"));
        }
        Ok(text)
    }

    fn string(&mut self) -> Result<String, ConfigError> {
        let start = self.pos();
        self.bump(); // opening quote
        let mut out = String::new();
        loop {
            let esc_pos = self.pos();
            match self.bump() {
                None | Some('\n') => return Err(self.error_at(start, "unterminated string")),
                Some('"') => return Ok(out),
                Some('\\') => {
                    match self.bump() {
                        Some('"') => out.push('"'),
                        Some('\\') => out.push('\\'),
                        Some('/') => out.push('/'),
                        Some('b') => out.push('\u{8}'),
                        Some('f') => out.push('\u{c}'),
                        Some('n') => out.push('\n'),
                        Some('r') => out.push('\r'),
                        Some('t') => out.push('\t'),
                        Some('u') => out.push(self.unicode_escape(esc_pos)?),
                        _ => return Err(self.error_at(
                            esc_pos,
                            "invalid escape; allowed: \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX",
                        )),
                    }
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn hex4(&mut self, pos: Pos) -> Result<u32, ConfigError> {
        let mut v = 0u32;
        for _ in 0..4 {
            let d = self
                .bump()
                .and_then(|c| c.to_digit(16))
                .ok_or_else(|| self.error_at(pos, "\\u must be followed by 4 hex digits"))?;
            v = v * 16 + d;
        }
        Ok(v)
    }

    fn unicode_escape(&mut self, pos: Pos) -> Result<char, ConfigError> {
        let hi = self.hex4(pos)?;
        let code = if (0xD800..0xDC00).contains(&hi) {
            if self.bump() != Some('\\') || self.bump() != Some('u') {
                return Err(self.error_at(pos, "unpaired UTF-16 surrogate in \\u escape"));
            }
            let lo = self.hex4(pos)?;
            if !(0xDC00..0xE000).contains(&lo) {
                return Err(self.error_at(pos, "unpaired UTF-16 surrogate in \\u escape"));
            }
            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
        } else {
            hi
        };
        char::from_u32(code).ok_or_else(|| self.error_at(pos, "invalid code point in \\u escape"))
    }

    /// After an element: `,` or the closer, or (with a warning) a new line.
    /// Returns true when the container ends.
    fn separator(&mut self, closer: char, what: &str) -> Result<bool, ConfigError> {
        let before = self.line;
        self.skip_blank()?;
        match self.peek() {
            Some(',') => {
                self.bump();
                self.skip_blank()?;
                if self.peek() == Some(closer) {
                    self.bump(); // trailing comma, accepted
                    return Ok(true);
                }
                Ok(false)
            }
            Some(c) if c == closer => {
                self.bump();
                Ok(true)
            }
            Some(c) if self.line > before && (c == '"' || closer == ']') => {
                let at = self.pos();
                let origin = self.origin;
                self.warnings.push(format!(
                    "config {origin}: missing `,` between {what}s ({at}), accepted"
                ));
                Ok(false)
            }
            Some(c) => Err(self.error(unexpected(c, &format!("`,` or `{closer}`")))),
            None => Err(self.error(format!(
                "unexpected end of text, expected `,` or `{closer}`"
            ))),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, ConfigError> {
        self.bump();
        let mut members = Vec::new();
        self.skip_blank()?;
        if self.peek() == Some('}') {
            self.bump();
            return Ok(Value::Obj(members));
        }
        loop {
            let key_pos = self.pos();
            match self.peek() {
                Some('"') => {}
                Some(c) => return Err(self.error(unexpected(c, "a key in double quotes"))),
                None => return Err(self.error("unexpected end of text, expected a key")),
            }
            let key = self.string()?;
            self.skip_blank()?;
            match self.peek() {
                Some(':') => {
                    self.bump();
                }
                Some(c) => return Err(self.error(unexpected(c, "`:` after the key"))),
                None => return Err(self.error("unexpected end of text, expected `:`")),
            }
            self.skip_blank()?;
            let node = self.value(depth + 1)?;
            members.push(Member {
                key,
                key_pos: Some(key_pos),
                node,
            });
            if self.separator('}', "member")? {
                return Ok(Value::Obj(members));
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, ConfigError> {
        self.bump();
        let mut items = Vec::new();
        self.skip_blank()?;
        if self.peek() == Some(']') {
            self.bump();
            return Ok(Value::Arr(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            if self.separator(']', "element")? {
                return Ok(Value::Arr(items));
            }
        }
    }
}

/// Names an unexpected character without echoing text that might be a secret.
fn unexpected(c: char, expected: &str) -> String {
    if c.is_ascii_punctuation() {
        format!("unexpected `{c}`, expected {expected}")
    } else {
        format!("unexpected character, expected {expected}")
    }
}
