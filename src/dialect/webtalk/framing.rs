//! Admin framing (PROTOCOLS.md §4.1): a 5-digit byte length, then a body
//! `[cmd]` + one skipped byte + data.
//!
//! The parser is incremental: TCP may split a header or body across any number
//! of reads, and may carry several frames in one read.

/// Length of the decimal header.
pub const HEADER_LEN: usize = 5;
/// The largest body a 5-digit header can announce.
pub const MAX_BODY: usize = 99_999;

/// One complete admin frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Header `00000`: the application says goodbye.
    Goodbye,
    /// A `[cmd]` body.
    Command(Command),
}

/// A body that starts with `[` and holds a `]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    body: Vec<u8>,
    /// Index of the first `]`.
    close: usize,
}

impl Command {
    /// The command name: everything between `[` and the first `]`.
    pub fn cmd(&self) -> &[u8] {
        &self.body[1..self.close]
    }

    /// The data: from the second byte after `]` (the byte right after `]` is
    /// skipped whatever it is). Nothing is trimmed.
    pub fn data(&self) -> &[u8] {
        self.body.get(self.close + 2..).unwrap_or(&[])
    }
}

/// A framing error: its reply is sent, then the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramingError {
    /// The header holds a byte that is not an ASCII digit.
    InvalidSize([u8; HEADER_LEN]),
    /// The body does not start with `[`.
    NoOpenBrace,
    /// The body holds no `]`.
    NoCloseBrace,
}

impl FramingError {
    /// The framed reply for this error.
    pub fn reply(&self) -> Vec<u8> {
        match self {
            FramingError::InvalidSize(header) => {
                let mut text = b"Invalid Frame Size: ".to_vec();
                text.extend_from_slice(header);
                encode_reply(false, &text)
            }
            FramingError::NoOpenBrace => encode_reply(false, b"Invalid Frame: [ brace not found"),
            FramingError::NoCloseBrace => encode_reply(false, b"Invalid Frame: ] brace not found"),
        }
    }
}

/// Collects bytes from an admin connection and cuts them into frames.
#[derive(Debug, Default)]
pub struct FrameParser {
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed by returned frames.
    start: usize,
    /// After a framing error the stream has no frame boundaries left to trust.
    failed: bool,
}

impl FrameParser {
    pub fn new() -> FrameParser {
        FrameParser::default()
    }

    /// Appends bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed {
            return;
        }
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, a framing error, or `None` when more bytes are
    /// needed. After an error it returns `None` for good.
    pub fn next_frame(&mut self) -> Option<Result<Frame, FramingError>> {
        if self.failed {
            return None;
        }
        let pending = &self.buf[self.start..];
        let header: [u8; HEADER_LEN] = pending.get(..HEADER_LEN)?.try_into().ok()?;
        let Some(len) = header_length(&header) else {
            return Some(Err(self.fail(FramingError::InvalidSize(header))));
        };
        if len == 0 {
            self.start += HEADER_LEN;
            return Some(Ok(Frame::Goodbye));
        }
        let body = pending.get(HEADER_LEN..HEADER_LEN + len)?;
        if body.first() != Some(&b'[') {
            return Some(Err(self.fail(FramingError::NoOpenBrace)));
        }
        let Some(close) = body.iter().position(|&b| b == b']') else {
            return Some(Err(self.fail(FramingError::NoCloseBrace)));
        };
        let body = body.to_vec();
        self.start += HEADER_LEN + len;
        Some(Ok(Frame::Command(Command { body, close })))
    }

    /// True when part of a frame is buffered (the peer closing now would cut
    /// it short, which gets no reply).
    pub fn is_mid_frame(&self) -> bool {
        !self.failed && self.start < self.buf.len()
    }

    fn fail(&mut self, err: FramingError) -> FramingError {
        self.failed = true;
        self.buf = Vec::new();
        self.start = 0;
        err
    }
}

fn header_length(header: &[u8; HEADER_LEN]) -> Option<usize> {
    header.iter().try_fold(0usize, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + usize::from(b - b'0'))
    })
}

/// Frames a reply: body `[ok] ` or `[error] ` + `text`, the space always
/// present. The text is cut, at a UTF-8 boundary, so the body never passes
/// [`MAX_BODY`] bytes.
pub fn encode_reply(ok: bool, text: &[u8]) -> Vec<u8> {
    let prefix: &[u8] = if ok { b"[ok] " } else { b"[error] " };
    let text = cut(text, MAX_BODY - prefix.len());
    let len = prefix.len() + text.len();
    let mut out = Vec::with_capacity(HEADER_LEN + len);
    out.extend_from_slice(format!("{len:05}").as_bytes());
    out.extend_from_slice(prefix);
    out.extend_from_slice(text);
    out
}

/// The longest prefix of `text` within `max` bytes that does not end inside a
/// UTF-8 sequence (a UTF-8 character has at most 3 continuation bytes).
fn cut(text: &[u8], max: usize) -> &[u8] {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while end > 0 && max - end < 3 && text[end] & 0xC0 == 0x80 {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_whole_characters() {
        assert_eq!(cut(b"abc", 3), b"abc");
        assert_eq!(cut(b"abcd", 3), b"abc");
        assert_eq!(cut("aé".as_bytes(), 2), b"a");
        assert_eq!(cut("a€".as_bytes(), 3), b"a");
        assert_eq!(cut("a😀b".as_bytes(), 4), b"a");
        assert_eq!(cut("a😀b".as_bytes(), 5), "a😀".as_bytes());
    }

    #[test]
    fn reply_body_never_passes_the_limit() {
        let long = "é".repeat(60_000);
        let out = encode_reply(true, long.as_bytes());
        assert_eq!(&out[..5], b"99999");
        assert_eq!(out.len(), 5 + 99_999);
        // `[error] ` is 8 bytes, leaving an odd 99991 for two-byte characters.
        let out = encode_reply(false, long.as_bytes());
        assert_eq!(&out[..5], b"99998");
        assert_eq!(out.len(), 5 + 99_998);
        assert!(std::str::from_utf8(&out[5..]).is_ok());
        let out = encode_reply(false, "€".repeat(40_000).as_bytes());
        assert_eq!(&out[..5], b"99998");
        assert!(std::str::from_utf8(&out[5..]).is_ok());
    }
}
