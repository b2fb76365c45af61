//! `drover.toml`: node settings kept in a file instead of repeated on the command line.
//!
//! ```toml
//! ca_file = "/etc/drover/ca.pem"   # trusted when a node serves HTTPS (CLI and nodes)
//!
//! [serve]
//! listen = "127.0.0.1:7878"
//! db = "postgres://drover@db.lan/drover"  # shared by many nodes; default: SQLite here
//! labels = { has = "sage" }                # jobs with --require has=sage run here
//! heartbeat = "5s"
//! memory = "16G"        # what jobs may reserve in all
//! cpus = 8
//! slots = 8
//! backend = "auto"      # auto | cgroup2 | cgroup1 | rlimit
//! reserve_after = "60s"
//! sample_interval = "5s"  # how often running jobs' memory and CPU are sampled
//! allow_hosts = ["drover.example.org"]   # names the API answers to besides its own
//! tls_cert = "/etc/drover/cert.pem"      # serve HTTPS (clients of a self-signed node
//! tls_key = "/etc/drover/key.pem"        #   give `ca_file`, or --ca-file)
//!
//! [submit]
//! env_clear = true      # jobs do not get the submitting shell's environment (as --env-clear)
//!
//! [notify]              # every job and group that ends (or only failures) is told of
//! command = "notify-send drover \"$DROVER_JOB_NAME $DROVER_JOB_STATE\""
//! url = "http://127.0.0.1:9000/hook"     # a JSON POST
//! on = "failures"       # all | failures
//! timeout = "30s"       # a notifier running longer is killed
//!
//! [queues.sage]         # defaults for jobs submitted with --queue sage
//! timeout = "12h"
//! retries = 2
//! memory = "32G"
//! ```
//!
//! Flags win over the file; the file wins over the built-in defaults. Unknown keys are errors,
//! so a typo is reported instead of silently ignored.

use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use anyhow::Context;
use drover_core::{Cpus, HumanDuration, Size};
use serde::Deserialize;

use crate::spec_args::SpecArgs;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The API token, in the file itself (prefer `token_file`).
    pub token: Option<String>,
    /// A file holding the API token.
    pub token_file: Option<PathBuf>,
    /// Certificates to trust when a node serves HTTPS (as `--ca-file`).
    pub ca_file: Option<PathBuf>,
    /// Settings of `drover serve`.
    #[serde(default)]
    pub serve: ServeFile,
    /// Settings of `drover submit` and `drover run`.
    #[serde(default)]
    pub submit: SubmitFile,
    /// Per queue, defaults for the spec fields a job leaves out.
    #[serde(default)]
    pub queues: BTreeMap<String, SpecArgs>,
    /// Notices of endings (`drover serve`).
    #[serde(default)]
    pub notify: NotifyFile,
}

/// The `[notify]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyFile {
    /// As `serve --notify-command`.
    pub command: Option<String>,
    /// As `serve --notify-url`.
    pub url: Option<String>,
    /// As `serve --notify-on`.
    pub on: Option<drover_node::notify::NotifyOn>,
    /// As `serve --notify-timeout`.
    pub timeout: Option<HumanDuration>,
}

/// The `[serve]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeFile {
    /// As `serve --listen`.
    pub listen: Option<std::net::SocketAddr>,
    /// As `serve --db`.
    pub db: Option<String>,
    /// As `serve --label`, as a table: `labels = { has = "sage" }`.
    #[serde(default)]
    pub labels: drover_core::Labels,
    /// As `serve --heartbeat`.
    pub heartbeat: Option<HumanDuration>,
    /// As `serve --node-ttl`.
    pub node_ttl: Option<HumanDuration>,
    /// As `serve --lease`.
    pub lease: Option<HumanDuration>,
    /// As `serve --memory`.
    pub memory: Option<Size>,
    /// As `serve --cpus`.
    pub cpus: Option<Cpus>,
    /// As `serve --slots`.
    pub slots: Option<u32>,
    /// As `serve --backend`.
    pub backend: Option<String>,
    /// As `serve --reserve-after`.
    pub reserve_after: Option<HumanDuration>,
    /// As `serve --sample-interval`.
    pub sample_interval: Option<HumanDuration>,
    /// As `serve --allow-host`, as a list.
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    /// As `serve --tls-cert` (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// As `serve --tls-key` (with `tls_cert`).
    pub tls_key: Option<PathBuf>,
}

/// The `[submit]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitFile {
    /// As `submit --env-clear`, for every submit: jobs start from a clean environment instead
    /// of the submitting shell's.
    #[serde(default)]
    pub env_clear: bool,
}

