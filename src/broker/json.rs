//! The relayed-JSON codec shared by the dialects (PROTOCOLS.md §1 "Relayed JSON").
//!
//! serde_json cannot be used for relayed messages: even with `arbitrary_precision`
//! it rewrites exponents (`1E5` becomes `1e+5`), and its recursion limit rejects
//! documents nested exactly 128 levels deep, which the spec accepts. This module
//! parses strict RFC 8259 JSON into a tree that keeps each number's source text
//! and member order, and writes it back compact with `/` and non-ASCII unescaped.

use std::collections::HashMap;
use std::fmt;

/// Documents nested deeper than this count as invalid JSON.
pub const MAX_DEPTH: usize = 128;

/// Objects larger than this find duplicate keys through a hash index rather than
/// a linear scan, so a 64 KiB object of tiny members stays linear to parse.
const DEDUP_INDEX_AT: usize = 16;

/// A parsed JSON value. Numbers keep their exact source text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Object),
}

/// A JSON object: members in source order; with duplicate keys the last value
/// wins and keeps the first key's position (as JavaScript's `JSON.parse` does).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Object {
    members: Vec<(String, Json)>,
}

impl Object {
    pub fn new() -> Object {
        Object::default()
    }

    pub fn get(&self, key: &str) -> Option<&Json> {
        self.members.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Removes a member, keeping the order of the others.
    pub fn remove(&mut self, key: &str) -> Option<Json> {
        let i = self.members.iter().position(|(k, _)| k == key)?;
        Some(self.members.remove(i).1)
    }

    /// Appends a member; an existing member with that key is replaced in place.
    pub fn insert(&mut self, key: impl Into<String>, value: Json) {
        let key = key.into();
        match self.members.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.members.push((key, value)),
        }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Json)> {
        self.members.iter().map(|(k, v)| (k.as_str(), v))
    }

    fn from_members(members: Vec<(String, Json)>) -> Object {
        let mut out: Vec<(String, Json)> = Vec::with_capacity(members.len());
        if members.len() <= DEDUP_INDEX_AT {
            for (k, v) in members {
                match out.iter_mut().find(|(ok, _)| *ok == k) {
                    Some(slot) => slot.1 = v,
                    None => out.push((k, v)),
                }
            }
        } else {
            let mut index: HashMap<String, usize> = HashMap::with_capacity(members.len());
            for (k, v) in members {
                match index.get(&k) {
                    Some(&i) => out[i].1 = v,
                    None => {
                        index.insert(k.clone(), out.len());
                        out.push((k, v));
                    }
                }
            }
        }
        Object { members: out }
    }

    /// Compact encoding of the object.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        write_object(self, &mut out);
        out
    }
}

impl Json {
    /// Compact encoding: no spaces, `/` and non-ASCII unescaped, numbers as parsed.
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Json::Null => out.extend_from_slice(b"null"),
            Json::Bool(true) => out.extend_from_slice(b"true"),
            Json::Bool(false) => out.extend_from_slice(b"false"),
            Json::Number(n) => out.extend_from_slice(n.as_bytes()),
            Json::String(s) => write_str(s, out),
            Json::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.write(out);
                }
                out.push(b']');
            }
            Json::Object(o) => write_object(o, out),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::new();
        self.write(&mut out);
        // Only valid UTF-8 is ever written: the parser accepts only UTF-8 input.
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

fn write_object(o: &Object, out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (k, v)) in o.members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(k, out);
        out.push(b':');
        v.write(out);
    }
    out.push(b'}');
}

