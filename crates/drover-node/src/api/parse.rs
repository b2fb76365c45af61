//! Request bodies into typed values: JSON into a type with the field at fault named
//! (`timeout`, `[3].argv`), job specs and batches validated, and queue defaults filled into the
//! fields a spec leaves out. Pure functions of bytes: no store, no state.

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use drover_core::{JobSpec, Limits};

use super::*;

/// Parses a JSON value of type `T`, naming the field at fault (`timeout`, `[3].argv`).
pub(super) fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(json_error)?;
    de.end()
        .map_err(|_| ApiError::bad("body", "trailing characters after the JSON value"))?;
    Ok(value)
}

/// Reads a JSON value already parsed (a spec with defaults filled in) as `T`, naming the field
/// at fault as [`parse_json`] does.
pub(super) fn from_value<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(json_error)
}

/// A JSON error as the API words it: the status, and the field at fault.
fn json_error(err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let status = match inner.classify() {
            serde_json::error::Category::Data => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        };
        let message = inner.to_string();
        let quoted = quoted_field(&message);
        let field = match (path.as_str(), quoted) {
            // Not JSON at all: the body is at fault, wherever the parser stopped.
            _ if status == StatusCode::BAD_REQUEST => "body".to_string(),
            ("" | ".", Some(name)) => name,
            ("" | ".", None) => "body".to_string(),
            // An unknown field inside an array element: `[2]` plus the name serde quotes.
            (element, Some(name)) if element.ends_with(']') => format!("{element}.{name}"),
            (path, _) => path.to_string(),
        };
        let message = match message.rsplit_once(" at line ") {
            Some((head, _)) => head.to_string(),
            None => message,
        };
        ApiError::new(status, Some(&field), message)
    }
}

/// Whether a body is a batch — an array, or an object with `jobs` — rather than one spec.
/// Scanned without building the values, which the parse that follows does once.
pub(super) fn is_batch(bytes: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe {
        jobs: Option<serde::de::IgnoredAny>,
    }
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => true,
        Some(b'{') => serde_json::from_slice::<Probe>(bytes).is_ok_and(|p| p.jobs.is_some()),
        _ => false,
    }
}

/// Turns a spec's `delay` into `at`, counted from `now` on this node's clock: what is stored is
/// the time.
pub(super) fn delay_to_at(spec: &mut JobSpec, now: chrono::DateTime<chrono::Utc>) {
    if let Some(delay) = spec.delay.take() {
        let delay = chrono::Duration::from_std(delay.get()).unwrap_or(chrono::Duration::MAX);
        spec.at = Some(
            now.checked_add_signed(delay)
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC),
        );
    }
}

/// Parses and validates one job spec.
pub fn parse_spec(bytes: &[u8], limits: &Limits) -> Result<JobSpec, ApiError> {
    parse_spec_with(bytes, limits, &QueueDefaults::new())
}

/// Fills the fields a spec leaves out from its queue's defaults; a table (`env`, `require`)
/// gets the default's keys it lacks, so a job's own variables add to its queue's. Works on
/// JSON so that "left out" is known: a deserialized spec already holds the built-in defaults.
pub(super) fn with_queue_defaults(
    mut value: serde_json::Value,
    defaults: &QueueDefaults,
) -> serde_json::Value {
    if let Some(object) = value.as_object_mut() {
        let queue = object
            .get("queue")
            .and_then(|q| q.as_str())
            .unwrap_or(drover_core::DEFAULT_QUEUE)
            .to_string();
        if let Some(fill) = defaults.get(&queue) {
            fill_from(object, fill);
        }
    }
    value
}

/// Gives `spec` the fields of `fill` it lacks; a table (`env`, `require`) gets the keys it
/// lacks.
fn fill_from(
    spec: &mut serde_json::Map<String, serde_json::Value>,
    fill: &serde_json::Map<String, serde_json::Value>,
) {
    for (key, default) in fill {
        let given = spec.entry(key.clone()).or_insert_with(|| default.clone());
        if let (Some(given), Some(default)) = (given.as_object_mut(), default.as_object()) {
            for (name, value) in default {
                given.entry(name.clone()).or_insert_with(|| value.clone());
            }
        }
    }
}

/// A batch as `{"common": {...}, "jobs": [...]}` made a plain array: each job gets the fields
/// of `common` it leaves out, as from a queue's defaults — except that a job giving `env_clear`
/// itself gives its whole environment, and takes no `env` from `common`. (The CLI sends the
/// submitter's environment once in `common` instead of once per job.) An array is as it is.
fn with_common(value: serde_json::Value) -> Result<serde_json::Value, ApiError> {
    let serde_json::Value::Object(mut batch) = value else {
        return Ok(value);
    };
    if let Some(key) = batch.keys().find(|k| *k != "common" && *k != "jobs") {
        return Err(ApiError::bad(
            key,
            "unknown field; a batch object has `common` and `jobs`",
        ));
    }
    let common = match batch.remove("common") {
        None => serde_json::Map::new(),
        Some(serde_json::Value::Object(common)) => common,
        Some(_) => return Err(ApiError::bad("common", "must be an object of spec fields")),
    };
    let Some(serde_json::Value::Array(mut jobs)) = batch.remove("jobs") else {
        return Err(ApiError::bad("jobs", "must be an array of specs"));
    };
    let common = Common::new(common);
    for job in &mut jobs {
        if let Some(job) = job.as_object_mut() {
            common.fill(job);
        }
    }
    Ok(serde_json::Value::Array(jobs))
}