/// The API token, from the first of: `DROVER_TOKEN`, `--token-file`/`DROVER_TOKEN_FILE`, and
/// `token_file` or `token` in the settings file. `None` when none is set.
pub fn token(
    token_file: Option<&Path>,
    file: Option<&FileConfig>,
) -> anyhow::Result<Option<String>> {
    let read = |path: &Path| -> anyhow::Result<String> {
        std::fs::read_to_string(path)
            .with_context(|| format!("reading the token file {}", path.display()))
    };
    let raw = if let Some(token) = std::env::var("DROVER_TOKEN").ok().filter(|t| !t.is_empty()) {
        token
    } else if let Some(path) = token_file {
        read(path)?
    } else if let Some(path) = file.and_then(|f| f.token_file.as_deref()) {
        read(path)?
    } else if let Some(token) = file.and_then(|f| f.token.clone()) {
        token
    } else {
        return Ok(None);
    };
    let token = raw.trim().to_string();
    anyhow::ensure!(!token.is_empty(), "the API token is empty");
    Ok(Some(token))
}

/// The certificates to trust for HTTPS: `--ca-file`/`DROVER_CA_FILE`, else `ca_file` in the
/// settings file.
pub fn ca_file(flag: Option<&Path>, file: Option<&FileConfig>) -> Option<PathBuf> {
    flag.map(Path::to_path_buf)
        .or_else(|| file.and_then(|f| f.ca_file.clone()))
}

/// The file to read: the one named, else `drover.toml` in the data dir if it exists.
pub fn locate(named: Option<&Path>, data_dir: &Path) -> Option<PathBuf> {
    match named {
        Some(path) => Some(path.to_path_buf()),
        None => Some(data_dir.join("drover.toml")).filter(|p| p.exists()),
    }
}

/// Reads and checks a settings file.
pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text).with_context(|| format!("in {}", path.display()))
}

/// Parses settings text.
pub fn parse(text: &str) -> anyhow::Result<FileConfig> {
    let config: FileConfig = toml::from_str(text)?;
    for (queue, defaults) in &config.queues {
        if !drover_core::valid_queue_name(queue) {
            anyhow::bail!("queues.{queue}: not a queue name (letters, digits, -, _ and .)");
        }
        // The values must make a valid spec, so a bad one is reported here and not at submit.
        defaults
            .check_as_defaults()
            .map_err(|e| anyhow::anyhow!("queues.{queue}.{e}"))?;
    }
    if let Some(backend) = &config.serve.backend {
        backend
            .parse::<drover_node::BackendChoice>()
            .map_err(|e| anyhow::anyhow!("serve.backend: {e}"))?;
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serve_table_is_read() {
        let config = parse(
            "[serve]\nmemory = \"16G\"\ncpus = 1.5\nslots = 4\nbackend = \"rlimit\"\nreserve_after = \"2m\"\n",
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(config.serve.memory, Some(Size(16 << 30)));
        assert_eq!(config.serve.cpus, Some(Cpus::from_millis(1500)));
        assert_eq!(config.serve.slots, Some(4));
        assert_eq!(
            config.serve.reserve_after,
            Some(HumanDuration::from_secs(120))
        );
    }

    #[test]
    fn queues_give_defaults() {
        let config = parse("[queues.sage]\ntimeout = \"12h\"\nretries = 2\nmemory = \"32G\"\n")
            .unwrap_or_else(|e| panic!("{e:#}"));
        let sage = config.queues.get("sage").expect("the sage queue");
        assert_eq!(sage.timeout, Some(HumanDuration::from_secs(12 * 3600)));
        assert_eq!(sage.retries, Some(2));
        assert!(
            parse("[queues.sage]\nargv = [\"rm\"]\n").is_err(),
            "not a default"
        );
        assert!(
            parse("[queues.sage]\ntimeout = \"soon\"\n").is_err(),
            "bad value"
        );
        assert!(
            parse("[queues.\"a b\"]\nretries = 1\n").is_err(),
            "bad name"
        );
    }

    /// `docs/drover.toml`, the example with every key, is a file drover reads.
    #[test]
    fn the_documented_example_is_valid() {
        let text = include_str!("../../../docs/drover.toml");
        let config = parse(text).unwrap_or_else(|e| panic!("docs/drover.toml: {e:#}"));
        assert!(config.serve.listen.is_some() && config.queues.contains_key("sage"));
        assert!(config.notify.command.is_some() && config.notify.url.is_some());
        assert_eq!(
            config.notify.on,
            Some(drover_node::notify::NotifyOn::Failures)
        );
    }

    #[test]
    fn typos_and_bad_values_are_errors() {
        assert!(parse("[serve]\nmemroy = \"1G\"\n").is_err());
        assert!(parse("[serve]\nbackend = \"docker\"\n").is_err());
        assert!(parse("[serve]\nmemory = \"lots\"\n").is_err());
        assert!(parse("").is_ok());
        assert!(parse("[submit]\nenv_clear = \"yes\"\n").is_err());
        let clear = parse("[submit]\nenv_clear = true\n").unwrap_or_else(|e| panic!("{e:#}"));
        assert!(clear.submit.env_clear);
    }
}
