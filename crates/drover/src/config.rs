//! `drover.toml`: node settings kept in a file instead of repeated on the command line.
//!
//! ```toml
//! [serve]
//! memory = "16G"        # what jobs may reserve in all
//! cpus = 8
//! slots = 8
//! backend = "auto"      # auto | cgroup2 | cgroup1 | rlimit
//! reserve_after = "60s"
//! ```
//!
//! Flags win over the file; the file wins over the built-in defaults. Unknown keys are errors,
//! so a typo is reported instead of silently ignored.

use std::path::{Path, PathBuf};

use anyhow::Context;
use drover_core::{Cpus, HumanDuration, Size};
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Settings of `drover serve`.
    #[serde(default)]
    pub serve: ServeFile,
}

/// The `[serve]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeFile {
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
    fn typos_and_bad_values_are_errors() {
        assert!(parse("[serve]\nmemroy = \"1G\"\n").is_err());
        assert!(parse("[serve]\nbackend = \"docker\"\n").is_err());
        assert!(parse("[serve]\nmemory = \"lots\"\n").is_err());
        assert!(parse("").is_ok());
    }
}
