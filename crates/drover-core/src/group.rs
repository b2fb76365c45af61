//! Groups: many jobs from one submit. A **sweep** runs one command over values (`--each 1..20`,
//! several named axes making their product); a **flow** is a DAG of steps from one file
//! (`crate::flow`), any of which may be a sweep. A group has its own id, number and name, and
//! each member job records where it sits in it ([`Membership`]).
//!
//! This file holds the values side: how `each` is written and read, the points of a product,
//! and how a point fills an argv and an environment. Pure functions, no I/O.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::job::JobId;
use crate::state::JobState;

/// Most members one group may have (the same bound as a batch).
pub const MAX_MEMBERS: usize = 100_000;

/// Longest a value may be shown in a member's name before it is clipped.
const NAME_VALUE_CHARS: usize = 40;

/// A group's id: a UUID v7, like a job's.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct GroupId(pub Uuid);

impl GroupId {
    /// Wraps a UUID minted by the caller (the store mints v7 ids).
    pub const fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for GroupId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// What made a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupKind {
    /// `drover submit --each …`: one command over values.
    Sweep,
    /// `drover flow submit FILE`: steps with dependencies.
    Flow,
}

impl GroupKind {
    /// The word used in the store, the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupKind::Sweep => "sweep",
            GroupKind::Flow => "flow",
        }
    }
}

impl FromStr for GroupKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sweep" => Ok(GroupKind::Sweep),
            "flow" => Ok(GroupKind::Flow),
            other => Err(format!("unknown group kind `{other}`")),
        }
    }
}

/// Where a member job sits in its group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Membership {
    /// The group.
    pub group: GroupId,
    /// Its step, in a flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Its place in its step's sweep, from 0 (`$DROVER_INDEX`); 0 for a step that is no sweep.
    pub index: u32,
    /// Its sweep's values by axis name, in the axes' order (the unnamed axis is `value`).
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "pairs")]
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    pub values: Vec<(String, String)>,
}

/// `values` as a JSON object whose keys keep the axes' order.
mod pairs {
    use serde::de::{MapAccess, Visitor};
    use serde::ser::SerializeMap;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(pairs: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(pairs.len()))?;
        for (k, v) in pairs {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
        struct Pairs;
        impl<'de> Visitor<'de> for Pairs {
            type Value = Vec<(String, String)>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    out.push((k, v));
                }
                Ok(out)
            }
        }
        d.deserialize_map(Pairs)
    }
}

/// One step of a group as the store keeps it: enough to draw a flow's tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupStep {
    /// The step's name (a sweep's one step has the group's name).
    pub name: String,
    /// The steps it runs after.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// How many jobs it made (more than one for a sweep).
    pub jobs: u32,
    /// Its sweep's axis names, if it is one (`value` for the unnamed axis).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub axes: Vec<String>,
}

/// A group as the API shows it: what it is and how far its members have got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupRecord {
    /// Time-ordered id.
    pub id: GroupId,
    /// Its number, from the same sequence as jobs' (a group and a job never share one).
    pub number: u64,
    /// Its name.
    pub name: String,
    /// Sweep or flow.
    pub kind: GroupKind,
    /// When it was submitted.
    pub created_at: DateTime<Utc>,
    /// Its steps in the order written.
    pub steps: Vec<GroupStep>,
    /// How many members it has.
    pub jobs: u64,
    /// How many members are in each state (states with none left out).
    pub counts: std::collections::BTreeMap<JobState, u64>,
    /// Where the group is as a whole ([`group_state`]).
    pub state: JobState,
    /// When its last member ended, once all have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Run (`sh -c`, on a node) once every member has ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<String>,
}

impl GroupRecord {
    /// Whether every member has ended.
    pub fn ended(&self) -> bool {
        self.state.is_terminal()
    }
}

