//! Test support for the relayed-JSON codec: the parser this module had before
//! it borrowed from its input, kept as the oracle randomized tests compare the
//! current one with (for every input both must agree on the error, or on the
//! value and its compact encoding), and the generator of those inputs.

use std::collections::HashMap;

use super::{Json, Object, ParseError, DEDUP_INDEX_AT, MAX_DEPTH};

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
                    return Ok(Json::Object(from_members(members)));
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

// ---- random documents ----

/// A small deterministic generator (xorshift), so failures reproduce.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub(crate) fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const WS: &[&str] = &["", "", "", " ", "\n", "\t", " \r\n "];
const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "42",
    "1E5",
    "1e+5",
    "-1.5e-3",
    "1.50",
    "1e400",
    "0.1e-1",
    "123456789012345678901234567890",
    "01",
    "1.",
    "-",
    "+1",
    ".5",
    "1e",
    "-01",
];
/// String pieces: plain text, every escape form (canonical or not), and a
/// few invalid ones.
const PIECES: &[&str] = &[
    "",
    "a",
    "bob",
    "é",
    "😀",
    "/",
    "\\/",
    "\\\"",
    "\\\\",
    "\\n",
    "\\r",
    "\\t",
    "\\b",
    "\\f",
    "\\u00e9",
    "\\u00E9",
    "\\u0041",
    "\\u001f",
    "\\u001F",
    "\\u000a",
    "\\u0000",
    "\\u007f",
    "\\ud83d\\ude00",
    "\\uD83D\\uDE00",
    "\\ud800",
    "\\udc00",
    "\\ud800\\u0041",
    "\\x",
    "\\u12",
    "\u{1}",
    "\u{7f}",
    "\u{2028}",
];
pub(crate) const KEYS: &[&str] = &["a", "b", "\\u0061", "to", "t\\u006f", "FROM", "sID", "k\\/", "k/", ""];

pub(crate) fn gen_string(r: &mut Rng) -> String {
    let mut s = String::from("\"");
    for _ in 0..r.below(4) {
        s.push_str(r.pick(PIECES));
    }
    s.push('"');
    s
}

pub(crate) fn gen_value(r: &mut Rng, depth: usize, out: &mut String) {
    let roll = if depth > 6 { r.below(6) } else { r.below(10) };
    match roll {
        0 => out.push_str(r.pick(&["null", "true", "false", "nul", "True"])),
        1 | 2 => out.push_str(r.pick(NUMBERS)),
        3..=5 => out.push_str(&gen_string(r)),
        6 | 7 => {
            out.push('[');
            for i in 0..r.below(4) {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(r.pick(WS));
                gen_value(r, depth + 1, out);
                out.push_str(r.pick(WS));
            }
            out.push(']');
        }
        8 => gen_object(r, depth + 1, KEYS, out),
        _ => {
            // A chain around the depth limit.
            let n = 120 + r.below(12);
            out.push_str(&"[".repeat(n));
            out.push_str(&"]".repeat(n));
        }
    }
}

pub(crate) fn gen_object(r: &mut Rng, depth: usize, keys: &[&str], out: &mut String) {
    out.push('{');
    for i in 0..r.below(6) {
        if i > 0 {
            out.push(',');
        }
        out.push_str(r.pick(WS));
        if r.below(8) == 0 {
            out.push_str(&gen_string(r));
        } else {
            out.push('"');
            out.push_str(r.pick(keys));
            out.push('"');
        }
        out.push_str(r.pick(WS));
        out.push(':');
        out.push_str(r.pick(WS));
        gen_value(r, depth, out);
        out.push_str(r.pick(WS));
    }
    out.push('}');
}

/// Documents, mostly objects as the broker gets them, some damaged
/// (truncated, or with a stray byte).
pub(crate) fn gen_document(r: &mut Rng) -> Vec<u8> {
    let mut doc = String::new();
    doc.push_str(r.pick(WS));
    if r.below(5) == 0 {
        gen_value(r, 1, &mut doc);
    } else {
        gen_object(r, 1, KEYS, &mut doc);
    }
    doc.push_str(r.pick(WS));
    let mut doc = doc.into_bytes();
    match r.below(10) {
        0 if !doc.is_empty() => doc.truncate(r.below(doc.len())),
        1 => {
            let at = r.below(doc.len() + 1);
            let junk = [b',', b'}', b']', b'"', b'\\', b' ', b':', 0xff, 0x01, b'x'];
            doc.insert(at, junk[r.below(junk.len())]);
        }
        _ => {}
    }
    doc
}
