//! regbench: the regd benchmark suite's load generator and do-nothing registry.
//!
//!   regbench push     --addr H:P --repo R --blobs FILE --base FILE --concurrency N
//!                     --mode docker|chunked|monolithic|post [--chunk BYTES] [--te-chunk BYTES]
//!   regbench pull     --addr H:P --repo R --blobs FILE --concurrency N [--count N] [--range BYTES]
//!   regbench requests --addr H:P --concurrency N --seconds S --method M --path P
//!                     [--header "K: V"]... [--expect STATUS]
//!   regbench serve    --listen H:P [--keep yes]
//!
//! Every load command also takes [--token T] (sent as a bearer token) and prints one JSON
//! object: ops, requests, bytes, seconds, errors, error_samples, reconnects, latency in ms.
//! Std only: the build must work without a crates registry.

mod http;
mod load;
mod null;
mod sha256;

use load::{PushOpts, Tally, Target};
use std::collections::HashMap;
use std::time::Duration;

struct Args {
    values: HashMap<String, Vec<String>>,
}

impl Args {
    fn parse(raw: &[String]) -> Args {
        let mut values: HashMap<String, Vec<String>> = HashMap::new();
        let mut it = raw.iter();
        while let Some(k) = it.next() {
            let key = k.strip_prefix("--").unwrap_or_else(|| die(&format!("unexpected argument {k}")));
            let v = it.next().unwrap_or_else(|| die(&format!("--{key} needs a value")));
            values.entry(key.to_string()).or_default().push(v.clone());
        }
        Args { values }
    }
    fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).and_then(|v| v.last()).map(|s| s.as_str())
    }
    fn req(&self, key: &str) -> &str {
        self.get(key).unwrap_or_else(|| die(&format!("--{key} is required")))
    }
    fn num(&self, key: &str, default: usize) -> usize {
        self.get(key).map(|v| v.parse().unwrap_or_else(|_| die(&format!("--{key}: not a number")))).unwrap_or(default)
    }
    fn all(&self, key: &str) -> Vec<String> {
        self.values.get(key).cloned().unwrap_or_default()
    }
}

fn die(msg: &str) -> ! {
    eprintln!("regbench: {msg}");
    std::process::exit(2);
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn report(mut t: Tally, seconds: f64) {
    t.lat_us.sort_unstable();
    let samples: Vec<String> = t.samples.iter().map(|s| json_str(s)).collect();
    println!(
        "{{\"ops\":{},\"requests\":{},\"bytes\":{},\"seconds\":{:.6},\"errors\":{},\"reconnects\":{},\
         \"latency_ms\":{{\"p50\":{:.3},\"p90\":{:.3},\"p99\":{:.3},\"max\":{:.3}}},\"error_samples\":[{}]}}",
        t.ops,
        t.requests,
        t.bytes,
        seconds,
        t.errors,
        t.reconnects,
        percentile(&t.lat_us, 0.50),
        percentile(&t.lat_us, 0.90),
        percentile(&t.lat_us, 0.99),
        percentile(&t.lat_us, 1.0),
        samples.join(",")
    );
}

fn target(a: &Args) -> Target {
    Target {
        addr: a.req("addr").to_string(),
        repo: a.get("repo").unwrap_or("bench/blobs").to_string(),
        token: a.get("token").map(|s| s.to_string()),
    }
}

fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = raw.first() else { die("usage: regbench push|pull|requests|serve --help") };
    let a = Args::parse(&raw[1..]);
    match cmd.as_str() {
        "serve" => null::serve(a.req("listen"), a.get("keep") == Some("yes")).unwrap_or_else(|e| die(&format!("serve: {e}"))),
        "push" => {
            let base = std::fs::read(a.req("base")).unwrap_or_else(|e| die(&format!("base: {e}")));
            let blobs = load::read_blob_list(a.req("blobs"));
            let opts = PushOpts {
                mode: load::parse_push_mode(a.req("mode")),
                chunk: a.num("chunk", 4 << 20),
                te_chunk: a.num("te-chunk", 32 << 10),
            };
            let (t, s) = load::push(&target(&a), &base, &blobs, a.num("concurrency", 1), &opts);
            report(t, s);
        }
        "pull" => {
            let blobs = load::read_blob_list(a.req("blobs"));
            let count = a.num("count", blobs.len());
            let (t, s) = load::pull(&target(&a), &blobs, a.num("concurrency", 1), count, a.num("range", 0));
            report(t, s);
        }
        "requests" => {
            let headers: Vec<(String, String)> = a
                .all("header")
                .iter()
                .map(|h| h.split_once(':').unwrap_or_else(|| die("--header wants 'Name: value'")))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect();
            let (t, s) = load::requests(
                &target(&a),
                a.num("concurrency", 1),
                Duration::from_secs_f64(a.req("seconds").parse().unwrap_or_else(|_| die("--seconds"))),
                a.req("method"),
                a.req("path"),
                &headers,
                a.num("expect", 200) as u16,
            );
            report(t, s);
        }
        other => die(&format!("unknown command {other}")),
    }
}
