//! The `container` command line: parse flags, call the daemon's API, render the answers.
//!
//! One job: be the user's front end. Flags are parsed by clap ([`args`]) and their values by
//! the `spec` crate; every command talks to `container-apiserver` through the `api` crate's
//! client and renders what comes back ([`output`]). `-it` sessions run the local terminal in
//! raw mode and forward window changes ([`terminal`], [`stdio`]).
//!
//! It must not touch the daemon's state on disk, boot VMs or pull images itself; the only
//! files it reads or writes are the ones named on its command line (env files, `--cidfile`,
//! `-o`, `-i`, `cp` paths) and, for `system start`, the daemon's log.

/// `println!` for commands: a failed write to stdout (a closed pipe) returns an error from
/// the calling function instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            return Err($crate::error::CliError::io("writing to stdout", e));
        }
    }};
}

/// `print!` for commands, as [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = write!(std::io::stdout(), $($arg)*) {
            return Err($crate::error::CliError::io("writing to stdout", e));
        }
    }};
}

// The doc comments in `args` are the `--help` text, written for a terminal: brackets there
// are usage syntax, not rustdoc links.
#[allow(rustdoc::broken_intra_doc_links)]
pub mod args;
pub mod commands;
pub mod error;
pub mod listing;
pub mod output;
pub mod reference;
pub mod service;
pub mod stdio;
pub mod template;
pub mod terminal;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use clap::{CommandFactory, Parser};

use crate::args::{
    BuilderCommand, Cli, Command, ImageCommand, KernelCommand, NetworkCommand, RegistryCommand,
    Shell, SystemCommand, VolumeCommand,
};
use crate::commands::{build, builder, container, copy, image, network, system, verbs, volume};
use crate::error::{CliError, CliResult, EXIT_FAILURE};

/// What every command shares: where the daemon is, and how chatty to be.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Print debug information.
    pub debug: bool,
    /// The app root, when already known (tests); else found from the environment.
    pub app_root: Option<PathBuf>,
}

impl Context {
    /// The app root: `$CONTAINER_APP_ROOT` or the platform's default.
    pub fn app_root(&self) -> Result<PathBuf, CliError> {
        match &self.app_root {
            Some(root) => Ok(root.clone()),
            None => api::app_root().map_err(|e| CliError::Daemon(e.to_string())),
        }
    }

    /// The daemon's socket.
    pub fn socket(&self) -> Result<PathBuf, CliError> {
        self.app_root().map(|root| api::socket_path(&root))
    }

    /// A connected client, or the "is it running?" error.
    pub async fn client(&self) -> Result<api::Client, CliError> {
        let socket = self.socket()?;
        let client = api::Client::connect(&socket, api::DEFAULT_CONNECT_TIMEOUT).await;
        if self.debug {
            match &client {
                Ok(c) => eprintln!(
                    "debug: connected to {} ({})",
                    socket.display(),
                    c.daemon_version().version
                ),
                Err(e) => eprintln!("debug: {e}"),
            }
        }
        Ok(client?)
    }
}

/// Parses `args` (the program name first) and runs the command. Returns the exit code:
/// 0, the container's own code, or 125 for a flag or daemon error.
pub fn run<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let _ = e.print();
            return match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
                _ => EXIT_FAILURE,
            };
        }
    };
    if let Some(shell) = cli.generate_completion_script {
        print_completions(shell, &mut std::io::stdout());
        return 0;
    }
    let Some(command) = cli.command else {
        let _ = Cli::command().print_help();
        return 0;
    };
    let ctx = Context {
        debug: cli.debug,
        app_root: None,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("container: starting the async runtime: {e}");
            return EXIT_FAILURE;
        }
    };
    let result = runtime.block_on(dispatch(&ctx, &command));
    // A blocked stdin read must not keep the process alive after the command is done.
    runtime.shutdown_background();
    let _ = std::io::stdout().flush();
    match result {
        Ok(code) => code,
        Err(CliError::Partial(_)) => EXIT_FAILURE,
        // The reader went away (`container ls | head -1`): stop quietly, with the status a
        // shell shows for a process killed by SIGPIPE.
        Err(CliError::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => {
            128 + libc::SIGPIPE
        }
        Err(e) => {
            eprintln!("container: {e}");
            e.exit_code()
        }
    }
}

/// Writes the completion script for `shell`.
pub fn print_completions(shell: Shell, out: &mut dyn Write) {
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut Cli::command(), "container", out);
}