/// The fields every job of a batch (or step of a flow) gets where it leaves them out: `env` key
/// by key — except that a job giving `env_clear` itself gives its whole environment, and takes
/// no `env` from here.
pub(super) struct Common {
    all: serde_json::Map<String, serde_json::Value>,
    without_env: serde_json::Map<String, serde_json::Value>,
}

impl Common {
    pub(super) fn new(all: serde_json::Map<String, serde_json::Value>) -> Self {
        let mut without_env = all.clone();
        without_env.remove("env");
        Self { all, without_env }
    }

    /// Gives `job` the common fields it lacks.
    pub(super) fn fill(&self, job: &mut serde_json::Map<String, serde_json::Value>) {
        let fill = if job.contains_key("env_clear") {
            &self.without_env
        } else {
            &self.all
        };
        fill_from(job, fill);
    }
}

/// [`parse_spec`], with per-queue defaults.
pub fn parse_spec_with(
    bytes: &[u8],
    limits: &Limits,
    defaults: &QueueDefaults,
) -> Result<JobSpec, ApiError> {
    let spec: JobSpec = if defaults.is_empty() {
        parse_json(bytes)?
    } else {
        let value: serde_json::Value = parse_json(bytes)?;
        from_value(with_queue_defaults(value, defaults))?
    };
    spec.validate(limits)?;
    Ok(spec)
}

/// Parses and validates a batch (a JSON array of specs, or `{"common": {...}, "jobs": [...]}`);
/// errors name the element: `[3].timeout`.
pub fn parse_batch(bytes: &[u8], limits: &Limits) -> Result<Vec<JobSpec>, ApiError> {
    parse_batch_with(bytes, limits, &QueueDefaults::new())
}

/// [`parse_batch`], with per-queue defaults.
pub fn parse_batch_with(
    bytes: &[u8],
    limits: &Limits,
    defaults: &QueueDefaults,
) -> Result<Vec<JobSpec>, ApiError> {
    let plain_array = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let specs: Vec<JobSpec> = if plain_array && defaults.is_empty() {
        // Nothing to fill in: straight into specs.
        parse_json(bytes)?
    } else {
        let value: serde_json::Value = parse_json(bytes)?;
        let value = match with_common(value)? {
            serde_json::Value::Array(items) => serde_json::Value::Array(
                items
                    .into_iter()
                    .map(|item| with_queue_defaults(item, defaults))
                    .collect(),
            ),
            other => other,
        };
        from_value(value)?
    };
    if specs.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("body"),
            "an empty batch",
        ));
    }
    if specs.len() > MAX_BATCH {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("body"),
            format!("a batch holds at most {MAX_BATCH} jobs"),
        ));
    }
    for (i, spec) in specs.iter().enumerate() {
        spec.validate(limits).map_err(|err| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(&format!("[{i}].{}", err.field)),
                err.message,
            )
        })?;
    }
    Ok(specs)
}

/// The field serde complains about in "unknown field `x`" / "missing field `x`".
fn quoted_field(message: &str) -> Option<String> {
    if !(message.starts_with("unknown field") || message.starts_with("missing field")) {
        return None;
    }
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}

