//! WebSocket framing, client side only: building masked frames and counting
//! the server's (unmasked) frames without buffering whole payloads.

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Fixed, non-zero mask key: the server still has to unmask every byte, but
/// frames can be built once and replayed.
pub const MASK_KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Bytes of each message's payload kept for the caller: timestamps live there,
/// binary ones in the first 8 bytes, JSON ones (broker scenarios) after a
/// routing key such as `{"to":"s999","t":`.
pub const PREFIX_LEN: usize = 64;

pub fn header_len(payload_len: usize) -> usize {
    let base = if payload_len < 126 {
        2
    } else if payload_len <= 0xffff {
        4
    } else {
        10
    };
    base + 4
}

/// Appends one complete, final, masked client frame to `out`.
pub fn push_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&MASK_KEY);
    let start = out.len();
    out.extend_from_slice(payload);
    for (i, b) in out[start..].iter_mut().enumerate() {
        *b ^= MASK_KEY[i & 3];
    }
}

pub fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(header_len(payload.len()) + payload.len());
    push_frame(&mut v, opcode, payload);
    v
}

pub enum Event<'a> {
    /// A complete data message (possibly reassembled from fragments).
    Message {
        opcode: u8,
        len: u64,
        prefix: &'a [u8],
    },
    Ping(&'a [u8]),
    Close,
}

/// Streaming frame parser: keeps only headers, control payloads and the first
/// `PREFIX_LEN` bytes of each message, so 1 MiB echoes cost no copies.
pub struct Parser {
    hdr: [u8; 10],
    hdr_have: usize,
    in_payload: bool,
    remaining: u64,
    opcode: u8,
    fin: bool,
    frame_len: u64,
    cap: [u8; 125],
    cap_have: usize,
    cap_want: usize,
    msg_open: bool,
    msg_opcode: u8,
    msg_len: u64,
    prefix: [u8; PREFIX_LEN],
    prefix_len: usize,
}

impl Default for Parser {
    fn default() -> Self {
        Parser {
            hdr: [0; 10],
            hdr_have: 0,
            in_payload: false,
            remaining: 0,
            opcode: 0,
            fin: false,
            frame_len: 0,
            cap: [0; 125],
            cap_have: 0,
            cap_want: 0,
            msg_open: false,
            msg_opcode: 0,
            msg_len: 0,
            prefix: [0; PREFIX_LEN],
            prefix_len: 0,
        }
    }
}

