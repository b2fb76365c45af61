//! The API fuzzer: keep-alive connections send valid, mutated, deep, huge and nonsense requests
//! as fast as the node answers. Every request must get an answer (a connection may close only
//! after an answer that says `Connection: close`), no answer may be a 5xx, and afterwards the
//! store must pass `integrity_check` with every row readable through the API.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::http::{Answer, Conn, Failure, Rng};
use super::integrity_check;
use crate::node::Node;

/// What the fuzzer saw.
#[derive(Debug, Clone, Default)]
pub struct Fuzz {
    pub connections: usize,
    pub requests: usize,
    /// Answers by status code.
    pub statuses: BTreeMap<u16, usize>,
    /// Requests that got no answer (or could not be sent) on a connection that was not told
    /// to close.
    pub dropped: usize,
    /// Requests the node closed the connection on while they were being sent (a body past the
    /// limit can be answered 413 and the connection closed before all of it is written).
    pub cut_while_sending: usize,
    /// Requests by kind.
    pub kinds: BTreeMap<&'static str, usize>,
    /// The first few failures, for the report.
    pub examples: Vec<String>,
    /// Jobs the node said it stored, and how many of them the API then listed.
    pub stored: usize,
    pub listed: usize,
    pub integrity: String,
}

impl Fuzz {
    pub fn server_errors(&self) -> usize {
        self.statuses
            .iter()
            .filter(|(code, _)| **code >= 500)
            .map(|(_, n)| n)
            .sum()
    }
}

/// Sends `requests` requests over `connections` connections to a fresh node.
pub fn run(
    drover: &Path,
    scratch: &Path,
    requests: usize,
    connections: usize,
) -> anyhow::Result<Fuzz> {
    let data = scratch.join("fuzz").join("data");
    let node = Node::start(drover, &data, &["--slots", "2"])?;
    // The jobs it submits wait in a paused queue: the fuzz is of the API, not of 2 CPUs.
    node.cli_ok(&["queue", "pause", "fuzz"])?;
    let port = node.port()?;
    let bearer = format!("Bearer {}", node.token()?);
    let shared = Arc::new(Mutex::new(Fuzz {
        connections,
        ..Fuzz::default()
    }));
    let per = requests.div_ceil(connections);
    let threads: Vec<_> = (0..connections)
        .map(|i| {
            let shared = Arc::clone(&shared);
            let bearer = bearer.clone();
            std::thread::spawn(move || {
                fuzz_one(port, &bearer, per, 0xf022_0000 + i as u64, &shared)
            })
        })
        .collect();
    for thread in threads {
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("a fuzzing thread panicked"))??;
    }
    let mut fuzz = shared
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    // Every row readable: the whole listing pages through the API without an error.
    fuzz.listed = node.jobs(10_000_000)?.len();
    node.stop()?;
    fuzz.integrity = integrity_check(&data.join("drover.db"))?;
    Ok(fuzz)
}

