//! Flows: a DAG of steps from one document (`drover flow submit flow.toml`, or the API's JSON).
//! Each step has a job spec's fields, `after` (earlier steps it needs) and `each` (which makes
//! it a sweep). The document is read and checked whole — unknown fields, unknown steps, cycles —
//! before anything exists, and then planned into jobs whose dependencies are positions in the
//! plan (the store turns them into ids in the one transaction that stores them all).
//!
//! A sweep (`drover submit --each`) is planned the same way, as a flow of one step.

use serde_json::{Map, Value};

use crate::group::{self, GroupKind, GroupStep, Sweep};
use crate::spec::JobSpec;

/// A flow document, read: its name, its notify command and its steps in the order written.
/// `S` is a step's job spec: raw fields when read, a [`JobSpec`] once parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow<S> {
    /// The flow's name.
    pub name: String,
    /// Run when the whole flow has ended (`sh -c`), with its outcome in the environment.
    pub notify: Option<String>,
    /// The steps, in the order written.
    pub steps: Vec<Step<S>>,
}

/// One step of a flow.
#[derive(Debug, Clone, PartialEq)]
pub struct Step<S> {
    /// Its name, unique in the flow.
    pub name: String,
    /// The steps that must succeed first; after a sweep, after all of it.
    pub after: Vec<String>,
    /// Its values, if it is a sweep.
    pub each: Option<Sweep>,
    /// Its job spec.
    pub spec: S,
}

/// What is wrong with a flow document, and where (`steps.work.after`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FlowError {
    /// The part of the document at fault.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl FlowError {
    /// An error at `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The keys of a flow document besides its steps' job-spec fields.
const FLOW_FIELDS: [&str; 3] = ["name", "notify", "steps"];

/// Reads a flow document, checking its shape and its graph: every `after` names a step, and
/// the steps form no cycle (the error names the cycle's steps in order). Each step's spec stays
/// raw fields, for the caller to fill in defaults and parse, naming its own errors.
pub fn parse(document: Value) -> Result<Flow<Map<String, Value>>, FlowError> {
    let Value::Object(mut top) = document else {
        return Err(FlowError::new("flow", "must be a table"));
    };
    if let Some(key) = top.keys().find(|k| !FLOW_FIELDS.contains(&k.as_str())) {
        return Err(FlowError::new(
            key.clone(),
            format!(
                "unknown field `{key}`; a flow has `name`, `notify` and `steps` (job fields go in a step)"
            ),
        ));
    }
    let name = match top.remove("name") {
        Some(Value::String(name)) if !name.trim().is_empty() => name,
        Some(_) => return Err(FlowError::new("name", "must be a non-empty string")),
        None => return Err(FlowError::new("name", "missing: a flow needs a name")),
    };
    let notify = match top.remove("notify") {
        None => None,
        Some(Value::String(cmd)) => Some(cmd),
        Some(_) => return Err(FlowError::new("notify", "must be a command (a string)")),
    };
    let Some(Value::Object(raw_steps)) = top.remove("steps") else {
        return Err(FlowError::new(
            "steps",
            "missing: a flow needs at least one step (`[steps.NAME]`)",
        ));
    };
    if raw_steps.is_empty() {
        return Err(FlowError::new("steps", "a flow needs at least one step"));
    }
    let mut steps = Vec::with_capacity(raw_steps.len());
    for (step_name, raw) in raw_steps {
        let field = format!("steps.{step_name}");
        if !valid_step_name(&step_name) {
            return Err(FlowError::new(
                field,
                "a step's name is letters, digits, `_` and `-`",
            ));
        }
        let Value::Object(mut spec) = raw else {
            return Err(FlowError::new(field, "must be a table of job fields"));
        };
        let after = match spec.remove("after") {
            None => Vec::new(),
            Some(Value::String(one)) => vec![one],
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s),
                    _ => Err(FlowError::new(
                        format!("{field}.after"),
                        "must name steps (strings)",
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(FlowError::new(
                    format!("{field}.after"),
                    "must name steps (a string or an array of strings)",
                ));
            }
        };
        let each = spec
            .remove("each")
            .map(|each| {
                Sweep::from_json(&each).map_err(|e| FlowError::new(format!("{field}.each"), e.0))
            })
            .transpose()?;
        steps.push(Step {
            name: step_name,
            after,
            each,
            spec,
        });
    }
    let flow = Flow {
        name,
        notify,
        steps,
    };
    flow.check_graph()?;
    Ok(flow)
}

