//! LVM2's text metadata format (the "config tree" of `vgcfgbackup` files and of the
//! metadata areas): `key = value` assignments and `name { ... }` sections, values being
//! integers, `"strings"` with `\"`/`\\` escapes, or `[ arrays ]`, `#` comments anywhere.
//!
//! A real tokenizer and recursive-descent parser rather than line matching, because
//! metadata written by other tools (or by an attacker) need not be one item per line.
//! Everything is bounded: the text size, the nesting depth and the number of nodes.

use super::super::error::VolumeError;

/// Largest metadata text parsed (LVM itself refuses metadata above ~1 MiB per area by
/// default; a few MiB leaves room for very large VGs).
pub const MAX_TEXT: usize = 4 << 20;
/// Deepest nesting of sections and arrays (real metadata nests 4-5 deep).
pub const MAX_DEPTH: usize = 16;
/// Most values (sections, assignments, array elements) in one text.
pub const MAX_NODES: usize = 200_000;

/// One value of the tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    /// A number LVM would read as a float (never in VG metadata, kept for completeness).
    Float(f64),
    Str(String),
    Array(Vec<Value>),
    Section(Section),
}

/// A section: its items in file order (names may repeat; lookups take the first).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Section {
    pub items: Vec<(String, Value)>,
}

impl Section {
    /// The first value named `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.items.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        match self.get(key)? {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn array(&self, key: &str) -> Option<&[Value]> {
        match self.get(key)? {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn section(&self, key: &str) -> Option<&Section> {
        match self.get(key)? {
            Value::Section(s) => Some(s),
            _ => None,
        }
    }

    /// The subsections, in file order.
    pub fn sections(&self) -> impl Iterator<Item = (&str, &Section)> {
        self.items.iter().filter_map(|(k, v)| match v {
            Value::Section(s) => Some((k.as_str(), s)),
            _ => None,
        })
    }

    /// The strings of an array value (`status = ["READ", "WRITE"]`); other elements are
    /// skipped.
    pub fn strings(&self, key: &str) -> Vec<&str> {
        self.array(key)
            .unwrap_or(&[])
            .iter()
            .filter_map(|v| match v {
                Value::Str(s) => Some(s.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// Parses a whole metadata text. A NUL ends the text (metadata areas pad with zeros).
pub fn parse(text: &[u8]) -> Result<Section, VolumeError> {
    let text = text.split(|&b| b == 0).next().unwrap_or(&[]);
    if text.len() > MAX_TEXT {
        return Err(VolumeError::TooLarge {
            what: "LVM2 metadata text",
            size: text.len() as u64,
            limit: MAX_TEXT as u64,
        });
    }
    let mut p = Parser {
        s: text,
        pos: 0,
        nodes: 0,
    };
    let root = p.items(0, true)?;
    Ok(root)
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    nodes: usize,
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'+' | b'/' | b'@' | b':')
}

impl Parser<'_> {
    fn err(&self, message: impl Into<String>) -> VolumeError {
        let line = 1 + self.s[..self.pos.min(self.s.len())]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        VolumeError::Syntax {
            line,
            message: message.into(),
        }
    }

    /// Skips whitespace and comments.
    fn skip(&mut self) {
        while let Some(&b) = self.s.get(self.pos) {
            if b.is_ascii_whitespace() {
                self.pos += 1;
            } else if b == b'#' {
                while self.s.get(self.pos).is_some_and(|&b| b != b'\n') {
                    self.pos += 1;
                }
            } else {
                break;
            }
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip();
        self.s.get(self.pos).copied()
    }

    fn count(&mut self) -> Result<(), VolumeError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(self.err(format!("more than {MAX_NODES} values")));
        }
        Ok(())
    }

    /// The items of a section body, up to its `}` (or the end of the text at the top).
    fn items(&mut self, depth: usize, top: bool) -> Result<Section, VolumeError> {
        if depth > MAX_DEPTH {
            return Err(self.err(format!("nested deeper than {MAX_DEPTH}")));
        }
        let mut section = Section::default();
        loop {
            match self.peek() {
                None if top => return Ok(section),
                None => return Err(self.err("unterminated section")),
                Some(b'}') if !top => {
                    self.pos += 1;
                    return Ok(section);
                }
                Some(_) => {}
            }
            let name = self.name()?;
            self.count()?;
            match self.peek() {
                Some(b'{') => {
                    self.pos += 1;
                    let sub = self.items(depth + 1, false)?;
                    section.items.push((name, Value::Section(sub)));
                }
                Some(b'=') => {
                    self.pos += 1;
                    let v = self.value(depth + 1)?;
                    section.items.push((name, v));
                }
                _ => return Err(self.err(format!("expected '=' or '{{' after {name:?}"))),
            }
        }
    }

    fn name(&mut self) -> Result<String, VolumeError> {
        self.skip();
        let start = self.pos;
        while self.s.get(self.pos).is_some_and(|&b| is_name_byte(b)) {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.err("expected a name"));
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }

    fn value(&mut self, depth: usize) -> Result<Value, VolumeError> {
        if depth > MAX_DEPTH {
            return Err(self.err(format!("nested deeper than {MAX_DEPTH}")));
        }
        match self.peek() {
            Some(b'"') => self.string().map(Value::Str),
            Some(b'[') => {
                self.pos += 1;
                let mut out = Vec::new();
                loop {
                    match self.peek() {
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(Value::Array(out));
                        }
                        Some(b',') if !out.is_empty() => self.pos += 1,
                        None => return Err(self.err("unterminated array")),
                        _ => {}
                    }
                    if self.peek() == Some(b']') {
                        continue;
                    }
                    self.count()?;
                    out.push(self.value(depth + 1)?);
                    match self.peek() {
                        Some(b',') | Some(b']') => {}
                        _ => return Err(self.err("expected ',' or ']' in array")),
                    }
                }
            }
            Some(b) if b == b'-' || b == b'+' || b.is_ascii_digit() => self.number(),
            _ => Err(self.err("expected a value")),
        }
    }

    fn string(&mut self) -> Result<String, VolumeError> {
        self.pos += 1; // opening quote
        let mut out = Vec::new();
        loop {
            match self.s.get(self.pos) {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(String::from_utf8_lossy(&out).into_owned());
                }
                Some(b'\\') => {
                    // LVM escapes only `"` and `\`; any other escaped byte stands for itself.
                    let Some(&c) = self.s.get(self.pos + 1) else {
                        return Err(self.err("unterminated string"));
                    };
                    out.push(c);
                    self.pos += 2;
                }
                Some(&c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn number(&mut self) -> Result<Value, VolumeError> {
        let start = self.pos;
        self.pos += 1;
        while self
            .s
            .get(self.pos)
            .is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'.')
        {
            self.pos += 1;
        }
        let t = std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("");
        if let Ok(i) = t.parse::<i64>() {
            return Ok(Value::Int(i));
        }
        if let Some(h) = t.strip_prefix("0x") {
            if let Ok(i) = i64::from_str_radix(h, 16) {
                return Ok(Value::Int(i));
            }
        }
        match t.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Value::Float(f)),
            _ => Err(self.err(format!("bad number {t:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_sections_arrays_and_escapes() {
        let t = b"vg0 {\n id = \"a\\\"b\\\\c\" # c\n seqno = 12\n status = [\"READ\", \"WRITE\"]\n\
            lv { segment1 { stripes = [\n\"pv0\", 0,\n\"pv1\", -3\n] } }\n empty = [] }\n\
            contents = \"Text Format Volume Group\" version = 1\0garbage {";
        let root = parse(t).unwrap();
        let vg = root.section("vg0").unwrap();
        assert_eq!(vg.str("id"), Some("a\"b\\c"));
        assert_eq!(vg.int("seqno"), Some(12));
        assert_eq!(vg.strings("status"), vec!["READ", "WRITE"]);
        let seg = vg.section("lv").unwrap().section("segment1").unwrap();
        assert_eq!(
            seg.array("stripes").unwrap(),
            &[
                Value::Str("pv0".into()),
                Value::Int(0),
                Value::Str("pv1".into()),
                Value::Int(-3)
            ]
        );
        assert_eq!(vg.array("empty").unwrap(), &[]);
        assert_eq!(root.int("version"), Some(1));
    }

    #[test]
    fn rejects_broken_texts() {
        for bad in [
            &b"a {"[..],
            b"a = ",
            b"a = \"x",
            b"a = [1 2]",
            b"a = [1,",
            b"{}",
            b"a b",
            b"a = 1x",
            b"}",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn depth_and_count_are_bounded() {
        let deep = "a {".repeat(MAX_DEPTH + 2) + &"}".repeat(MAX_DEPTH + 2);
        assert!(matches!(
            parse(deep.as_bytes()),
            Err(VolumeError::Syntax { .. })
        ));
        let deep_array = "a = ".to_string() + &"[".repeat(MAX_DEPTH + 2);
        assert!(parse(deep_array.as_bytes()).is_err());
        let many = "a = [".to_string() + &"1,".repeat(MAX_NODES + 1) + "1]";
        assert!(parse(many.as_bytes()).is_err());
    }
}
