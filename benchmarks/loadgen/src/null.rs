//! A registry that does nothing: the load generator's ceiling.
//!
//! It speaks just enough of the distribution API for the workloads: uploads are read and
//! thrown away (only their length is remembered, under the digest the client names, which is
//! never checked), blobs are served with sendfile from one unlinked 64 MiB file (so from the
//! page cache, as a registry serving a hot blob would), manifests are kept in memory under
//! the reference they were PUT with and under their digest. One thread per connection,
//! keep-alive.
//!
//! With `--keep`, pushed blobs are kept in memory as they came and served back from there
//! (still under the digest the client names, never checked): real clients (docker, skopeo,
//! ctr) can pull what they pushed, and their push and pull times against a registry that
//! does nothing else are the ceiling for the registries measured beside it.

use crate::http::{write_all_vectored, Head, Reader};
use crate::sha256;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::io::AsRawFd;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct State {
    next_upload: u64,
    uploads: HashMap<String, u64>,
    blobs: HashMap<String, u64>,
    /// (repository, reference) -> (content type, digest, body)
    manifests: HashMap<(String, String), (String, String, Vec<u8>)>,
    /// `--keep`: the bytes of uploads in progress and of blobs, by upload id and by digest.
    keep: bool,
    upload_data: HashMap<String, Vec<u8>>,
    blob_data: HashMap<String, Arc<Vec<u8>>>,
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Bytes of blob content to send after `body`, from `blob_start` on.
    blob_len: u64,
    blob_start: u64,
    /// `--keep`: the blob's bytes, sent from memory instead of the pattern file.
    blob_data: Option<Arc<Vec<u8>>>,
}

impl Reply {
    fn new(status: u16) -> Reply {
        Reply { status, headers: Vec::new(), body: Vec::new(), blob_len: 0, blob_start: 0, blob_data: None }
    }
    fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
    fn json(self, body: &str) -> Reply {
        let mut r = self.header("Content-Type", "application/json");
        r.body = body.as_bytes().to_vec();
        r
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        206 => "Partial Content",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        _ => "Whatever",
    }
}

/// The value of `key` in a query string, percent-decoded (Go clients send `sha256%3A...`).
fn query_param(query: &str, key: &str) -> Option<String> {
    let raw = query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == key)?.1;
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        let hex = |c: Option<u8>| c.and_then(|c| (c as char).to_digit(16));
        out.push(match b {
            b'%' => (hex(bytes.next())? * 16 + hex(bytes.next())?) as u8,
            b'+' => b' ',
            b => b,
        });
    }
    String::from_utf8(out).ok()
}

