//! A minimal HTTP/1.1 client and message reader, just enough for the registry protocol.
//!
//! Rules this file keeps:
//! - one `Conn` is one keep-alive TCP connection used by one thread; it reconnects when the
//!   server closed it and retries a request once if the old connection died before any
//!   response byte arrived (a keep-alive race, counted as a reconnect, not an error);
//! - bodies are written straight from the caller's slices with `writev` (no copy); of a
//!   response body the first 64 KiB are read (for error messages and small JSON) and the
//!   rest is dropped in the kernel with recv(MSG_TRUNC), so the client spends its CPU on
//!   syscalls and not on memcpy;
//! - message framing follows RFC 9112 section 6: no body for HEAD, 1xx, 204 and 304;
//!   otherwise chunked, else Content-Length, else until the connection closes.

use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;
use std::os::unix::io::AsRawFd;

pub const READ_BUF: usize = 256 * 1024;
/// How much of a response body is kept for error messages and small JSON answers.
pub const KEEP_BODY: usize = 64 * 1024;

/// A request body: nothing, a list of slices sent with Content-Length, or the same slices
/// sent with `Transfer-Encoding: chunked` in chunks of at most `chunk` bytes.
pub enum Body<'a> {
    Empty,
    Fixed(&'a [&'a [u8]]),
    Chunked(&'a [&'a [u8]], usize),
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body_len: u64,
    /// The first KEEP_BODY bytes of the body.
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Parsed start line and headers of a message, as found in a buffer.
pub struct Head {
    pub first_line: String,
    pub headers: Vec<(String, String)>,
    pub len: usize,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length").and_then(|v| v.trim().parse().ok())
    }
    pub fn is_chunked(&self) -> bool {
        self.header("transfer-encoding")
            .map(|v| v.to_ascii_lowercase().contains("chunked"))
            .unwrap_or(false)
    }
    pub fn wants_close(&self) -> bool {
        self.header("connection")
            .map(|v| v.eq_ignore_ascii_case("close"))
            .unwrap_or(false)
    }
}

/// Returns the parsed head if `buf` holds a complete one.
pub fn parse_head(buf: &[u8]) -> io::Result<Option<Head>> {
    let end = match buf.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(p) => p + 4,
        None if buf.len() > 64 * 1024 => return Err(bad("header section too large")),
        None => return Ok(None),
    };
    let text = std::str::from_utf8(&buf[..end - 4]).map_err(|_| bad("header not utf-8"))?;
    let mut lines = text.split("\r\n");
    let first_line = lines.next().unwrap_or("").to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(Some(Head { first_line, headers, len: end }))
}

pub fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Buffered reader over a stream that knows the HTTP body framings.
pub struct Reader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// How many bytes of each body are kept (KEEP_BODY unless made with `keeping_all`).
    keep_limit: usize,
}

impl Reader {
    pub fn new() -> Reader {
        Reader { buf: vec![0u8; READ_BUF], start: 0, end: 0, keep_limit: KEEP_BODY }
    }

