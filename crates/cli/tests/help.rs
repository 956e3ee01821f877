//! `--help` snapshots, completion scripts, and docs/command-reference.md kept equal to the
//! CLI.

use std::path::PathBuf;
use std::process::Command;

fn help(args: &[&str]) -> String {
    let mut cmd = cli::reference::command();
    let mut argv = vec!["container"];
    argv.extend_from_slice(args);
    argv.push("--help");
    match cmd.try_get_matches_from_mut(argv) {
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => e.to_string(),
        other => panic!("expected help, got {other:?}"),
    }
}

#[test]
fn top_level_help() {
    insta::assert_snapshot!(help(&[]));
}

#[test]
fn run_help() {
    insta::assert_snapshot!(help(&["run"]));
}

// What the user sees is the binary's output: it must be the same text, and exit 0.
#[test]
fn the_binary_prints_the_same_help() {
    let out = Command::new(env!("CARGO_BIN_EXE_container"))
        .args(["run", "--help"])
        .env_remove("CONTAINER_DEFAULT_PLATFORM")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), help(&["run"]));
}

#[test]
fn every_command_has_help_and_apple_aliases_work() {
    let pages = cli::reference::all_help();
    let paths: Vec<&str> = pages.iter().map(|(p, _)| p.as_str()).collect();
    for expected in [
        "container run",
        "container create",
        "container start",
        "container stop",
        "container kill",
        "container delete",
        "container list",
        "container inspect",
        "container logs",
        "container exec",
        "container stats",
        "container export",
        "container copy",
        "container prune",
        "container image pull",
        "container image save",
        "container image load",
        "container registry login",
        "container system property set",
        "container system kernel set",
    ] {
        assert!(
            paths.contains(&expected),
            "{expected} missing from {paths:?}"
        );
    }
    for (path, text) in &pages {
        assert!(text.contains("Usage: "), "{path} has no usage line");
    }
    for alias in [
        &["ls"][..],
        &["rm"],
        &["cp"],
        &["i", "ls"],
        &["image", "rm"],
        &["r", "ls"],
        &["s", "property", "ls"],
    ] {
        let text = help(alias);
        assert!(text.contains("Usage: container"), "{alias:?}: {text}");
    }
}

#[test]
fn completion_scripts_for_three_shells() {
    for (shell, marker) in [
        ("bash", "complete -F _container"),
        ("zsh", "#compdef container"),
        ("fish", "complete -c container"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_container"))
            .args(["--generate-completion-script", shell])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        assert!(
            script.contains("publish"),
            "{shell}: run's flags are missing"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_container"))
        .args(["--generate-completion-script", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
}

#[test]
fn command_reference_matches_the_cli() {
    let path = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("../../docs/command-reference.md");
    let generated = cli::reference::markdown();
    if std::env::var_os("UPDATE_COMMAND_REFERENCE").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/command-reference.md is stale: run `UPDATE_COMMAND_REFERENCE=1 cargo nextest run -p cli command_reference` and commit it"
    );
}
