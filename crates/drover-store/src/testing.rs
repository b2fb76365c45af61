//! Test support: a fresh PostgreSQL schema per test.
#![allow(clippy::expect_used, missing_docs)]

/// A schema of its own in the database named by `DROVER_TEST_DATABASE_URL`, dropped with it.
///
/// Without that variable [`TestDatabase::create`] returns `None` and the test skips itself,
/// saying so on stderr — unless `DROVER_REQUIRE_POSTGRES` is set (CI sets it), when a missing
/// database fails the test instead of silently skipping it.
pub struct TestDatabase {
    admin: String,
    schema: String,
    url: String,
}

impl TestDatabase {
    pub fn create() -> Option<Self> {
        let admin = postgres_setting("DROVER_TEST_DATABASE_URL")?;
        let schema = format!("drover_test_{:016x}", fastrand::u64(..));
        let sql = format!("CREATE SCHEMA {schema}");
        on_own_thread(&admin, sql);
        let sep = if admin.contains('?') { '&' } else { '?' };
        let url = format!("{admin}{sep}options=-csearch_path%3D{schema}");
        Some(Self { admin, schema, url })
    }

    /// A URL whose connections use this schema.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        on_own_thread(&self.admin, format!("DROP SCHEMA {} CASCADE", self.schema));
    }
}

/// The value of a setting the PostgreSQL tests need, or `None` (the test skips itself, saying so
/// on stderr) — unless `DROVER_REQUIRE_POSTGRES` is set, when a missing setting fails the test.
pub fn postgres_setting(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ => {
            assert!(
                std::env::var_os("DROVER_REQUIRE_POSTGRES").is_none(),
                "DROVER_REQUIRE_POSTGRES is set but {var} is not"
            );
            eprintln!("skipped: set {var} to run this PostgreSQL test");
            None
        }
    }
}

/// Runs one statement on a connection of its own, off any async runtime (the blocking client
/// cannot run on one).
fn on_own_thread(url: &str, sql: String) {
    let url = url.to_string();
    std::thread::spawn(move || {
        let mut client =
            postgres::Client::connect(&url, postgres::NoTls).expect("connect to the test database");
        client.batch_execute(&sql).expect("test schema statement");
    })
    .join()
    .expect("test database thread");
}
