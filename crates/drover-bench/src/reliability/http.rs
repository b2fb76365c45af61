//! A raw HTTP/1.1 keep-alive connection: requests written byte for byte (so a fuzzer can send
//! what no client library would), answers read whole, and a dropped connection told apart from
//! one the server closed on purpose (`Connection: close`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// How long an answer may take before the connection counts as dropped.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// One answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// The server said `Connection: close`: the next request needs a new connection.
    pub close: bool,
    pub body: Vec<u8>,
}

/// What went wrong with a request.
#[derive(Debug)]
pub enum Failure {
    /// The request could not be sent whole (the server had closed the connection).
    Send(std::io::Error),
    /// It was sent, and no answer came: the connection broke or closed first.
    NoAnswer(String),
}

/// One connection to a node.
pub struct Conn {
    port: u16,
    bearer: String,
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(port: u16, bearer: &str) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            port,
            bearer: bearer.to_string(),
            reader: BufReader::new(stream),
        })
    }

    /// Sends `method path` with `body`, the usual headers (host, token, JSON, length) unless
    /// `raw_head` replaces them, and reads the answer.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
        raw_head: Option<&str>,
    ) -> Result<Answer, Failure> {
        let head = match raw_head {
            Some(head) => head.to_string(),
            None => format!(
                "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                self.port,
                self.bearer,
                body.len()
            ),
        };
        let stream = self.reader.get_mut();
        stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(body))
            .map_err(Failure::Send)?;
        self.read_answer().map_err(Failure::NoAnswer)
    }

    fn read_answer(&mut self) -> Result<Answer, String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => return Err("closed before the status line".into()),
            Ok(_) => {}
            Err(err) => return Err(format!("status line: {err}")),
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no status in {line:?}"))?;
        let mut length: Option<usize> = None;
        let mut chunked = false;
        let mut close = false;
        loop {
            let mut header = String::new();
            match self.reader.read_line(&mut header) {
                Ok(0) => return Err("closed in the headers".into()),
                Ok(_) => {}
                Err(err) => return Err(format!("headers: {err}")),
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                return Err(format!("bad header line {header:?}"));
            };
            let value = value.trim().to_ascii_lowercase();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse().ok(),
                "transfer-encoding" => chunked = value.contains("chunked"),
                "connection" => close = value.contains("close"),
                _ => {}
            }
        }
        let body = if chunked {
            self.read_chunked()?
        } else {
            let mut body = vec![0; length.unwrap_or(0)];
            self.reader
                .read_exact(&mut body)
                .map_err(|e| format!("body: {e}"))?;
            body
        };
        Ok(Answer {
            status,
            close,
            body,
        })
    }

    fn read_chunked(&mut self) -> Result<Vec<u8>, String> {
        let mut body = Vec::new();
        loop {
            let mut size = String::new();
            self.reader
                .read_line(&mut size)
                .map_err(|e| format!("chunk size: {e}"))?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| format!("bad chunk size {size:?}"))?;
            let mut chunk = vec![0; size + 2];
            self.reader
                .read_exact(&mut chunk)
                .map_err(|e| format!("chunk: {e}"))?;
            if size == 0 {
                return Ok(body);
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
}

/// A small, seeded random source (xorshift64*): the same seed sends the same requests, so a
/// failure the fuzzer finds can be sent again.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}
