//! The store over TLS: the conformance suite with `sslmode=require`, and `verify-full` with the
//! right CA and a wrong one, against the test server with SSL turned on by [`ServerTls`].
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::*;
use crate::testing::{TestDatabase, postgres_setting};

/// SSL on the test server, with a certificate for `localhost` and `127.0.0.1` signed by a CA
/// made here: the test connects as a user of a server with SSL would.
///
/// The certificate and key go into the server's data directory (`drover-test-tls.*`, owned by
/// the server's user), and `ALTER SYSTEM` points `ssl_cert_file`/`ssl_key_file` at them, then
/// `pg_reload_conf()`. They stay there after the tests, so the server keeps starting; the next
/// run writes new ones. This needs the server on this machine and the right to write its data
/// directory (root does): otherwise the test skips, or fails under `DROVER_REQUIRE_POSTGRES`.
struct ServerTls {
    /// The CA's certificate (PEM), for `sslrootcert`.
    ca: PathBuf,
    /// Another CA, which signed nothing the server shows.
    stranger: PathBuf,
    _dir: tempfile::TempDir,
}

fn ca(name: &str) -> (rcgen::CertificateParams, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    (params, key)
}

impl ServerTls {
    fn get() -> Option<&'static ServerTls> {
        static ON: OnceLock<Option<ServerTls>> = OnceLock::new();
        ON.get_or_init(ServerTls::turn_on).as_ref()
    }

    fn turn_on() -> Option<ServerTls> {
        let admin = postgres_setting("DROVER_TEST_DATABASE_URL")?;
        let required = std::env::var_os("DROVER_REQUIRE_POSTGRES").is_some();
        let mut client = postgres::Client::connect(&admin, NoTls).expect("connect");
        let data: String = client
            .query_one("SHOW data_directory", &[])
            .expect("data_directory")
            .get(0);
        let owner = match std::fs::metadata(&data) {
            Ok(meta) => (meta.uid(), meta.gid()),
            Err(err) => {
                assert!(
                    !required,
                    "cannot reach the server's data directory {data}: {err}"
                );
                eprintln!("skipped: the server's data directory {data} is not here ({err})");
                return None;
            }
        };

        let dir = tempfile::tempdir().expect("tempdir");
        let (ca_params, ca_key) = ca("drover test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let (stranger_params, stranger_key) = ca("a CA nobody uses");
        let stranger_cert = stranger_params.self_signed(&stranger_key).expect("CA");
        let server_key = rcgen::KeyPair::generate().expect("key");
        let server = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("params")
            .signed_by(&server_key, &issuer)
            .expect("sign");
        let ca = dir.path().join("ca.pem");
        let stranger = dir.path().join("stranger.pem");
        std::fs::write(&ca, ca_cert.pem()).expect("write");
        std::fs::write(&stranger, stranger_cert.pem()).expect("write");

        let place = |name: &str, text: String, mode: u32| {
            let path = PathBuf::from(&data).join(name);
            if let Err(err) = std::fs::write(&path, text) {
                assert!(!required, "cannot write {}: {err}", path.display());
                eprintln!("skipped: cannot write {} ({err})", path.display());
                return false;
            }
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            std::os::unix::fs::chown(&path, Some(owner.0), Some(owner.1)).expect("chown");
            true
        };
        // The server refuses a key that others may read.
        if !place("drover-test-tls.crt", server.pem(), 0o644)
            || !place("drover-test-tls.key", server_key.serialize_pem(), 0o600)
        {
            return None;
        }
        for sql in [
            "ALTER SYSTEM SET ssl_cert_file = 'drover-test-tls.crt'",
            "ALTER SYSTEM SET ssl_key_file = 'drover-test-tls.key'",
            "ALTER SYSTEM SET ssl = on",
            "SELECT pg_reload_conf()",
        ] {
            client.batch_execute(sql).expect(sql);
        }
        let tls = ServerTls {
            ca,
            stranger,
            _dir: dir,
        };
        // A reload takes effect a moment later: wait until the server shows this certificate.
        let probe = tls.url(&admin, "verify-full", Some(&tls.ca));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (config, connector) = tls::parse(&probe).expect("parse");
            let tls::Tls::On(connector) = connector else {
                panic!("verify-full makes TLS connections")
            };
            match config.connect(connector) {
                Ok(_) => break,
                Err(err) => assert!(
                    Instant::now() < deadline,
                    "the server did not take the test certificate: {err}"
                ),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Some(tls)
    }

    /// `base` with `sslmode` and, if given, `sslrootcert`.
    fn url(&self, base: &str, mode: &str, root: Option<&PathBuf>) -> String {
        let sep = if base.contains('?') { '&' } else { '?' };
        let mut url = format!("{base}{sep}sslmode={mode}");
        if let Some(root) = root {
            url.push_str(&format!("&sslrootcert={}", root.display()));
        }
        url
    }
}

/// [`ServerTls::get`] off the async runtime (the blocking client cannot run on one).
async fn server_tls() -> Option<&'static ServerTls> {
    tokio::task::spawn_blocking(ServerTls::get)
        .await
        .expect("the set-up thread")
}

async fn fresh_over_tls() -> Option<(SqlStore, TestDatabase)> {
    let tls = server_tls().await?;
    let db = TestDatabase::create()?;
    let store = SqlStore::postgres(&tls.url(db.url(), "require", None))
        .await
        .expect("connect with sslmode=require");
    Some((store, db))
}

crate::conformance_tests!(match fresh_over_tls().await {
    Some(fresh) => fresh,
    None => return,
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_trusts_only_the_ca_it_is_given() {
    use crate::Store;
    let Some(tls) = server_tls().await else {
        return;
    };
    let Some(db) = TestDatabase::create() else {
        return;
    };
    let store = SqlStore::postgres(&tls.url(db.url(), "verify-full", Some(&tls.ca)))
        .await
        .expect("the server's CA is trusted");
    let ids = store
        .submit(vec![drover_core::JobSpec::new(["true"])])
        .await
        .expect("submit");
    assert_eq!(ids.len(), 1);

    // verify-ca takes the chain without the name; a certificate of another CA is refused,
    // which also shows the connections are TLS at all.
    SqlStore::postgres(&tls.url(db.url(), "verify-ca", Some(&tls.ca)))
        .await
        .expect("verify-ca");
    let refused = SqlStore::postgres(&tls.url(db.url(), "verify-full", Some(&tls.stranger)))
        .await
        .map(|_| ())
        .expect_err("another CA's roots refuse the server");
    let said = refused.to_string();
    assert!(said.contains("UnknownIssuer"), "{said}");
    // `require` with a root is verify-ca, as in libpq.
    let refused = SqlStore::postgres(&tls.url(db.url(), "require", Some(&tls.stranger)))
        .await
        .map(|_| ())
        .expect_err("require with sslrootcert checks the chain");
    assert!(refused.to_string().contains("UnknownIssuer"), "{refused}");
}
