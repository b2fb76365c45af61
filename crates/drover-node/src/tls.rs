//! HTTPS: the API served over TLS (`serve --tls-cert --tls-key`), and the certificates a node
//! trusts when it reads from another node (`--ca-file`).
//!
//! One crypto provider (ring) is named explicitly everywhere, so a build that happens to link
//! a second one never has to guess. Handshakes run in their own tasks, off the accept loop: a
//! client that opens a connection and says nothing holds up nobody but itself, and is dropped
//! after [`HANDSHAKE_TIMEOUT`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections whose handshake is done, waiting for the server to take them.
const READY_BACKLOG: usize = 128;

/// Where a node's certificate and key are (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain: the node's certificate first, then any intermediates.
    pub cert: PathBuf,
    /// The private key of the first certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// A certificate, key or CA file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read.
    #[error("cannot read the {what} {}", path.display())]
    Read {
        /// What the file was to hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no PEM block of the kind needed, or a damaged one.
    #[error("the {what} {} holds no usable PEM {kind}: {detail}", path.display())]
    Pem {
        /// What the file was to hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The PEM block looked for.
        kind: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The crypto provider offers none of rustls's default protocol versions (a build fault).
    #[error("the TLS provider supports none of TLS 1.2 and 1.3")]
    Provider(#[source] rustls::Error),
    /// rustls refused the certificate and key (they do not belong together, say).
    #[error("the TLS certificate {} and key {} cannot be used together", cert.display(), key.display())]
    Refused {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        #[source]
        source: rustls::Error,
    },
}

/// The crypto provider drover uses for every TLS connection.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// The certificates in a PEM file, in order; at least one.
pub fn certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let bad = |detail: String| TlsError::Pem {
        what,
        path: path.to_path_buf(),
        kind: "CERTIFICATE",
        detail,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no \"BEGIN CERTIFICATE\" block".into()));
    }
    Ok(certs)
}

/// The server side of TLS for the API.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = certificates("TLS certificate", &files.cert)?;
    let pem = read("TLS key", &files.key)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        what: "TLS key",
        path: files.key.clone(),
        kind: "PRIVATE KEY",
        detail: e.to_string(),
    })?;
    let refused = |source| TlsError::Refused {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Provider)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(refused)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The roots a node trusts when it connects to another node over HTTPS: those in `ca_file`,
/// else the public web PKI's.
pub fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in certificates("CA file", path)? {
                roots.add(cert).map_err(|e| TlsError::Pem {
                    what: "CA file",
                    path: path.to_path_buf(),
                    kind: "CERTIFICATE",
                    detail: e.to_string(),
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Provider)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// A TCP listener that hands out connections once their TLS handshake is done: an
/// [`axum::serve::Listener`], so the API is served the same way with or without TLS.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `tcp`: every connection is handshaken in its own task. Stops when
    /// the listener is dropped.
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_BACKLOG);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = tcp.accept() => accepted,
                    () = tx.closed() => return,
                };
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        // Out of descriptors, mostly: wait for some to be freed, as axum does.
                        tracing::warn!(error = %err, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    if speaks_plain_http(&stream).await {
                        answer_plain_http(stream, local).await;
                        return;
                    }
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        // A client that does not trust the certificate ends the handshake:
                        // the client says why; here it is only noise.
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, error = %err, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { ready, local })
    }
}

/// Whether the client's first byte is a letter, as an HTTP request's method is, rather than a
/// TLS record's (a handshake starts with 0x16). Waits for that byte up to the handshake limit.
async fn speaks_plain_http(stream: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(
        tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await,
        Ok(Ok(1)) if first[0].is_ascii_uppercase()
    )
}

/// Tells a plain-HTTP client, in plain HTTP, to use HTTPS, instead of closing on it: `curl
/// http://…` and a mistyped `--server` then say what is wrong.
async fn answer_plain_http(mut stream: TcpStream, local: SocketAddr) {
    use tokio::io::AsyncWriteExt;
    let body = format!(
        "this drover node serves HTTPS only: use https://{local} (with --ca-file if its certificate is your own)\n"
    );
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.write_all(answer.as_bytes())).await;
    let _ = stream.shutdown().await;
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(pair) => pair,
            // The accept task ends only when this listener is dropped; until then, never.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path) -> TlsFiles {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        let files = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.cert, cert.cert.pem()).expect("write");
        std::fs::write(&files.key, cert.signing_key.serialize_pem()).expect("write");
        files
    }

    #[test]
    fn a_certificate_and_its_key_make_a_server_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = server_config(&pair(dir.path())).expect("config");
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn unusable_files_are_named_with_what_is_wrong() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = pair(dir.path());
        let missing = TlsFiles {
            cert: dir.path().join("nope.pem"),
            ..files.clone()
        };
        let err = server_config(&missing).expect_err("missing");
        assert!(
            err.to_string().contains("cannot read the TLS certificate"),
            "{err}"
        );
        assert!(err.to_string().contains("nope.pem"), "{err}");

        // The key where the certificate should be: no CERTIFICATE block.
        let swapped = TlsFiles {
            cert: files.key.clone(),
            key: files.cert.clone(),
        };
        let err = server_config(&swapped).expect_err("swapped");
        assert!(
            err.to_string().contains("holds no usable PEM CERTIFICATE"),
            "{err}"
        );

        // Another certificate's key.
        let other = pair(&{
            let d = dir.path().join("other");
            std::fs::create_dir(&d).expect("mkdir");
            d
        });
        let mismatched = TlsFiles {
            cert: files.cert.clone(),
            key: other.key,
        };
        let err = server_config(&mismatched).expect_err("mismatched");
        assert!(err.to_string().contains("cannot be used together"), "{err}");
    }

    #[test]
    fn a_ca_file_replaces_the_public_roots() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = pair(dir.path());
        client_config(Some(&files.cert)).expect("own CA");
        client_config(None).expect("public roots");
        let err = client_config(Some(&files.key)).expect_err("a key is no CA");
        assert!(err.to_string().contains("CA file"), "{err}");
    }
}