    /// A reader that keeps every body byte (the null registry's `--keep` mode).
    pub fn keeping_all() -> Reader {
        Reader { keep_limit: usize::MAX, ..Reader::new() }
    }

    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    fn fill(&mut self, s: &mut TcpStream) -> io::Result<usize> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = s.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// Reads a message head; Ok(None) on a clean EOF before any byte.
    pub fn read_head(&mut self, s: &mut TcpStream) -> io::Result<Option<Head>> {
        loop {
            if let Some(h) = parse_head(&self.buf[self.start..self.end])? {
                self.start += h.len;
                return Ok(Some(h));
            }
            if self.fill(s)? == 0 {
                if self.start == self.end {
                    return Ok(None);
                }
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "eof in head"));
            }
        }
    }

    /// Consumes exactly `n` body bytes, keeping the first `keep_limit` of them in `keep`.
    pub fn read_exact_body(&mut self, s: &mut TcpStream, mut n: u64, keep: &mut Vec<u8>) -> io::Result<u64> {
        let total = n;
        while n > 0 {
            if self.start == self.end && keep.len() >= self.keep_limit {
                // Nothing buffered and nothing more to keep: let the kernel drop the bytes.
                let dropped = discard(s, n.min(DISCARD_MAX))?;
                if dropped == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "eof in body"));
                }
                n -= dropped;
                continue;
            }
            if self.start == self.end {
                // Large bodies: read straight into the whole buffer.
                self.start = 0;
                self.end = 0;
                if self.fill(s)? == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "eof in body"));
                }
            }
            let take = ((self.end - self.start) as u64).min(n) as usize;
            if keep.len() < self.keep_limit {
                let k = take.min(self.keep_limit - keep.len());
                keep.extend_from_slice(&self.buf[self.start..self.start + k]);
            }
            self.start += take;
            n -= take as u64;
        }
        Ok(total)
    }

    fn read_line(&mut self, s: &mut TcpStream) -> io::Result<String> {
        loop {
            if let Some(p) = self.buf[self.start..self.end].windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[self.start..self.start + p]).to_string();
                self.start += p + 2;
                return Ok(line);
            }
            if self.fill(s)? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "eof in chunk line"));
            }
        }
    }

    /// Consumes a chunked body (RFC 9112 section 7.1), trailers included.
    pub fn read_chunked_body(&mut self, s: &mut TcpStream, keep: &mut Vec<u8>) -> io::Result<u64> {
        let mut total = 0u64;
        loop {
            let line = self.read_line(s)?;
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size_text, 16).map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                while !self.read_line(s)?.is_empty() {}
                return Ok(total);
            }
            total += self.read_exact_body(s, size, keep)?;
            if !self.read_line(s)?.is_empty() {
                return Err(bad("chunk not followed by CRLF"));
            }
        }
    }

    /// Consumes the body until EOF.
    pub fn read_to_eof(&mut self, s: &mut TcpStream, keep: &mut Vec<u8>) -> io::Result<u64> {
        let mut total = 0u64;
        loop {
            let avail = (self.end - self.start) as u64;
            if avail > 0 {
                total += self.read_exact_body(s, avail, keep)?;
            }
            if self.fill(s)? == 0 {
                return Ok(total);
            }
        }
    }
}

extern "C" {
    fn recv(fd: i32, buf: *mut u8, len: usize, flags: i32) -> isize;
}

const MSG_TRUNC: i32 = 0x20;
const DISCARD_MAX: u64 = 16 << 20;

