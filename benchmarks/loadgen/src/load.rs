//! The workloads: blob push (four ways), blob pull (whole or in ranges), and small requests
//! repeated for a fixed time. Each runs N threads, each with its own keep-alive connection,
//! taking jobs from one shared counter, and prints one JSON summary on stdout.
//!
//! A blob is a window `base[offset .. offset + size]` of a file of random bytes; its digest
//! was computed beforehand by the caller, so the client hashes nothing while it is timed.

use crate::http::{location_path, with_query, Body, Conn, Response};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Blob {
    pub digest: String,
    pub offset: usize,
    pub size: usize,
}

pub fn read_blob_list(path: &str) -> Vec<Blob> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Blob { digest: f[0].to_string(), offset: f[1].parse().unwrap(), size: f[2].parse().unwrap() }
        })
        .collect()
}

/// What every worker records; merged at the end.
#[derive(Default)]
pub struct Tally {
    pub ops: u64,
    pub requests: u64,
    pub bytes: u64,
    pub errors: u64,
    pub reconnects: u64,
    pub lat_us: Vec<u32>,
    pub samples: Vec<String>,
}

impl Tally {
    fn error(&mut self, msg: String) {
        self.errors += 1;
        if self.samples.len() < 5 {
            self.samples.push(msg);
        }
    }
    fn merge(&mut self, o: Tally) {
        self.ops += o.ops;
        self.requests += o.requests;
        self.bytes += o.bytes;
        self.errors += o.errors;
        self.reconnects += o.reconnects;
        self.lat_us.extend(o.lat_us);
        for s in o.samples {
            if self.samples.len() < 5 {
                self.samples.push(s);
            }
        }
    }
}

pub struct Target {
    pub addr: String,
    pub repo: String,
    pub token: Option<String>,
}

impl Target {
    fn headers<'a>(&'a self, auth: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut h: Vec<(&str, &str)> = extra.to_vec();
        if self.token.is_some() {
            h.push(("Authorization", auth));
        }
        h
    }
    fn auth_value(&self) -> String {
        self.token.as_ref().map(|t| format!("Bearer {t}")).unwrap_or_default()
    }
}

fn expect(r: &Response, want: &[u16], what: &str) -> Result<(), String> {
    if want.contains(&r.status) {
        Ok(())
    } else {
        let body = String::from_utf8_lossy(&r.body[..r.body.len().min(300)]).to_string();
        Err(format!("{what}: status {} body {body}", r.status))
    }
}

fn location(r: &Response, what: &str) -> Result<String, String> {
    r.header("location").map(location_path).ok_or_else(|| format!("{what}: no Location header"))
}

#[derive(Clone, Copy, PartialEq)]
pub enum PushMode {
    /// POST, one PATCH streamed with chunked transfer coding, PUT ?digest= (docker, containerd).
    Docker,
    /// POST, PATCHes of `chunk` bytes with Content-Range, PUT ?digest=.
    Chunked,
    /// POST, then PUT ?digest= carrying the whole blob.
    Monolithic,
    /// One POST ?digest= carrying the whole blob.
    Post,
}

pub fn parse_push_mode(s: &str) -> PushMode {
    match s {
        "docker" => PushMode::Docker,
        "chunked" => PushMode::Chunked,
        "monolithic" => PushMode::Monolithic,
        "post" => PushMode::Post,
        _ => panic!("unknown push mode {s}"),
    }
}

pub struct PushOpts {
    pub mode: PushMode,
    pub chunk: usize,
    pub te_chunk: usize,
}

/// Pushes one blob; returns the number of requests it took.
fn push_one(conn: &mut Conn, t: &Target, o: &PushOpts, data: &[u8], digest: &str) -> Result<u64, String> {
    let auth = t.auth_value();
    let octet = [("Content-Type", "application/octet-stream")];
    let start_path = format!("/v2/{}/blobs/uploads/", t.repo);
    let io = |e: std::io::Error| format!("io: {e}");
    if o.mode == PushMode::Post {
        let path = with_query(&start_path, "digest", digest);
        let r = conn.request("POST", &path, &t.headers(&auth, &octet), &Body::Fixed(&[data])).map_err(io)?;
        expect(&r, &[201], "monolithic POST")?;
        return Ok(1);
    }
    let r = conn.request("POST", &start_path, &t.headers(&auth, &[]), &Body::Empty).map_err(io)?;
    expect(&r, &[202], "start upload")?;
    let mut loc = location(&r, "start upload")?;
    let mut requests = 2;
    let put_body: &[&[u8]] = match o.mode {
        PushMode::Docker => {
            let r = conn.request("PATCH", &loc, &t.headers(&auth, &octet), &Body::Chunked(&[data], o.te_chunk)).map_err(io)?;
            expect(&r, &[202], "streamed PATCH")?;
            loc = location(&r, "streamed PATCH")?;
            requests += 1;
            &[]
        }
        PushMode::Chunked => {
            let mut off = 0;
            while off < data.len() {
                let end = (off + o.chunk).min(data.len());
                let range = format!("{}-{}", off, end - 1);
                let h = [("Content-Type", "application/octet-stream"), ("Content-Range", range.as_str())];
                let r = conn.request("PATCH", &loc, &t.headers(&auth, &h), &Body::Fixed(&[&data[off..end]])).map_err(io)?;
                expect(&r, &[202], "chunk PATCH")?;
                loc = location(&r, "chunk PATCH")?;
                requests += 1;
                off = end;
            }
            &[]
        }
        _ => std::slice::from_ref(&data),
    };
    let path = with_query(&loc, "digest", digest);
    let body = if put_body.is_empty() { Body::Empty } else { Body::Fixed(put_body) };
    let r = conn.request("PUT", &path, &t.headers(&auth, &octet), &body).map_err(io)?;
    expect(&r, &[201], "complete upload")?;
    Ok(requests)
}