/// Writes a JSON string literal, escaping only what JSON requires (the same
/// escapes serde_json chooses, so output looks alike across dialects).
pub fn write_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// A JSON string literal as a `String`.
pub fn quote(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len() + 2);
    write_str(s, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Why a document was refused. Dialects only need to know that it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    NotUtf8,
    Syntax { offset: usize },
    TooDeep,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::NotUtf8 => f.write_str("invalid UTF-8"),
            ParseError::Syntax { offset } => write!(f, "JSON syntax error at byte {offset}"),
            ParseError::TooDeep => write!(f, "JSON nested deeper than {MAX_DEPTH} levels"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Parses one JSON document (surrounding whitespace allowed).
pub fn parse(input: &[u8]) -> Result<Json, ParseError> {
    let text = std::str::from_utf8(input).map_err(|_| ParseError::NotUtf8)?;
    let mut p = Parser {
        s: text.as_bytes(),
        pos: 0,
    };
    p.skip_ws();
    let v = p.value(1)?;
    p.skip_ws();
    if p.pos != p.s.len() {
        return Err(p.syntax());
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn syntax(&self) -> ParseError {
        ParseError::Syntax { offset: self.pos }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect(&mut self, b: u8) -> Result<(), ParseError> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.syntax())
        }
    }

    fn literal(&mut self, word: &[u8], v: Json) -> Result<Json, ParseError> {
        if self.s[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(v)
        } else {
            Err(self.syntax())
        }
    }

    /// `depth` is the nesting level a container starting here would have.
    fn value(&mut self, depth: usize) -> Result<Json, ParseError> {
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(Json::String),
            Some(b't') => self.literal(b"true", Json::Bool(true)),
            Some(b'f') => self.literal(b"false", Json::Bool(false)),
            Some(b'n') => self.literal(b"null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.syntax()),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, ParseError> {
        if depth > MAX_DEPTH {
            return Err(ParseError::TooDeep);
        }
        self.pos += 1;
        let mut members = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Json::Object(Object::new()));
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.syntax());
            }
            let key = self.string()?;
            self.skip_ws();
            self.expect(b':')?;
            self.skip_ws();
            let v = self.value(depth + 1)?;
            members.push((key, v));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Json::Object(Object::from_members(members)));
                }
                _ => return Err(self.syntax()),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Json, ParseError> {
        if depth > MAX_DEPTH {
            return Err(ParseError::TooDeep);
        }
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Json::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Json::Array(items));
                }
                _ => return Err(self.syntax()),
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<Json, ParseError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.syntax()),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.syntax());
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.syntax());
            }
        }
        // The slice is ASCII digits and signs, so it is valid UTF-8.
        let text = String::from_utf8_lossy(&self.s[start..self.pos]).into_owned();
        Ok(Json::Number(text))
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let mut v = 0u32;
        for _ in 0..4 {
            let d = match self.peek() {
                Some(c @ b'0'..=b'9') => c - b'0',
                Some(c @ b'a'..=b'f') => c - b'a' + 10,
                Some(c @ b'A'..=b'F') => c - b'A' + 10,
                _ => return Err(self.syntax()),
            };
            v = v * 16 + u32::from(d);
            self.pos += 1;
        }
        Ok(v)
    }

    fn string(&mut self) -> Result<String, ParseError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let start = self.pos;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            // Input was validated as UTF-8 and we stop only at ASCII bytes, so
            // the run is a whole number of characters.
            out.push_str(&String::from_utf8_lossy(&self.s[start..self.pos]));
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = match self.peek() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.pos += 1;
                            let c = self.unicode_escape()?;
                            out.push(c);
                            continue;
                        }
                        _ => return Err(self.syntax()),
                    };
                    self.pos += 1;
                    out.push(c);
                }
                // A raw control character or the end of input.
                _ => return Err(self.syntax()),
            }
        }
    }

    /// After `\u`: one code point, joining a surrogate pair; a lone surrogate is
    /// an error because it cannot be written back as UTF-8.
    fn unicode_escape(&mut self) -> Result<char, ParseError> {
        let hi = self.hex4()?;
        let cp = match hi {
            0xd800..=0xdbff => {
                if !self.s[self.pos..].starts_with(b"\\u") {
                    return Err(self.syntax());
                }
                self.pos += 2;
                let lo = self.hex4()?;
                if !(0xdc00..=0xdfff).contains(&lo) {
                    return Err(self.syntax());
                }
                0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
            }
            0xdc00..=0xdfff => return Err(self.syntax()),
            _ => hi,
        };
        char::from_u32(cp).ok_or_else(|| self.syntax())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(s: &str) -> String {
        parse(s.as_bytes()).expect("valid JSON").to_string()
    }

    fn nested(levels: usize) -> String {
        let mut s = String::from("{\"a\":");
        s.push_str(&"[".repeat(levels - 1));
        s.push_str(&"]".repeat(levels - 1));
        s.push('}');
        s
    }

    #[test]
    fn numbers_keep_their_text() {
        assert_eq!(
            round(r#"{"a":1E5,"b":-0,"c":1.50,"d":1e400,"e":0.1e-1,"f":123456789012345678901234567890}"#),
            r#"{"a":1E5,"b":-0,"c":1.50,"d":1e400,"e":0.1e-1,"f":123456789012345678901234567890}"#
        );
    }

    #[test]
    fn compact_with_slash_and_non_ascii_unescaped() {
        assert_eq!(
            round("{ \"a\" : [ 1 , \"\\u00e9\\/x\\ud83d\\ude00\" ] ,\n\"b\":\"\\u0001\\n\\\"\"}"),
            "{\"a\":[1,\"é/x😀\"],\"b\":\"\\u0001\\n\\\"\"}"
        );
    }

    #[test]
    fn duplicate_members_last_value_wins_at_first_position() {
        assert_eq!(round(r#"{"a":1,"b":2,"a":3}"#), r#"{"a":3,"b":2}"#);
        let many: Vec<String> = (0..40).map(|i| format!("\"k{}\":{}", i % 20, i)).collect();
        let doc = format!("{{{}}}", many.join(","));
        let out = round(&doc);
        let expect: Vec<String> = (0..20).map(|i| format!("\"k{}\":{}", i, i + 20)).collect();
        assert_eq!(out, format!("{{{}}}", expect.join(",")));
    }

    #[test]
    fn depth_128_is_valid_and_129_is_not() {
        assert!(parse(nested(128).as_bytes()).is_ok());
        assert_eq!(parse(nested(129).as_bytes()), Err(ParseError::TooDeep));
        assert_eq!(parse("[".repeat(100_000).as_bytes()), Err(ParseError::TooDeep));
    }

    #[test]
    fn rejects_invalid_documents() {
        for bad in [
            "",
            " ",
            "{",
            "{\"a\"}",
            "{\"a\":1,}",
            "[1,]",
            "01",
            "1.",
            "-",
            "1e",
            "+1",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
            "\"a\u{1}\"",
            "\"\\x\"",
            "{} {}",
            "nul",
            "{'a':1}",
            "NaN",
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "accepted {bad:?}");
        }
        assert_eq!(parse(b"\"\xff\""), Err(ParseError::NotUtf8));
    }

    #[test]
    fn agrees_with_serde_json_on_validity_and_values() {
        for doc in [
            r#"{"a":[true,false,null,{"b":"c"}],"d":-1.5e-3}"#,
            r#"[]"#,
            r#""x""#,
            r#"  {"a" : "\t"}  "#,
        ] {
            let ours = parse(doc.as_bytes()).expect("valid").to_string();
            let theirs: serde_json::Value = serde_json::from_str(&ours).expect("serde parses ours");
            let direct: serde_json::Value = serde_json::from_str(doc).expect("serde parses input");
            assert_eq!(theirs, direct);
        }
    }

    #[test]
    fn object_edits_keep_order() {
        let Ok(Json::Object(mut o)) = parse(br#"{"FROM":"x","a":1,"sID":2,"b":2}"#) else {
            panic!("object expected")
        };
        o.remove("FROM");
        o.remove("sID");
        o.insert("FROM", Json::String("me".into()));
        o.insert("sID", Json::Number("7".into()));
        assert_eq!(
            String::from_utf8(o.to_bytes()).expect("utf8"),
            r#"{"a":1,"b":2,"FROM":"me","sID":7}"#
        );
    }
}