fn valid_step_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl<S> Flow<S> {
    fn position(&self, name: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.name == name)
    }

    /// Every `after` names a step, none twice, and there is no cycle.
    fn check_graph(&self) -> Result<(), FlowError> {
        for step in &self.steps {
            for (i, after) in step.after.iter().enumerate() {
                if self.position(after).is_none() {
                    return Err(FlowError::new(
                        format!("steps.{}.after", step.name),
                        format!("no step `{after}`"),
                    ));
                }
                if step.after[..i].contains(after) {
                    return Err(FlowError::new(
                        format!("steps.{}.after", step.name),
                        format!("`{after}` is named twice"),
                    ));
                }
            }
        }
        if let Some(cycle) = self.cycle() {
            let mut words: Vec<&str> = cycle.iter().map(|&i| self.steps[i].name.as_str()).collect();
            words.push(words[0]);
            return Err(FlowError::new(
                "steps",
                format!("the steps form a cycle: {}", words.join(" → ")),
            ));
        }
        let total: usize = self
            .steps
            .iter()
            .map(|s| s.each.as_ref().map_or(1, Sweep::len))
            .fold(0usize, usize::saturating_add);
        if total > group::MAX_MEMBERS {
            return Err(FlowError::new(
                "steps",
                format!("{total} jobs; a flow makes at most {}", group::MAX_MEMBERS),
            ));
        }
        Ok(())
    }

    /// A cycle of steps (each needing the next, the last needing the first), if there is one.
    fn cycle(&self) -> Option<Vec<usize>> {
        // Depth-first search along `after`, colouring: 0 unseen, 1 on the path, 2 done.
        let n = self.steps.len();
        let needs: Vec<Vec<usize>> = self
            .steps
            .iter()
            .map(|s| s.after.iter().filter_map(|a| self.position(a)).collect())
            .collect();
        let mut colour = vec![0u8; n];
        let mut path = Vec::new();
        fn visit(
            at: usize,
            needs: &[Vec<usize>],
            colour: &mut [u8],
            path: &mut Vec<usize>,
        ) -> Option<Vec<usize>> {
            colour[at] = 1;
            path.push(at);
            for &next in &needs[at] {
                if colour[next] == 1 {
                    let start = path.iter().position(|&p| p == next).unwrap_or(0);
                    // The path goes from a step to what it needs; people read a flow the other
                    // way (what runs first), so the cycle is given in run order.
                    let mut cycle = path[start..].to_vec();
                    cycle.reverse();
                    // Told from the step written first, whichever the search met first.
                    if let Some(first) = cycle
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, s)| **s)
                        .map(|(i, _)| i)
                    {
                        cycle.rotate_left(first);
                    }
                    return Some(cycle);
                }
                if colour[next] == 0 {
                    if let Some(cycle) = visit(next, needs, colour, path) {
                        return Some(cycle);
                    }
                }
            }
            path.pop();
            colour[at] = 2;
            None
        }
        (0..n).find_map(|start| {
            if colour[start] == 0 {
                visit(start, &needs, &mut colour, &mut path)
            } else {
                None
            }
        })
    }

    /// The same flow with each step's spec turned into another, by `parse` (which is given the
    /// step's name, for its errors).
    pub fn try_map<T>(
        self,
        mut parse: impl FnMut(&str, S) -> Result<T, FlowError>,
    ) -> Result<Flow<T>, FlowError> {
        let steps = self
            .steps
            .into_iter()
            .map(|step| {
                let spec = parse(&step.name, step.spec)?;
                Ok(Step {
                    name: step.name,
                    after: step.after,
                    each: step.each,
                    spec,
                })
            })
            .collect::<Result<_, FlowError>>()?;
        Ok(Flow {
            name: self.name,
            notify: self.notify,
            steps,
        })
    }
}

/// One job of a plan: its spec (argv filled, values in its environment), where it sits in the
/// group, and the jobs it waits for as positions in the plan (always earlier ones).
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// What to run; its `after` is empty (the store fills it from `after`).
    pub spec: JobSpec,
    /// Its step (a sweep's one step too).
    pub step: String,
    /// Its place in its step's sweep, from 0.
    pub index: u32,
    /// Its sweep values by axis (the unnamed axis is `value`).
    pub values: Vec<(String, String)>,
    /// The earlier jobs of the plan it runs after.
    pub after: Vec<usize>,
}

