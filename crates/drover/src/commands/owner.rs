//! `drover owner` (hidden): a job's owner, started by its node. It holds one attempt at a time
//! and outlives the node; the work is `drover_exec::owner`, reached through the node crate.

use anyhow::Context;

use super::init_logging;
use crate::exit;

/// `drover owner`: a job's owner, started by a node (see `drover_exec::owner` in the node's
/// dependencies).
pub fn owner(args: &crate::cli::OwnerArgs) -> anyhow::Result<u8> {
    init_logging(false);
    let containment = serde_json::from_str(&args.containment).context("--containment")?;
    let span = tracing::info_span!("owner", pid = std::process::id());
    let _entered = span.enter();
    drover_node::run_owner(drover_node::OwnerArgs {
        dir: args.dir.clone(),
        containment,
    })?;
    Ok(exit::OK)
}
