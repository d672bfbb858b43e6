//! The parts of an X.509 certificate that a failure message names: subject,
//! issuer and validity period.
//!
//! A small DER reader for a certificate that a peer sent and the verifier
//! rejected, so it may be anything: every length is checked against what is
//! left, nothing recurses, no arithmetic can overflow, and the text made from
//! it is bounded (attributes, characters per value) and escaped, so a hostile
//! name cannot forge or hide parts of a log line.

use std::collections::VecDeque;
use std::fmt;

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const VERSION: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// RDNs shown per name (the most specific ones); the rest become "…".
const MAX_RDNS: usize = 12;
/// Values shown per RDN; the rest become "+…".
const MAX_RDN_VALUES: usize = 4;
/// Characters shown per attribute value; the rest become "…".
const MAX_VALUE_CHARS: usize = 64;
/// Bytes of a whole name (escapes included); the rest become "…".
const MAX_NAME_BYTES: usize = 400;
/// Certificate names that are not a string type are shown as `#` and this
/// many bytes in hex at most.
const MAX_HEX_BYTES: usize = 24;

/// One element: its tag, its contents and what follows it. Only the
/// single-byte tags and definite lengths of DER (up to 4 length bytes).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, rest) = rest.split_at(n);
        (bytes.iter().fold(0usize, |a, &b| (a << 8) | usize::from(b)), rest)
    };
    if len > rest.len() {
        return None;
    }
    let (content, rest) = rest.split_at(len);
    Some((tag, content, rest))
}

/// The next element, which must have `tag`: its contents and what follows.
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    match tlv(input)? {
        (t, content, rest) if t == tag => Some((content, rest)),
        _ => None,
    }
}

/// A certificate's subject, issuer and validity, ready to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summary {
    /// The subject as an RFC 4514 string (most specific first: `CN=x,O=y`).
    pub(crate) subject: String,
    pub(crate) issuer: String,
    /// `None` when the validity could not be read.
    pub(crate) validity: Option<(Time, Time)>,
    /// Issuer and subject are the same name (a self-signed certificate).
    pub(crate) self_issued: bool,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "subject {}, issued by {}", self.subject, self.issuer)?;
        match &self.validity {
            Some((from, to)) => write!(f, ", valid {from} to {to}"),
            None => f.write_str(", validity unreadable"),
        }
    }
}

/// Reads a DER certificate; `None` when its structure up to the subject
/// cannot be read.
pub(crate) fn summary(der: &[u8]) -> Option<Summary> {
    let (cert, _) = expect(der, SEQUENCE)?;
    let (tbs, _) = expect(cert, SEQUENCE)?;
    let mut rest = tbs;
    if let Some((VERSION, _, after)) = tlv(rest) {
        rest = after;
    }
    let (_serial, rest) = expect(rest, INTEGER)?;
    let (_signature_algorithm, rest) = expect(rest, SEQUENCE)?;
    let (issuer, rest) = expect(rest, SEQUENCE)?;
    let (validity, rest) = expect(rest, SEQUENCE)?;
    let (subject, _) = expect(rest, SEQUENCE)?;
    Some(Summary {
        subject: name(subject),
        issuer: name(issuer),
        validity: validity_of(validity),
        self_issued: issuer == subject,
    })
}

fn validity_of(v: &[u8]) -> Option<(Time, Time)> {
    let (t1, c1, rest) = tlv(v)?;
    let (t2, c2, _) = tlv(rest)?;
    Some((Time::from_der(t1, c1)?, Time::from_der(t2, c2)?))
}

// ---- names ----

/// The short names of RFC 4514 and a few common others.
fn attribute_name(oid: &[u8]) -> Option<&'static str> {
    Some(match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x05] => "serialNumber",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x09] => "STREET",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC",
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01] => "emailAddress",
        _ => return None,
    })
}

/// An object identifier in dotted form (`2.5.4.42`); `None` if malformed.
fn dotted(oid: &[u8]) -> Option<String> {
    if oid.is_empty() || oid.len() > 32 || oid[oid.len() - 1] & 0x80 != 0 {
        return None;
    }
    let mut out = String::new();
    let mut v: u64 = 0;
    for &b in oid {
        if v > u64::MAX >> 7 {
            return None;
        }
        v = (v << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if out.is_empty() {
                let first = (v / 40).min(2);
                out = format!("{first}.{}", v - first * 40);
            } else {
                out.push_str(&format!(".{v}"));
            }
            v = 0;
        }
    }
    Some(out)
}

