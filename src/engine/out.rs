//! Outbound buffers: owned bytes appended in place, shared frames referenced,
//! written with one `writev`.

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;

use super::frame;

/// A frame to queue: built from a payload, or prebuilt and shared.
pub(crate) enum Frame<'a> {
    Build(u8, &'a [u8]),
    Shared(Arc<[u8]>),
    Raw(Vec<u8>),
}

impl Frame<'_> {
    pub(crate) fn wire_len(&self) -> usize {
        match self {
            Frame::Build(_, p) => {
                p.len()
                    + match p.len() {
                        0..=125 => 2,
                        126..=65535 => 4,
                        _ => 10,
                    }
            }
            Frame::Shared(b) => b.len(),
            Frame::Raw(v) => v.len(),
        }
    }

    /// Turns a borrowed frame into one that can cross threads.
    pub(crate) fn into_owned(self) -> Frame<'static> {
        match self {
            Frame::Build(op, p) => Frame::Raw(frame::build_frame(op, p, None)),
            Frame::Shared(b) => Frame::Shared(b),
            Frame::Raw(v) => Frame::Raw(v),
        }
    }
}

enum Chunk {
    Own(Vec<u8>),
    Shared(Arc<[u8]>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Own(v) => v,
            Chunk::Shared(b) => b,
        }
    }
}

/// Small owned chunks are merged; past this size a new chunk starts, so a big
/// buffer is freed as soon as it is written.
const MERGE_LIMIT: usize = 64 << 10;

#[derive(Default)]
pub(crate) struct OutBuf {
    chunks: VecDeque<Chunk>,
    /// Bytes of the first chunk already written.
    head: usize,
    len: usize,
    /// Send-result tracking (clients): where each message ends, counted in
    /// bytes ever queued.
    marks: Option<Box<Marks>>,
}

#[derive(Default)]
struct Marks {
    queued: u64,
    written: u64,
    ends: VecDeque<u64>,
}