fn fuzz_one(
    port: u16,
    bearer: &str,
    requests: usize,
    seed: u64,
    shared: &Mutex<Fuzz>,
) -> anyhow::Result<()> {
    let mut rng = Rng::new(seed);
    let mut conn = Conn::open(port, bearer)?;
    let mut local = Fuzz::default();
    let mut known: Vec<String> = Vec::new();
    for _ in 0..requests {
        let request = make(&mut rng, &known, port, bearer);
        *local.kinds.entry(request.kind).or_insert(0) += 1;
        local.requests += 1;
        let answer = conn.request(
            &request.method,
            &request.path,
            &request.body,
            request.raw_head.as_deref(),
        );
        match answer {
            Ok(Answer {
                status,
                close,
                body,
            }) => {
                *local.statuses.entry(status).or_insert(0) += 1;
                if status >= 500 && local.examples.len() < 5 {
                    local.examples.push(format!(
                        "{status} for {} {} ({}): {}",
                        request.method,
                        request.path,
                        request.kind,
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    ));
                }
                let submitted = request.path == "/v1/jobs"
                    || request
                        .raw_head
                        .as_deref()
                        .is_some_and(|h| h.starts_with("POST /v1/jobs "));
                if status == 201 && submitted {
                    if let Some(id) = serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v["id"].as_str().map(str::to_string))
                    {
                        local.stored += 1;
                        if known.len() < 256 {
                            known.push(id);
                        }
                    } else if let Some(ids) = serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v["ids"].as_array().map(Vec::len))
                    {
                        local.stored += ids;
                    }
                }
                if close {
                    conn = Conn::open(port, bearer)?;
                }
            }
            // A body past the limit may be answered and closed before it is all written;
            // any other request that cannot be sent met a connection closed without a word.
            Err(Failure::Send(_)) if request.kind == "huge body" => {
                local.cut_while_sending += 1;
                conn = Conn::open(port, bearer)?;
            }
            Err(Failure::Send(err)) => {
                local.dropped += 1;
                if local.examples.len() < 5 {
                    local.examples.push(format!(
                        "cannot send {} {} ({}): {err}",
                        request.method, request.path, request.kind
                    ));
                }
                conn = Conn::open(port, bearer)?;
            }
            Err(Failure::NoAnswer(why)) => {
                local.dropped += 1;
                if local.examples.len() < 5 {
                    local.examples.push(format!(
                        "no answer to {} {} ({}): {why}",
                        request.method, request.path, request.kind
                    ));
                }
                conn = Conn::open(port, bearer)?;
            }
        }
    }
    let mut all = shared.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    all.requests += local.requests;
    all.dropped += local.dropped;
    all.cut_while_sending += local.cut_while_sending;
    all.stored += local.stored;
    for (k, v) in local.statuses {
        *all.statuses.entry(k).or_insert(0) += v;
    }
    for (k, v) in local.kinds {
        *all.kinds.entry(k).or_insert(0) += v;
    }
    for e in local.examples {
        if all.examples.len() < 10 {
            all.examples.push(e);
        }
    }
    Ok(())
}

struct Request {
    kind: &'static str,
    method: String,
    path: String,
    body: Vec<u8>,
    /// A head written as is (bad framing, odd headers) instead of the usual one.
    raw_head: Option<String>,
}

impl Request {
    fn new(kind: &'static str, method: &str, path: &str, body: Vec<u8>) -> Request {
        Request {
            kind,
            method: method.to_string(),
            path: path.to_string(),
            body,
            raw_head: None,
        }
    }
}

const VALID: &str = r#"{"argv":["true"],"cwd":"/","queue":"fuzz","priority":3,"timeout":"1h","retries":1,"require":{"k":"v"},"memory":"1G"}"#;

/// Paths that answer, and the ones with path parameters filled in later. Streaming endpoints
/// (`/v1/events`, waits, followed logs) are left out: they answer over minutes by design.
const PATHS: &[&str] = &[
    "/v1/jobs",
    "/v1/jobs?limit=5",
    "/v1/jobs?limit=1001",
    "/v1/jobs?limit=-1",
    "/v1/jobs?state=queued&limit=3",
    "/v1/jobs?state=nonsense",
    "/v1/jobs?before=zzz",
    "/v1/counts",
    "/v1/health",
    "/v1/node",
    "/v1/nodes",
    "/v1/queues",
    "/v1/groups",
    "/v1/groups?limit=2",
    "/v1/dlq",
    "/v1/dlq?limit=0",
    "/metrics",
    "/",
    "/web/app.js",
    "/v1/resolve",
    "/v1/cancel",
    "/v1/retry",
    "/v1/dlq/dismiss",
    "/v1/queues/fuzz",
    "/v1/jobs/ID",
    "/v1/jobs/ID/logs?stream=stdout",
    "/v1/jobs/ID/logs?stream=nonsense",
    "/v1/jobs/ID/priority",
    "/v1/jobs/ID/edit",
    "/v1/groups/ID",
    "/v1/groups/ID/results",
    "/v1/nodes/ID/drain",
];

