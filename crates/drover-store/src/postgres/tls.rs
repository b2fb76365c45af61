//! TLS to PostgreSQL, as libpq's `sslmode` and `sslrootcert` say.
//!
//! `tokio-postgres` knows `sslmode=disable|prefer|require` and nothing of certificates, so the
//! two parameters are taken out of the URL here, and the connector gets the checks libpq makes:
//!
//! | `sslmode`     | encrypted             | the server's certificate is checked            |
//! |---------------|-----------------------|------------------------------------------------|
//! | (none)        | no                    | —                                              |
//! | `disable`     | no                    | —                                              |
//! | `allow`, `prefer` | if the server can | no                                             |
//! | `require`     | yes                   | no; with `sslrootcert`, as `verify-ca`         |
//! | `verify-ca`   | yes                   | signed by a root of `sslrootcert`              |
//! | `verify-full` | yes                   | signed so, and naming the host connected to    |
//!
//! The roots are `sslrootcert`'s (a PEM file); without it, or with `sslrootcert=system`, the
//! public web PKI's. Unlike libpq, no URL without `sslmode` tries TLS: drover encrypts only
//! where the URL asks it to.

use std::path::Path;
use std::sync::Arc;

use postgres::Config;
use rustls::DigitallySignedStruct;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How connections to the server are made: in clear, or through TLS with the checks asked.
#[derive(Clone)]
pub(crate) enum Tls {
    /// No TLS.
    Off,
    /// TLS, with the `sslmode`'s checks.
    On(MakeRustlsConnect),
}

/// What the server's certificate must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Nothing: encryption against eavesdroppers only (`prefer`, `require`).
    Nothing,
    /// Signed by a trusted root (`verify-ca`).
    Chain,
    /// Signed by a trusted root, for the host connected to (`verify-full`).
    ChainAndName,
}

/// Parses `url` with its TLS parameters: the connection settings, and how to make connections.
pub(crate) fn parse(url: &str) -> Result<(Config, Tls), String> {
    let (rest, mode, root) = take_tls_params(url);
    let mut config: Config = rest.parse().map_err(|e: postgres::Error| e.to_string())?;
    let (ssl_mode, check) = match mode.as_deref() {
        None | Some("disable") => return Ok((config, Tls::Off)),
        Some("allow" | "prefer") => (postgres::config::SslMode::Prefer, Check::Nothing),
        Some("require") if root.is_some() => (postgres::config::SslMode::Require, Check::Chain),
        Some("require") => (postgres::config::SslMode::Require, Check::Nothing),
        Some("verify-ca") => (postgres::config::SslMode::Require, Check::Chain),
        Some("verify-full") => (postgres::config::SslMode::Require, Check::ChainAndName),
        Some(other) => {
            return Err(format!(
                "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
            ));
        }
    };
    config.ssl_mode(ssl_mode);
    let tls = client_config(check, root.as_deref())?;
    Ok((config, Tls::On(MakeRustlsConnect::new(tls))))
}

/// `url` without `sslmode` and `sslrootcert`, and their values. Both forms of connection
/// string are read: a URL's query (`?sslmode=require&…`) and `key=value` words.
fn take_tls_params(url: &str) -> (String, Option<String>, Option<String>) {
    let mut mode = None;
    let mut root = None;
    let mut take = |key: &str, value: &str| match key {
        "sslmode" => {
            mode = Some(value.to_string());
            true
        }
        "sslrootcert" => {
            root = Some(percent_decode(value));
            true
        }
        _ => false,
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            Some((base, query)) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|pair| {
                        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                        !take(key, value)
                    })
                    .collect();
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
            None => url.to_string(),
        }
    } else {
        url.split_whitespace()
            .filter(|word| {
                let (key, value) = word.split_once('=').unwrap_or((word, ""));
                !take(key.trim(), value.trim().trim_matches('\''))
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    (rest, mode, root)
}

/// `%2F` and friends, as a URL's query may spell a path.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The roots: `sslrootcert`'s certificates, or the web PKI's.
fn roots(root: Option<&str>) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    match root {
        None | Some("system") => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(path) => {
            let pem = std::fs::read(Path::new(path))
                .map_err(|e| format!("cannot read sslrootcert {path}: {e}"))?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("sslrootcert {path} is not PEM: {e}"))?;
            if certs.is_empty() {
                return Err(format!("sslrootcert {path} holds no certificate"));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("sslrootcert {path}: {e}"))?;
            }
        }
    }
    Ok(roots)
}

fn client_config(check: Check, root: Option<&str>) -> Result<rustls::ClientConfig, String> {
    let provider = provider();
    let verifier: Arc<dyn ServerCertVerifier> = match check {
        Check::Nothing => Arc::new(AnyCertificate(Arc::clone(&provider))),
        Check::Chain | Check::ChainAndName => {
            let webpki = WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots(root)?),
                Arc::clone(&provider),
            )
            .build()
            .map_err(|e| e.to_string())?;
            Arc::new(Verified {
                webpki,
                check_name: check == Check::ChainAndName,
            })
        }
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// `require` without roots: any certificate, as libpq does. The handshake's signatures are
/// still checked, so the session key belongs to whoever holds the certificate's key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca` and `verify-full`: the chain to a trusted root, and for `verify-full` the name.
#[derive(Debug)]
struct Verified {
    webpki: Arc<WebPkiServerVerifier>,
    check_name: bool,
}

impl ServerCertVerifier for Verified {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            // webpki checks the name last, so the chain is good when only the name is wrong.
            Err(rustls::Error::InvalidCertificate(
                NotValidForName | NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_of_both_forms() {
        let (rest, mode, root) = take_tls_params(
            "postgres://u@db.lan/drover?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca.pem",
        );
        assert_eq!(rest, "postgres://u@db.lan/drover?application_name=x");
        assert_eq!(mode.as_deref(), Some("verify-full"));
        assert_eq!(root.as_deref(), Some("/etc/ca.pem"));

        let (rest, mode, root) = take_tls_params("postgres://u@db.lan/drover?sslmode=require");
        assert_eq!(rest, "postgres://u@db.lan/drover");
        assert_eq!((mode.as_deref(), root), (Some("require"), None));

        let (rest, mode, root) =
            take_tls_params("host=db.lan user=u sslmode=verify-ca sslrootcert=/ca.pem");
        assert_eq!(rest, "host=db.lan user=u");
        assert_eq!(mode.as_deref(), Some("verify-ca"));
        assert_eq!(root.as_deref(), Some("/ca.pem"));

        let (rest, mode, _) = take_tls_params("postgres://u@db.lan/drover");
        assert_eq!((rest.as_str(), mode), ("postgres://u@db.lan/drover", None));
    }

    #[test]
    fn each_sslmode_makes_its_connector() {
        let off = |url: &str| matches!(parse(url).expect("parses").1, Tls::Off);
        assert!(off("postgres://u@h/d"));
        assert!(off("postgres://u@h/d?sslmode=disable"));
        for mode in ["prefer", "require", "verify-ca", "verify-full"] {
            assert!(!off(&format!("postgres://u@h/d?sslmode={mode}")), "{mode}");
        }
        let err = parse("postgres://u@h/d?sslmode=sometimes")
            .map(|_| ())
            .expect_err("refused");
        assert!(err.contains("sslmode=sometimes"), "{err}");
        let err = parse("postgres://u@h/d?sslmode=verify-full&sslrootcert=/nonexistent.pem")
            .map(|_| ())
            .expect_err("refused");
        assert!(
            err.contains("cannot read sslrootcert /nonexistent.pem"),
            "{err}"
        );
    }
}
