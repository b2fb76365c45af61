//! Unit tests of job specs: defaults, validation by field, checkpoint settings, memory growth.

use super::*;

#[test]
fn checkpoint_fields_are_checked_together() {
    let limits = Limits::default();
    let mut spec = JobSpec::new(["x"]);
    spec.timeout = "4s".parse().expect("duration");
    assert_eq!(
        spec.checkpoint_code(),
        None,
        "plain jobs have no checkpoint code"
    );
    spec.signal_before = Some("2s".parse().expect("duration"));
    assert_eq!(
        spec.validate(&limits).map_err(|e| e.field),
        Err("signal_before".into())
    );
    spec.checkpoint_signal = Some("USR1".parse().expect("signal"));
    assert!(spec.validate(&limits).is_ok());
    assert_eq!(spec.checkpoint_code(), Some(DEFAULT_CHECKPOINT_EXIT_CODE));
    spec.signal_before = Some("4s".parse().expect("duration"));
    assert_eq!(
        spec.validate(&limits).map_err(|e| e.field),
        Err("signal_before".into()),
        "the signal must come before the timeout"
    );
    spec.signal_before = None;
    assert_eq!(
        spec.validate(&limits).map_err(|e| e.field),
        Err("checkpoint_signal".into())
    );
    let mut coded = JobSpec::new(["x"]);
    coded.checkpoint_exit_code = Some(0);
    assert_eq!(
        coded.validate(&limits).map_err(|e| e.field),
        Err("checkpoint_exit_code".into())
    );
    coded.checkpoint_exit_code = Some(3);
    assert_eq!(coded.checkpoint_code(), Some(3));
    let json = r#"{"argv":["x"],"timeout":"1h","checkpoint_signal":"USR2","signal_before":"5m"}"#;
    let parsed: JobSpec = serde_json::from_str(json).expect("parses");
    assert_eq!(parsed.checkpoint_signal, Some(crate::Signal(12)));
}

fn field_of(spec: &JobSpec) -> Option<String> {
    spec.validate(&Limits::default()).err().map(|e| e.field)
}

#[test]
fn a_plain_spec_is_valid() {
    assert_eq!(field_of(&JobSpec::new(["true"])), None);
}

#[test]
fn errors_name_the_field() {
    assert_eq!(
        field_of(&JobSpec::new(Vec::<String>::new())).as_deref(),
        Some("argv")
    );
    assert_eq!(field_of(&JobSpec::new([""])).as_deref(), Some("argv[0]"));
    assert_eq!(
        field_of(&JobSpec::new(["echo", "a\0b"])).as_deref(),
        Some("argv[1]")
    );
    let mut spec = JobSpec::new(["true"]);
    spec.env.insert("A=B".into(), "x".into());
    assert_eq!(field_of(&spec).as_deref(), Some("env.A=B"));
    let mut spec = JobSpec::new(["true"]);
    spec.cwd = Some("relative/dir".into());
    assert_eq!(field_of(&spec).as_deref(), Some("cwd"));
    let mut spec = JobSpec::new(["true"]);
    spec.timeout = HumanDuration::default();
    assert_eq!(field_of(&spec).as_deref(), Some("timeout"));
    let spec = JobSpec::new(vec!["x".repeat(1000); 300]);
    assert_eq!(field_of(&spec).as_deref(), Some("argv"));
    let mut spec = JobSpec::new(["true"]);
    spec.memory = Some(Size(1 << 20));
    assert_eq!(field_of(&spec).as_deref(), Some("memory"));
    let mut spec = JobSpec::new(["true"]);
    spec.pids = Some(0);
    assert_eq!(field_of(&spec).as_deref(), Some("pids"));
    let mut spec = JobSpec::new(["true"]);
    spec.nofile = Some(2);
    assert_eq!(field_of(&spec).as_deref(), Some("nofile"));
    // Values a kernel refuses at spawn are refused at submit (the fault run found both).
    let mut spec = JobSpec::new(["true"]);
    spec.nofile = Some((1 << 31) - 1);
    assert_eq!(field_of(&spec).as_deref(), Some("nofile"));
    spec.nofile = Some(super::MAX_NOFILE);
    assert_eq!(field_of(&spec), None);
    let mut spec = JobSpec::new(["true"]);
    spec.pids = Some(2_147_483_647);
    assert_eq!(field_of(&spec).as_deref(), Some("pids"));
    spec.pids = Some(super::MAX_PIDS);
    assert_eq!(field_of(&spec), None);
    let mut spec = JobSpec::new(["true"]);
    spec.require.insert("has".into(), "x".repeat(1 << 20));
    assert_eq!(field_of(&spec).as_deref(), Some("require"));
    let mut spec = JobSpec::new(["true"]);
    spec.require.insert("bad key".into(), "1".into());
    assert_eq!(field_of(&spec).as_deref(), Some("require"));
    let mut spec = JobSpec::new(["true"]);
    spec.stall = Some(HumanDuration::default());
    assert_eq!(field_of(&spec).as_deref(), Some("stall"));
    let mut spec = JobSpec::new(["true"]);
    spec.cpus = Some(Cpus::from_millis(1));
    assert_eq!(field_of(&spec).as_deref(), Some("cpus"));
}