/// Receives and throws away up to `n` bytes without copying them (Linux: recv(2) with
/// MSG_TRUNC on a TCP socket discards the data), so that reading a pulled blob costs the
/// client no memcpy; returns how many were dropped, 0 at EOF.
fn discard(s: &mut TcpStream, n: u64) -> io::Result<u64> {
    loop {
        // SAFETY: with MSG_TRUNC the kernel writes nothing to `buf`; a null pointer is fine.
        let got = unsafe { recv(s.as_raw_fd(), std::ptr::null_mut(), n as usize, MSG_TRUNC) };
        if got >= 0 {
            return Ok(got as u64);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Writes every slice fully with as few writev calls as the kernel allows.
pub fn write_all_vectored(s: &mut TcpStream, slices: &[&[u8]]) -> io::Result<()> {
    let mut idx = 0;
    let mut off = 0;
    while idx < slices.len() {
        let mut iov: Vec<IoSlice> = Vec::with_capacity(64);
        iov.push(IoSlice::new(&slices[idx][off..]));
        for sl in slices.iter().skip(idx + 1).take(63) {
            iov.push(IoSlice::new(sl));
        }
        let mut n = s.write_vectored(&iov)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0"));
        }
        while idx < slices.len() && n >= slices[idx].len() - off {
            n -= slices[idx].len() - off;
            idx += 1;
            off = 0;
        }
        off += n;
    }
    Ok(())
}

/// One keep-alive client connection.
pub struct Conn {
    addr: String,
    host: String,
    stream: Option<TcpStream>,
    reader: Reader,
    pub reconnects: u64,
}

impl Conn {
    pub fn new(addr: &str) -> Conn {
        Conn { addr: addr.to_string(), host: addr.to_string(), stream: None, reader: Reader::new(), reconnects: 0 }
    }

    fn connect(&mut self) -> io::Result<()> {
        let s = TcpStream::connect(&self.addr)?;
        s.set_nodelay(true)?;
        self.stream = Some(s);
        self.reader.clear();
        Ok(())
    }

    /// Sends one request and reads the whole response.
    pub fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &Body) -> io::Result<Response> {
        let reused = self.stream.is_some();
        if !reused {
            self.connect()?;
        }
        match self.try_request(method, path, headers, body) {
            Ok(Some(r)) => Ok(r),
            Ok(None) if reused => {
                self.reconnects += 1;
                self.connect()?;
                self.try_request(method, path, headers, body)?
                    .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "server closed without answering"))
            }
            Ok(None) => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "server closed without answering")),
            Err(e) => {
                self.stream = None;
                Err(e)
            }
        }
    }

    /// Ok(None): the connection was dead before any response byte arrived.
    fn try_request(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &Body) -> io::Result<Option<Response>> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: regbench\r\n", self.host);
        for (k, v) in headers {
            head.push_str(k);
            head.push_str(": ");
            head.push_str(v);
            head.push_str("\r\n");
        }
        let stream = self.stream.as_mut().expect("connected");
        let sent = match body {
            Body::Empty => {
                head.push_str("Content-Length: 0\r\n\r\n");
                stream.write_all(head.as_bytes())
            }
            Body::Fixed(parts) => {
                let len: usize = parts.iter().map(|p| p.len()).sum();
                head.push_str(&format!("Content-Length: {len}\r\n\r\n"));
                let mut all: Vec<&[u8]> = vec![head.as_bytes()];
                all.extend_from_slice(parts);
                write_all_vectored(stream, &all)
            }
            Body::Chunked(parts, chunk) => {
                head.push_str("Transfer-Encoding: chunked\r\n\r\n");
                write_chunked(stream, head.as_bytes(), parts, *chunk)
            }
        };
        if let Err(e) = sent {
            if matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) {
                self.stream = None;
                return Ok(None);
            }
            return Err(e);
        }
        let h = match self.reader.read_head(stream) {
            Ok(Some(h)) => h,
            Ok(None) => {
                self.stream = None;
                return Ok(None);
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                self.stream = None;
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let status: u16 = h
            .first_line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| bad("bad status line"))?;
        let mut keep = Vec::new();
        let no_body = method == "HEAD" || status < 200 || status == 204 || status == 304;
        let mut close = h.wants_close();
        let body_len = if no_body {
            0
        } else if h.is_chunked() {
            self.reader.read_chunked_body(stream, &mut keep)?
        } else if let Some(n) = h.content_length() {
            self.reader.read_exact_body(stream, n, &mut keep)?
        } else {
            close = true;
            self.reader.read_to_eof(stream, &mut keep)?
        };
        if close {
            self.stream = None;
        }
        Ok(Some(Response { status, headers: h.headers, body_len, body: keep }))
    }
}

/// Sends head + body with chunked transfer coding, batching many chunks per writev.
fn write_chunked(s: &mut TcpStream, head: &[u8], parts: &[&[u8]], chunk: usize) -> io::Result<()> {
    let mut pieces: Vec<&[u8]> = Vec::new();
    for p in parts {
        let mut off = 0;
        while off < p.len() {
            let n = chunk.min(p.len() - off);
            pieces.push(&p[off..off + n]);
            off += n;
        }
    }
    let sizes: Vec<String> = pieces.iter().map(|p| format!("{:x}\r\n", p.len())).collect();
    let mut batch: Vec<&[u8]> = vec![head];
    for (i, p) in pieces.iter().enumerate() {
        batch.push(sizes[i].as_bytes());
        batch.push(p);
        batch.push(b"\r\n");
        if batch.len() >= 48 {
            write_all_vectored(s, &batch)?;
            batch.clear();
        }
    }
    batch.push(b"0\r\n\r\n");
    write_all_vectored(s, &batch)
}

/// The path (and query) part of a Location header, absolute or relative.
pub fn location_path(loc: &str) -> String {
    if let Some(rest) = loc.split_once("://").map(|(_, r)| r) {
        match rest.find('/') {
            Some(i) => rest[i..].to_string(),
            None => "/".to_string(),
        }
    } else {
        loc.to_string()
    }
}

/// Appends `key=value` to a path that may already carry a query.
pub fn with_query(path: &str, key: &str, value: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}{key}={value}")
}
