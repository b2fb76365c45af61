//! `drover nodes`, `drover drain`, `drover undrain`: the cluster as the database knows it.

use drover_api::NodeRecord;

use super::client;
use crate::cli::{Cli, NodeArgs, NodesArgs};
use crate::exit;
use crate::output;

/// `drover nodes`: the cluster as the database knows it.
pub fn nodes(cli: &Cli, _args: &NodesArgs) -> anyhow::Result<u8> {
    let nodes: Vec<NodeRecord> = client(cli)?.get("/v1/nodes")?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&nodes)?);
        return Ok(exit::OK);
    }
    print!("{}", output::nodes_table(&nodes, chrono::Utc::now()));
    Ok(exit::OK)
}

/// `drover drain NODE` / `drover undrain NODE`.
pub fn drain(cli: &Cli, args: &NodeArgs, draining: bool) -> anyhow::Result<u8> {
    let action = if draining { "drain" } else { "undrain" };
    let path = format!("/v1/nodes/{}/{action}", args.node);
    let node: NodeRecord = client(cli)?.post(&path, &serde_json::json!({}))?;
    if cli.json {
        crate::output::json(&node)?;
    } else {
        println!("{} {}", node.info.id, node.state);
    }
    Ok(exit::OK)
}
