//! Shell integration through the real binary: completion scripts loaded into a real bash, and
//! manual pages.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::Command;

fn drover(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(args)
        .output()
        .expect("run drover");
    assert!(
        out.status.success(),
        "drover {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
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
    let out = Command::new("bash")
        .arg("-c")
        .arg(program)
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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
