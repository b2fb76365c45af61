//! Fitting into the user's system, through the real binary: completion scripts loaded into a
//! real bash, manual pages, and the service files for systemd.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::Command;

/// Runs `command`, which must succeed.
fn succeeds(command: &mut Command) -> std::process::Output {
    let out = command.output().expect("run");
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn drover(args: &[&str]) -> std::process::Output {
    succeeds(Command::new(env!("CARGO_BIN_EXE_drover")).args(args))
}

/// What bash's completion offers for the words typed so far, with drover's script loaded.
fn bash_completes(words: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("drover.bash");
    std::fs::write(&script, drover(&["completions", "bash"]).stdout).expect("write script");
    let line = words.join(" ");
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source '{}'\n\
         COMP_WORDS=({})\n\
         COMP_CWORD={}\n\
         COMP_LINE='{line}'\n\
         COMP_POINT={}\n\
         _drover drover '{}' '{}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        quoted.join(" "),
        words.len() - 1,
        line.len(),
        words[words.len() - 1],
        words
            .get(words.len().wrapping_sub(2))
            .copied()
            .unwrap_or(""),
    );
    let out = succeeds(Command::new("bash").arg("-c").arg(program));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// #17 acceptance 3: `drover su<TAB>` completes to `submit` in bash.
#[test]
fn bash_completes_a_subcommand() {
    assert_eq!(bash_completes(&["drover", "su"]), ["submit"]);
    // A flag of that subcommand, too.
    let flags = bash_completes(&["drover", "submit", "--ti"]);
    assert_eq!(flags, ["--timeout"]);
    // The internal `owner` is never offered.
    let all = bash_completes(&["drover", ""]);
    assert!(all.iter().any(|c| c == "status"), "{all:?}");
    assert!(!all.iter().any(|c| c == "owner"), "{all:?}");
}

#[test]
fn zsh_and_fish_scripts_name_the_subcommands() {
    for shell in ["zsh", "fish"] {
        let script = String::from_utf8(drover(&["completions", shell]).stdout).expect("utf-8");
        assert!(script.contains("submit"), "{shell}: {script}");
    }
}

#[test]
fn manual_pages_cover_every_visible_command() {
    let page = String::from_utf8(drover(&["man"]).stdout).expect("utf-8");
    assert!(page.contains(".TH drover 1"), "{page}");
    let dir = tempfile::tempdir().expect("tempdir");
    let into = dir.path().join("man1");
    drover(&["man", "--dir", into.to_str().expect("utf-8 path")]);
    for name in ["drover.1", "drover-submit.1", "drover-queue-pause.1"] {
        let text = std::fs::read_to_string(into.join(name)).expect(name);
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{name}: {text}"
        );
    }
    assert!(!into.join("drover-owner.1").exists());
}

/// #17 acceptance 2: the user unit keeps jobs alive across a restart, and `--print` shows what
/// `install` writes; `uninstall` removes it.
#[cfg(target_os = "linux")]
#[test]
fn the_service_unit_is_what_install_writes() {
    let home = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        let out = succeeds(
            Command::new(env!("CARGO_BIN_EXE_drover"))
                .args(args)
                .env("HOME", home.path())
                .env_remove("XDG_CONFIG_HOME")
                .env_remove("XDG_DATA_HOME"),
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let printed = run(&["service", "install", "--user", "--print"]);
    assert!(printed.contains("\nKillMode=process\n"), "{printed}");
    let data_dir = home.path().join(".local/share/drover");
    assert!(
        printed.contains(&format!("serve --data-dir {}\n", data_dir.display())),
        "{printed}"
    );
    let unit = home.path().join(".config/systemd/user/drover.service");
    assert!(!unit.exists(), "--print wrote the file");

    let said = run(&["service", "install", "--user"]);
    assert_eq!(std::fs::read_to_string(&unit).expect("the unit"), printed);
    assert!(
        said.contains("systemctl --user enable --now drover.service"),
        "{said}"
    );
    // systemd's own parser, where this machine has it: it warns (and still exits 0) on any
    // line it would ignore.
    if let Ok(verify) = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .env("HOME", home.path())
        .output()
    {
        let warnings = String::from_utf8_lossy(&verify.stderr);
        assert!(
            verify.status.success() && warnings.trim().is_empty(),
            "systemd-analyze verify: {warnings}"
        );
    }

    let said = run(&["service", "uninstall"]);
    assert!(!unit.exists(), "uninstall left {}", unit.display());
    assert!(said.contains("running jobs keep running"), "{said}");
}
