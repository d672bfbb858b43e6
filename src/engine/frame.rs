//! RFC 6455 framing: header parsing, masking, close payloads.
//!
//! The engine parses frames in place in its read buffers (one copy from the
//! socket, unmasking in place) instead of going through a per-connection codec
//! object, which is what keeps an idle connection small.

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Largest encoded header: 2 + 8 (length) + 4 (mask).
pub const MAX_HEADER: usize = 14;

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
    /// Encoded size of the header itself.
    pub header_len: usize,
}

/// Why a frame header is not acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// RSV bits set, reserved opcode, fragmented or oversized control frame,
    /// or a 64-bit length with the top bit set: close 1002.
    Protocol(&'static str),
}

/// Parses a header from the start of `buf`. `Ok(None)` means more bytes are needed.
pub fn parse_header(buf: &[u8]) -> Result<Option<Header>, HeaderError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let b0 = buf[0];
    let b1 = buf[1];
    if b0 & 0x70 != 0 {
        return Err(HeaderError::Protocol("reserved bits set"));
    }
    let opcode = b0 & 0x0F;
    let fin = b0 & 0x80 != 0;
    match opcode {
        OP_CONT | OP_TEXT | OP_BINARY => {}
        OP_CLOSE | OP_PING | OP_PONG => {
            if !fin {
                return Err(HeaderError::Protocol("fragmented control frame"));
            }
            if b1 & 0x7F > 125 {
                return Err(HeaderError::Protocol("control frame payload over 125 bytes"));
            }
        }
        _ => return Err(HeaderError::Protocol("reserved opcode")),
    }
    let masked = b1 & 0x80 != 0;
    let len7 = (b1 & 0x7F) as u64;
    let (payload_len, mut pos) = match len7 {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            let n = u64::from_be_bytes(b);
            if n & (1 << 63) != 0 {
                return Err(HeaderError::Protocol("payload length with the top bit set"));
            }
            (n, 10)
        }
        n => (n, 2),
    };
    let mask = if masked {
        if buf.len() < pos + 4 {
            return Ok(None);
        }
        let m = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
        pos += 4;
        Some(m)
    } else {
        None
    };
    Ok(Some(Header {
        fin,
        opcode,
        mask,
        payload_len,
        header_len: pos,
    }))
}

/// Writes a frame header into `out` and returns its length.
pub fn encode_header(out: &mut [u8; MAX_HEADER], fin: bool, opcode: u8, len: usize, mask: Option<[u8; 4]>) -> usize {
    out[0] = if fin { 0x80 } else { 0 } | (opcode & 0x0F);
    let mbit = if mask.is_some() { 0x80 } else { 0 };
    let mut pos = if len < 126 {
        out[1] = mbit | len as u8;
        2
    } else if len <= 0xFFFF {
        out[1] = mbit | 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = mbit | 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    if let Some(m) = mask {
        out[pos..pos + 4].copy_from_slice(&m);
        pos += 4;
    }
    pos
}

/// Appends one complete frame to `out`, masking the payload when `mask` is given.
pub fn append_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    let mut h = [0u8; MAX_HEADER];
    let n = encode_header(&mut h, true, opcode, payload.len(), mask);
    out.reserve(n + payload.len());
    out.extend_from_slice(&h[..n]);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(m) = mask {
        apply_mask(&mut out[start..], m, 0);
    }
}

/// Builds one complete frame in a fresh vector.
pub fn build_frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + MAX_HEADER);
    append_frame(&mut v, opcode, payload, mask);
    v
}