fn make(rng: &mut Rng, known: &[String], port: u16, bearer: &str) -> Request {
    let id = if known.is_empty() || rng.below(4) == 0 {
        random_word(rng)
    } else {
        rng.pick(known).clone()
    };
    match rng.below(100) {
        0..=24 => Request::new(
            "valid submit",
            "POST",
            "/v1/jobs",
            VALID.as_bytes().to_vec(),
        ),
        25..=44 => Request::new(
            "mutated JSON",
            "POST",
            "/v1/jobs",
            mutate(rng, VALID.as_bytes()),
        ),
        45..=49 => {
            let batch = format!("[{VALID},{VALID}]");
            Request::new(
                "mutated batch",
                "POST",
                "/v1/jobs",
                mutate(rng, batch.as_bytes()),
            )
        }
        50..=54 => {
            let depth = 1 + rng.below(20_000);
            let open = if rng.below(2) == 0 { "[" } else { "{\"a\":" };
            let mut body = format!("{{\"argv\":{}", open.repeat(depth));
            body.push_str(&"]".repeat(rng.below(depth + 1)));
            Request::new("deep JSON", "POST", "/v1/jobs", body.into_bytes())
        }
        // Bodies past the 8 MiB limit are few: each costs the node a drain.
        55 if rng.below(50) == 0 => {
            let size = (8 << 20) + 1 + rng.below(4 << 20);
            Request::new("huge body", "POST", "/v1/jobs", vec![b'x'; size])
        }
        55..=69 => {
            let path = rng.pick(PATHS).replace("ID", &id);
            Request::new("known path", "GET", &path, Vec::new())
        }
        70..=79 => {
            let method = *rng.pick(&[
                "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE", "POST", "GET", "BREW",
            ]);
            let path = rng.pick(PATHS).replace("ID", &id);
            // HEAD has an answer without a body: its length header would mislead the reader.
            let method = if method == "HEAD" { "GET" } else { method };
            let body = if rng.below(2) == 0 {
                mutate(rng, br#"{"ids":["x"],"priority":5,"concurrency":2}"#)
            } else {
                Vec::new()
            };
            Request::new("odd method", method, &path, body)
        }
        80..=89 => {
            let mut path = String::new();
            for _ in 0..1 + rng.below(5) {
                path.push('/');
                path.push_str(&random_word(rng));
            }
            if rng.below(3) == 0 {
                path.push_str(&format!(
                    "?limit={}&follow=false&x=%ff%00",
                    rng.next() as i64
                ));
            }
            let method: &&str = rng.pick(&["GET", "POST"]);
            Request::new("random path", method, &path, mutate(rng, b"{}"))
        }
        90..=94 => {
            // Odd framing and headers: no token, a bad token, a foreign Origin, a length that
            // is a lie in the short direction (the rest is read as the next request's start).
            let variants = [
                format!("GET /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"),
                format!(
                    "GET /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer nope\r\n\r\n"
                ),
                format!(
                    "POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {bearer}\r\nOrigin: http://evil.example\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    VALID.len()
                ),
                format!(
                    "POST /v1/jobs HTTP/1.1\r\nHost: evil.example\r\nAuthorization: {bearer}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    VALID.len()
                ),
                format!(
                    "POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {bearer}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                    VALID.len()
                ),
                format!(
                    "POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {bearer}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{VALID}\r\n0\r\n\r\n",
                    VALID.len()
                ),
            ];
            let head = rng.pick(&variants).clone();
            let body = if head.starts_with("POST") && !head.contains("chunked") {
                VALID.as_bytes().to_vec()
            } else {
                Vec::new()
            };
            let mut request = Request::new("odd headers", "RAW", "(raw)", body);
            request.raw_head = Some(head);
            request
        }
        _ => {
            let body = format!(r#"{{"ids":["{id}"]}}"#);
            let path = *rng.pick(&["/v1/cancel", "/v1/resolve", "/v1/retry", "/v1/dlq/dismiss"]);
            Request::new("id request", "POST", path, body.into_bytes())
        }
    }
}

/// A copy of `valid` with a few random edits: flipped bytes, cuts, insertions of JSON's
/// punctuation and of bytes that are not UTF-8.
fn mutate(rng: &mut Rng, valid: &[u8]) -> Vec<u8> {
    let mut body = valid.to_vec();
    for _ in 0..1 + rng.below(4) {
        if body.is_empty() {
            body.push(b'{');
        }
        let at = rng.below(body.len());
        match rng.below(6) {
            0 => body[at] ^= 1 << rng.below(8),
            1 => body.truncate(at),
            2 => body.insert(at, *rng.pick(b"{}[]\",:\\0-e.")),
            3 => body.insert(at, *rng.pick(&[0xff, 0xc3, 0x00, 0x80])),
            4 => {
                body.remove(at);
            }
            _ => {
                let number = format!("{}", rng.next() as i64);
                body.splice(at..at, number.bytes());
            }
        }
    }
    body
}

fn random_word(rng: &mut Rng) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-_.%~";
    (0..1 + rng.below(40))
        .map(|_| *rng.pick(CHARS) as char)
        .collect()
}