/// Runs `jobs` jobs over `concurrency` threads; `work` does job i on the thread's connection
/// and answers Ok(true) when it did one, Ok(false) when the thread should stop.
fn run_jobs<F>(t: &Target, concurrency: usize, jobs: usize, work: F) -> (Tally, f64)
where
    F: Fn(&mut Conn, usize, &mut Tally) -> Result<bool, String> + Sync,
{
    let next = AtomicUsize::new(0);
    let total = Mutex::new(Tally::default());
    let began = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..concurrency {
            s.spawn(|| {
                let mut conn = Conn::new(&t.addr);
                let mut tally = Tally::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= jobs {
                        break;
                    }
                    let t0 = Instant::now();
                    match work(&mut conn, i, &mut tally) {
                        Ok(false) => break,
                        Ok(true) => {
                            tally.ops += 1;
                            tally.lat_us.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        }
                        Err(e) => tally.error(e),
                    }
                }
                tally.reconnects = conn.reconnects;
                total.lock().unwrap().merge(tally);
            });
        }
    });
    (total.into_inner().unwrap(), began.elapsed().as_secs_f64())
}

pub fn push(t: &Target, base: &[u8], blobs: &[Blob], concurrency: usize, o: &PushOpts) -> (Tally, f64) {
    run_jobs(t, concurrency, blobs.len(), |conn, i, tally| {
        let b = &blobs[i];
        let n = push_one(conn, t, o, &base[b.offset..b.offset + b.size], &b.digest)?;
        tally.requests += n;
        tally.bytes += b.size as u64;
        Ok(true)
    })
}

/// Pulls blobs whole (`range` = 0) or as consecutive ranges of `range` bytes.
pub fn pull(t: &Target, blobs: &[Blob], concurrency: usize, count: usize, range: usize) -> (Tally, f64) {
    let auth = t.auth_value();
    // Jobs: (blob index, first byte, last byte); whole pulls have first = last = usize::MAX.
    let mut jobs: Vec<(usize, usize, usize)> = Vec::new();
    for i in 0..count {
        let bi = i % blobs.len();
        if range == 0 {
            jobs.push((bi, usize::MAX, usize::MAX));
        } else {
            let mut off = 0;
            while off < blobs[bi].size {
                let end = (off + range).min(blobs[bi].size);
                jobs.push((bi, off, end - 1));
                off = end;
            }
        }
    }
    run_jobs(t, concurrency, jobs.len(), |conn, i, tally| {
        let (bi, first, last) = jobs[i];
        let b = &blobs[bi];
        let path = format!("/v2/{}/blobs/{}", t.repo, b.digest);
        let (r, want_status, want_len) = if first == usize::MAX {
            let r = conn.request("GET", &path, &t.headers(&auth, &[]), &Body::Empty);
            (r, 200, b.size as u64)
        } else {
            let rv = format!("bytes={first}-{last}");
            let r = conn.request("GET", &path, &t.headers(&auth, &[("Range", rv.as_str())]), &Body::Empty);
            (r, 206, (last - first + 1) as u64)
        };
        let r = r.map_err(|e| format!("io: {e}"))?;
        expect(&r, &[want_status], "GET blob")?;
        if r.body_len != want_len {
            return Err(format!("GET blob: {} bytes, expected {want_len}", r.body_len));
        }
        tally.requests += 1;
        tally.bytes += r.body_len;
        Ok(true)
    })
}

/// Repeats one small request until `duration` has passed.
pub fn requests(t: &Target, concurrency: usize, duration: Duration, method: &str, path: &str, extra: &[(String, String)], want: u16) -> (Tally, f64) {
    let auth = t.auth_value();
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let headers = t.headers(&auth, &extra);
    let deadline = Instant::now() + duration;
    run_jobs(t, concurrency, usize::MAX, |conn, _i, tally| {
        if Instant::now() >= deadline {
            return Ok(false);
        }
        let r = conn.request(method, path, &headers, &Body::Empty).map_err(|e| format!("io: {e}"))?;
        expect(&r, &[want], "request")?;
        tally.requests += 1;
        tally.bytes += r.body_len;
        Ok(true)
    })
}