#[test]
fn json_defaults_and_unknown_fields() {
    let spec: JobSpec = serde_json::from_str(r#"{"argv":["true"],"timeout":"90s"}"#)
        .unwrap_or_else(|_| JobSpec::new(["wrong"]));
    assert_eq!(spec.argv, vec!["true"]);
    assert_eq!(spec.timeout, HumanDuration::from_secs(90));
    assert_eq!(spec.grace, DEFAULT_GRACE);
    let err = serde_json::from_str::<JobSpec>(r#"{"argv":["true"],"timout":"9s"}"#)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("timout"), "{err}");
}

#[test]
fn memory_grows_up_to_its_maximum() {
    let mut spec = JobSpec::new(["sage"]);
    assert_eq!(
        spec.grown_memory(Some(1 << 30)),
        None,
        "no limit, nothing to grow"
    );
    spec.memory = Some(Size(50 << 20));
    spec.memory_max = Some(Size(400 << 20));
    assert_eq!(spec.grown_memory(Some(50 << 20)), Some(Size(100 << 20)));
    assert_eq!(spec.grown_memory(Some(120 << 20)), Some(Size(240 << 20)));
    assert_eq!(
        spec.grown_memory(Some(300 << 20)),
        Some(Size(400 << 20)),
        "capped"
    );
    spec.memory = Some(Size(400 << 20));
    assert_eq!(
        spec.grown_memory(Some(400 << 20)),
        None,
        "already at the maximum"
    );
    spec.memory = None;
    assert_eq!(field_of(&spec).as_deref(), Some("memory_max"));
}

#[test]
fn queue_fields_are_checked() {
    let mut spec = JobSpec::new(["true"]);
    spec.retry_on = Some(vec!["failed".into(), "sometimes".into()]);
    assert_eq!(field_of(&spec).as_deref(), Some("retry_on[1]"));
    let mut spec = JobSpec::new(["true"]);
    spec.idempotency_key = Some(String::new());
    assert_eq!(field_of(&spec).as_deref(), Some("idempotency_key"));
    let spec: JobSpec = serde_json::from_str(
        r#"{"argv":["x"],"delay":"2s","backoff":"1s..5m","retry_on":["memory_limit"],"idempotency_key":"k1"}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(spec.validate(&Limits::default()), Ok(()));
    assert_eq!(
        spec.backoff.map(|b| b.to_string()).as_deref(),
        Some("1s..5m")
    );
}

#[test]
fn a_job_larger_than_the_node_is_refused() {
    let limits = Limits {
        max_memory: Some(Size(1 << 30)),
        max_cpus: Some(Cpus::whole(2)),
        ..Limits::default()
    };
    let mut spec = JobSpec::new(["sage"]);
    spec.memory = Some(Size(2 << 30));
    let err = spec
        .validate(&limits)
        .err()
        .unwrap_or_else(|| panic!("refused"));
    assert_eq!(err.field, "memory");
    assert!(err.message.contains("2.0 GiB"), "{}", err.message);
    spec.memory = Some(Size(1 << 30));
    spec.cpus = Some(Cpus::whole(4));
    assert_eq!(
        spec.validate(&limits).err().map(|e| e.field).as_deref(),
        Some("cpus")
    );
    spec.cpus = Some(Cpus::whole(2));
    assert_eq!(spec.validate(&limits), Ok(()));
}

#[test]
fn limits_read_from_json() {
    let spec: JobSpec = serde_json::from_str(
        r#"{"argv":["sage"],"memory":"100M","cpus":0.5,"pids":50,"nofile":256,"stall":"1s"}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(spec.memory, Some(Size(100 << 20)));
    assert_eq!(spec.cpus, Some(Cpus::from_millis(500)));
    assert_eq!(spec.pids, Some(50));
    assert_eq!(spec.nofile, Some(256));
    assert_eq!(spec.stall, Some(HumanDuration::from_secs(1)));
    assert_eq!(spec.resources().memory_bytes, 100 << 20);
    assert_eq!(spec.resources().cpu_millis, 500);
    assert_eq!(spec.validate(&Limits::default()), Ok(()));
}

#[test]
fn display_name_defaults_to_program() {
    assert_eq!(
        JobSpec::new(["/usr/bin/sage", "x.sage"]).display_name(),
        "sage"
    );
    let mut spec = JobSpec::new(["sh"]);
    spec.name = Some("nightly".into());
    assert_eq!(spec.display_name(), "nightly");
}