/// Runs one parsed command.
pub async fn dispatch(ctx: &Context, command: &Command) -> CliResult {
    match command {
        Command::Run(a) => container::run_cmd(ctx, a).await,
        Command::Create(a) => container::create_cmd(ctx, a).await,
        Command::Start(a) => container::start_cmd(ctx, a).await,
        Command::Stop(a) => container::stop_cmd(ctx, a).await,
        Command::Kill(a) => container::kill_cmd(ctx, a).await,
        Command::Delete(a) => container::delete_cmd(ctx, a).await,
        Command::List(a) => container::list_cmd(ctx, a).await,
        Command::Inspect(a) => container::inspect_cmd(ctx, a).await,
        Command::Logs(a) => container::logs_cmd(ctx, a).await,
        Command::Exec(a) => container::exec_cmd(ctx, a).await,
        Command::Stats(a) => container::stats_cmd(ctx, a).await,
        Command::Export(a) => container::export_cmd(ctx, a).await,
        Command::Copy(a) => copy::copy_cmd(ctx, a).await,
        Command::Commit(a) => container::commit_cmd(ctx, a).await,
        Command::Diff(a) => container::diff_cmd(ctx, a).await,
        Command::Prune(a) => container::prune_cmd(ctx, a).await,
        Command::Events(a) => system::events(ctx, a).await,
        Command::Restart(a) => verbs::restart_cmd(ctx, a).await,
        Command::Attach(a) => verbs::attach_cmd(ctx, a).await,
        Command::Wait(a) => verbs::wait_cmd(ctx, a).await,
        Command::Port(a) => verbs::port_cmd(ctx, a).await,
        Command::Top(a) => verbs::top_cmd(ctx, a).await,
        Command::Rename(a) => verbs::rename_cmd(ctx, a).await,
        Command::Pause(a) => verbs::pause_cmd(ctx, a).await,
        Command::Unpause(a) => verbs::unpause_cmd(ctx, a).await,
        Command::Build(a) => build::build(ctx, a).await,
        Command::Builder(c) => match c {
            BuilderCommand::Prune(_) => build::prune(ctx).await,
            BuilderCommand::Start(a) => builder::start(ctx, a).await,
            BuilderCommand::Status(a) => builder::status(ctx, a).await,
            BuilderCommand::Stop(a) => builder::stop(ctx, a).await,
            BuilderCommand::Delete(a) => builder::delete(ctx, a).await,
        },
        Command::Image(c) => match c {
            ImageCommand::Pull(a) => image::pull(ctx, a).await,
            ImageCommand::Push(a) => image::push(ctx, a).await,
            ImageCommand::List(a) => image::list(ctx, a).await,
            ImageCommand::Inspect(a) => image::inspect(ctx, a).await,
            ImageCommand::Tag(a) => image::tag(ctx, a).await,
            ImageCommand::Delete(a) => image::delete(ctx, a).await,
            ImageCommand::Prune(a) => image::prune(ctx, a).await,
            ImageCommand::Save(a) => image::save(ctx, a).await,
            ImageCommand::Load(a) => image::load(ctx, a).await,
        },
        Command::Network(c) => match c {
            NetworkCommand::Create(a) => network::create(ctx, a).await,
            NetworkCommand::Delete(a) => network::delete(ctx, a).await,
            NetworkCommand::List(a) => network::list(ctx, a).await,
            NetworkCommand::Inspect(a) => network::inspect(ctx, a).await,
            NetworkCommand::Prune(a) => network::prune(ctx, a).await,
        },
        Command::Registry(c) => match c {
            RegistryCommand::Login(a) => image::login(ctx, a).await,
            RegistryCommand::Logout(a) => image::logout(ctx, a).await,
            RegistryCommand::List(a) => image::registry_list(ctx, a).await,
        },
        Command::Volume(c) => match c {
            VolumeCommand::Create(a) => volume::create(ctx, a).await,
            VolumeCommand::List(a) => volume::list(ctx, a).await,
            VolumeCommand::Inspect(a) => volume::inspect(ctx, a).await,
            VolumeCommand::Delete(a) => volume::delete(ctx, a).await,
            VolumeCommand::Prune(a) => volume::prune(ctx, a).await,
        },
        Command::System(c) => match c {
            SystemCommand::Start(a) => system::start(ctx, a).await,
            SystemCommand::Stop(a) => system::stop(ctx, a).await,
            SystemCommand::Status(a) => system::status(ctx, a).await,
            SystemCommand::Version(a) => system::version(ctx, a).await,
            SystemCommand::Logs(a) => system::logs(ctx, a).await,
            SystemCommand::Df(a) => system::df(ctx, a).await,
            SystemCommand::Property(c) => system::property(ctx, c).await,
            SystemCommand::Kernel(KernelCommand::Set(a)) => system::kernel_set(ctx, a).await,
            SystemCommand::Dns(c) => network::dns(ctx, c).await,
        },
    }
}