/// A group's state from its members': `running` while any starts or runs, `queued` while any
/// other has not ended; once all have, `succeeded` if all did, else `failed` if any failed,
/// timed out or was lost, else `cancelled`.
pub fn group_state(counts: &std::collections::BTreeMap<JobState, u64>) -> JobState {
    let has = |s: JobState| counts.get(&s).copied().unwrap_or(0) > 0;
    if has(JobState::Running) || has(JobState::Starting) {
        JobState::Running
    } else if counts.iter().any(|(s, n)| *n > 0 && !s.is_terminal()) {
        JobState::Queued
    } else if counts
        .iter()
        .all(|(s, n)| *n == 0 || *s == JobState::Succeeded)
    {
        JobState::Succeeded
    } else if has(JobState::Failed) || has(JobState::TimedOut) || has(JobState::Lost) {
        JobState::Failed
    } else {
        JobState::Cancelled
    }
}

/// One axis of a sweep: a name (`""` for the unnamed one) and its values in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Axis {
    /// `{name}` in argv, `$DROVER_EACH_NAME` in the environment; `""` is `{}` and
    /// `$DROVER_EACH`.
    pub name: String,
    /// Its values, in order.
    pub values: Vec<String>,
}

/// The axes of a sweep; their product is its points, the first axis varying slowest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Sweep {
    /// At least one, each with at least one value.
    pub axes: Vec<Axis>,
}

/// A sweep that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EachError(pub String);

impl Sweep {
    /// Reads `each` as a flow file or the API writes it: a string (a range `1..20`, `0..100:10`,
    /// or a list `a,b,c`), an array of values (strings, numbers, booleans), or an object of
    /// named axes, each one of those (`{n = "1..10", seed = [1, 2]}`).
    pub fn from_json(value: &serde_json::Value) -> Result<Self, EachError> {
        let axes = match value {
            serde_json::Value::Object(named) => {
                if named.is_empty() {
                    return Err(EachError("an empty table of axes".into()));
                }
                named
                    .iter()
                    .map(|(name, values)| {
                        check_axis_name(name)?;
                        Ok(Axis {
                            name: name.clone(),
                            values: values_from_json(values)
                                .map_err(|e| EachError(format!("{name}: {}", e.0)))?,
                        })
                    })
                    .collect::<Result<Vec<_>, EachError>>()?
            }
            other => vec![Axis {
                name: String::new(),
                values: values_from_json(other)?,
            }],
        };
        let sweep = Sweep { axes };
        sweep.check()?;
        Ok(sweep)
    }

    /// Reads one `--each` as typed on the command line: `VALUES` for the unnamed axis, or
    /// `NAME=VALUES`; `VALUES` is a range or a comma-separated list.
    pub fn axis_from_arg(arg: &str) -> Result<Axis, EachError> {
        let (name, values) = match arg.split_once('=') {
            Some((name, values)) if is_axis_name(name) => (name.to_string(), values),
            _ => (String::new(), arg),
        };
        Ok(Axis {
            name,
            values: parse_values(values)?,
        })
    }

    /// How many points the product has (saturating).
    pub fn len(&self) -> usize {
        self.axes
            .iter()
            .fold(1usize, |n, axis| n.saturating_mul(axis.values.len()))
    }

    /// Whether the product is empty (never, for a checked sweep).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The axes are sound: named uniquely (an unnamed one only alone), none empty, the product
    /// within [`MAX_MEMBERS`].
    pub fn check(&self) -> Result<(), EachError> {
        if self.axes.is_empty() {
            return Err(EachError("no values".into()));
        }
        let unnamed = self.axes.iter().filter(|a| a.name.is_empty()).count();
        if unnamed > 0 && self.axes.len() > 1 {
            return Err(EachError(
                "several axes must each have a name (`--each n=1..10 --each seed=1,2`)".into(),
            ));
        }
        for (i, axis) in self.axes.iter().enumerate() {
            if self.axes[..i].iter().any(|a| a.name == axis.name) {
                return Err(EachError(format!(
                    "the axis `{}` is given twice",
                    axis.name
                )));
            }
            if axis.values.is_empty() {
                return Err(EachError(format!("the axis `{}` has no values", axis.name)));
            }
        }
        if self.len() > MAX_MEMBERS {
            return Err(EachError(format!(
                "{} jobs; a sweep makes at most {MAX_MEMBERS}",
                self.len()
            )));
        }
        Ok(())
    }

