//! JSON as the AppWebsocket peers see it: JavaScript's `JSON.stringify` form
//! (the digest's `info_json`), the raw text of one member, and the envelope.

use serde_json::{Map, Number, Value};

/// Serializes `v` exactly as JavaScript's `JSON.stringify(v)` would after
/// `JSON.parse` of the text `v` came from.
///
/// * Minified; object members in their stored order (the `preserve_order`
///   feature keeps the received order, duplicates at the first position with
///   the last value, as `JSON.parse` does).
/// * Strings escape only `"`, `\` and the control characters below U+0020
///   (`\b \t \n \f \r` by name, the rest as `\u00xx`); `/`, DEL, U+2028/9 and
///   all other non-ASCII are written as they are.
/// * Numbers: JavaScript holds every number as a double, so the number's text
///   (kept by `arbitrary_precision`) is read as the nearest `f64` and written
///   the way `Number.prototype.toString` writes it: shortest round-trip digits,
///   plain notation for 1e-7 < |x| < 1e21, else `1.5e+21` style. So `1.0` and
///   `1e2` become `1` and `100`, `-0` becomes `0`, integers beyond 2^53 lose
///   precision as in JavaScript, and a number too large for a double
///   (`1e400`, which JavaScript reads as `Infinity`) becomes `null`. A peer that
///   signed its own spelling instead is still accepted by the server, which
///   also tries the raw text (see [`member_span`]).
pub fn js_stringify(v: &Value) -> String {
    let mut out = String::new();
    write_value(v, &mut out);
    out
}

fn write_value(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&js_number(n)),
        Value::String(s) => write_string(s, out),
        Value::Array(a) => {
            out.push('[');
            for (k, item) in a.iter().enumerate() {
                if k > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (k, (name, item)) in m.iter().enumerate() {
                if k > 0 {
                    out.push(',');
                }
                write_string(name, out);
                out.push(':');
                write_value(item, out);
            }
            out.push('}');
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if c < ' ' => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let b = c as u8;
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `Number.prototype.toString()` of the double nearest to `n`'s text
/// (ECMA-262 Number::toString, radix 10).
fn js_number(n: &Number) -> String {
    let Some(x) = n.as_f64() else {
        return "null".to_owned();
    };
    if x == 0.0 {
        return "0".to_owned();
    }
    // Rust's `{:e}` without a precision gives the shortest digits that read
    // back as the same double, which is what ECMA-262 asks for.
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i64;
    // `n` in ECMA-262 terms: the decimal point sits after `n` digits.
    let n = exp.parse::<i64>().unwrap_or(0) + 1;
    let mut out = String::with_capacity(32);
    if x < 0.0 {
        out.push('-');
    }
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.push_str(&"0".repeat((n - k) as usize));
    } else if 0 < n && n <= 21 {
        let (int, frac) = digits.split_at(n as usize);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.push_str(&"0".repeat((-n) as usize));
        out.push_str(&digits);
    } else {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        out.push('e');
        out.push(if n > 0 { '+' } else { '-' });
        out.push_str(&(n - 1).abs().to_string());
    }
    out
}

/// The exact text of the last top-level member `name` of the JSON object in
/// `text` (the last, because with duplicate members the last one wins), or
/// `None` when `text` is not an object or has no such member.
///
/// `text` should already have been parsed successfully; on other input this
/// returns some span or `None` but never panics.
pub fn member_span<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let mut s = Scan {
        b: text.as_bytes(),
        i: 0,
    };
    s.ws();
    s.eat(b'{')?;
    let mut found = None;
    loop {
        s.ws();
        if s.eat(b'}').is_some() {
            return found;
        }
        let key = s.span(Scan::string)?;
        s.ws();
        s.eat(b':')?;
        s.ws();
        let value = s.span(Scan::value)?;
        let key = text.get(key.0..key.1)?;
        // Keys may be spelled with escapes (`"\u0069nfo"`), so compare the
        // decoded name; the fast path skips decoding for plain keys.
        let matches = if key.contains('\\') {
            serde_json::from_str::<String>(key).is_ok_and(|k| k == name)
        } else {
            key.get(1..key.len() - 1) == Some(name)
        };
        if matches {
            found = text.get(value.0..value.1);
        }
        s.ws();
        if s.eat(b',').is_none() {
            s.eat(b'}')?;
            return found;
        }
    }
}

/// A forward-only scanner over JSON that was already validated, so it only
/// finds where things end. It never recurses, so depth costs nothing.
struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scan<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    fn span(&mut self, f: fn(&mut Self) -> Option<()>) -> Option<(usize, usize)> {
        let start = self.i;
        f(self)?;
        Some((start, self.i))
    }

    /// Skips a string, the cursor on its opening quote.
    fn string(&mut self) -> Option<()> {
        self.eat(b'"')?;
        loop {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(());
                }
                // The escaped character is skipped whatever it is; `\uXXXX`
                // digits need no care since none of them is a quote.
                b'\\' => self.i += 2,
                _ => self.i += 1,
            }
        }
    }

    /// Skips one value of any kind.
    fn value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string(),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
            }
            _ => {
                let start = self.i;
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.i += 1;
                }
                (self.i > start).then_some(())
            }
        }
    }
}

