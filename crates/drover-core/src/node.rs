//! Nodes: what each machine of a cluster is, has and does, and the labels that route jobs to it.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::job::NodeId;
use crate::resources::Resources;

/// A node's labels (`os=macos`, `has=sage`). `os` and `arch` are always present, detected.
pub type Labels = BTreeMap<String, String>;

/// Longest label key, in bytes.
pub const MAX_LABEL_KEY: usize = 63;
/// Longest label value, in bytes.
pub const MAX_LABEL_VALUE: usize = 255;
/// Most labels a node has or a job requires.
pub const MAX_LABELS: usize = 32;

/// Parses `key=value` (a label, or a label a job requires), by [`check_label`]'s rules.
pub fn parse_label(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not key=value"))?;
    check_label(key, value)?;
    Ok((key.to_string(), value.to_string()))
}

/// The one rule for a label, wherever it comes from (a flag, drover.toml, a spec's `require`):
/// a key of 1 to [`MAX_LABEL_KEY`] and a value of 1 to [`MAX_LABEL_VALUE`] letters, digits,
/// `-`, `_`, `.` and `/`.
pub fn check_label(key: &str, value: &str) -> Result<(), String> {
    let valid = |s: &str, max: usize| {
        (1..=max).contains(&s.len())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
    };
    let shown = |s: &str| -> String {
        if s.len() > 40 {
            format!("{}…", s.chars().take(40).collect::<String>())
        } else {
            s.to_string()
        }
    };
    if !valid(key, MAX_LABEL_KEY) || !valid(value, MAX_LABEL_VALUE) {
        return Err(format!(
            "`{}={}`: keys (at most {MAX_LABEL_KEY} bytes) and values (at most {MAX_LABEL_VALUE}) are letters, digits, -, _, . and /",
            shown(key),
            shown(value)
        ));
    }
    Ok(())
}

/// [`check_label`] for each of `labels`, and at most [`MAX_LABELS`] of them.
pub fn check_labels(labels: &Labels) -> Result<(), String> {
    if labels.len() > MAX_LABELS {
        return Err(format!(
            "{} labels; at most {MAX_LABELS} are allowed",
            labels.len()
        ));
    }
    labels.iter().try_for_each(|(k, v)| check_label(k, v))
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeLoad {
    /// Attempts starting or running.
    pub running: u32,
    /// What they reserve.
    pub reserved: Resources,
}

/// A node as the cluster knows it: `drover nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
        let long_value = format!("has={}", "x".repeat(MAX_LABEL_VALUE + 1));
        let long_key = format!("{}=1", "k".repeat(MAX_LABEL_KEY + 1));
        for bad in [&long_value, &long_key] {
            let err = parse_label(bad).expect_err("too long");
            assert!(err.len() < 200, "the message quotes a bounded part: {err}");
        }
        assert!(parse_label(&format!("has={}", "x".repeat(MAX_LABEL_VALUE))).is_ok());
        let many: Labels = (0..=MAX_LABELS)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        assert!(check_labels(&many).is_err());
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
