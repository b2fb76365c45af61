//! The CLI's only way to a node: its HTTP API.
//!
//! The node is found by `--server URL` / `DROVER_SERVER`, else through the data dir
//! (`--data-dir` / `DROVER_DATA_DIR`, default the platform data dir) where `serve` records its
//! address in `serve.json`. Its token is the one configured (`DROVER_TOKEN`, `--token-file`,
//! drover.toml), else — when the node is the one serving from the data dir — the node's local
//! token from `DATA_DIR/token`, readable by the node's user only. The local token is never sent
//! to any other address.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use serde::de::DeserializeOwned;

/// A failure talking to the node. Each kind has its exit code (see `--help`).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node answered with an error status.
    #[error("{message} (HTTP {status})")]
    Api {
        /// HTTP status.
        status: u16,
        /// The node's message (it starts with the field at fault, where there is one).
        message: String,
    },
    /// The node could not be reached, or the connection broke.
    #[error("cannot reach the drover node at {base}")]
    Unreachable {
        /// The node's address.
        base: String,
        /// What failed.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The TLS handshake failed: most often the node's certificate is not one this client
    /// trusts (self-signed, and no `--ca-file`), or names another host. Not retried: asking
    /// again gets the same certificate. rustls's error is described in the message (and kept
    /// here) rather than chained as a source, which would say it twice.
    #[error("{}", tls_message(base, reason))]
    Tls {
        /// The node's address.
        base: String,
        /// rustls's reason.
        reason: rustls::Error,
    },
    /// The node did not come back within [`RECONNECT_FOR`] of a lost connection.
    #[error("waited {}s for the node to come back", RECONNECT_FOR.as_secs())]
    GaveUp(#[source] Box<ClientError>),
    /// The node's answer is not what the API contract says (a field missing or of another
    /// type): the node and this CLI are of incompatible versions.
    #[error("the answer of the node at {base} to {path} is not one this drover reads")]
    BadAnswer {
        /// The node's address.
        base: String,
        /// What was asked.
        path: String,
        /// What did not decode.
        #[source]
        source: Box<ureq::Error>,
    },
}

impl ClientError {
    /// The process exit code for this failure: 2 when the node refused what the user typed
    /// (an invalid value, a body too large), 4 for everything else — the node could not be
    /// reached, refused the request (401, 403, 409), or has no such job (404).
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Api {
                status: 400 | 413 | 422,
                ..
            } => crate::exit::USAGE,
            _ => crate::exit::NODE,
        }
    }

    /// Whether the node may answer if asked again later (it is restarting).
    fn is_unreachable(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. })
    }
}

/// What the CLI says when TLS fails, in words, with what to do about it.
fn tls_message(base: &str, err: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    let rustls::Error::InvalidCertificate(problem) = err else {
        return format!("cannot speak HTTPS with the node at {base}: {err}");
    };
    let why = match problem {
        C::UnknownIssuer => "it is self-signed or signed by a CA this client does not trust".into(),
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "it does not name the host in the node's address (its subjectAltName)".into()
        }
        C::Expired | C::ExpiredContext { .. } => "it has expired".into(),
        C::NotValidYet | C::NotValidYetContext { .. } => "it is not valid yet".into(),
        C::BadSignature => "its signature does not verify".into(),
        // webpki's own reasons come as `Other`; this one is what `openssl req -x509` makes by
        // default, so it gets words of its own.
        other if format!("{other:?}").contains("CaUsedAsEndEntity") => {
            "it is a CA certificate (basicConstraints CA:TRUE) used as the server's own, which TLS clients refuse; make the node's certificate with CA:FALSE (README, \"HTTPS\")".into()
        }
        other => format!("{other:?}"),
    };
    format!(
        "the node at {base} presented a TLS certificate this client does not trust: {why}. If you trust it, pass --ca-file FILE with that certificate or the CA that signed it (or set DROVER_CA_FILE, or `ca_file` in drover.toml)"
    )
}

/// The rustls error inside a ureq error, if TLS is what failed. ureq reports a failed
/// handshake either as its own variant or as an I/O error wrapping rustls's (the handshake
/// runs inside the first read or write).
fn tls_failure(err: &ureq::Error) -> Option<rustls::Error> {
    match err {
        ureq::Error::Rustls(inner) => Some(inner.clone()),
        ureq::Error::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .cloned(),
        _ => None,
    }
}

/// A connection to one node.
pub struct Client {
    base: String,
    agent: ureq::Agent,
    /// Sent as `Authorization: Bearer` with every request, when set.
    token: Option<String>,
    /// How it was found, to find the node again after it restarted (on another port, maybe).
    found: Finding,
}

/// What [`Client::locate`] was given.
#[derive(Debug, Clone)]
struct Finding {
    server: Option<String>,
    data_dir: Option<PathBuf>,
    token: Option<String>,
    ca_file: Option<PathBuf>,
}