impl Parser {
    pub fn feed(&mut self, mut data: &[u8], mut on: impl FnMut(Event<'_>)) -> Result<(), &'static str> {
        while !data.is_empty() {
            if !self.in_payload {
                let need = if self.hdr_have < 2 {
                    2
                } else {
                    match self.hdr[1] & 0x7f {
                        126 => 4,
                        127 => 10,
                        _ => 2,
                    }
                };
                let take = (need - self.hdr_have).min(data.len());
                self.hdr[self.hdr_have..self.hdr_have + take].copy_from_slice(&data[..take]);
                self.hdr_have += take;
                data = &data[take..];
                if self.hdr_have < need {
                    continue;
                }
                if self.hdr_have == 2 {
                    let b0 = self.hdr[0];
                    let b1 = self.hdr[1];
                    if b0 & 0x70 != 0 {
                        return Err("server frame has RSV bits set");
                    }
                    if b1 & 0x80 != 0 {
                        return Err("server frame is masked");
                    }
                    if b1 & 0x7f >= 126 {
                        // Extended length still to come.
                        continue;
                    }
                }
                self.start_frame()?;
            }
            let n = (self.remaining.min(data.len() as u64)) as usize;
            if self.cap_have < self.cap_want {
                let c = (self.cap_want - self.cap_have).min(n);
                self.cap[self.cap_have..self.cap_have + c].copy_from_slice(&data[..c]);
                self.cap_have += c;
            }
            data = &data[n..];
            self.remaining -= n as u64;
            if self.remaining == 0 {
                self.finish_frame(&mut on)?;
            }
        }
        Ok(())
    }

    fn start_frame(&mut self) -> Result<(), &'static str> {
        let b0 = self.hdr[0];
        let len = match self.hdr[1] & 0x7f {
            126 => u64::from(u16::from_be_bytes([self.hdr[2], self.hdr[3]])),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.hdr[2..10]);
                u64::from_be_bytes(b)
            }
            l => u64::from(l),
        };
        self.opcode = b0 & 0x0f;
        self.fin = b0 & 0x80 != 0;
        self.frame_len = len;
        let control = self.opcode & 0x08 != 0;
        if control && (!self.fin || len > 125) {
            return Err("bad control frame");
        }
        self.cap_want = if control {
            len as usize
        } else if self.opcode != OP_CONT {
            len.min(PREFIX_LEN as u64) as usize
        } else {
            0
        };
        self.cap_have = 0;
        self.remaining = len;
        self.in_payload = true;
        Ok(())
    }

    fn finish_frame(&mut self, on: &mut impl FnMut(Event<'_>)) -> Result<(), &'static str> {
        self.in_payload = false;
        self.hdr_have = 0;
        match self.opcode {
            OP_TEXT | OP_BINARY => {
                if self.msg_open {
                    return Err("new data frame inside a fragmented message");
                }
                self.msg_open = true;
                self.msg_opcode = self.opcode;
                self.msg_len = self.frame_len;
                self.prefix_len = self.cap_have;
                self.prefix[..self.cap_have].copy_from_slice(&self.cap[..self.cap_have]);
            }
            OP_CONT => {
                if !self.msg_open {
                    return Err("continuation frame without a message");
                }
                self.msg_len += self.frame_len;
            }
            OP_PING => {
                on(Event::Ping(&self.cap[..self.cap_have]));
                return Ok(());
            }
            OP_PONG => return Ok(()),
            OP_CLOSE => {
                on(Event::Close);
                return Ok(());
            }
            _ => return Err("reserved opcode"),
        }
        if self.fin {
            self.msg_open = false;
            on(Event::Message {
                opcode: self.msg_opcode,
                len: self.msg_len,
                prefix: &self.prefix[..self.prefix_len],
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![b0];
        let l = payload.len();
        if l < 126 {
            v.push(l as u8);
        } else if l <= 0xffff {
            v.push(126);
            v.extend_from_slice(&(l as u16).to_be_bytes());
        } else {
            v.push(127);
            v.extend_from_slice(&(l as u64).to_be_bytes());
        }
        v.extend_from_slice(payload);
        v
    }

    fn collect(stream: &[u8], chunk: usize) -> Vec<(u8, u64, Vec<u8>)> {
        let mut p = Parser::default();
        let mut out = Vec::new();
        for c in stream.chunks(chunk) {
            p.feed(c, |e| match e {
                Event::Message { opcode, len, prefix } => out.push((opcode, len, prefix.to_vec())),
                Event::Ping(d) => out.push((OP_PING, d.len() as u64, d.to_vec())),
                Event::Close => out.push((OP_CLOSE, 0, vec![])),
            })
            .expect("valid stream");
        }
        out
    }

    #[test]
    fn parses_every_length_class_in_any_chunking() {
        let big = vec![7u8; 70_000];
        let mid = vec![5u8; 300];
        let mut s = server_frame(0x81, b"hello");
        s.extend(server_frame(0x82, &mid));
        s.extend(server_frame(0x82, &big));
        s.extend(server_frame(0x81, b""));
        s.extend(server_frame(0x89, b"pp"));
        s.extend(server_frame(0x01, b"frag"));
        s.extend(server_frame(0x80, b"ment"));
        s.extend(server_frame(0x88, &[3, 232]));
        for chunk in [1, 2, 3, 7, 64, 1 << 20] {
            let got = collect(&s, chunk);
            assert_eq!(got.len(), 7, "chunk {chunk}");
            assert_eq!(got[0], (OP_TEXT, 5, b"hello".to_vec()));
            assert_eq!(got[1], (OP_BINARY, 300, vec![5u8; PREFIX_LEN]));
            assert_eq!(got[2], (OP_BINARY, 70_000, vec![7u8; PREFIX_LEN]));
            assert_eq!(got[3], (OP_TEXT, 0, vec![]));
            assert_eq!(got[4], (OP_PING, 2, b"pp".to_vec()));
            assert_eq!(got[5], (OP_TEXT, 8, b"frag".to_vec()));
            assert_eq!(got[6].0, OP_CLOSE);
        }
    }

    #[test]
    fn rejects_masked_and_reserved() {
        let mut p = Parser::default();
        assert!(p.feed(&[0x81, 0x85, 0, 0, 0, 0], |_| {}).is_err());
        let mut p = Parser::default();
        assert!(p.feed(&[0x83, 0x00], |_| {}).is_err());
        let mut p = Parser::default();
        assert!(p.feed(&[0x80, 0x00], |_| {}).is_err());
    }

    #[test]
    fn built_frames_unmask_to_payload() {
        for len in [0usize, 5, 125, 126, 65_535, 65_536] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let f = frame(OP_BINARY, &payload);
            let hl = header_len(len);
            assert_eq!(f.len(), hl + len);
            assert_eq!(f[0], 0x82);
            let key = &f[hl - 4..hl];
            let un: Vec<u8> = f[hl..].iter().enumerate().map(|(i, b)| b ^ key[i & 3]).collect();
            assert_eq!(un, payload);
        }
    }
}