/// A Name (a SEQUENCE OF RelativeDistinguishedName, contents only) as an
/// RFC 4514 string: the last RDN (the most specific, usually CN) first, `,`
/// between RDNs, `+` inside one. Past [`MAX_RDNS`] the least specific are
/// left out for "…".
fn name(der: &[u8]) -> String {
    const UNREADABLE: &str = "(unreadable name)";
    let mut rdns: VecDeque<String> = VecDeque::new();
    let mut dropped = false;
    let mut rest = der;
    while !rest.is_empty() {
        let Some((set, after)) = expect(rest, SET) else {
            return UNREADABLE.to_owned();
        };
        rest = after;
        let mut rdn = String::new();
        let mut values = 0;
        let mut attrs = set;
        while !attrs.is_empty() {
            let Some((atv, after)) = expect(attrs, SEQUENCE) else {
                return UNREADABLE.to_owned();
            };
            attrs = after;
            if values == MAX_RDN_VALUES {
                rdn.push_str("+…");
                break;
            }
            let Some((oid, value)) = expect(atv, OID) else {
                return UNREADABLE.to_owned();
            };
            let Some((tag, content, after_value)) = tlv(value) else {
                return UNREADABLE.to_owned();
            };
            if values > 0 {
                rdn.push('+');
            }
            match attribute_name(oid) {
                Some(n) => rdn.push_str(n),
                None => rdn.push_str(dotted(oid).as_deref().unwrap_or("?")),
            }
            rdn.push('=');
            push_value(&mut rdn, tag, content, &value[..value.len() - after_value.len()]);
            values += 1;
        }
        if values == 0 {
            continue;
        }
        if rdns.len() == MAX_RDNS {
            rdns.pop_front();
            dropped = true;
        }
        rdns.push_back(rdn);
    }
    if rdns.is_empty() {
        return "(empty name)".to_owned();
    }
    let mut out = String::new();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(rdn);
    }
    if dropped {
        out.push_str(",…");
    }
    if out.len() > MAX_NAME_BYTES {
        let mut end = MAX_NAME_BYTES;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push('…');
    }
    out
}

/// Appends an attribute value, decoded by its string type and escaped;
/// `element` is the whole value element, for the types shown in hex.
fn push_value(out: &mut String, tag: u8, v: &[u8], element: &[u8]) {
    let ascii = |b: &u8| {
        if b.is_ascii() {
            char::from(*b)
        } else {
            char::REPLACEMENT_CHARACTER
        }
    };
    match tag {
        // UTF8String
        0x0c => push_escaped(out, String::from_utf8_lossy(v).chars()),
        // NumericString, PrintableString, IA5String, VisibleString
        0x12 | 0x13 | 0x16 | 0x1a => push_escaped(out, v.iter().map(ascii)),
        // TeletexString: Latin-1 in practice.
        0x14 => push_escaped(out, v.iter().map(|&b| char::from(b))),
        // UniversalString: UTF-32BE
        0x1c => push_escaped(
            out,
            v.chunks(4).map(|c| match c {
                [a, b, c, d] => {
                    char::from_u32(u32::from_be_bytes([*a, *b, *c, *d])).unwrap_or(char::REPLACEMENT_CHARACTER)
                }
                _ => char::REPLACEMENT_CHARACTER,
            }),
        ),
        // BMPString: UTF-16BE
        0x1e => {
            let units = v.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]]));
            let odd = (v.len() % 2 == 1).then_some(char::REPLACEMENT_CHARACTER);
            push_escaped(
                out,
                char::decode_utf16(units)
                    .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
                    .chain(odd),
            )
        }
        // Anything else as RFC 4514 does: `#` and the DER element in hex.
        _ => {
            out.push('#');
            for b in element.iter().take(MAX_HEX_BYTES) {
                out.push_str(&format!("{b:02x}"));
            }
            if element.len() > MAX_HEX_BYTES {
                out.push('…');
            }
        }
    }
}