/// A flow made into jobs, in an order where every job comes after those it needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The steps, as written, with how many jobs each made.
    pub steps: Vec<GroupStep>,
    /// The jobs.
    pub jobs: Vec<Planned>,
}

impl Flow<JobSpec> {
    /// Makes the flow's jobs: each step once, or once per point of its sweep, steps in an order
    /// that respects `after` (the order written where it can). A job's name is the flow's and
    /// step's (`scan.work[3]`; a sweep's is `sim[3]`) unless its spec names it; its environment
    /// gets `DROVER_INDEX` and, per axis, `DROVER_EACH[_NAME]`.
    pub fn plan(&self, kind: GroupKind) -> Plan {
        let order = self.run_order();
        let mut first_job = vec![0usize; self.steps.len()];
        let mut job_count = vec![0usize; self.steps.len()];
        let mut jobs = Vec::new();
        for &at in &order {
            let step = &self.steps[at];
            let after: Vec<usize> = step
                .after
                .iter()
                .filter_map(|name| self.position(name))
                .flat_map(|up| first_job[up]..first_job[up] + job_count[up])
                .collect();
            let base = match (&step.spec.name, kind) {
                (Some(name), _) => name.clone(),
                (None, GroupKind::Sweep) => self.name.clone(),
                (None, GroupKind::Flow) => format!("{}.{}", self.name, step.name),
            };
            let points = match &step.each {
                Some(sweep) => sweep.points(),
                None => vec![Vec::new()],
            };
            first_job[at] = jobs.len();
            job_count[at] = points.len();
            let sweeping = step.each.is_some();
            for (index, point) in points.into_iter().enumerate() {
                let mut spec = step.spec.clone();
                spec.name = Some(group::member_name(&base, &point));
                if sweeping {
                    spec.argv = group::fill_argv(&spec.argv, &point);
                    spec.env
                        .insert("DROVER_INDEX".to_string(), index.to_string());
                    for (axis, value) in &point {
                        spec.env.insert(group::env_name(axis), value.clone());
                    }
                }
                // The unnamed axis is `value` where values are shown by name.
                let values = point
                    .into_iter()
                    .map(|(axis, v)| {
                        (
                            if axis.is_empty() {
                                "value".to_string()
                            } else {
                                axis
                            },
                            v,
                        )
                    })
                    .collect();
                jobs.push(Planned {
                    spec,
                    step: step.name.clone(),
                    index: u32::try_from(index).unwrap_or(u32::MAX),
                    values,
                    after: after.clone(),
                });
            }
        }
        let steps = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, step)| GroupStep {
                name: step.name.clone(),
                after: step.after.clone(),
                jobs: u32::try_from(job_count[i]).unwrap_or(u32::MAX),
                axes: step
                    .each
                    .as_ref()
                    .map(|s| {
                        s.axes
                            .iter()
                            .map(|a| {
                                if a.name.is_empty() {
                                    "value".to_string()
                                } else {
                                    a.name.clone()
                                }
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect();
        Plan { steps, jobs }
    }

    /// The steps in an order where each comes after what it needs; among steps ready at once,
    /// the one written first. (The graph was checked acyclic when the flow was read.)
    fn run_order(&self) -> Vec<usize> {
        let n = self.steps.len();
        let mut done = vec![false; n];
        let mut order = Vec::with_capacity(n);
        while order.len() < n {
            let next = (0..n).find(|&i| {
                !done[i]
                    && self.steps[i]
                        .after
                        .iter()
                        .all(|a| self.position(a).is_none_or(|p| done[p]))
            });
            let Some(next) = next else {
                // Only a cycle leaves steps unready; take the rest as written.
                order.extend((0..n).filter(|&i| !done[i]));
                break;
            };
            done[next] = true;
            order.push(next);
        }
        order
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn specs(flow: Flow<Map<String, Value>>) -> Flow<JobSpec> {
        flow.try_map(|_, raw| {
            serde_json::from_value(Value::Object(raw))
                .map_err(|e| FlowError::new("x", e.to_string()))
        })
        .unwrap()
    }

    #[test]
    fn a_split_sweep_aggregate_flow_plans_fan_out_and_fan_in() {
        let flow = parse(json!({
            "name": "scan",
            "steps": {
                "total": {"after": ["work"], "argv": ["total"]},
                "split": {"argv": ["split"]},
                "work": {"after": "split", "each": "1..3", "argv": ["work", "{}"]},
            }
        }))
        .unwrap();
        let plan = specs(flow).plan(GroupKind::Flow);
        let names: Vec<_> = plan
            .jobs
            .iter()
            .map(|j| j.spec.name.clone().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "scan.split",
                "scan.work[1]",
                "scan.work[2]",
                "scan.work[3]",
                "scan.total"
            ]
        );
        assert_eq!(plan.jobs[1].after, vec![0]);
        assert_eq!(plan.jobs[4].after, vec![1, 2, 3]);
        assert_eq!(plan.jobs[2].spec.argv, ["work", "2"]);
        assert_eq!(plan.jobs[2].spec.env["DROVER_INDEX"], "1");
        assert_eq!(plan.jobs[2].spec.env["DROVER_EACH"], "2");
        assert_eq!(plan.steps[0].name, "total");
        assert_eq!(plan.steps[2].jobs, 3);
    }

    #[test]
    fn a_cycle_is_named_in_order() {
        let err = parse(json!({
            "name": "c",
            "steps": {
                "a": {"after": ["c"], "argv": ["a"]},
                "b": {"after": ["a"], "argv": ["b"]},
                "c": {"after": ["b"], "argv": ["c"]},
            }
        }))
        .unwrap_err();
        assert_eq!(err.field, "steps");
        assert!(err.message.contains("cycle"), "{err}");
        assert!(err.message.ends_with("a → b → c → a"), "{err}");
        // Each step appears, the first again at the end, in an order that runs along `after`.
        let chain: Vec<&str> = err
            .message
            .rsplit(": ")
            .next()
            .unwrap()
            .split(" → ")
            .collect();
        assert_eq!(chain.len(), 4);
        assert_eq!(chain[0], chain[3]);
        for pair in chain.windows(2) {
            let (first, then) = (pair[0], pair[1]);
            assert!(
                matches!((first, then), ("a", "b") | ("b", "c") | ("c", "a")),
                "{err}"
            );
        }
        let myself =
            parse(json!({"name": "s", "steps": {"a": {"after": "a", "argv": ["a"]}}})).unwrap_err();
        assert!(myself.message.contains("a → a"), "{myself}");
    }

    #[test]
    fn unknown_steps_and_fields_are_named() {
        let err = parse(json!({"name": "f", "steps": {"a": {"after": ["nope"], "argv": ["a"]}}}))
            .unwrap_err();
        assert_eq!(
            (err.field.as_str(), err.message.as_str()),
            ("steps.a.after", "no step `nope`")
        );
        let err = parse(json!({"name": "f", "timeout": "1s", "steps": {"a": {"argv": ["a"]}}}))
            .unwrap_err();
        assert_eq!(err.field, "timeout");
        assert!(parse(json!({"name": "f", "steps": {}})).is_err());
        assert!(parse(json!({"steps": {"a": {"argv": ["a"]}}})).is_err());
        let err = parse(json!({"name": "f", "steps": {"a": {"each": "3..1", "argv": ["a"]}}}))
            .unwrap_err();
        assert_eq!(err.field, "steps.a.each");
    }

    #[test]
    fn a_sweep_is_a_flow_of_one_step() {
        let flow = parse(json!({
            "name": "sim",
            "steps": {"sim": {"each": {"n": "1..2", "seed": [1, 2, 3]}, "argv": ["sim", "{n}", "{seed}"]}}
        }))
        .unwrap();
        let plan = specs(flow).plan(GroupKind::Sweep);
        assert_eq!(plan.jobs.len(), 6);
        assert_eq!(plan.jobs[4].spec.argv, ["sim", "2", "2"]);
        assert_eq!(plan.jobs[4].spec.name.as_deref(), Some("sim[n=2,seed=2]"));
        assert_eq!(plan.jobs[4].spec.env["DROVER_EACH_SEED"], "2");
        assert_eq!(plan.jobs[4].spec.env["DROVER_EACH_N"], "2");
        assert_eq!(plan.steps[0].axes, ["n", "seed"]);
    }
}