/// Whether this process has said it lost the node (several threads of `run` may wait for it at
/// once; the user hears it once).
static SAID_LOST: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// How long a client that lost its node (a restart, an upgrade) waits for it to come back.
pub const RECONNECT_FOR: Duration = Duration::from_secs(300);

/// The TLS settings of the CLI's agent: the public web PKI's roots, or those in `ca_file`.
fn tls_config(ca_file: Option<&Path>) -> anyhow::Result<ureq::tls::TlsConfig> {
    let builder = ureq::tls::TlsConfig::builder();
    let Some(path) = ca_file else {
        return Ok(builder.build());
    };
    let pem =
        std::fs::read(path).with_context(|| format!("reading the CA file {}", path.display()))?;
    let certs = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => Some(Ok(cert)),
            Ok(_) => None,
            Err(err) => Some(Err(err)),
        })
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading the CA file {}", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "the CA file {} holds no PEM certificate (\"BEGIN CERTIFICATE\")",
        path.display()
    );
    Ok(builder
        .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
        .build())
}

/// The platform data dir for drover: `$XDG_DATA_HOME/drover`, `~/.local/share/drover`, or on
/// macOS `~/Library/Application Support/drover`.
pub fn default_data_dir() -> anyhow::Result<PathBuf> {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(xdg).join("drover"));
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| anyhow!("HOME is not set; pass --data-dir"))?;
    Ok(data_dir_in_home(Path::new(&home)))
}

/// The platform data dir of an account whose home is `home` (without `XDG_DATA_HOME`).
pub fn data_dir_in_home(home: &Path) -> PathBuf {
    if cfg!(target_os = "macos") {
        home.join("Library/Application Support/drover")
    } else {
        home.join(".local/share/drover")
    }
}

impl Client {
    /// Finds the node: an explicit URL wins, else the address recorded in the data dir.
    /// `ca_file` holds the certificates trusted for an `https://` node instead of the public
    /// web PKI's roots.
    pub fn locate(
        server: Option<&str>,
        data_dir: Option<&Path>,
        token: Option<String>,
        ca_file: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let found = Finding {
            server: server.map(str::to_string),
            data_dir: data_dir.map(Path::to_path_buf),
            token: token.clone(),
            ca_file: ca_file.map(Path::to_path_buf),
        };
        let local = data_dir.and_then(|dir| drover_node::read_serve_info(dir).ok());
        let (base, is_local) = match server {
            Some(url) => {
                let url = url.trim_end_matches('/').to_string();
                let is_local = local.as_ref().is_some_and(|info| info.url == url);
                (url, is_local)
            }
            None => {
                let info = local.with_context(|| {
                    format!(
                        "no drover node found: nothing serves from {} (start one with `drover serve`, or pass --server URL)",
                        data_dir.map_or("no data dir".into(), |d| d.display().to_string())
                    )
                })?;
                (info.url, true)
            }
        };
        let token = token.or_else(|| {
            is_local
                .then(|| drover_node::datadir::read_local_token(data_dir?).ok())
                .flatten()
        });
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            // The node answers every request within its longest long-poll (60 s), and a log
            // stream sends its headers at once: a node that says nothing for this long is stuck,
            // and the client says so instead of hanging.
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .tls_config(tls_config(ca_file)?)
            // ureq's default buffers are 128 KiB each, zeroed and faulted in by every CLI
            // process: ~80 page faults and ~0.25 ms of a `drover submit` that sends 2 KiB. The
            // node's answers have small headers, and bodies stream through the buffer.
            .input_buffer_size(16 * 1024)
            .output_buffer_size(16 * 1024)
            .build()
            .new_agent();
        Ok(Self {
            base,
            agent,
            token,
            found,
        })
    }

    /// Runs `call` until it reaches the node: on a transport error (the node is restarting)
    /// it looks for the node again — its address may have changed — and retries, for up to
    /// [`RECONNECT_FOR`]. Says once on stderr that it waits. Answers from the node, errors
    /// included, are returned as they are.
    pub fn patiently<T>(
        &mut self,
        mut call: impl FnMut(&Client) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let mut since: Option<Instant> = None;
        let mut pause = Duration::from_millis(100);
        loop {
            match call(self) {
                Err(err) if err.is_unreachable() => {
                    let started = *since.get_or_insert_with(|| {
                        if !SAID_LOST.swap(true, std::sync::atomic::Ordering::SeqCst) {
                            eprintln!(
                                "drover: lost the node ({}); waiting for it to come back",
                                drover_core::error_chain(&err)
                            );
                        }
                        Instant::now()
                    });
                    if started.elapsed() > RECONNECT_FOR {
                        return Err(ClientError::GaveUp(Box::new(err)));
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(2));
                    self.relocate();
                }
                other => {
                    if since.is_some() && SAID_LOST.swap(false, std::sync::atomic::Ordering::SeqCst)
                    {
                        eprintln!("drover: the node is back");
                    }
                    return other;
                }
            }
        }
    }

