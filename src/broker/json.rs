//! The relayed-JSON codec shared by the dialects (PROTOCOLS.md §1 "Relayed JSON").
//!
//! serde_json cannot be used for relayed messages: even with `arbitrary_precision`
//! it rewrites exponents (`1E5` becomes `1e+5`), and its recursion limit rejects
//! documents nested exactly 128 levels deep, which the spec accepts. This module
//! parses strict RFC 8259 JSON keeping each number's source text and member
//! order, and writes it back compact with `/` and non-ASCII unescaped.
//!
//! One parser, two trees. [`parse_borrowed`] gives a [`Value`] whose numbers,
//! and strings without escapes, borrow from the input: relaying a message then
//! allocates little more than its list of members, which matters because the
//! broker parses every message it routes. [`parse`] gives an owned [`Json`]
//! for code that keeps or edits values.

use std::borrow::Cow;
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
            Json::Array(items) => write_list(out, b'[', items, b']', Json::write),
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
    write_list(out, b'{', &o.members, b'}', |(k, v), out| {
        write_str(k, out);
        out.push(b':');
        v.write(out);
    });
}

/// `open`, the items separated by commas, `close`: every JSON container.
fn write_list<T>(
    out: &mut Vec<u8>,
    open: u8,
    items: impl IntoIterator<Item = T>,
    close: u8,
    mut write: impl FnMut(T, &mut Vec<u8>),
) {
    out.push(open);
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(item, out);
    }
    out.push(close);
}

/// A parsed JSON value borrowing from the input: numbers are their source
/// text, strings are borrowed unless they had escapes. Written back, it gives
/// the same bytes as the [`Json`] that [`Value::into_owned`] makes of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Number(&'a str),
    String(Cow<'a, str>),
    Array(Vec<Value<'a>>),
    Object(Members<'a>),
}

/// A JSON object borrowing from the input, with the same member order and
/// duplicate rule as [`Object`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members<'a> {
    members: Vec<(Cow<'a, str>, Value<'a>)>,
}

impl<'a> Members<'a> {
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        self.members.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value<'a>)> {
        self.members.iter().map(|(k, v)| (k.as_ref(), v))
    }

    /// The same object, owning its text.
    pub fn into_owned(self) -> Object {
        let members = self
            .members
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Object { members }
    }

    /// Compact encoding, as [`Object::to_bytes`].
    pub fn write(&self, out: &mut Vec<u8>) {
        write_list(out, b'{', self.iter(), b'}', |(k, v), out| write_member(k, v, out));
    }
}

/// `"key":value`, compact: one member of an object being written.
pub fn write_member(key: &str, value: &Value<'_>, out: &mut Vec<u8>) {
    write_str(key, out);
    out.push(b':');
    value.write(out);
}

impl Value<'_> {
    /// Compact encoding, as [`Json::write`].
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Value::Null => out.extend_from_slice(b"null"),
            Value::Bool(true) => out.extend_from_slice(b"true"),
            Value::Bool(false) => out.extend_from_slice(b"false"),
            Value::Number(n) => out.extend_from_slice(n.as_bytes()),
            Value::String(s) => write_str(s, out),
            Value::Array(items) => write_list(out, b'[', items, b']', Value::write),
            Value::Object(m) => m.write(out),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The same value, owning its text.
    pub fn into_owned(self) -> Json {
        match self {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(b),
            Value::Number(n) => Json::Number(n.to_owned()),
            Value::String(s) => Json::String(s.into_owned()),
            Value::Array(items) => Json::Array(items.into_iter().map(Value::into_owned).collect()),
            Value::Object(m) => Json::Object(m.into_owned()),
        }
    }
}

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::new();
        self.write(&mut out);
        // Only valid UTF-8 is ever written: the parser accepts only UTF-8 input.
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