/// XORs `buf` with the mask key, starting at key position `offset % 4`.
#[inline]
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut key = [0u8; 4];
    for (i, k) in key.iter_mut().enumerate() {
        *k = mask[(offset + i) & 3];
    }
    let word = u32::from_ne_bytes(key);
    let wide = (word as u64) | ((word as u64) << 32);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        let v = u64::from_ne_bytes(b) ^ wide;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// Close codes a peer may send (RFC 6455 §7.4 and the IANA registry).
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Turns a host-supplied code into one that may go on the wire: codes ≤ 0 and
/// codes that are not allowed on the wire become 1000.
pub fn sanitize_close_code(code: i32) -> u16 {
    if code <= 0 || code > 4999 {
        return 1000;
    }
    let c = code as u16;
    if is_valid_close_code(c) {
        c
    } else {
        1000
    }
}

/// Builds a close payload: code then a reason cut at a UTF-8 boundary to fit 125 bytes.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut r = reason;
    if r.len() > 123 {
        let mut end = 123;
        while !r.is_char_boundary(end) {
            end -= 1;
        }
        r = &r[..end];
    }
    let mut v = Vec::with_capacity(2 + r.len());
    v.extend_from_slice(&code.to_be_bytes());
    v.extend_from_slice(r.as_bytes());
    v
}

/// A received close frame, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerClose {
    /// A close frame without a payload.
    NoCode,
    /// A close frame with a valid code and a UTF-8 reason.
    Code(u16, String),
    /// An invalid close payload: answer with this code (1002 or 1007).
    Invalid(u16),
}

pub fn parse_close(payload: &[u8]) -> PeerClose {
    match payload.len() {
        0 => PeerClose::NoCode,
        1 => PeerClose::Invalid(1002),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !is_valid_close_code(code) {
                return PeerClose::Invalid(1002);
            }
            match std::str::from_utf8(&payload[2..]) {
                Ok(r) => PeerClose::Code(code, r.to_owned()),
                Err(_) => PeerClose::Invalid(1007),
            }
        }
    }
}

/// Whether `b` is valid UTF-8, as `std::str::from_utf8(b).is_ok()`. Scans
/// eight bytes at a time while they are ASCII (most text messages are,
/// entirely) and hands the rest to the standard validator from the first
/// byte that is not: for short messages that is a third of the instructions
/// of calling the standard validator on the whole.
#[inline]
pub fn is_utf8(b: &[u8]) -> bool {
    let mut i = 0;
    while let Some(w) = b.get(i..i + 8) {
        let w = u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        if w & 0x8080_8080_8080_8080 != 0 {
            break;
        }
        i += 8;
    }
    while i < b.len() && b[i] < 0x80 {
        i += 1;
    }
    i == b.len() || std::str::from_utf8(&b[i..]).is_ok()
}

