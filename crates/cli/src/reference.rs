//! docs/command-reference.md, generated from the clap tree so it cannot drift from `--help`.

use clap::CommandFactory;

use crate::args::Cli;

/// The width help is rendered at for the reference and the snapshots, so neither depends on
/// the terminal the tests run in.
pub const DOC_WIDTH: usize = 100;

/// The command tree with its width fixed.
pub fn command() -> clap::Command {
    Cli::command().term_width(DOC_WIDTH)
}

fn walk(cmd: &mut clap::Command, path: &str, out: &mut Vec<(String, String)>) {
    let help = cmd.render_long_help().to_string();
    out.push((path.to_owned(), help));
    let names: Vec<String> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| s.get_name().to_owned())
        .collect();
    for name in names {
        if let Some(sub) = cmd.find_subcommand_mut(&name) {
            walk(sub, &format!("{path} {name}"), out);
        }
    }
}

/// Every command's path (`container image pull`) and its `--help` text, in tree order.
pub fn all_help() -> Vec<(String, String)> {
    let mut cmd = command();
    cmd.build();
    let mut out = Vec::new();
    walk(&mut cmd, "container", &mut out);
    // `help` is clap's own; its page says nothing the others do not.
    out.retain(|(path, _)| !path.ends_with(" help"));
    out
}

fn anchor(path: &str) -> String {
    path.replace(' ', "-")
}

/// The Markdown reference.
pub fn markdown() -> String {
    let pages = all_help();
    let mut md = String::from(
        "# `container` command reference\n\n\
         Generated from the CLI's own `--help` (crates/cli/src/reference.rs); do not edit by\n\
         hand. `cargo nextest run -p cli` fails when this file differs from the CLI; run it with\n\
         `UPDATE_COMMAND_REFERENCE=1` to rewrite it.\n\n\
         Exit codes: 0 on success; the container's own code for `run`, `start -a` and `exec`;\n\
         125 when the daemon or a flag fails; 126 when the command cannot be executed; 127 when\n\
         it is not found; 141 when stdout is a pipe its reader closed. `system status` exits 1\n\
         when the daemon is not running; three Ctrl-C leave a `run` without a terminal with 1,\n\
         and the detach keys (`--detach-keys`, `ctrl-p,ctrl-q`) a session with a terminal with 0.\n\n\
         Environment: `CONTAINER_APP_ROOT` chooses the daemon's app root and so its socket,\n\
         `<app root>/apiserver.sock` (default `/var/lib/container` for root, else\n\
         `$XDG_DATA_HOME/container`; on macOS `~/Library/Application Support/dev.container`);\n\
         `CONTAINER_DEBUG` turns on `--debug`; `CONTAINER_DEFAULT_PLATFORM` sets `--platform`.\n\n\
         ## Commands\n\n",
    );
    for (path, _) in &pages {
        let depth = path.matches(' ').count();
        let indent = "  ".repeat(depth.saturating_sub(1));
        md.push_str(&format!("{indent}- [`{path}`](#{})\n", anchor(path)));
    }
    for (path, help) in &pages {
        md.push_str(&format!(
            "\n## {path}\n\n```text\n{}\n```\n",
            help.trim_end()
        ));
    }
    md
}
