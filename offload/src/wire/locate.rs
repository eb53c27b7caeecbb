//! Finds the JSON path (`messages[2].role`) at a byte offset of a request body, so that a type
//! error reported by `serde_json` (which gives only a line and a column) can name its field.
//!
//! Only used on the error path: the body is scanned once, up to its end or to the first syntax
//! error, without building any values.

use std::fmt::Write as _;

/// One step of a path: an object key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// Nesting deeper than this is not followed (serde_json itself stops at 128).
const MAX_DEPTH: usize = 256;

/// The byte offset of a 1-based `line` and a `column` as serde_json counts them (bytes since the
/// start of the line).
pub(crate) fn offset_of(text: &[u8], line: usize, column: usize) -> usize {
    let mut start = 0;
    if line > 1 {
        let mut seen = 1;
        for (i, &b) in text.iter().enumerate() {
            if b == b'\n' {
                seen += 1;
                if seen == line {
                    start = i + 1;
                    break;
                }
            }
        }
    }
    (start + column).min(text.len())
}

/// The path of the innermost value whose span contains `offset`, formatted as
/// `key[index].key`; empty for the top-level value.
///
/// A value spanning bytes `start..end` contains `offset` when `start < offset <= end`: serde_json
/// reports a type error either just after the value's first byte or just after its last one, and
/// a missing field just after the closing brace of the object that lacks it (which is past the
/// end of that object's last member).
pub(crate) fn path_at(text: &[u8], offset: usize) -> String {
    let mut scanner = Scanner {
        text,
        pos: 0,
        offset,
        path: Vec::new(),
        best: None,
    };
    // A syntax error after the offset ends the scan early; what was found so far stands.
    let _ = scanner.value(0);
    format_path(scanner.best.as_deref().unwrap_or(&[]))
}

fn format_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Seg::Index(i) => {
                let _ = write!(out, "[{i}]");
            }
        }
    }
    out
}

struct Scanner<'a> {
    text: &'a [u8],
    pos: usize,
    offset: usize,
    path: Vec<Seg>,
    best: Option<Vec<Seg>>,
}

/// The scan stopped: invalid JSON or too deep.
struct Stop;

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn consider(&mut self, start: usize, end: Option<usize>) {
        // A value that never closed (the scan stopped inside it) extends past the offset.
        let contains = start < self.offset && end.is_none_or(|end| self.offset <= end);
        let deeper = self
            .best
            .as_ref()
            .is_none_or(|best| self.path.len() > best.len());
        if contains && deeper {
            self.best = Some(self.path.clone());
        }
    }

    fn value(&mut self, depth: usize) -> Result<(), Stop> {
        self.skip_ws();
        let start = self.pos;
        let result = match self.peek() {
            None => Err(Stop),
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(|_| ()),
            Some(_) => self.scalar(),
        };
        match result {
            Ok(()) => {
                self.consider(start, Some(self.pos));
                Ok(())
            }
            Err(Stop) => {
                self.consider(start, None);
                Err(Stop)
            }
        }
    }

    fn scalar(&mut self) -> Result<(), Stop> {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if matches!(b, b',' | b']' | b'}' | b':' | b' ' | b'\t' | b'\n' | b'\r') {
                break;
            }
            self.pos += 1;
        }
        if self.pos == start { Err(Stop) } else { Ok(()) }
    }

    /// Consumes a string and returns its raw bytes (between the quotes, escapes undecoded).
    fn string(&mut self) -> Result<&[u8], Stop> {
        let start = self.pos + 1;
        self.pos += 1;
        loop {
            match self.peek() {
                None => return Err(Stop),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(&self.text[start..self.pos - 1]);
                }
                Some(b'\\') => self.pos += 2,
                Some(_) => self.pos += 1,
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<(), Stop> {
        if depth >= MAX_DEPTH {
            return Err(Stop);
        }
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(Stop);
            }
            let raw = self.string()?;
            let key = decode_key(raw);
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(Stop);
            }
            self.pos += 1;
            self.path.push(Seg::Key(key));
            let member = self.value(depth + 1);
            self.path.pop();
            member?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(Stop),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<(), Stop> {
        if depth >= MAX_DEPTH {
            return Err(Stop);
        }
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        let mut index = 0;
        loop {
            self.path.push(Seg::Index(index));
            let item = self.value(depth + 1);
            self.path.pop();
            item?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(Stop),
            }
            index += 1;
        }
    }
}

/// An object key with its escapes decoded (falls back to the raw text if it cannot be).
fn decode_key(raw: &[u8]) -> String {
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    serde_json::from_slice::<String>(&quoted)
        .unwrap_or_else(|_| String::from_utf8_lossy(raw).into_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn at(text: &str, needle: &str) -> String {
        let offset = text.find(needle).map_or(text.len(), |i| i + needle.len());
        path_at(text.as_bytes(), offset)
    }

    #[test]
    fn names_nested_members() {
        let text = r#"{"a": 1, "messages": [{"role": "user"}, {"role": "bad"}]}"#;
        assert_eq!(at(text, r#""bad""#), "messages[1].role");
        assert_eq!(at(text, r#"1"#), "a");
        assert_eq!(path_at(text.as_bytes(), 1), "");
    }

    #[test]
    fn missing_field_points_at_the_object() {
        let text = r#"{"messages": [{"content": "x"} ]}"#;
        // Just past the closing brace of the message object.
        assert_eq!(at(text, r#""x"}"#), "messages[0]");
        assert_eq!(path_at(text.as_bytes(), text.len()), "");
    }

    #[test]
    fn survives_a_later_syntax_error() {
        let text = r#"{"temperature": "hot", "x": [1, "#;
        assert_eq!(at(text, r#""hot""#), "temperature");
    }

    #[test]
    fn decodes_escaped_keys() {
        let text = r#"{"a\"b": [true]}"#;
        assert_eq!(at(text, "true"), "a\"b[0]");
    }

    #[test]
    fn offsets_follow_lines() {
        let text = b"{\n  \"a\": 1\n}";
        assert_eq!(offset_of(text, 2, 3), 5);
        assert_eq!(offset_of(text, 1, 0), 0);
        assert_eq!(offset_of(text, 9, 99), text.len());
    }
}
