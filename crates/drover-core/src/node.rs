//! Nodes: what each machine of a cluster is, has and does, and the labels that route jobs to it.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::job::NodeId;
use crate::resources::Resources;

/// A node's labels (`os=macos`, `has=sage`). `os` and `arch` are always present, detected.
pub type Labels = BTreeMap<String, String>;

/// Parses `key=value` (a label, or a label a job requires).
pub fn parse_label(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not key=value"))?;
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
    };
    if !valid(key) || !valid(value) {
        return Err(format!(
            "`{text}`: keys and values are letters, digits, -, _, . and /"
        ));
    }
    Ok((key.to_string(), value.to_string()))
}

/// Whether a node with `labels` may run a job that requires `required`: it has every one.
pub fn labels_match(required: &Labels, labels: &Labels) -> bool {
    required.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// `a=1,b=2`, for messages.
pub fn describe_labels(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A node's membership state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Heartbeating and claiming.
    Alive,
    /// Heartbeating; runs what it has and claims nothing new (`drover drain`).
    Draining,
    /// Silent past the node TTL. Its expired attempts were requeued; it rejoins as `alive`
    /// (or `draining`, if it was) when it heartbeats again.
    Dead,
}

impl NodeState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Alive => "alive",
            NodeState::Draining => "draining",
            NodeState::Dead => "dead",
        }
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for NodeState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "alive" => Ok(NodeState::Alive),
            "draining" => Ok(NodeState::Draining),
            "dead" => Ok(NodeState::Dead),
            other => Err(format!("unknown node state `{other}`")),
        }
    }
}

/// What a node says about itself in every heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Stable id, kept in its data dir.
    pub id: NodeId,
    /// The machine's host name.
    pub hostname: String,
    /// Its labels, `os` and `arch` included.
    pub labels: Labels,
    /// Where its API answers (other nodes fetch its jobs' logs there).
    pub url: Option<String>,
    /// What jobs may reserve on it in all.
    pub capacity: Resources,
    /// How many jobs it runs at once.
    pub slots: u32,
    /// When this run of the node started.
    pub started_at: DateTime<Utc>,
}

/// What a node is doing, sent with each heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeLoad {
    /// Attempts starting or running.
    pub running: u32,
    /// What they reserve.
    pub reserved: Resources,
}

/// A node as the cluster knows it: `drover nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// What it said about itself.
    #[serde(flatten)]
    pub info: NodeInfo,
    /// Alive, draining or dead.
    pub state: NodeState,
    /// Its load at its last heartbeat.
    pub load: NodeLoad,
    /// Its last heartbeat.
    pub heartbeat_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_and_match() {
        assert_eq!(
            parse_label("os=macos").expect("label"),
            ("os".into(), "macos".into())
        );
        for bad in ["os", "=x", "os=", "a b=c", "os=mac os"] {
            assert!(parse_label(bad).is_err(), "{bad}");
        }
        let node: Labels = [("os", "linux"), ("has", "sage")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut wants = Labels::new();
        assert!(labels_match(&wants, &node), "no requirement matches all");
        wants.insert("has".into(), "sage".into());
        assert!(labels_match(&wants, &node));
        wants.insert("os".into(), "macos".into());
        assert!(!labels_match(&wants, &node), "every label must match");
        assert_eq!(describe_labels(&wants), "has=sage,os=macos");
    }

    #[test]
    fn node_states_round_trip() {
        for state in [NodeState::Alive, NodeState::Draining, NodeState::Dead] {
            assert_eq!(state.as_str().parse::<NodeState>(), Ok(state));
        }
    }
}