/// The bytes a JSON string cannot hold as they are: `"`, `\` and control
/// characters. The parser stops on them, and the writer escapes them.
fn special(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// The index of the first [`special`] byte. The parser and the writer run
/// this over every string of every message, so it tests eight bytes at a
/// time: the classic "has a zero byte" / "has a byte below n" word tricks,
/// which can flag a lane above a real hit but never miss one, so a flagged
/// word is then searched byte by byte.
fn find_special(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGH;
    let mut start = 0;
    for chunk in bytes.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
        let quote = has_zero(w ^ (ONES * u64::from(b'"')));
        let backslash = has_zero(w ^ (ONES * u64::from(b'\\')));
        if control | quote | backslash != 0 {
            break;
        }
        start += 8;
    }
    bytes[start..].iter().position(|&b| special(b)).map(|i| start + i)
}

/// Writes a JSON string literal, escaping only what JSON requires (the same
/// escapes serde_json chooses, so output looks alike across dialects).
pub fn write_str(s: &str, out: &mut Vec<u8>) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    let mut rest = s.as_bytes();
    while let Some(i) = find_special(rest) {
        out.extend_from_slice(&rest[..i]);
        let b = rest[i];
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            _ => b"",
        };
        if short.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(short);
        }
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

/// Writes an unsigned integer as a JSON number (without the formatting
/// machinery: this runs for every stamped message).
pub fn write_u64(n: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
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
    parse_borrowed(input).map(Value::into_owned)
}

/// Parses one JSON document (surrounding whitespace allowed), borrowing from
/// `input` wherever it can.
pub fn parse_borrowed(input: &[u8]) -> Result<Value<'_>, ParseError> {
    if !crate::engine::frame::is_utf8(input) {
        return Err(ParseError::NotUtf8);
    }
    // SAFETY: checked just above.
    let text = unsafe { std::str::from_utf8_unchecked(input) };
    let mut p = Parser { text, pos: 0 };
    p.skip_ws();
    let v = p.value(1)?;
    p.skip_ws();
    if p.pos != text.len() {
        return Err(p.syntax());
    }
    Ok(v)
}

/// An object's members as they are parsed: a key seen before keeps its first
/// position and takes the new value. Past [`DEDUP_INDEX_AT`] members, keys are
/// found through a hash index (the default, DoS-resistant hasher: clients
/// choose the keys).
struct MemberList<'a> {
    members: Vec<(Cow<'a, str>, Value<'a>)>,
    index: Option<HashMap<Cow<'a, str>, usize>>,
}

impl<'a> MemberList<'a> {
    fn push(&mut self, key: Cow<'a, str>, value: Value<'a>) {
        if let Some(index) = &mut self.index {
            match index.get(&key) {
                Some(&i) => self.members[i].1 = value,
                None => {
                    index.insert(key.clone(), self.members.len());
                    self.members.push((key, value));
                }
            }
            return;
        }
        match self.members.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => {
                self.members.push((key, value));
                if self.members.len() > DEDUP_INDEX_AT {
                    let index = self.members.iter().enumerate().map(|(i, (k, _))| (k.clone(), i));
                    self.index = Some(index.collect());
                }
            }
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn syntax(&self) -> ParseError {
        ParseError::Syntax { offset: self.pos }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    /// The text from `start` to the current position. The parser only stops
    /// at ASCII bytes, so this is always a whole number of characters; the
    /// error is there so that no input can make it panic.
    fn since(&self, start: usize) -> Result<&'a str, ParseError> {
        self.text.get(start..self.pos).ok_or_else(|| self.syntax())
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

    fn literal(&mut self, word: &[u8], v: Value<'a>) -> Result<Value<'a>, ParseError> {
        if self.text.as_bytes()[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(v)
        } else {
            Err(self.syntax())
        }
    }

    /// `depth` is the nesting level a container starting here would have.
    fn value(&mut self, depth: usize) -> Result<Value<'a>, ParseError> {
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(Value::String),
            Some(b't') => self.literal(b"true", Value::Bool(true)),
            Some(b'f') => self.literal(b"false", Value::Bool(false)),
            Some(b'n') => self.literal(b"null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.syntax()),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value<'a>, ParseError> {
        if depth > MAX_DEPTH {
            return Err(ParseError::TooDeep);
        }
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(Members::default()));
        }
        // The top level is the message itself: room for a typical one's
        // members up front saves growing the list member by member.
        let mut list = MemberList {
            members: Vec::with_capacity(if depth == 1 { 8 } else { 2 }),
            index: None,
        };
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
            list.push(key, v);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(Members { members: list.members }));
                }
                _ => return Err(self.syntax()),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value<'a>, ParseError> {
        if depth > MAX_DEPTH {
            return Err(ParseError::TooDeep);
        }
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
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