/// One AppWebsocket message: a JSON object with its `mt` and `src`.
///
/// Only string `mt` and `src` count: the envelope defines both as text, so a
/// number or object there is treated as absent (the message itself is kept
/// whole in `body`).
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub body: Map<String, Value>,
    pub mt: Option<String>,
    pub src: Option<String>,
}

impl Envelope {
    /// Parses one text frame; `None` when it is not a JSON object.
    pub fn parse(text: &str) -> Option<Envelope> {
        let Ok(Value::Object(body)) = serde_json::from_str::<Value>(text) else {
            return None;
        };
        let field = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_owned);
        Some(Envelope {
            mt: field("mt"),
            src: field("src"),
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn js(text: &str) -> String {
        js_stringify(&serde_json::from_str(text).unwrap())
    }

    #[test]
    fn vector_4_info_round_trips() {
        let info = r#"{"appobj":"users","apps":[{"name":"users"},{"name":"profile"}],"appurl":"https://1.2.3.4/example.com/usersapp/innovaphone-users","unlicensed":true}"#;
        assert_eq!(js(info), info);
        // A peer that escaped `/` still yields JavaScript's form.
        assert_eq!(js(&info.replace('/', "\\/")), info);
    }

    #[test]
    fn minified_in_member_order() {
        assert_eq!(
            js(" { \"z\" : 1 , \"a\" : [ true , false , null , { } , [ ] ] } "),
            r#"{"z":1,"a":[true,false,null,{},[]]}"#
        );
        // Duplicate members: first position, last value, as JSON.parse.
        assert_eq!(js(r#"{"a":1,"b":2,"a":3}"#), r#"{"a":3,"b":2}"#);
    }

    #[test]
    fn string_escapes_match_javascript() {
        // Expected texts produced by node 20: JSON.stringify(JSON.parse(x)).
        assert_eq!(
            js(r#""\u0000\u0001\b\t\n\u000b\f\r\u001f \u007f\"\\\/é€😀\u2028""#),
            "\"\\u0000\\u0001\\b\\t\\n\\u000b\\f\\r\\u001f \u{7f}\\\"\\\\/é€😀\u{2028}\""
        );
    }

    #[test]
    fn numbers_match_javascript() {
        // Each pair: JSON text, then node 20's JSON.stringify(JSON.parse(text)).
        let cases = [
            ("0", "0"),
            ("-0", "0"),
            ("-0.0", "0"),
            ("1", "1"),
            ("1.0", "1"),
            ("1e2", "100"),
            ("1E+2", "100"),
            ("-12.50", "-12.5"),
            ("0.1", "0.1"),
            ("0.000001", "0.000001"),
            ("1e-7", "1e-7"),
            ("1.5e-7", "1.5e-7"),
            ("123456789012345678901", "123456789012345680000"),
            ("1e21", "1e+21"),
            ("1.5e21", "1.5e+21"),
            ("9007199254740993", "9007199254740992"),
            ("12345678901234567890", "12345678901234567000"),
            ("0.30000000000000004", "0.30000000000000004"),
            ("5e-324", "5e-324"),
            ("1.7976931348623157e308", "1.7976931348623157e+308"),
            ("1e400", "null"),
            ("-1e400", "null"),
            ("1e-400", "0"),
            ("100e-2", "1"),
            ("123.456e1", "1234.56"),
        ];
        for (text, want) in cases {
            assert_eq!(js(text), want, "{text}");
        }
    }

    #[test]
    fn member_span_finds_raw_text() {
        let t = r#"{"mt":"AppLogin","info": {"b" : "}\"]" , "a":[1,{}]} ,"x":1}"#;
        assert_eq!(member_span(t, "info"), Some(r#"{"b" : "}\"]" , "a":[1,{}]}"#));
        assert_eq!(member_span(t, "mt"), Some(r#""AppLogin""#));
        assert_eq!(member_span(t, "x"), Some("1"));
        assert_eq!(member_span(t, "nope"), None);
        assert_eq!(member_span(r#"{"info":1,"\u0069nfo":2.50}"#, "info"), Some("2.50"));
        assert_eq!(member_span(r#" {"info":null} "#, "info"), Some("null"));
        assert_eq!(member_span(r#"{"a":{"info":1}}"#, "info"), None);
        assert_eq!(member_span("[1]", "info"), None);
        assert_eq!(member_span("{}", "info"), None);
    }

    #[test]
    fn member_span_survives_garbage() {
        for t in [
            "",
            "{",
            "{\"",
            "{\"a\"",
            "{\"a\":",
            "{\"a\":\"\\",
            "{\"a\":[",
            "{\"a\":1",
            "{\"a\":}",
            "{\"a\":1,",
            "{\"\\",
            "{\"a\":]]]]}",
            "\"",
        ] {
            let _ = member_span(t, "a");
        }
    }

    #[test]
    fn envelope_takes_string_mt_and_src() {
        let e = Envelope::parse(r#"{"mt":"X","src":"a1","n":1}"#).unwrap();
        assert_eq!(e.mt.as_deref(), Some("X"));
        assert_eq!(e.src.as_deref(), Some("a1"));
        let e = Envelope::parse(r#"{"mt":5,"src":{}}"#).unwrap();
        assert_eq!((e.mt, e.src), (None, None));
        assert!(Envelope::parse("[1]").is_none());
        assert!(Envelope::parse("nope").is_none());
    }
}