pub(super) async fn read_body(request: Request) -> Result<Bytes, ApiError> {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        // Refuse before reading: a client that waits for the answer gets it at once.
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Some("body"),
            format!("larger than {MAX_BODY_BYTES} bytes"),
        ));
    }
    axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                Some("body"),
                format!("larger than {MAX_BODY_BYTES} bytes, or unreadable"),
            )
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// The field an error names, and its status.
    fn fault(err: ApiError) -> (StatusCode, Option<String>) {
        (err.status(), err.field().map(str::to_string))
    }

    #[test]
    fn errors_name_the_field_at_fault() {
        let limits = Limits::default();
        let unknown = parse_spec(br#"{"argv": ["true"], "timeuot": "1s"}"#, &limits).unwrap_err();
        assert_eq!(
            fault(unknown),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("timeuot".into()))
        );
        let missing = parse_spec(br#"{"timeout": "1s"}"#, &limits).unwrap_err();
        assert_eq!(fault(missing).1.as_deref(), Some("argv"));
        let bad_value =
            parse_spec(br#"{"argv": ["true"], "timeout": "soon"}"#, &limits).unwrap_err();
        assert_eq!(fault(bad_value).1.as_deref(), Some("timeout"));
        let not_json = parse_spec(b"{argv", &limits).unwrap_err();
        assert_eq!(
            fault(not_json),
            (StatusCode::BAD_REQUEST, Some("body".into()))
        );
        let trailing = parse_spec(br#"{"argv": ["true"]} {}"#, &limits).unwrap_err();
        assert_eq!(fault(trailing).1.as_deref(), Some("body"));
        let invalid = parse_spec(br#"{"argv": []}"#, &limits).unwrap_err();
        assert_eq!(fault(invalid).1.as_deref(), Some("argv"));
    }

    #[test]
    fn batch_errors_name_the_element() {
        let limits = Limits::default();
        let unknown = parse_batch(
            br#"[{"argv": ["true"]}, {"argv": ["true"], "nmae": "x"}]"#,
            &limits,
        )
        .unwrap_err();
        assert_eq!(fault(unknown).1.as_deref(), Some("[1].nmae"));
        let invalid = parse_batch(br#"[{"argv": ["true"]}, {"argv": []}]"#, &limits).unwrap_err();
        assert_eq!(fault(invalid).1.as_deref(), Some("[1].argv"));
        let empty = parse_batch(b"[]", &limits).unwrap_err();
        assert_eq!(
            fault(empty),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("body".into()))
        );
        let specs = parse_batch(br#"[{"argv": ["a"]}, {"argv": ["b"]}]"#, &limits).unwrap();
        assert_eq!(specs[1].argv, vec!["b".to_string()]);
    }

    #[test]
    fn queue_defaults_fill_only_what_a_spec_leaves_out() {
        let limits = Limits::default();
        let mut defaults = QueueDefaults::new();
        let mut sage = serde_json::Map::new();
        sage.insert("timeout".into(), "12h".into());
        sage.insert("retries".into(), 2.into());
        defaults.insert("sage".into(), sage);
        let spec = parse_spec_with(
            br#"{"argv": ["sage"], "queue": "sage", "retries": 0}"#,
            &limits,
            &defaults,
        )
        .unwrap();
        assert_eq!(spec.timeout.to_string(), "12h", "left out: the queue's");
        assert_eq!(
            spec.retries, 0,
            "given: the spec's own, even when it is the default"
        );
        let elsewhere = parse_spec_with(br#"{"argv": ["sage"]}"#, &limits, &defaults).unwrap();
        assert_eq!(elsewhere.timeout, drover_core::spec::DEFAULT_TIMEOUT);
        let batch = parse_batch_with(
            br#"[{"argv": ["a"], "queue": "sage"}, {"argv": ["b"]}]"#,
            &limits,
            &defaults,
        )
        .unwrap();
        assert_eq!((batch[0].retries, batch[1].retries), (2, 0));
    }

    #[test]
    fn a_batch_shares_its_common_fields() {
        let body = br#"{"common": {"env": {"P": "1", "Q": "2"}, "env_clear": true, "cwd": "/w"},
                        "jobs": [{"argv": ["a"], "env": {"P": "9"}},
                                 {"argv": ["b"], "env_clear": true, "cwd": "/x"}]}"#;
        let specs = parse_batch(body, &Limits::default()).unwrap();
        assert_eq!(
            specs[0].env.get("P").map(String::as_str),
            Some("9"),
            "its own wins"
        );
        assert_eq!(specs[0].env.get("Q").map(String::as_str), Some("2"));
        assert!(specs[0].env_clear);
        assert_eq!(specs[0].cwd.as_deref(), Some("/w"));
        assert!(
            specs[1].env.is_empty(),
            "env_clear of its own: no common env"
        );
        assert_eq!(specs[1].cwd.as_deref(), Some("/x"));
        let stray = br#"{"jobs": [{"argv": ["a"]}], "extra": 1}"#;
        assert!(parse_batch(stray, &Limits::default()).is_err());
    }

    #[test]
    fn batches_are_told_from_single_specs() {
        assert!(is_batch(b" [{\"argv\": [\"a\"]}]"));
        assert!(is_batch(br#"{"common": {}, "jobs": [{"argv": ["a"]}]}"#));
        assert!(
            !is_batch(br#"{"argv": ["a"], "env": {"jobs": "3"}}"#),
            "a nested key"
        );
        assert!(!is_batch(br#"{"argv": ["a"]}"#));
        assert!(!is_batch(b"not json"));
    }

    #[test]
    fn a_jobs_variables_add_to_its_queues() {
        let mut defaults = QueueDefaults::new();
        let mut sage = serde_json::Map::new();
        sage.insert(
            "env".into(),
            serde_json::json!({"SAGE_ROOT": "/opt/sage", "P": "1"}),
        );
        defaults.insert("sage".into(), sage);
        let spec = parse_spec_with(
            br#"{"argv": ["sage"], "queue": "sage", "env": {"P": "42"}}"#,
            &Limits::default(),
            &defaults,
        )
        .unwrap();
        assert_eq!(
            spec.env.get("SAGE_ROOT").map(String::as_str),
            Some("/opt/sage")
        );
        assert_eq!(
            spec.env.get("P").map(String::as_str),
            Some("42"),
            "the job's own wins"
        );
    }
}