    fn number(&mut self) -> Result<Value<'a>, ParseError> {
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
        self.since(start).map(Value::Number)
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

    /// Moves past string content up to the next `"`, `\`, control character
    /// or the end of input.
    fn skip_plain(&mut self) {
        let rest = &self.text.as_bytes()[self.pos..];
        self.pos += find_special(rest).unwrap_or(rest.len());
    }

    /// A string literal: borrowed from the input unless it has escapes.
    fn string(&mut self) -> Result<Cow<'a, str>, ParseError> {
        self.pos += 1;
        let start = self.pos;
        self.skip_plain();
        if self.peek() == Some(b'"') {
            let s = self.since(start)?;
            self.pos += 1;
            return Ok(Cow::Borrowed(s));
        }
        let mut out = String::from(self.since(start)?);
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = match self.peek() {
                        Some(b'u') => {
                            self.pos += 1;
                            self.unicode_escape()?
                        }
                        Some(e) => {
                            let c = match e {
                                b'"' => '"',
                                b'\\' => '\\',
                                b'/' => '/',
                                b'b' => '\u{8}',
                                b'f' => '\u{c}',
                                b'n' => '\n',
                                b'r' => '\r',
                                b't' => '\t',
                                _ => return Err(self.syntax()),
                            };
                            self.pos += 1;
                            c
                        }
                        None => return Err(self.syntax()),
                    };
                    out.push(c);
                }
                // A raw control character or the end of input.
                _ => return Err(self.syntax()),
            }
            let run = self.pos;
            self.skip_plain();
            out.push_str(self.since(run)?);
        }
    }

    /// After `\u`: one code point, joining a surrogate pair; a lone surrogate is
    /// an error because it cannot be written back as UTF-8.
    fn unicode_escape(&mut self) -> Result<char, ParseError> {
        let hi = self.hex4()?;
        let cp = match hi {
            0xd800..=0xdbff => {
                if !self.text.as_bytes()[self.pos..].starts_with(b"\\u") {
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
pub(crate) mod reference;

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

    #[test]
    fn strings_without_escapes_and_numbers_borrow_from_the_input() {
        let doc = r#"{"to":"bob","t":1.50,"k\u0065y":"caf\u00e9","raw":"é/x"}"#;
        let Ok(Value::Object(m)) = parse_borrowed(doc.as_bytes()) else {
            panic!("object expected")
        };
        let keys: Vec<&Cow<'_, str>> = m.members.iter().map(|(k, _)| k).collect();
        assert!(matches!(keys[0], Cow::Borrowed("to")));
        assert!(
            matches!(keys[2], Cow::Owned(k) if k == "key"),
            "an escaped key is decoded"
        );
        assert!(matches!(m.get("to"), Some(Value::String(Cow::Borrowed("bob")))));
        assert_eq!(m.get("t"), Some(&Value::Number("1.50")));
        assert!(matches!(m.get("key"), Some(Value::String(Cow::Owned(s))) if s == "café"));
        assert!(matches!(m.get("raw"), Some(Value::String(Cow::Borrowed("é/x")))));
        let mut out = Vec::new();
        m.write(&mut out);
        assert_eq!(out, r#"{"to":"bob","t":1.50,"key":"café","raw":"é/x"}"#.as_bytes());
    }

    #[test]
    fn keys_are_compared_decoded_so_escaped_duplicates_collapse() {
        assert_eq!(round(r#"{"a":1,"b":2,"\u0061":3}"#), r#"{"a":3,"b":2}"#);
        assert_eq!(round(r#"{"x":{"a\/b":1,"a/b":2}}"#), r#"{"x":{"a/b":2}}"#);
        let Ok(Value::Object(m)) = parse_borrowed(br#"{"FROM":"x","FR\u004fM":"y"}"#) else {
            panic!("object expected")
        };
        assert_eq!(m.len(), 1);
        assert_eq!(m.get("FROM").and_then(Value::as_str), Some("y"));
    }

    #[test]
    fn duplicates_past_the_index_threshold_at_any_depth() {
        // 40 members over 20 keys, nested: the hash index takes over mid-object.
        let many: Vec<String> = (0..40).map(|i| format!("\"k{}\" : {}", i % 20, i)).collect();
        let doc = format!("{{\"to\":\"b\",\"m\":[{{{}}}]}}", many.join(" , "));
        let expect: Vec<String> = (0..20).map(|i| format!("\"k{}\":{}", i, i + 20)).collect();
        assert_eq!(
            round(&doc),
            format!("{{\"to\":\"b\",\"m\":[{{{}}}]}}", expect.join(","))
        );
    }

    #[test]
    fn borrowed_and_owned_trees_agree_on_depth() {
        assert!(parse_borrowed(nested(128).as_bytes()).is_ok());
        assert_eq!(parse_borrowed(nested(129).as_bytes()), Err(ParseError::TooDeep));
        // Objects count as levels too: 128 nested objects around a number.
        let objects = format!("{}1{}", "{\"a\":".repeat(128), "}".repeat(128));
        assert!(parse_borrowed(objects.as_bytes()).is_ok());
        let objects = format!("{}1{}", "{\"a\":".repeat(129), "}".repeat(129));
        assert_eq!(parse(objects.as_bytes()), Err(ParseError::TooDeep));
    }

    #[test]
    fn write_str_escapes_as_serde_json_does() {
        let mut all: String = (0u8..0x80).map(char::from).collect();
        all.push_str("é😀\u{2028}/");
        for s in [all.as_str(), "", "plain", "\"", "\\", "a\u{1}b\u{1f}c\u{7f}"] {
            let mut out = Vec::new();
            write_str(s, &mut out);
            let theirs = serde_json::to_string(s).expect("serde writes strings");
            assert_eq!(String::from_utf8(out).expect("UTF-8"), theirs, "for {s:?}");
        }
    }

    #[test]
    fn find_special_finds_the_first_at_every_offset() {
        // Each special byte at each position of a 20-byte run, with a
        // non-ASCII neighbourhood (high bits set) and a later special too.
        let specials: Vec<u8> = (0u8..0x20).chain([b'"', b'\\']).collect();
        for &sp in &specials {
            for at in 0..20 {
                let mut bytes: Vec<u8> = "é".repeat(10).into_bytes();
                bytes[at] = sp;
                bytes.push(b'"');
                assert_eq!(find_special(&bytes), Some(at), "byte {sp:#x} at {at}");
            }
        }
        let plain: Vec<u8> = (0x20u8..=0xff).filter(|&b| b != b'"' && b != b'\\').collect();
        assert_eq!(find_special(&plain), None);
        assert_eq!(find_special(b""), None);
    }

    #[test]
    fn write_u64_writes_decimal() {
        for n in [0, 7, 10, 1_000_000_007, u64::MAX] {
            let mut out = b"x".to_vec();
            write_u64(n, &mut out);
            assert_eq!(out, format!("x{n}").into_bytes());
        }
    }

    #[test]
    fn values_print_compact() {
        let v = parse_borrowed(b" [ 1E5 , \"\\/\" , { } , null ] ").expect("valid");
        assert_eq!(v.to_string(), "[1E5,\"/\",{},null]");
        assert_eq!(v.clone().into_owned().to_string(), v.to_string());
    }

    #[test]
    fn agrees_with_the_previous_parser_on_random_documents() {
        use reference::{gen_document, Rng};
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut valid, mut invalid) = (0, 0);
        for _ in 0..30_000 {
            let doc = gen_document(&mut r);
            let old = reference::parse(&doc);
            let new = parse(&doc);
            assert_eq!(new, old, "{}", String::from_utf8_lossy(&doc));
            let borrowed = parse_borrowed(&doc);
            assert_eq!(borrowed.clone().map(Value::into_owned), old);
            if let (Ok(old), Ok(b)) = (old, borrowed) {
                assert_eq!(b.to_string(), old.to_string(), "{}", String::from_utf8_lossy(&doc));
                valid += 1;
            } else {
                invalid += 1;
            }
        }
        // Both sides of the comparison were exercised.
        assert!(valid > 5_000 && invalid > 5_000, "{valid} valid, {invalid} invalid");
    }
}