/// Characters that would let a name hide or reorder text on a terminal or
/// in a log: zero-width and bidirectional controls, the BOM.
fn invisible(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// Appends at most [`MAX_VALUE_CHARS`] characters, escaped as RFC 4514 does
/// (`\,` and the like; control and invisible characters as `\XX` per UTF-8
/// byte), then "…" if there were more.
fn push_escaped(out: &mut String, chars: impl Iterator<Item = char>) {
    let start = out.len();
    let mut chars = chars.peekable();
    let mut n = 0;
    while let Some(c) = chars.next() {
        if n == MAX_VALUE_CHARS {
            out.push('…');
            return;
        }
        let first = out.len() == start;
        let last = chars.peek().is_none();
        if c.is_control() || invisible(c) {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\{b:02X}"));
            }
        } else if matches!(c, '\\' | ',' | '+' | '"' | ';' | '<' | '>' | '=')
            || (first && (c == '#' || c == ' '))
            || (last && c == ' ')
        {
            out.push('\\');
            out.push(c);
        } else {
            out.push(c);
        }
        n += 1;
    }
}

// ---- times ----

/// A UTC time of day to the second, from a certificate or a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Time {
    year: i64,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

fn leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: u8) -> u8 {
    match m {
        2 if leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Two or four ASCII digits as a number.
fn digits(b: &[u8]) -> Option<u16> {
    b.iter()
        .try_fold(0u16, |a, &d| d.is_ascii_digit().then(|| a * 10 + u16::from(d - b'0')))
}

impl Time {
    /// A UTCTime (`YYMMDDHHMMSSZ`, 1950–2049) or GeneralizedTime
    /// (`YYYYMMDDHHMMSSZ`) in the form RFC 5280 requires.
    fn from_der(tag: u8, v: &[u8]) -> Option<Time> {
        let (year, rest) = match (tag, v.len()) {
            (UTC_TIME, 13) => {
                let yy = i64::from(digits(&v[..2])?);
                (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &v[2..])
            }
            (GENERALIZED_TIME, 15) => (i64::from(digits(&v[..4])?), &v[4..]),
            _ => return None,
        };
        if rest[10] != b'Z' {
            return None;
        }
        let two = |i: usize| digits(&rest[i..i + 2]).map(|n| n as u8);
        let t = Time {
            year,
            month: two(0)?,
            day: two(2)?,
            hour: two(4)?,
            minute: two(6)?,
            second: two(8)?,
        };
        let ok = (1..=12).contains(&t.month)
            && (1..=days_in_month(year, t.month)).contains(&t.day)
            && t.hour < 24
            && t.minute < 60
            && t.second < 60;
        ok.then_some(t)
    }

    /// Seconds since 1970-01-01T00:00:00Z (negative before).
    pub(crate) fn unix(&self) -> i64 {
        // Days from civil (H. Hinnant's algorithm), years starting in March.
        let (m, d) = (i64::from(self.month), i64::from(self.day));
        let y = self.year - i64::from(m <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        days * 86_400 + i64::from(self.hour) * 3600 + i64::from(self.minute) * 60 + i64::from(self.second)
    }

    /// The time `secs` seconds after 1970-01-01T00:00:00Z.
    pub(crate) fn from_unix(secs: u64) -> Time {
        // Civil from days (H. Hinnant's algorithm); u64 / 86400 fits an i64.
        let z = (secs / 86_400) as i64 + 719_468;
        let rem = secs % 86_400;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u8;
        Time {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day,
            hour: (rem / 3600) as u8,
            minute: (rem / 60 % 60) as u8,
            second: (rem % 60) as u8,
        }
    }
}

/// A certificate of tests/fixtures/x509 (see make.sh there), as DER.
#[cfg(test)]
pub(crate) fn fixture(name: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    let pem = match name {
        "root" => include_str!("../../tests/fixtures/x509/root.pem"),
        "intermediate" => include_str!("../../tests/fixtures/x509/intermediate.pem"),
        "chain-leaf" => include_str!("../../tests/fixtures/x509/chain-leaf.pem"),
        "wrong-name" => include_str!("../../tests/fixtures/x509/wrong-name.pem"),
        "far-future" => include_str!("../../tests/fixtures/x509/far-future.pem"),
        "self-signed" => include_str!("../../tests/fixtures/x509/self-signed.pem"),
        _ => panic!("no fixture {name}"),
    };
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// A GeneralizedTime (`YYYYMMDDHHMMSSZ`) as seconds since 1970.
#[cfg(test)]
pub(crate) fn unix_time(generalized: &str) -> u64 {
    Time::from_der(GENERALIZED_TIME, generalized.as_bytes()).unwrap().unix() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_and_dates_of_real_certificates() {
        let s = summary(&fixture("wrong-name")).unwrap();
        assert_eq!(s.subject, "CN=wrong.example,OU=engine,O=wsbroker tests,C=DE");
        assert_eq!(s.issuer, "CN=wsbroker fixture root,O=wsbroker tests");
        let (from, to) = s.validity.unwrap();
        assert_eq!(from.to_string(), "2026-12-01T00:00:00Z");
        assert_eq!(to.to_string(), "2026-12-02T00:00:00Z");
        assert!(!s.self_issued);
        assert_eq!(
            s.to_string(),
            "subject CN=wrong.example,OU=engine,O=wsbroker tests,C=DE, issued by CN=wsbroker fixture root,\
             O=wsbroker tests, valid 2026-12-01T00:00:00Z to 2026-12-02T00:00:00Z"
        );

        // UTF-8 values, a comma to escape, and a GeneralizedTime after 2049.
        let s = summary(&fixture("far-future")).unwrap();
        assert_eq!(s.subject, "CN=grüße.example,O=Zürich Tests\\, Inc.");
        assert_eq!(s.validity.unwrap().1.to_string(), "2051-01-01T00:00:00Z");

        let s = summary(&fixture("root")).unwrap();
        assert!(s.self_issued);
        assert_eq!(s.subject, s.issuer);
        let s = summary(&fixture("self-signed")).unwrap();
        assert!(s.self_issued);
        assert_eq!(s.subject, "CN=localhost");
    }

    /// Every prefix of a real certificate is refused, and every single-byte
    /// change to its first 300 bytes (the names and dates) reads without a
    /// panic.
    #[test]
    fn truncated_and_mutated_certificates_do_not_panic() {
        let der = fixture("far-future");
        for n in 0..der.len() {
            let s = summary(&der[..n]);
            // The outer SEQUENCE's length covers the whole certificate.
            assert_eq!(s, None, "prefix of {n} bytes");
        }
        let mut m = der.clone();
        for i in 0..300.min(der.len()) {
            for v in [0x00, 0x01, 0x7f, 0x80, 0x81, 0x84, 0x85, 0xff, der[i] ^ 0x20] {
                m[i] = v;
                let _ = summary(&m).map(|s| s.to_string());
            }
            m[i] = der[i];
        }
    }

    fn der(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        if content.len() < 0x80 {
            v.push(content.len() as u8);
        } else {
            v.push(0x82);
            v.extend_from_slice(&(content.len() as u16).to_be_bytes());
        }
        v.extend_from_slice(content);
        v
    }

    fn atv(oid: &[u8], tag: u8, value: &[u8]) -> Vec<u8> {
        der(SET, &der(SEQUENCE, &[der(OID, oid), der(tag, value)].concat()))
    }

    /// A certificate with the given issuer/subject contents and validity.
    fn cert(name: &[u8], validity: &[u8]) -> Vec<u8> {
        let tbs = [
            der(VERSION, &der(INTEGER, &[2])),
            der(INTEGER, &[1]),
            der(SEQUENCE, &der(OID, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02])),
            der(SEQUENCE, name),
            der(SEQUENCE, validity),
            der(SEQUENCE, name),
        ]
        .concat();
        der(SEQUENCE, &der(SEQUENCE, &tbs))
    }

    fn validity(a: &[u8], b: &[u8]) -> Vec<u8> {
        [der(UTC_TIME, a), der(GENERALIZED_TIME, b)].concat()
    }

    fn subject_of(name: &[u8]) -> String {
        summary(&cert(name, &validity(b"991231235959Z", b"20500101000000Z")))
            .unwrap()
            .subject
    }

    #[test]
    fn string_types_escapes_and_limits() {
        let cn = [0x55, 0x04, 0x03];
        // BMPString (UTF-16BE), UniversalString (UTF-32BE), Teletex (Latin-1).
        assert_eq!(
            subject_of(&atv(&cn, 0x1e, &[0x00, b'h', 0x00, 0xe9, 0xd8, 0x3d, 0xde, 0x00])),
            "CN=hé😀"
        );
        assert_eq!(
            subject_of(&atv(&cn, 0x1c, &[0, 0, 0, b'a', 0, 0x11, 0, 0])),
            "CN=a\u{fffd}"
        );
        assert_eq!(subject_of(&atv(&cn, 0x14, &[b'M', 0xfc])), "CN=Mü");
        // An odd BMPString length and bad UTF-8 become replacement characters.
        assert_eq!(subject_of(&atv(&cn, 0x1e, &[0x00, b'x', 0x00])), "CN=x\u{fffd}");
        assert_eq!(subject_of(&atv(&cn, 0x0c, &[b'a', 0xff])), "CN=a\u{fffd}");
        // Non-ASCII in a PrintableString.
        assert_eq!(subject_of(&atv(&cn, 0x13, &[b'a', 0xc3])), "CN=a\u{fffd}");
        // Not a string: hex, as RFC 4514 writes it.
        assert_eq!(subject_of(&atv(&cn, 0x04, &[1, 2])), "CN=#04020102");
        let hex = subject_of(&atv(&cn, 0x04, &[0xab; 200]));
        assert_eq!(hex, format!("CN=#048200c8{}…", "ab".repeat(MAX_HEX_BYTES - 4)));
        // Specials, a leading '#' and space, a trailing space, and characters
        // that would break or disguise a log line.
        assert_eq!(
            subject_of(&atv(&cn, 0x0c, "# a,b+c\"d\\e;<f>=g ".as_bytes())),
            "CN=\\# a\\,b\\+c\\\"d\\\\e\\;\\<f\\>\\=g\\ "
        );
        assert_eq!(
            subject_of(&atv(&cn, 0x0c, "x\ny\u{202e}z\u{0}".as_bytes())),
            "CN=x\\0Ay\\E2\\80\\AEz\\00"
        );
        // Unknown attribute types by OID; multi-valued RDNs with '+'.
        let gn = [0x55, 0x04, 0x2a];
        let two = der(
            SET,
            &[
                der(SEQUENCE, &[der(OID, &cn), der(0x0c, b"a")].concat()),
                der(SEQUENCE, &[der(OID, &gn), der(0x0c, b"b")].concat()),
            ]
            .concat(),
        );
        assert_eq!(subject_of(&two), "CN=a+2.5.4.42=b");
        assert_eq!(subject_of(&atv(&[0x80], 0x0c, b"v")), "?=v");
        assert_eq!(subject_of(&atv(&[0x88, 0x37, 0x03], 0x0c, b"v")), "2.999.3=v");
        assert_eq!(subject_of(&[]), "(empty name)");
        // Long values and many attributes are cut.
        let long = subject_of(&atv(&cn, 0x0c, &[b'x'; 500]));
        assert_eq!(long, format!("CN={}…", "x".repeat(MAX_VALUE_CHARS)));
        // The least specific RDNs (first in the certificate) are cut.
        let mut many: Vec<u8> = atv(&[0x55, 0x04, 0x06], 0x13, b"DE");
        many.extend((0..100).flat_map(|i| atv(&cn, 0x0c, format!("n{i}").as_bytes())));
        let s = subject_of(&many);
        let kept: Vec<String> = (100 - MAX_RDNS..100).rev().map(|i| format!("CN=n{i}")).collect();
        assert_eq!(s, format!("{},…", kept.join(",")));
        let wide = der(
            SET,
            &(0..10)
                .flat_map(|_| der(SEQUENCE, &[der(OID, &cn), der(0x0c, b"v")].concat()))
                .collect::<Vec<u8>>(),
        );
        assert_eq!(subject_of(&wide), format!("{}+…", ["CN=v"; MAX_RDN_VALUES].join("+")));
        // However it is made up, a name stays within its bytes.
        let escaped: Vec<u8> = (0..20).flat_map(|_| atv(&cn, 0x0c, &[b'\n'; 100])).collect();
        let s = subject_of(&escaped);
        assert!(s.starts_with("CN=\\0A\\0A") && s.ends_with('…'), "{s}");
        assert!(s.len() <= MAX_NAME_BYTES + '…'.len_utf8(), "{}", s.len());
        // Structure errors inside a name.
        assert_eq!(subject_of(&der(SEQUENCE, &[])), "(unreadable name)");
        assert_eq!(subject_of(&der(SET, &der(SET, &[]))), "(unreadable name)");
        assert_eq!(
            subject_of(&der(SET, &der(SEQUENCE, &der(INTEGER, &[1])))),
            "(unreadable name)"
        );
        assert_eq!(
            subject_of(&der(SET, &der(SEQUENCE, &der(OID, &cn)))),
            "(unreadable name)"
        );
    }

    #[test]
    fn malformed_structures() {
        let name = atv(&[0x55, 0x04, 0x03], 0x0c, b"n");
        let good = cert(&name, &validity(b"500101000000Z", b"20491231235959Z"));
        let s = summary(&good).unwrap();
        let (from, to) = s.validity.unwrap();
        assert_eq!(from.to_string(), "1950-01-01T00:00:00Z");
        assert_eq!(to.to_string(), "2049-12-31T23:59:59Z");
        // Bad times leave the names readable.
        for (a, b) in [
            (&b"500101000000"[..], &b"20491231235959Z"[..]),
            (b"500101000000+", b"20491231235959Z"),
            (b"501301000000Z", b"20491231235959Z"),
            (b"500230000000Z", b"20491231235959Z"),
            (b"500101240000Z", b"20491231235959Z"),
            (b"5001010000 0Z", b"20491231235959Z"),
            (b"500101000060Z", b"20491231235959Z"),
            (b"500101000000Z", b"2049123123595Z"),
            (b"500101000000Z", b"491231235959Z"),
        ] {
            let s = summary(&cert(&name, &[der(UTC_TIME, a), der(GENERALIZED_TIME, b)].concat())).unwrap();
            assert_eq!(s.validity, None, "{a:?} {b:?}");
            assert_eq!(s.subject, "CN=n");
        }
        // A leap day is a date, its absence in a common year is not.
        let ok = cert(&name, &validity(b"000229000000Z", b"21000228000000Z"));
        assert!(summary(&ok).unwrap().validity.is_some());
        let bad = cert(&name, &validity(b"000229000000Z", b"21000229000000Z"));
        assert_eq!(summary(&bad).unwrap().validity, None);
        let missing = cert(&name, &der(UTC_TIME, b"500101000000Z"));
        assert_eq!(summary(&missing).unwrap().validity, None);

        // Lengths: indefinite, too many length bytes, past the end, high tags.
        assert_eq!(tlv(&[0x30, 0x80, 0, 0]), None);
        assert_eq!(tlv(&[0x30, 0x85, 0, 0, 0, 0, 1, 0]), None);
        assert_eq!(tlv(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(tlv(&[0x30, 0x02, 0]), None);
        assert_eq!(tlv(&[0x1f, 0x01, 0]), None);
        assert_eq!(tlv(&[0x30]), None);
        assert_eq!(tlv(&[]), None);
        assert_eq!(
            tlv(&[0x04, 0x81, 0x01, 0xaa, 0xbb]),
            Some((0x04, &[0xaa][..], &[0xbb][..]))
        );
        // Wrong element where the structure needs another.
        assert_eq!(summary(&der(SET, &[])), None);
        assert_eq!(summary(&der(SEQUENCE, &der(SEQUENCE, &der(INTEGER, &[1])))), None);
        assert_eq!(summary(&[]), None);
        assert_eq!(summary(&[0x30, 0x82, 0xff]), None);
        // No version field (a v1 certificate) is fine.
        let v1 = {
            let tbs = [
                der(INTEGER, &[1]),
                der(SEQUENCE, &[]),
                der(SEQUENCE, &name),
                der(SEQUENCE, &validity(b"500101000000Z", b"20491231235959Z")),
                der(SEQUENCE, &name),
            ]
            .concat();
            der(SEQUENCE, &der(SEQUENCE, &tbs))
        };
        assert_eq!(summary(&v1).unwrap().subject, "CN=n");
    }

    #[test]
    fn unix_times_both_ways() {
        for (secs, text) in [
            (0u64, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_796_083_200, "2026-12-01T00:00:00Z"),
            (2_556_143_999, "2050-12-31T23:59:59Z"),
            (253_402_300_799, "9999-12-31T23:59:59Z"),
        ] {
            let t = Time::from_unix(secs);
            assert_eq!(t.to_string(), text);
            assert_eq!(t.unix(), secs as i64);
        }
        // UTCTime 50..99 is the 20th century, before the epoch works too.
        let t = Time::from_der(UTC_TIME, b"500101000000Z").unwrap();
        assert_eq!(t.unix(), -631_152_000);
        // The largest input does not overflow.
        assert!(Time::from_unix(u64::MAX).year > 9999);
    }
}