    /// Looks for the node again, as [`Client::locate`] did; keeps the old address if it
    /// cannot find one.
    fn relocate(&mut self) {
        let f = self.found.clone();
        if let Ok(again) = Client::locate(
            f.server.as_deref(),
            f.data_dir.as_deref(),
            f.token,
            f.ca_file.as_deref(),
        ) {
            self.base = again.base;
            self.token = again.token;
        }
    }

    /// The node's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The token sent with every request, if there is one.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    fn authorized<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(token) => request.header("Authorization", format!("Bearer {token}")),
            None => request,
        }
    }

    fn check(
        mut response: ureq::http::Response<ureq::Body>,
    ) -> Result<ureq::http::Response<ureq::Body>, ClientError> {
        let status = response.status().as_u16();
        if status < 400 {
            return Ok(response);
        }
        let text = response.body_mut().read_to_string().unwrap_or_default();
        // An error answer is an `ErrorBody`; anything else (a proxy's page) is shown as it is.
        let message = serde_json::from_str::<drover_api::ErrorBody>(&text)
            .map(|body| body.error.message)
            .unwrap_or(text);
        Err(ClientError::Api { status, message })
    }

    fn unreachable(&self, err: ureq::Error) -> ClientError {
        if let Some(reason) = tls_failure(&err) {
            return ClientError::Tls {
                base: self.base.clone(),
                reason,
            };
        }
        ClientError::Unreachable {
            base: self.base.clone(),
            source: Box::new(err),
        }
    }

    fn bad_answer(&self, path: &str, err: ureq::Error) -> ClientError {
        ClientError::BadAnswer {
            base: self.base.clone(),
            path: path.to_string(),
            source: Box::new(err),
        }
    }

    /// GET `path` and decode JSON.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let response = self
            .authorized(self.agent.get(format!("{}{path}", self.base)))
            .call()
            .map_err(|e| self.unreachable(e))?;
        Self::check(response)?
            .body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_json()
            .map_err(|e| self.bad_answer(path, e))
    }

    /// POST `body` as JSON to `path` and decode JSON.
    pub fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T, ClientError> {
        // Compact JSON: ureq's `send_json` indents it, which made a batch of 10,000 specs a
        // third larger for both sides to write and parse.
        let bytes = serde_json::to_vec(body).map_err(|e| self.unreachable(ureq::Error::Json(e)))?;
        let response = self
            .authorized(self.agent.post(format!("{}{path}", self.base)))
            .content_type("application/json")
            .send(&bytes[..])
            .map_err(|e| self.unreachable(e))?;
        Self::check(response)?
            .body_mut()
            .read_json()
            .map_err(|e| self.bad_answer(path, e))
    }

    /// Subscribes to the node's event stream (`path` is `/v1/events` with its query) and hands
    /// each event to the returned channel from a thread of its own. The channel closes when
    /// the stream ends; the thread ends at the next event after the receiver is dropped.
    pub fn events(
        &self,
        path: &str,
    ) -> Result<std::sync::mpsc::Receiver<drover_api::Event>, ClientError> {
        use std::io::BufRead;
        let body = self.stream(path)?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut data = String::new();
            for line in std::io::BufReader::new(body).lines() {
                let Ok(line) = line else { return };
                if let Some(chunk) = line.strip_prefix("data:") {
                    data.push_str(chunk.trim_start());
                } else if line.is_empty() && !data.is_empty() {
                    // Only job events parse as events; `dropped`/`node_stopping` end the stream.
                    match serde_json::from_str::<drover_api::Event>(&data) {
                        Ok(event) => {
                            if tx.send(event).is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    }
                    data.clear();
                }
            }
        });
        Ok(rx)
    }

    /// GET `path` and return the body as a reader (for logs, which may be long or endless).
    pub fn stream(&self, path: &str) -> Result<impl Read + use<>, ClientError> {
        Ok(self.stream_with_attempt(path)?.1)
    }

    /// As [`Client::stream`], with the attempt a log answer says it is of.
    pub fn stream_with_attempt(
        &self,
        path: &str,
    ) -> Result<(Option<u32>, impl Read + use<>), ClientError> {
        let response = self
            .authorized(self.agent.get(format!("{}{path}", self.base)))
            .call()
            .map_err(|e| self.unreachable(e))?;
        let response = Self::check(response)?;
        let attempt = response
            .headers()
            .get(drover_api::ATTEMPT_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        Ok((attempt, response.into_body().into_reader()))
    }
}