/// Incremental UTF-8 check for a message that arrives in fragments: returns the
/// new count of bytes known to be complete and valid, or `None` when the bytes
/// cannot be the start of valid UTF-8 whatever follows (so the connection
/// fails fast, before the rest of the message arrives).
pub fn check_utf8_incremental(buf: &[u8], valid_upto: usize, fin: bool) -> Option<usize> {
    match std::str::from_utf8(&buf[valid_upto..]) {
        Ok(_) => Some(buf.len()),
        Err(e) if e.error_len().is_none() && !fin => Some(valid_upto + e.valid_up_to()),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn is_utf8_agrees_with_the_standard_validator() {
        // Every split of ASCII runs around multi-byte, truncated, overlong,
        // surrogate and out-of-range sequences, at every offset in a word.
        let pieces: [&[u8]; 12] = [
            b"a",
            b"abcdefg",
            b"\xc3\xa9",
            b"\xe2\x82\xac",
            b"\xf0\x9f\x98\x80",
            b"\xc3",
            b"\xe2\x82",
            b"\xc0\xaf",
            b"\xed\xa0\x80",
            b"\xf4\x90\x80\x80",
            b"\xff",
            b"\x7f",
        ];
        let mut checked = 0;
        for pre in 0..17 {
            for a in &pieces {
                for b in &pieces {
                    let mut v = vec![b'x'; pre];
                    v.extend_from_slice(a);
                    v.extend_from_slice(&b"0123456789"[..pre % 10]);
                    v.extend_from_slice(b);
                    assert_eq!(super::is_utf8(&v), std::str::from_utf8(&v).is_ok(), "{v:?}");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 17 * 12 * 12);
        assert!(super::is_utf8(b""));
        assert!(!super::is_utf8(b"0123456789abcdef\x80"));
    }

    use super::*;

    #[test]
    fn header_roundtrip_all_length_forms() {
        for &len in &[0usize, 1, 125, 126, 127, 65535, 65536, 1 << 24] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let mut h = [0u8; MAX_HEADER];
                let n = encode_header(&mut h, true, OP_BINARY, len, mask);
                let p = parse_header(&h[..n]).unwrap().unwrap();
                assert_eq!(p.payload_len, len as u64);
                assert_eq!(p.header_len, n);
                assert_eq!(p.mask, mask);
                assert!(p.fin);
                // Any strict prefix asks for more bytes.
                for cut in 0..n {
                    assert_eq!(parse_header(&h[..cut]).unwrap(), None, "len {len} cut {cut}");
                }
            }
        }
    }

    #[test]
    fn header_rejects_protocol_violations() {
        assert!(parse_header(&[0xC1, 0x80]).is_err()); // RSV1
        assert!(parse_header(&[0x83, 0x80]).is_err()); // opcode 3
        assert!(parse_header(&[0x8B, 0x80]).is_err()); // opcode 11
        assert!(parse_header(&[0x09, 0x80]).is_err()); // fragmented ping
        assert!(parse_header(&[0x89, 0xFE]).is_err()); // ping with 126
        let mut big = vec![0x82, 0xFF];
        big.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert!(parse_header(&big).is_err());
    }

    #[test]
    fn mask_matches_bytewise_xor_at_every_offset() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let m = [0x12, 0x34, 0x56, 0x78];
        for off in 0..4 {
            let mut a = data.clone();
            apply_mask(&mut a, m, off);
            let b: Vec<u8> = data.iter().enumerate().map(|(i, x)| x ^ m[(i + off) & 3]).collect();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn close_codes() {
        assert_eq!(parse_close(&[]), PeerClose::NoCode);
        assert_eq!(parse_close(&[3]), PeerClose::Invalid(1002));
        assert_eq!(parse_close(&1005u16.to_be_bytes()), PeerClose::Invalid(1002));
        assert_eq!(parse_close(&999u16.to_be_bytes()), PeerClose::Invalid(1002));
        let mut p = 1000u16.to_be_bytes().to_vec();
        p.extend_from_slice(&[0xFF, 0xFE]);
        assert_eq!(parse_close(&p), PeerClose::Invalid(1007));
        assert_eq!(
            parse_close(&close_payload(4000, "bye")),
            PeerClose::Code(4000, "bye".into())
        );
        assert_eq!(sanitize_close_code(0), 1000);
        assert_eq!(sanitize_close_code(-5), 1000);
        assert_eq!(sanitize_close_code(1005), 1000);
        assert_eq!(sanitize_close_code(1015), 1000);
        assert_eq!(sanitize_close_code(5000), 1000);
        assert_eq!(sanitize_close_code(4001), 4001);
        assert_eq!(close_payload(1000, &"é".repeat(100)).len(), 2 + 122);
    }

    #[test]
    fn utf8_incremental() {
        let s = "héllo €".as_bytes();
        // Split inside the euro sign: not final is fine, final is not.
        let cut = s.len() - 1;
        assert_eq!(check_utf8_incremental(&s[..cut], 0, false), Some(cut - 2));
        assert_eq!(check_utf8_incremental(&s[..cut], 0, true), None);
        assert_eq!(check_utf8_incremental(s, 0, true), Some(s.len()));
        assert_eq!(check_utf8_incremental(&[0xC0, 0x80], 0, false), None);
    }
}
