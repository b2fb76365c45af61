//! HTTPS: a node serving its API over TLS with a certificate from a private CA, and the CLI
//! that trusts it only when told to (`--ca-file`), saying why when it does not.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{Node, stdout};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A private CA and, signed by it, certificates for the names asked; PEM files in `dir`.
struct Pki {
    ca: PathBuf,
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "drover test CA");
        let cert = params.self_signed(&key).expect("CA");
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, cert.pem()).expect("write CA");
        Pki {
            ca,
            dir: dir.to_path_buf(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `names`: (certificate file, key file).
    fn server(&self, tag: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("key");
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let (cert_file, key_file) = (
            self.dir.join(format!("{tag}.pem")),
            self.dir.join(format!("{tag}.key")),
        );
        std::fs::write(&cert_file, cert.pem()).expect("write cert");
        std::fs::write(&key_file, key.serialize_pem()).expect("write key");
        (cert_file, key_file)
    }
}

fn https_node(cert: &Path, key: &Path) -> Node {
    Node::start(&[
        "--tls-cert",
        cert.to_str().expect("utf-8"),
        "--tls-key",
        key.to_str().expect("utf-8"),
    ])
}

/// The CLI against `node`, trusting the certificates in `ca`.
fn trusting(node: &Node, ca: &Path, args: &[&str]) -> std::process::Output {
    node.command(args)
        .env("DROVER_CA_FILE", ca)
        .output()
        .expect("run drover")
}

/// `drover submit ARGS` through a CLI trusting `ca`, then waits for the job to succeed: its id.
fn run_over_https(node: &Node, ca: &Path, args: &[&str]) -> String {
    let submitted = trusting(node, ca, &[&["submit"][..], args].concat());
    assert!(
        submitted.status.success(),
        "{}",
        String::from_utf8_lossy(&submitted.stderr)
    );
    let id = stdout(&submitted).trim().to_string();
    let waited = trusting(node, ca, &["wait", &id]);
    assert!(
        waited.status.success(),
        "{}",
        String::from_utf8_lossy(&waited.stderr)
    );
    id
}

#[test]
fn the_cli_uses_an_https_node_with_its_ca_and_says_why_it_refuses_without() {
    let pki_dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(pki_dir.path());
    let (cert, key) = pki.server("node", &["localhost", "127.0.0.1"]);
    let node = https_node(&cert, &key);
    assert!(
        node.url().starts_with("https://127.0.0.1:"),
        "{}",
        node.url()
    );

    // Trusting the CA: submit, wait and read the output, all over HTTPS.
    let id = run_over_https(&node, &pki.ca, &["--", "sh", "-c", "echo over-tls"]);
    assert_eq!(
        stdout(&trusting(&node, &pki.ca, &["logs", &id])).trim(),
        "over-tls"
    );
    // `--ca-file` is the flag's spelling of the same thing.
    let flagged = node
        .command(&["--ca-file", pki.ca.to_str().expect("utf-8"), "status", &id])
        .output()
        .expect("run drover");
    assert!(flagged.status.success());

    // Without the CA: refused at once (not retried for minutes), naming the problem.
    let started = std::time::Instant::now();
    let refused = node.drover(&["status"]);
    assert_eq!(refused.status.code(), Some(4));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("presented a TLS certificate this client does not trust")
            && said.contains("signed by a CA this client does not trust")
            && said.contains("--ca-file"),
        "{said}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "a certificate problem is not a node that is away"
    );

    // Plain HTTP to the HTTPS port gets a plain answer that says so, not a closed connection.
    let plain = node
        .command(&["status"])
        .env("DROVER_SERVER", node.url().replace("https://", "http://"))
        .output()
        .expect("run drover");
    assert_eq!(
        plain.status.code(),
        Some(2),
        "a 400: the address given is wrong"
    );
    let said = String::from_utf8_lossy(&plain.stderr);
    assert!(
        said.contains("this drover node serves HTTPS only: use https://127.0.0.1:")
            && said.contains("(HTTP 400)"),
        "{said}"
    );
}

