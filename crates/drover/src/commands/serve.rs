//! `drover serve`: settings from flags, then drover.toml, then the built-in defaults, resolved
//! in one place into a `NodeConfig`, and the node run until it is told to stop.

use std::time::Duration;

use anyhow::Context;

use super::{UsageError, data_dir, init_logging};
use crate::cli::{Cli, ServeArgs};
use crate::exit;

/// `drover serve`
pub fn serve(cli: &Cli, args: &ServeArgs) -> anyhow::Result<u8> {
    init_logging(args.log_format == "json");
    let data_dir = data_dir(cli)?;
    let loaded = match crate::config::locate(args.config.as_deref(), &data_dir) {
        Some(path) => {
            tracing::info!(file = %path.display(), "reading settings");
            Some(crate::config::load(&path)?)
        }
        None => None,
    };
    let token = crate::config::token(cli.token_file.as_deref(), loaded.as_ref())?;
    let ca_file = crate::config::ca_file(cli.ca_file.as_deref(), loaded.as_ref());
    let (file, file_queues, file_notify) = loaded
        .map(|l| (l.serve, l.queues, l.notify))
        .unwrap_or_default();
    let mut config = drover_node::NodeConfig::new(data_dir);
    config.listen = args
        .listen
        .or(file.listen)
        .unwrap_or(std::net::SocketAddr::from(([127, 0, 0, 1], 7878)));
    config.slots = args.slots.or(file.slots).map(|n| n as usize);
    config.shutdown_timeout = args.shutdown_timeout.get();
    config.stop_jobs_on_exit = args.stop_jobs_on_exit;
    config.init = args.init;
    config.heartbeat = args
        .heartbeat
        .or(file.heartbeat)
        .map_or(config.heartbeat, |d| d.get());
    config.node_ttl = args
        .node_ttl
        .or(file.node_ttl)
        .map_or(config.heartbeat * 3, |d| d.get());
    config.lease = args
        .lease
        .or(file.lease)
        .map_or(config.node_ttl, |d| d.get());
    config.labels = file.labels.clone();
    config.labels.extend(args.labels.iter().cloned());
    config.log_limit = args.max_log_size.bytes();
    config.memory = args.memory.or(file.memory);
    config.cpus = args.cpus.or(file.cpus);
    if let Some(backend) = args.backend {
        config.backend = backend;
    } else if let Some(backend) = &file.backend {
        config.backend = backend
            .parse()
            .map_err(|e| anyhow::anyhow!("serve.backend: {e}"))?;
    }
    if let Some(wait) = args.reserve_after.or(file.reserve_after) {
        config.reserve_after = wait.get();
    }
    if let Some(every) = args.sample_interval.or(file.sample_interval) {
        config.sample_interval = every.get();
    }
    config.queue_defaults = file_queues
        .into_iter()
        .map(|(name, defaults)| (name, defaults.to_json()))
        .collect();
    config.database = args.db.clone().or(file.db);
    config.token = token;
    config.ca_file = ca_file;
    config.tls = match (
        args.tls_cert.clone().or(file.tls_cert.clone()),
        args.tls_key.clone().or(file.tls_key.clone()),
    ) {
        (Some(cert), Some(key)) => Some(drover_node::tls::TlsFiles { cert, key }),
        (None, None) => None,
        _ => {
            return Err(UsageError(
                "serve.tls_cert and serve.tls_key go together: give both, or neither".into(),
            )
            .into());
        }
    };
    config.allow_hosts = file.allow_hosts.clone();
    config.allow_hosts.extend(args.allow_hosts.iter().cloned());
    config.events_retention = args.events_retention.get();
    config.notify = drover_node::notify::NotifyConfig {
        command: args.notify_command.clone().or(file_notify.command),
        url: args.notify_url.clone().or(file_notify.url),
        on: args.notify_on.or(file_notify.on).unwrap_or_default(),
        timeout: args
            .notify_timeout
            .or(file_notify.timeout)
            .map_or(config.notify.timeout, |t| t.get()),
    };
    if let Some(url) = &config.notify.url {
        anyhow::ensure!(
            url.starts_with("http://"),
            "notify url {url}: only plain http:// webhooks are supported (put a local relay in front of https)"
        );
    }
    // Flags and drover.toml meet one set of rules, before anything is opened.
    config
        .check()
        .map_err(|e| UsageError(format!("{e} (set by {})", where_set(e.key))))?;
    // Before any of the node's threads exists: each would take an allocator arena of its own.
    drover_node::heap::limit_arenas();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("drover-node")
        .build()
        .context("cannot start the async runtime")?;
    let served = runtime.block_on(drover_node::serve(config));
    // Do not wait without end for blocking tasks (a log read, a cgroup removal) at exit: the
    // node's state is on disk by now.
    runtime.shutdown_timeout(Duration::from_secs(10));
    served?;
    Ok(exit::OK)
}

/// Where a `serve` setting comes from, for a message about it.
fn where_set(key: &str) -> String {
    match key {
        "token" => "DROVER_TOKEN, --token-file, or `token`/`token_file` in drover.toml".to_string(),
        "labels" => "--label, or `labels` in drover.toml's [serve]".to_string(),
        _ => format!(
            "--{}, or `{key}` in drover.toml's [serve]",
            key.replace('_', "-")
        ),
    }
}
