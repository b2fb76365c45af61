//! Unit tests of the spawn: resolving the program and building the environment.

use super::*;

#[test]
fn programs_are_found_in_the_jobs_path() {
    let env = vec![(
        OsString::from("PATH"),
        OsString::from("/nonexistent:/bin:/usr/bin"),
    )];
    let sh = resolve_program("sh", &env, None).expect("sh is on PATH");
    assert!(sh.ends_with("sh"));
    let missing = resolve_program("no-such-program-xyz", &env, None).expect_err("missing");
    assert_eq!(missing.raw_os_error(), Some(libc::ENOENT));
    assert_eq!(
        resolve_program("./x", &env, None).expect("as is"),
        PathBuf::from("./x")
    );
}

#[test]
fn job_variables_override_the_nodes() {
    let env = job_env(&[("PATH".into(), "/only/here".into())], &[], false);
    let paths: Vec<_> = env.iter().filter(|(k, _)| k == "PATH").collect();
    assert_eq!(paths.len(), 1);
    assert_eq!(paths[0].1, OsString::from("/only/here"));
}

#[test]
fn removed_variables_are_not_inherited_but_may_be_set() {
    // HOME is in every test's environment; PATH is removed and then set by the job.
    let removed = ["HOME".to_string(), "PATH".to_string()];
    let env = job_env(&[("PATH".into(), "/mine".into())], &removed, false);
    assert!(env.iter().all(|(k, _)| k != "HOME"), "HOME was removed");
    let paths: Vec<_> = env.iter().filter(|(k, _)| k == "PATH").collect();
    assert_eq!(paths, [&(OsString::from("PATH"), OsString::from("/mine"))]);
}

#[test]
fn a_clear_environment_is_the_jobs_alone() {
    let env = job_env(&[("P".into(), "42".into())], &[], true);
    let expected = [
        (OsString::from("P"), OsString::from("42")),
        (OsString::from("PATH"), OsString::from(crate::DEFAULT_PATH)),
    ];
    assert_eq!(env, expected);
    let own_path = job_env(&[("PATH".into(), "/mine".into())], &[], true);
    assert_eq!(
        own_path,
        [(OsString::from("PATH"), OsString::from("/mine"))]
    );
}