fn not_found() -> Reply {
    Reply::new(404).json(r#"{"errors":[{"code":"NOT_FOUND","message":"not found"}]}"#)
}

fn handle(state: &Mutex<State>, head: &Head, body_len: u64, body: Vec<u8>) -> Reply {
    let mut parts = head.first_line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path == "/v2/" || path == "/v2" {
        return Reply::new(200).json("{}");
    }
    let Some(rest) = path.strip_prefix("/v2/") else { return not_found() };
    let mut st = state.lock().unwrap();
    if let Some(name) = rest.strip_suffix("/tags/list") {
        let tags: Vec<String> = st
            .manifests
            .keys()
            .filter(|(n, r)| n == name && !r.starts_with("sha256:"))
            .map(|(_, r)| format!("\"{r}\""))
            .collect();
        return Reply::new(200).json(&format!(r#"{{"name":"{name}","tags":[{}]}}"#, tags.join(",")));
    }
    if let Some((name, id)) = rest.rsplit_once("/blobs/uploads/").or_else(|| rest.strip_suffix("/blobs/uploads").map(|n| (n, ""))) {
        let digest = query_param(query, "digest");
        let (total, data) = match (method, id) {
            ("POST", _) if digest.is_some() => (body_len, body),
            ("POST", _) => {
                st.next_upload += 1;
                let id = format!("u{}", st.next_upload);
                st.uploads.insert(id.clone(), 0);
                if st.keep {
                    st.upload_data.insert(id.clone(), Vec::new());
                }
                return Reply::new(202)
                    .header("Location", &format!("/v2/{name}/blobs/uploads/{id}"))
                    .header("Docker-Upload-UUID", &id)
                    .header("Range", "0-0");
            }
            ("PATCH", _) => {
                let Some(n) = st.uploads.get_mut(id) else { return not_found() };
                *n += body_len;
                let range = format!("0-{}", n.saturating_sub(1));
                if let Some(data) = st.upload_data.get_mut(id) {
                    data.extend_from_slice(&body);
                }
                return Reply::new(202)
                    .header("Location", &format!("/v2/{name}/blobs/uploads/{id}"))
                    .header("Range", &range);
            }
            ("PUT", _) => match st.uploads.remove(id) {
                Some(n) => {
                    let mut data = st.upload_data.remove(id).unwrap_or_default();
                    data.extend_from_slice(&body);
                    (n + body_len, data)
                }
                None => return not_found(),
            },
            _ => return not_found(),
        };
        let digest = digest.unwrap_or_else(|| "sha256:none".to_string());
        st.blobs.insert(digest.clone(), total);
        if st.keep {
            st.blob_data.insert(digest.clone(), Arc::new(data));
        }
        return Reply::new(201)
            .header("Location", &format!("/v2/{name}/blobs/{digest}"))
            .header("Docker-Content-Digest", &digest);
    }
    if let Some((_name, digest)) = rest.rsplit_once("/blobs/") {
        let Some(&size) = st.blobs.get(digest) else { return not_found() };
        let mut r = Reply::new(200)
            .header("Content-Type", "application/octet-stream")
            .header("Docker-Content-Digest", digest)
            .header("Accept-Ranges", "bytes");
        r.blob_len = size;
        r.blob_data = st.blob_data.get(digest).cloned();
        if let Some((a, b)) = head.header("range").and_then(parse_range) {
            if a > b || b >= size {
                return Reply::new(416);
            }
            r.status = 206;
            r = r.header("Content-Range", &format!("bytes {a}-{b}/{size}"));
            r.blob_len = b - a + 1;
            r.blob_start = a;
        }
        if method == "HEAD" {
            let len = r.blob_len.to_string();
            r = r.header("Content-Length", &len);
            r.blob_len = 0;
        }
        return r;
    }
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        let key = (name.to_string(), reference.to_string());
        match method {
            "PUT" => {
                let ctype = head.header("content-type").unwrap_or("application/json").to_string();
                let digest = sha256::digest(&body);
                st.manifests.insert((name.to_string(), digest.clone()), (ctype.clone(), digest.clone(), body.clone()));
                st.manifests.insert(key, (ctype, digest.clone(), body));
                return Reply::new(201)
                    .header("Location", &format!("/v2/{name}/manifests/{digest}"))
                    .header("Docker-Content-Digest", &digest);
            }
            "GET" | "HEAD" => {
                let Some((ctype, digest, body)) = st.manifests.get(&key) else { return not_found() };
                let mut r = Reply::new(200).header("Content-Type", ctype).header("Docker-Content-Digest", digest);
                if method == "HEAD" {
                    return r.header("Content-Length", &body.len().to_string());
                }
                r.body = body.clone();
                return r;
            }
            _ => return not_found(),
        }
    }
    not_found()
}

fn parse_range(v: &str) -> Option<(u64, u64)> {
    let (a, b) = v.strip_prefix("bytes=")?.split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

const CONTENT_SIZE: u64 = 64 << 20;

extern "C" {
    // sendfile(2) from the C library std already links; std's io::copy does not use it for
    // a File slice (it falls back to 8 KiB reads and writes), so it is called directly.
    fn sendfile(out_fd: i32, in_fd: i32, offset: *mut i64, count: usize) -> isize;
}

/// Sends `len` bytes of blob content starting at `start` with sendfile(2). The offset is
/// passed explicitly, so threads share the one file descriptor safely.
fn send_blob(s: &mut TcpStream, content: &File, start: u64, len: u64) -> io::Result<()> {
    let (mut left, mut pos) = (len, start % CONTENT_SIZE);
    while left > 0 {
        let want = left.min(CONTENT_SIZE - pos) as usize;
        let mut off = pos as i64;
        // SAFETY: both descriptors are open for the duration of the call; `off` is ours.
        let n = unsafe { sendfile(s.as_raw_fd(), content.as_raw_fd(), &mut off, want) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "content file short"));
        }
        left -= n as u64;
        pos = (pos + n as u64) % CONTENT_SIZE;
    }
    Ok(())
}

/// An unlinked file of CONTENT_SIZE pattern bytes in memory (/dev/shm), kept open.
fn make_content() -> io::Result<File> {
    let dir = if std::path::Path::new("/dev/shm").is_dir() { "/dev/shm".into() } else { std::env::temp_dir() };
    let path = dir.join(format!("regbench-null-{}.bin", std::process::id()));
    let mut f = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
    std::fs::remove_file(&path)?;
    let chunk: Vec<u8> = (0..1u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    for _ in 0..CONTENT_SIZE >> 20 {
        f.write_all(&chunk)?;
    }
    Ok(f)
}

fn serve_conn(mut s: TcpStream, state: Arc<Mutex<State>>, content: Arc<File>, keep: bool) -> io::Result<()> {
    s.set_nodelay(true)?;
    let mut reader = if keep { Reader::keeping_all() } else { Reader::new() };
    let mut first = [0u8; 1];
    if s.peek(&mut first)? == 1 && first[0] == 0x16 {
        // A TLS handshake (docker and skopeo try https first): answer as Go's server does,
        // so that the client falls back to plain HTTP at once instead of timing out.
        s.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")?;
        return Ok(());
    }
    while let Some(head) = reader.read_head(&mut s)? {
        let mut body = Vec::new();
        let body_len = if head.is_chunked() {
            reader.read_chunked_body(&mut s, &mut body)?
        } else {
            reader.read_exact_body(&mut s, head.content_length().unwrap_or(0), &mut body)?
        };
        let r = handle(&state, &head, body_len, body);
        let mut out = format!("HTTP/1.1 {} {}\r\n", r.status, reason(r.status));
        let mut has_len = false;
        for (k, v) in &r.headers {
            has_len |= k.eq_ignore_ascii_case("content-length");
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        if !has_len {
            out.push_str(&format!("Content-Length: {}\r\n", r.body.len() as u64 + r.blob_len));
        }
        out.push_str("\r\n");
        let body: &[u8] = if head.first_line.starts_with("HEAD ") { &[] } else { &r.body };
        write_all_vectored(&mut s, &[out.as_bytes(), body])?;
        if let Some(data) = &r.blob_data {
            let start = r.blob_start as usize;
            s.write_all(&data[start..start + r.blob_len as usize])?;
        } else if r.blob_len > 0 {
            send_blob(&mut s, &content, r.blob_start, r.blob_len)?;
        }
    }
    Ok(())
}

pub fn serve(listen: &str, keep: bool) -> io::Result<()> {
    let listener = TcpListener::bind(listen)?;
    eprintln!("regbench null registry listening on {listen}{}", if keep { " (keeping blobs)" } else { "" });
    let state = Arc::new(Mutex::new(State { keep, ..State::default() }));
    let content = Arc::new(make_content()?);
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let (state, content) = (state.clone(), content.clone());
        std::thread::spawn(move || {
            let _ = serve_conn(conn, state, content, keep);
        });
    }
    Ok(())
}