    /// Every point of the product, in order: the first axis varies slowest.
    pub fn points(&self) -> Vec<Vec<(String, String)>> {
        let mut points: Vec<Vec<(String, String)>> = vec![Vec::new()];
        for axis in &self.axes {
            let mut next = Vec::with_capacity(points.len() * axis.values.len());
            for point in &points {
                for value in &axis.values {
                    let mut p = point.clone();
                    p.push((axis.name.clone(), value.clone()));
                    next.push(p);
                }
            }
            points = next;
        }
        points
    }
}

fn is_axis_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_axis_name(name: &str) -> Result<(), EachError> {
    if is_axis_name(name) {
        Ok(())
    } else {
        Err(EachError(format!(
            "`{name}` is not an axis name (letters, digits and `_`, not starting with a digit)"
        )))
    }
}

fn values_from_json(value: &serde_json::Value) -> Result<Vec<String>, EachError> {
    match value {
        serde_json::Value::String(text) => parse_values(text),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|item| match item {
                serde_json::Value::String(s) => Ok(s.clone()),
                serde_json::Value::Number(n) => Ok(n.to_string()),
                serde_json::Value::Bool(b) => Ok(b.to_string()),
                other => Err(EachError(format!(
                    "a value must be a string, number or boolean, not {other}"
                ))),
            })
            .collect(),
        serde_json::Value::Number(n) => Ok(vec![n.to_string()]),
        other => Err(EachError(format!(
            "expected a range (`1..20`), a list (`a,b,c` or an array) or a table of named axes, not {other}"
        ))),
    }
}

/// Reads values as typed: `A..B` (integers, both ends included), `A..B:STEP`, or a
/// comma-separated list (`a,b,c`; one value when there is no comma).
pub fn parse_values(text: &str) -> Result<Vec<String>, EachError> {
    if let Some(range) = parse_range(text)? {
        return Ok(range);
    }
    if text.is_empty() {
        return Err(EachError("no values".into()));
    }
    Ok(text.split(',').map(str::to_string).collect())
}

fn parse_range(text: &str) -> Result<Option<Vec<String>>, EachError> {
    let Some((start, rest)) = text.split_once("..") else {
        return Ok(None);
    };
    let (end, step) = match rest.split_once(':') {
        Some((end, step)) => (end, Some(step)),
        None => (rest, None),
    };
    let (Ok(start), Ok(end)) = (start.trim().parse::<i64>(), end.trim().parse::<i64>()) else {
        // `a..b` that is not two integers is an ordinary value.
        return Ok(None);
    };
    let step = match step {
        None => 1,
        Some(step) => step
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| EachError(format!("`{text}`: the step must be a positive integer")))?,
    };
    if end < start {
        return Err(EachError(format!(
            "`{text}`: the range ends before it starts"
        )));
    }
    let count = (end - start) / step + 1;
    if count > MAX_MEMBERS as i64 {
        return Err(EachError(format!(
            "`{text}` has {count} values; a sweep makes at most {MAX_MEMBERS}"
        )));
    }
    Ok(Some(
        (0..count).map(|i| (start + i * step).to_string()).collect(),
    ))
}

/// `argv` with `{}` and `{name}` replaced by the point's values — only those exact words of
/// the point's axes: any other braces (Python's `{"n": 1}`, `awk '{print}'`) are left as they
/// are. `{}` means the unnamed axis, or the only axis when there is one. No shell sees it.
pub fn fill_argv(argv: &[String], point: &[(String, String)]) -> Vec<String> {
    let only = match point {
        [(_, value)] => Some(value.as_str()),
        _ => None,
    };
    argv.iter()
        .map(|arg| {
            let mut out = String::with_capacity(arg.len());
            let mut rest = arg.as_str();
            while let Some(open) = rest.find('{') {
                out.push_str(&rest[..open]);
                let after = &rest[open + 1..];
                let replaced = after.find('}').and_then(|close| {
                    let name = &after[..close];
                    let value = if name.is_empty() {
                        only
                    } else {
                        point
                            .iter()
                            .find(|(n, _)| n == name)
                            .map(|(_, v)| v.as_str())
                    };
                    value.map(|v| (v, close))
                });
                match replaced {
                    Some((value, close)) => {
                        out.push_str(value);
                        rest = &after[close + 1..];
                    }
                    None => {
                        out.push('{');
                        rest = after;
                    }
                }
            }
            out.push_str(rest);
            out
        })
        .collect()
}