impl OutBuf {
    pub(crate) fn len(&self) -> usize {
        self.len
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Starts counting messages written (see `mark_message` and `take_written`).
    pub(crate) fn track_messages(&mut self) {
        self.marks.get_or_insert_with(Default::default);
    }

    /// Records that the bytes queued so far end a host message.
    pub(crate) fn mark_message(&mut self) {
        let len = self.len as u64;
        if let Some(m) = self.marks.as_mut() {
            let end = m.written + len;
            m.queued = end;
            m.ends.push_back(end);
        }
    }

    /// How many marked messages have been fully written since the last call.
    pub(crate) fn take_written(&mut self) -> usize {
        let Some(m) = self.marks.as_mut() else { return 0 };
        let mut n = 0;
        while m.ends.front().is_some_and(|&e| e <= m.written) {
            m.ends.pop_front();
            n += 1;
        }
        n
    }

    fn advance(&mut self, mut w: usize) {
        self.len -= w;
        if let Some(m) = self.marks.as_mut() {
            m.written += w as u64;
        }
        while w > 0 {
            let first_len = match self.chunks.front() {
                Some(c) => c.bytes().len() - self.head,
                None => break,
            };
            if w >= first_len {
                w -= first_len;
                self.chunks.pop_front();
                self.head = 0;
            } else {
                self.head += w;
                w = 0;
            }
        }
    }

    /// Hands the buffered bytes to `write` (e.g. a TLS session) until it
    /// takes none; returns the bytes taken.
    pub(crate) fn write_with(&mut self, mut write: impl FnMut(&[u8]) -> io::Result<usize>) -> io::Result<usize> {
        let mut total = 0;
        while let Some(c) = self.chunks.front() {
            let b = &c.bytes()[self.head..];
            match write(b) {
                Ok(0) => break,
                Ok(n) => {
                    total += n;
                    self.advance(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if self.chunks.is_empty() {
            self.chunks = VecDeque::new();
        }
        Ok(total)
    }

    /// Queues a frame, masked with `mask` (client role).
    pub(crate) fn push_masked(&mut self, op: u8, payload: &[u8], mask: [u8; 4]) {
        let v = self.tail_vec(payload.len() + frame::MAX_HEADER);
        let before = v.len();
        frame::append_frame(v, op, payload, Some(mask));
        self.len += v.len() - before;
    }

    pub(crate) fn push(&mut self, f: Frame<'_>) {
        match f {
            Frame::Build(op, p) => {
                let v = self.tail_vec(p.len() + frame::MAX_HEADER);
                let before = v.len();
                frame::append_frame(v, op, p, None);
                self.len += v.len() - before;
            }
            Frame::Raw(raw) => {
                self.len += raw.len();
                if raw.len() < 4096 {
                    let v = self.tail_vec(raw.len());
                    v.extend_from_slice(&raw);
                } else {
                    self.chunks.push_back(Chunk::Own(raw));
                }
            }
            Frame::Shared(b) => {
                self.len += b.len();
                self.chunks.push_back(Chunk::Shared(b));
            }
        }
    }

    fn tail_vec(&mut self, need: usize) -> &mut Vec<u8> {
        let reuse = matches!(self.chunks.back(), Some(Chunk::Own(v)) if v.len() + need <= MERGE_LIMIT.max(v.capacity()) && !(self.chunks.len() == 1 && self.head > 0));
        if !reuse {
            self.chunks.push_back(Chunk::Own(Vec::with_capacity(need.max(256))));
        }
        match self.chunks.back_mut() {
            Some(Chunk::Own(v)) => v,
            _ => unreachable!("a Vec chunk was just ensured"),
        }
    }

    /// Drops everything not yet started on the wire (keeps the rest of a
    /// partly written frame, so the stream stays well formed).
    pub(crate) fn truncate_unstarted(&mut self) {
        if self.head > 0 {
            let first = self.chunks.pop_front();
            self.chunks.clear();
            if let Some(c) = first {
                // The first chunk may hold several frames; keep all of it.
                self.len = c.bytes().len() - self.head;
                self.chunks.push_back(c);
            }
        } else {
            self.chunks.clear();
            self.len = 0;
        }
    }

    /// Writes as much as the socket takes. Returns bytes written; `WouldBlock`
    /// is not an error (Ok with what was written).
    pub(crate) fn flush(&mut self, fd: RawFd) -> io::Result<usize> {
        let mut total = 0;
        while self.len > 0 {
            let mut iov: [libc::iovec; 64] = [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; 64];
            let mut n = 0;
            for (i, c) in self.chunks.iter().enumerate().take(64) {
                let b = c.bytes();
                let b = if i == 0 { &b[self.head..] } else { b };
                iov[n] = libc::iovec {
                    iov_base: b.as_ptr() as *mut libc::c_void,
                    iov_len: b.len(),
                };
                n += 1;
            }
            // SAFETY: every iovec points into a chunk this buffer owns, which
            // stays alive and unmodified during the call.
            let r = unsafe {
                if n == 1 {
                    libc::send(fd, iov[0].iov_base, iov[0].iov_len, libc::MSG_NOSIGNAL)
                } else {
                    let msg = libc::msghdr {
                        msg_name: std::ptr::null_mut(),
                        msg_namelen: 0,
                        msg_iov: iov.as_mut_ptr(),
                        msg_iovlen: n as _,
                        msg_control: std::ptr::null_mut(),
                        msg_controllen: 0,
                        msg_flags: 0,
                    };
                    libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL)
                }
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => return Ok(total),
                    io::ErrorKind::Interrupted => continue,
                    _ => return Err(e),
                }
            }
            total += r as usize;
            self.advance(r as usize);
        }
        if self.chunks.is_empty() {
            // Release the deque's own allocation too: an idle connection keeps nothing.
            self.chunks = VecDeque::new();
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;

    #[test]
    fn mixed_chunks_arrive_in_order() {
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut o = OutBuf::default();
        o.push(Frame::Build(frame::OP_TEXT, b"hi"));
        o.push(Frame::Shared(Arc::from(&b"SHARED"[..])));
        o.push(Frame::Raw(vec![7; 5000]));
        o.push(Frame::Build(frame::OP_BINARY, b""));
        let expect_len = 4 + 6 + 5000 + 2;
        assert_eq!(o.len(), expect_len);
        o.flush(a.as_raw_fd()).unwrap();
        assert!(o.is_empty());
        drop(a);
        let mut got = Vec::new();
        b.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), expect_len);
        assert_eq!(&got[..4], &[0x81, 2, b'h', b'i']);
        assert_eq!(&got[4..10], b"SHARED");
        assert_eq!(&got[expect_len - 2..], &[0x82, 0]);
    }
}