/// The self-signed case, as `openssl req -x509 … -addext basicConstraints=CA:FALSE` makes it:
/// the node's certificate is its own issuer, and `--ca-file` names the certificate itself.
#[test]
fn a_self_signed_node_is_trusted_with_its_own_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("self-signed");
    let (cert, key) = (dir.path().join("node.pem"), dir.path().join("node.key"));
    std::fs::write(&cert, made.cert.pem()).expect("write");
    std::fs::write(&key, made.signing_key.serialize_pem()).expect("write");
    let node = https_node(&cert, &key);
    let id = run_over_https(&node, &cert, &["--", "true"]);
    let refused = node.drover(&["wait", &id]);
    assert_eq!(refused.status.code(), Some(4));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("it is self-signed or signed by a CA this client does not trust"),
        "{said}"
    );
}

#[test]
fn a_certificate_for_another_host_is_refused_by_name() {
    let pki_dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(pki_dir.path());
    let (cert, key) = pki.server("elsewhere", &["elsewhere.example"]);
    let node = https_node(&cert, &key);
    let refused = node
        .command(&["status"])
        .env("DROVER_CA_FILE", &pki.ca)
        .output()
        .expect("run drover");
    assert_eq!(refused.status.code(), Some(4));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("does not name the host in the node's address"),
        "{said}"
    );
}

#[test]
fn serve_refuses_tls_files_it_cannot_use() {
    let pki_dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(pki_dir.path());
    let (cert, _) = pki.server("node", &["localhost"]);
    let (_, other_key) = pki.server("other", &["localhost"]);
    let data = tempfile::tempdir().expect("tempdir");
    let serve = |args: &[&str]| {
        std::process::Command::new(common::BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .args(args)
            .output()
            .expect("run drover serve")
    };
    let cert = cert.to_str().expect("utf-8");
    let mismatched = serve(&["--tls-cert", cert, "--tls-key", other_key.to_str().unwrap()]);
    assert!(!mismatched.status.success());
    let said = String::from_utf8_lossy(&mismatched.stderr);
    assert!(said.contains("cannot be used together"), "{said}");

    let missing = serve(&["--tls-cert", cert, "--tls-key", "/nonexistent/key.pem"]);
    assert!(!missing.status.success());
    let said = String::from_utf8_lossy(&missing.stderr);
    assert!(
        said.contains("cannot read the TLS key /nonexistent/key.pem"),
        "{said}"
    );

    let alone = serve(&["--tls-cert", cert]);
    assert_eq!(alone.status.code(), Some(2), "--tls-cert needs --tls-key");
    assert!(!data.path().join("serve.json").exists());
}

/// Nodes of a cluster read each other's logs over HTTPS, trusting the CA in `--ca-file`; a
/// node that does not trust it says that the certificate is the problem.
#[test]
fn nodes_read_each_others_logs_over_https_with_the_ca_file() {
    let Some(db) = drover_store::testing::TestDatabase::create() else {
        return;
    };
    let pki_dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(pki_dir.path());
    let (cert, key) = pki.server("node", &["localhost", "127.0.0.1"]);
    let (cert, key, ca) = (
        cert.to_str().expect("utf-8"),
        key.to_str().expect("utf-8"),
        pki.ca.to_str().expect("utf-8"),
    );
    let tls = ["--tls-cert", cert, "--tls-key", key];
    let runner =
        Node::start(&[&["--db", db.url(), "--label", "role=runner"][..], &tls[..]].concat());
    let reader = Node::start(&[&["--db", db.url(), "--ca-file", ca][..], &tls[..]].concat());
    let stranger = Node::start(&[&["--db", db.url()][..], &tls[..]].concat());
    let ca = pki.ca.as_path();
    let id = run_over_https(
        &reader,
        ca,
        &["--require", "role=runner", "--", "echo", "from the runner"],
    );

    // Proxied from the runner, over HTTPS, by the node that trusts its CA.
    let read = trusting(&reader, ca, &["logs", &id]);
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    assert_eq!(stdout(&read), "from the runner\n");

    // The node without the CA cannot vouch for the runner, and says why.
    let refused = trusting(&stranger, ca, &["logs", &id]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("which cannot be reached") && said.contains("UnknownIssuer"),
        "{said}"
    );
    drop(runner);
}