/// The variable a point's value of axis `name` is in: `DROVER_EACH` for the unnamed axis,
/// `DROVER_EACH_SEED` for `seed`.
pub fn env_name(axis: &str) -> String {
    if axis.is_empty() {
        "DROVER_EACH".to_string()
    } else {
        format!("DROVER_EACH_{}", axis.to_ascii_uppercase())
    }
}

/// A member's name: its step's name and its values (`sim[3]`, `scan.work[n=2,seed=1]`), long
/// values clipped.
pub fn member_name(base: &str, point: &[(String, String)]) -> String {
    if point.is_empty() {
        return base.to_string();
    }
    let clip = |v: &str| -> String {
        if v.chars().count() > NAME_VALUE_CHARS {
            let head: String = v.chars().take(NAME_VALUE_CHARS - 1).collect();
            format!("{head}…")
        } else {
            v.to_string()
        }
    };
    let inner: Vec<String> = point
        .iter()
        .map(|(n, v)| {
            if n.is_empty() {
                clip(v)
            } else {
                format!("{n}={}", clip(v))
            }
        })
        .collect();
    format!("{base}[{}]", inner.join(","))
}

/// One upstream job as a downstream job reads it in `$DROVER_INPUTS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Input {
    /// The upstream job.
    pub id: JobId,
    /// Its number.
    pub number: u64,
    /// Its name.
    pub name: String,
    /// Its step, in a flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Its place in its sweep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// Its sweep values.
    #[serde(default, with = "pairs")]
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    pub values: Vec<(String, String)>,
    /// How it ended (`succeeded`: a job runs only after its upstreams succeeded).
    pub state: JobState,
    /// Its result, if it gave one.
    pub result: Option<serde_json::Value>,
    /// The node its last attempt ran on.
    pub node: Option<crate::job::NodeId>,
    /// Its last attempt.
    pub attempt: u32,
    /// Its last attempt's `$DROVER_OUTPUT_DIR`, when that is on this node's disk (filled in by
    /// the node that runs the downstream job).
    pub output_dir: Option<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn ranges_lists_and_steps() {
        assert_eq!(parse_values("1..3").unwrap(), s(&["1", "2", "3"]));
        assert_eq!(parse_values("0..10:5").unwrap(), s(&["0", "5", "10"]));
        assert_eq!(parse_values("-2..0").unwrap(), s(&["-2", "-1", "0"]));
        assert_eq!(parse_values("a,b,c").unwrap(), s(&["a", "b", "c"]));
        assert_eq!(parse_values("x..y").unwrap(), s(&["x..y"]));
        assert!(parse_values("3..1").is_err());
        assert!(parse_values("1..3:0").is_err());
        assert!(parse_values("").is_err());
        assert!(parse_values("1..1000000").is_err());
    }

    #[test]
    fn named_axes_make_the_product_first_slowest() {
        let sweep = Sweep {
            axes: vec![
                Sweep::axis_from_arg("n=1..2").unwrap(),
                Sweep::axis_from_arg("seed=a,b,c").unwrap(),
            ],
        };
        sweep.check().unwrap();
        let points = sweep.points();
        assert_eq!(points.len(), 6);
        assert_eq!(
            points[0],
            vec![("n".into(), "1".into()), ("seed".into(), "a".into())]
        );
        assert_eq!(
            points[5],
            vec![("n".into(), "2".into()), ("seed".into(), "c".into())]
        );
    }

    #[test]
    fn unnamed_axes_cannot_be_mixed_and_names_are_unique() {
        let two = Sweep {
            axes: vec![
                Sweep::axis_from_arg("1..2").unwrap(),
                Sweep::axis_from_arg("n=1..2").unwrap(),
            ],
        };
        assert!(two.check().is_err());
        let twice = Sweep {
            axes: vec![
                Sweep::axis_from_arg("n=1..2").unwrap(),
                Sweep::axis_from_arg("n=3").unwrap(),
            ],
        };
        assert!(twice.check().unwrap_err().0.contains("twice"));
        // A value with `=` whose left side is no name is an ordinary value.
        assert_eq!(Sweep::axis_from_arg("a=b,c=d").unwrap().name, "a");
        assert_eq!(Sweep::axis_from_arg("--x=1").unwrap().name, "");
    }

    #[test]
    fn each_reads_the_flow_file_forms() {
        let range = Sweep::from_json(&serde_json::json!("1..3")).unwrap();
        assert_eq!(range.axes[0].values, s(&["1", "2", "3"]));
        let list = Sweep::from_json(&serde_json::json!(["a", 2, true])).unwrap();
        assert_eq!(list.axes[0].values, s(&["a", "2", "true"]));
        let named = Sweep::from_json(&serde_json::json!({"n": "1..2", "seed": [1, 2, 3]})).unwrap();
        assert_eq!(named.len(), 6);
        assert!(Sweep::from_json(&serde_json::json!({"1x": "1..2"})).is_err());
        assert!(Sweep::from_json(&serde_json::json!({})).is_err());
        assert!(Sweep::from_json(&serde_json::json!([])).is_err());
        assert!(Sweep::from_json(&serde_json::json!([[1]])).is_err());
    }

    #[test]
    fn only_placeholders_of_the_point_are_filled() {
        let point = vec![("n".to_string(), "3".to_string())];
        let argv = s(&[
            "sim",
            "--n",
            "{n}",
            "{}",
            "{seed}",
            r#"{"n": 1}"#,
            "x{n}y{n}",
        ]);
        assert_eq!(
            fill_argv(&argv, &point),
            s(&["sim", "--n", "3", "3", "{seed}", r#"{"n": 1}"#, "x3y3"])
        );
        let two = vec![
            ("a".to_string(), "1".to_string()),
            ("b".to_string(), "2".to_string()),
        ];
        assert_eq!(fill_argv(&s(&["{}", "{a}{b}"]), &two), s(&["{}", "12"]));
        assert_eq!(
            fill_argv(&s(&["{", "}{", "{a"]), &two),
            s(&["{", "}{", "{a"])
        );
    }

    #[test]
    fn names_and_variables() {
        assert_eq!(env_name(""), "DROVER_EACH");
        assert_eq!(env_name("seed"), "DROVER_EACH_SEED");
        assert_eq!(member_name("sim", &[("".into(), "3".into())]), "sim[3]");
        assert_eq!(
            member_name("w", &[("n".into(), "1".into()), ("s".into(), "2".into())]),
            "w[n=1,s=2]"
        );
        let long = "x".repeat(100);
        assert!(member_name("w", &[("".into(), long)]).chars().count() < 50);
    }

    #[test]
    fn a_group_state_follows_its_members() {
        use std::collections::BTreeMap;
        let of = |pairs: &[(JobState, u64)]| -> BTreeMap<JobState, u64> {
            pairs.iter().copied().collect()
        };
        assert_eq!(
            group_state(&of(&[(JobState::Running, 1), (JobState::Succeeded, 3)])),
            JobState::Running
        );
        assert_eq!(
            group_state(&of(&[(JobState::Blocked, 1), (JobState::Succeeded, 3)])),
            JobState::Queued
        );
        assert_eq!(
            group_state(&of(&[(JobState::Succeeded, 3)])),
            JobState::Succeeded
        );
        assert_eq!(
            group_state(&of(&[(JobState::Failed, 1), (JobState::Succeeded, 9)])),
            JobState::Failed
        );
        assert_eq!(
            group_state(&of(&[(JobState::Cancelled, 1), (JobState::Succeeded, 9)])),
            JobState::Cancelled
        );
    }

    #[test]
    fn membership_keeps_the_order_of_its_values() {
        let m = Membership {
            group: GroupId(Uuid::nil()),
            step: None,
            index: 4,
            values: vec![("z".into(), "1".into()), ("a".into(), "2".into())],
        };
        let text = serde_json::to_string(&m).unwrap();
        assert!(
            text.find("\"z\"").unwrap() < text.find("\"a\"").unwrap(),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Membership>(&text).unwrap(), m);
    }
}
