//! The command-line tree: every command, flag, default and alias of `container`.
//!
//! Only shapes live here; flag values stay strings where `spec` parses them, so that a bad
//! value gets `spec`'s one-line error (and exit code 125) instead of clap's.

use std::path::PathBuf;

use crate::listing::ListFormat;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Run Linux containers, each in its own lightweight virtual machine.
#[derive(Debug, Parser)]
#[command(
    name = "container",
    version,
    arg_required_else_help = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Print debug information.
    #[arg(long, global = true, env = "CONTAINER_DEBUG", hide_env_values = true)]
    pub debug: bool,

    /// Print a shell completion script and exit.
    #[arg(long, value_name = "SHELL", exclusive = true)]
    pub generate_completion_script: Option<Shell>,

    /// The command to run.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Shells with completion scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// GNU bash.
    Bash,
    /// Z shell.
    Zsh,
    /// fish.
    Fish,
}

/// Output formats of listing commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// JSON for programs (compact, keys sorted).
    Json,
}

/// Every top-level command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a container: create it from an image, start it and attach to it.
    Run(RunArgs),
    /// Create a container from an image without starting it.
    Create(CreateArgs),
    /// Start stopped containers.
    Start(StartArgs),
    /// Stop running containers gracefully: the stop signal, then SIGKILL after a timeout.
    Stop(StopArgs),
    /// Send a signal to running containers.
    Kill(KillArgs),
    /// Delete containers.
    #[command(visible_alias = "rm")]
    Delete(DeleteArgs),
    /// List containers.
    #[command(visible_aliases = ["ls", "ps"])]
    List(ListArgs),
    /// Show containers' configuration and state as JSON.
    Inspect(InspectArgs),
    /// Fetch a container's output, or its VM's boot log.
    Logs(LogsArgs),
    /// Run a command in a running container.
    Exec(ExecArgs),
    /// Show containers' resource usage.
    Stats(StatsArgs),
    /// Write a container's filesystem as a tar archive.
    Export(ExportArgs),
    /// Copy files between a container and the host.
    #[command(visible_alias = "cp")]
    Copy(CopyArgs),
    /// Make an image of a container's changes.
    Commit(CommitArgs),
    /// List the files a container added (A), changed (C) or deleted (D).
    Diff(DiffArgs),
    /// Delete every stopped container.
    Prune(PruneArgs),
    /// Stream the daemon's events: containers, images, networks and volumes.
    Events(EventsArgs),
    /// Restart containers: stop (the stop signal, then SIGKILL after a timeout), then start.
    Restart(RestartArgs),
    /// Attach the terminal to a running container's stdio.
    Attach(AttachArgs),
    /// Wait until containers stop and print their exit codes.
    Wait(WaitArgs),
    /// List a container's published ports, or the host address of one container port.
    Port(PortArgs),
    /// Show the processes running in a container.
    Top(TopArgs),
    /// Give a container a new name.
    Rename(RenameArgs),
    /// Freeze every process of running containers.
    Pause(PauseArgs),
    /// Thaw the processes of paused containers.
    Unpause(UnpauseArgs),
    /// Build an image from a Dockerfile (or Containerfile) and a context directory.
    Build(BuildArgs),
    /// Manage the image builder and its cache.
    #[command(subcommand)]
    Builder(BuilderCommand),
    /// Manage images.
    #[command(visible_alias = "i", subcommand)]
    Image(ImageCommand),
    /// Manage networks.
    #[command(visible_alias = "n", subcommand)]
    Network(NetworkCommand),
    /// Manage registry logins.
    #[command(visible_alias = "r", subcommand)]
    Registry(RegistryCommand),
    /// Manage volumes.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Manage the container daemon.
    #[command(visible_alias = "s", subcommand)]
    System(SystemCommand),
}

// ---- shared flag groups ------------------------------------------------------------------

/// How the container's process runs (run, create).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Process options")]
pub struct ProcessFlags {
    /// Set an environment variable (KEY=VALUE, or KEY to pass the host's value).
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// Read environment variables from a file, one KEY=VALUE per line.
    #[arg(long = "env-file", value_name = "PATH")]
    pub env_file: Vec<PathBuf>,
    /// Run as this user: name|uid[:group|gid].
    #[arg(short = 'u', long, value_name = "USER")]
    pub user: Option<String>,
    /// Run as this numeric user id (overrides the user part of --user).
    #[arg(long, value_name = "UID")]
    pub uid: Option<u32>,
    /// Run with this numeric group id (overrides the group part of --user).
    #[arg(long, value_name = "GID")]
    pub gid: Option<u32>,
    /// Keep stdin open and forward it.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The working directory inside the container.
    #[arg(
        short = 'w',
        long = "workdir",
        visible_alias = "cwd",
        value_name = "DIR"
    )]
    pub workdir: Option<String>,
    /// Set a resource limit: name=soft[:hard] (e.g. nofile=1024:2048).
    #[arg(long, value_name = "LIMIT")]
    pub ulimit: Vec<String>,
}

/// CPUs and memory (run, create).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Resource options")]
pub struct ResourceFlags {
    /// Number of CPUs (fractions allowed; the VM gets the count rounded up) [default: 4, or the host's CPU count if lower].
    #[arg(short = 'c', long, value_name = "CPUS")]
    pub cpus: Option<String>,
    /// Memory limit, e.g. 512m or 2g (binary units; a bare number is bytes) [default: 1g].
    #[arg(short = 'm', long, value_name = "SIZE")]
    pub memory: Option<String>,
}

/// Image platform selection (run, create, image pull/push/save).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Platform options")]
pub struct PlatformFlags {
    /// The platform, os/arch[/variant]; overrides --os and --arch.
    #[arg(
        long,
        value_name = "PLATFORM",
        env = "CONTAINER_DEFAULT_PLATFORM",
        hide_env_values = true
    )]
    pub platform: Option<String>,
    /// The architecture (amd64, arm64, ...) [default: the host's].
    #[arg(short = 'a', long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// The operating system [default: linux].
    #[arg(long, value_name = "OS")]
    pub os: Option<String>,
}

/// How to reach registries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Scheme {
    /// HTTP for loopback (127.0.0.0/8, ::1, localhost) and the registry.insecure hosts, HTTPS
    /// otherwise.
    #[default]
    Auto,
    /// Always HTTPS.
    Https,
    /// Always HTTP.
    Http,
}

/// Registry access (run, create, image pull/push, registry login).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Registry options")]
pub struct RegistryFlags {
    /// The scheme used to reach the registry.
    #[arg(long, value_enum, default_value_t = Scheme::Auto)]
    pub scheme: Scheme,
}

/// Image download tuning (image pull/push, and the pull of run/create).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Fetch options")]
pub struct FetchFlags {
    /// Layers transferred at once (at least 1).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_downloads: u32,
}

impl Default for FetchFlags {
    fn default() -> FetchFlags {
        FetchFlags {
            max_concurrent_downloads: 3,
        }
    }
}

/// Everything `create` and `run` share.
#[derive(Debug, Clone, Default, Args)]
pub struct ContainerFlags {
    /// The process.
    #[command(flatten)]
    pub process: ProcessFlags,
    /// CPUs and memory.
    #[command(flatten)]
    pub resources: ResourceFlags,
    /// Management.
    #[command(flatten)]
    pub management: ManagementFlags,
    /// Platform.
    #[command(flatten)]
    pub platform: PlatformFlags,
    /// Registry.
    #[command(flatten)]
    pub registry: RegistryFlags,
    /// Fetch (when the image is pulled first).
    #[command(flatten)]
    pub fetch: FetchFlags,
    /// Healthcheck.
    #[command(flatten)]
    pub health: HealthFlags,
}

/// The healthcheck (run, create): each flag overrides that part of the image's HEALTHCHECK.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Health options")]
pub struct HealthFlags {
    /// The command that checks health, run with /bin/sh -c in the container (exit 0: healthy).
    #[arg(long, value_name = "CMD")]
    pub health_cmd: Option<String>,
    /// Time between checks (ms|s|m|h) [default: the image's, else 30s].
    #[arg(long, value_name = "DURATION")]
    pub health_interval: Option<String>,
    /// Time one check may run before it is killed and counts as failed [default: the image's, else 30s].
    #[arg(long, value_name = "DURATION")]
    pub health_timeout: Option<String>,
    /// Consecutive failures that make the container unhealthy [default: the image's, else 3].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub health_retries: Option<u32>,
    /// Time after the start during which failed checks do not count [default: the image's, else 0s].
    #[arg(long, value_name = "DURATION")]
    pub health_start_period: Option<String>,
    /// Disable any healthcheck, the image's included.
    #[arg(long, conflicts_with_all = ["health_cmd", "health_interval", "health_timeout", "health_retries", "health_start_period"])]
    pub no_healthcheck: bool,
}

/// When `run` and `create` pull the image first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum PullPolicy {
    /// Pull when the image is not in the store.
    #[default]
    Missing,
    /// Pull every time (picks up a moved tag).
    Always,
    /// Never pull; fail when the image is missing.
    Never,
}

/// Container management (run, create).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Management options")]
pub struct ManagementFlags {
    /// When to pull the image before creating the container.
    #[arg(long, value_enum, default_value_t = PullPolicy::Missing)]
    pub pull: PullPolicy,
    /// Name the container (it becomes its ID and hostname) [default: a random UUID].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Delete the container when it stops.
    #[arg(long)]
    pub rm: bool,
    /// Add a label: KEY[=VALUE].
    #[arg(short = 'l', long = "label", value_name = "LABEL")]
    pub label: Vec<String>,
    /// Write the container's ID to this file (which must not exist).
    #[arg(long, value_name = "PATH")]
    pub cidfile: Option<PathBuf>,
    /// Override the image's entrypoint ("" clears it).
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// Run an init process that reaps zombies and forwards signals.
    #[arg(long)]
    pub init: bool,
    /// Mount the container's root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Add a Linux capability (CAP_X, X or ALL).
    #[arg(long, value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a Linux capability (CAP_X, X or ALL).
    #[arg(long, value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Restart policy: no, always, on-failure[:max-retries] or unless-stopped.
    #[arg(long, value_name = "POLICY", default_value = "no")]
    pub restart: String,
    /// Publish container ports: [host-ip:][host-port[-end]:]container-port[-end][/tcp|udp].
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    pub publish: Vec<String>,
    /// Mount a volume or host path: [SOURCE:]CONTAINER-PATH[:ro].
    #[arg(short = 'v', long = "volume", value_name = "SPEC")]
    pub volume: Vec<String>,
    /// Mount a filesystem: type=bind|volume|tmpfs,source=..,target=..[,readonly][,size=..][,mode=..].
    #[arg(long, value_name = "SPEC")]
    pub mount: Vec<String>,
    /// Mount a tmpfs: PATH[:size=64m,mode=1777,noexec,...].
    #[arg(long, value_name = "SPEC")]
    pub tmpfs: Vec<String>,
    /// Serve a socket a container process listens on at a host path: HOST_PATH:CONTAINER_PATH.
    #[arg(long, value_name = "SPEC")]
    pub publish_socket: Vec<String>,
    /// Make the host's SSH agent ($SSH_AUTH_SOCK) usable in the container at
    /// /run/host-services/ssh-auth.sock, with SSH_AUTH_SOCK set to it.
    #[arg(long)]
    pub ssh: bool,
    /// Size of /dev/shm [default: 64m].
    #[arg(long, value_name = "SIZE")]
    pub shm_size: Option<String>,
    /// Attach to a network: NAME[,mac=XX:XX:XX:XX:XX:XX][,mtu=N] ("none" for no network).
    #[arg(long, value_name = "NETWORK")]
    pub network: Vec<String>,
    /// A DNS nameserver for the container.
    #[arg(long, value_name = "IP")]
    pub dns: Vec<String>,
    /// The DNS domain of the container.
    #[arg(long, value_name = "DOMAIN")]
    pub dns_domain: Option<String>,
    /// A DNS resolver option (e.g. ndots:2).
    #[arg(long, value_name = "OPTION")]
    pub dns_option: Vec<String>,
    /// A DNS search domain.
    #[arg(long, value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// Do not configure DNS in the container.
    #[arg(long, conflicts_with_all = ["dns", "dns_domain", "dns_option", "dns_search"])]
    pub no_dns: bool,
    /// The container's hostname [default: its name, else its short ID].
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Add a line to /etc/hosts: NAME:IP (IP may be host-gateway, the host's address as the container reaches it).
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_host: Vec<String>,
    /// The signal `stop` sends first [default: the image's STOPSIGNAL, else TERM].
    #[arg(long, value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Seconds `stop` waits before SIGKILL [default: 10].
    #[arg(long, value_name = "SECONDS")]
    pub stop_timeout: Option<u32>,
    /// Publish every exposed port (the image's and --expose's) on a free host port.
    #[arg(short = 'P', long)]
    pub publish_all: bool,
    /// Expose a container port or range without publishing it: PORT[-END][/tcp|udp].
    #[arg(long, value_name = "PORT")]
    pub expose: Vec<String>,
    /// Boot this kernel instead of the default one.
    #[arg(short = 'k', long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Add a kernel command-line argument.
    #[arg(long, value_name = "ARG")]
    pub kernel_arg: Vec<String>,
    /// Run x86_64 programs through Rosetta in an arm64 VM (Apple silicon only).
    #[arg(long)]
    pub rosetta: bool,
}

// ---- containers --------------------------------------------------------------------------

// Positional arguments after a flattened flag group say `help_heading = None` so that
// they are listed under "Arguments" instead of the group's heading.

/// `container events`.
#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// Show events from this time on: RFC 3339 (2026-12-04T17:00:00Z), Unix seconds, or a duration before now (10m).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Stop at this time (same forms as --since); without it the stream stays open.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only events matching KEY=VALUE: type, event, container, image, network, volume, label (repeat: same key ORs, different keys AND).
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Output format: one line per event for people, or one JSON object per line.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// `container run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Run in the background and print the container's ID.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// The keys that detach from the container and leave it running [default: ctrl-p,ctrl-q].
    #[arg(long, value_name = "KEYS")]
    pub detach_keys: Option<String>,
    /// Flags shared with create.
    #[command(flatten)]
    pub container: ContainerFlags,
    /// The image to run.
    #[arg(help_heading = None::<&str>, value_name = "IMAGE")]
    pub image: String,
    /// The command and its arguments (replace the image's cmd).
    #[arg(
        help_heading = None::<&str>,
        value_name = "ARG",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<String>,
}

/// `container create`.
#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// Flags shared with run.
    #[command(flatten)]
    pub container: ContainerFlags,
    /// The image to create the container from.
    #[arg(help_heading = None::<&str>, value_name = "IMAGE")]
    pub image: String,
    /// The command and its arguments (replace the image's cmd).
    #[arg(
        help_heading = None::<&str>,
        value_name = "ARG",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<String>,
}

/// `container start`.
#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    /// Attach to the container's output and wait for it to exit.
    #[arg(short = 'a', long)]
    pub attach: bool,
    /// Forward stdin to the container.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// The keys that detach from the container and leave it running [default: ctrl-p,ctrl-q].
    #[arg(long, value_name = "KEYS")]
    pub detach_keys: Option<String>,
    /// The containers.
    #[arg(value_name = "CONTAINER", required = true)]
    pub ids: Vec<String>,
}

/// `container stop`.
#[derive(Debug, Clone, Args)]
pub struct StopArgs {
    /// Stop every running container.
    #[arg(short = 'a', long, conflicts_with = "ids")]
    pub all: bool,
    /// The first signal to send [default: the image's stop signal, else TERM].
    #[arg(short = 's', long, value_name = "SIGNAL")]
    pub signal: Option<String>,
    /// Seconds to wait before sending SIGKILL.
    #[arg(short = 't', long, value_name = "SECONDS", default_value_t = 5)]
    pub time: u32,
    /// The containers.
    #[arg(value_name = "CONTAINER")]
    pub ids: Vec<String>,
}

/// `container kill`.
#[derive(Debug, Clone, Args)]
pub struct KillArgs {
    /// Signal every running container.
    #[arg(short = 'a', long, conflicts_with = "ids")]
    pub all: bool,
    /// The signal: a name (KILL, SIGTERM) or a number.
    #[arg(short = 's', long, value_name = "SIGNAL", default_value = "KILL")]
    pub signal: String,
    /// The containers.
    #[arg(value_name = "CONTAINER")]
    pub ids: Vec<String>,
}

/// `container delete`.
#[derive(Debug, Clone, Args)]
pub struct DeleteArgs {
    /// Delete every container (running ones only with --force).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Kill running containers instead of refusing them.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Also delete the containers' anonymous volumes.
    #[arg(short = 'v', long)]
    pub volumes: bool,
    /// The containers.
    #[arg(value_name = "CONTAINER")]
    pub ids: Vec<String>,
}

/// `container list`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Include containers that are not running.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Print only IDs.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Output format: `table`, `json`, or a Go template (`{{.Names}}`, `{{json .}}`,
    /// `table {{.ID}}\t{{.Status}}`) over Docker's field names.
    #[arg(long, default_value = "table")]
    pub format: ListFormat,
    /// Show only what passes a filter, `key=value` (repeatable; values of one key are
    /// alternatives, different keys must all hold). Keys: id, name, label, status, ancestor, network, exited, health.
    #[arg(short = 'f', long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Do not shorten IDs and commands.
    #[arg(long)]
    pub no_trunc: bool,
}

/// `container inspect`.
#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// The containers.
    #[arg(value_name = "CONTAINER", required = true)]
    pub ids: Vec<String>,
}

/// `container logs`.
#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// Keep following new output.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Show only the last N lines.
    #[arg(short = 'n', long = "tail", value_name = "N")]
    pub lines: Option<u32>,
    /// Show the VM's boot log (kernel and init) instead of the container's output.
    #[arg(long)]
    pub boot: bool,
    /// Show output written from this time on: RFC 3339 (2026-12-04T17:00:00Z), Unix seconds, or a duration before now (10m).
    #[arg(long, value_name = "TIME", conflicts_with = "boot")]
    pub since: Option<String>,
    /// Show output written before this time (same forms as --since).
    #[arg(long, value_name = "TIME", conflicts_with = "boot")]
    pub until: Option<String>,
    /// Start each line with the time it was written (RFC 3339 with nanoseconds).
    #[arg(short = 't', long, conflicts_with = "boot")]
    pub timestamps: bool,
    /// The container.
    #[arg(value_name = "CONTAINER")]
    pub id: String,
}

/// `container exec`.
#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// Start the command and return at once.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep stdin open and forward it.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The keys that detach from the container and leave it running [default: ctrl-p,ctrl-q].
    #[arg(long, value_name = "KEYS")]
    pub detach_keys: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to pass the host's value).
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// Read environment variables from a file.
    #[arg(long = "env-file", value_name = "PATH")]
    pub env_file: Vec<PathBuf>,
    /// Run as this user: name|uid[:group|gid].
    #[arg(short = 'u', long, value_name = "USER")]
    pub user: Option<String>,
    /// The working directory inside the container.
    #[arg(
        short = 'w',
        long = "workdir",
        visible_alias = "cwd",
        value_name = "DIR"
    )]
    pub workdir: Option<String>,
    /// The container.
    #[arg(value_name = "CONTAINER")]
    pub id: String,
    /// The command and its arguments.
    #[arg(
        value_name = "COMMAND",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

/// `container stats`.
#[derive(Debug, Clone, Args)]
pub struct StatsArgs {
    /// Print one sample and exit.
    #[arg(long)]
    pub no_stream: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// The containers [default: every running one].
    #[arg(value_name = "CONTAINER")]
    pub ids: Vec<String>,
}

/// `container export`.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Writes the container's filesystem (its image plus its changes, hard links \
    kept) as a tar, without volumes, bind mounts or the contents of /proc, /sys and /dev. \
    A stopped container is read through a short-lived VM that mounts its disks read-only."
)]
pub struct ExportArgs {
    /// Write to this file instead of stdout.
    #[arg(short = 'o', long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// The container.
    #[arg(value_name = "CONTAINER")]
    pub id: String,
}

/// `container commit`.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "The new image is the container's image plus one layer of its changes, with \
    the container's config (its environment, command, working directory, user and labels) \
    and each --change applied as the Dockerfile instruction would. Works on running and \
    stopped containers (a stopped one is read through a short-lived VM). Prints the new \
    image's ID."
)]
pub struct CommitArgs {
    /// Apply a Dockerfile instruction to the config: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL,
    /// USER, WORKDIR, VOLUME, STOPSIGNAL or HEALTHCHECK.
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    pub change: Vec<String>,
    /// The commit message.
    #[arg(short = 'm', long, value_name = "TEXT")]
    pub message: Option<String>,
    /// The author (`Name <email>`).
    #[arg(short = 'a', long, value_name = "AUTHOR")]
    pub author: Option<String>,
    /// Freeze a running container's processes while its changes are captured (--pause=false
    /// leaves them running).
    #[arg(
        short = 'p',
        long,
        value_name = "BOOL",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub pause: bool,
    /// The container.
    #[arg(value_name = "CONTAINER")]
    pub id: String,
    /// The new image's name; without it the image has none.
    #[arg(value_name = "IMAGE")]
    pub image: Option<String>,
}

/// `container diff`.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "One line per path, as `docker diff` prints them: A added, C changed, \
    D deleted; a directory holding changes is listed as changed."
)]
pub struct DiffArgs {
    /// The container.
    #[arg(value_name = "CONTAINER")]
    pub id: String,
}

/// `container copy`.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Exactly one of SOURCE and DEST is CONTAINER:PATH. A host path of - \
    reads (or writes) a tar archive on stdin (stdout). Container paths resolve inside the \
    container's root. A stopped container works too: copying into it writes its writable \
    layer (a path under one of its volumes is refused: they are attached only while it \
    runs). An archive entry that \
    would land outside DEST (through `..`, a symlink or a hard link) is refused; device \
    nodes are skipped."
)]
pub struct CopyArgs {
    /// Copy from here: a host path or CONTAINER:PATH.
    #[arg(value_name = "SOURCE")]
    pub source: String,
    /// Copy to here: a host path or CONTAINER:PATH.
    #[arg(value_name = "DEST")]
    pub destination: String,
}

/// `container prune`.
#[derive(Debug, Clone, Args)]
pub struct PruneArgs {}

/// `container restart`.
#[derive(Debug, Clone, Args)]
pub struct RestartArgs {
    /// The first signal to send [default: the container's stop signal].
    #[arg(short = 's', long, value_name = "SIGNAL")]
    pub signal: Option<String>,
    /// Seconds to wait before sending SIGKILL [default: the container's stop timeout].
    #[arg(
        short = 't',
        long = "time",
        visible_alias = "timeout",
        value_name = "SECONDS"
    )]
    pub time: Option<u32>,
    /// The containers.
    #[arg(value_name = "CONTAINER", required = true)]
    pub ids: Vec<String>,
}

/// `container attach`.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Output written before the attach is not replayed (use `logs`). Without a \
    terminal, Ctrl-C is forwarded to the container; pressing it three times leaves the \
    container running and ends the attach. With a terminal, every key goes to the container \
    but the detach keys (`--detach-keys`, Docker's syntax: `ctrl-<key>` or one character, \
    comma-separated): they end the attach with 0 and leave the container running."
)]
pub struct AttachArgs {
    /// Do not forward stdin.
    #[arg(long)]
    pub no_stdin: bool,
    /// The keys that detach from the container and leave it running [default: ctrl-p,ctrl-q].
    #[arg(long, value_name = "KEYS")]
    pub detach_keys: Option<String>,
    /// The running container.
    #[arg(value_name = "CONTAINER")]
    pub id: String,
}

/// `container wait`.
#[derive(Debug, Clone, Args)]
pub struct WaitArgs {
    /// The containers.
    #[arg(value_name = "CONTAINER", required = true)]
    pub ids: Vec<String>,
}

/// `container port`.
#[derive(Debug, Clone, Args)]
pub struct PortArgs {
    /// The container.
    #[arg(value_name = "CONTAINER")]
    pub id: String,
    /// Only this container port: PORT[/tcp|udp].
    #[arg(value_name = "PRIVATE_PORT")]
    pub port: Option<String>,
}

/// `container top`.
#[derive(Debug, Clone, Args)]
pub struct TopArgs {
    /// The running container.
    #[arg(value_name = "CONTAINER")]
    pub id: String,
    /// Options for the container's `ps` [default: -o pid,ppid,user,args].
    #[arg(
        value_name = "PS_OPTIONS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub ps_args: Vec<String>,
}

/// `container rename`.
#[derive(Debug, Clone, Args)]
pub struct RenameArgs {
    /// The container.
    #[arg(value_name = "CONTAINER")]
    pub id: String,
    /// Its new name.
    #[arg(value_name = "NEW_NAME")]
    pub name: String,
}

/// `container pause`.
#[derive(Debug, Clone, Args)]
pub struct PauseArgs {
    /// The running containers.
    #[arg(value_name = "CONTAINER", required = true)]
    pub ids: Vec<String>,
}

/// `container unpause`.
#[derive(Debug, Clone, Args)]
pub struct UnpauseArgs {
    /// The paused containers.
    #[arg(value_name = "CONTAINER", required = true)]
    pub ids: Vec<String>,
}

// ---- images ------------------------------------------------------------------------------

/// `container image ...`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Download an image from a registry.
    Pull(ImagePullArgs),
    /// Upload an image to its registry.
    Push(ImagePushArgs),
    /// List images.
    #[command(visible_alias = "ls")]
    List(ImageListArgs),
    /// Show images as JSON.
    Inspect(ImageInspectArgs),
    /// Give an image another name.
    Tag(ImageTagArgs),
    /// Delete images.
    #[command(visible_alias = "rm")]
    Delete(ImageDeleteArgs),
    /// Delete unused images.
    Prune(ImagePruneArgs),
    /// Write images to an OCI archive.
    Save(ImageSaveArgs),
    /// Read images from an OCI or docker-save archive.
    Load(ImageLoadArgs),
}

/// `container image pull`.
#[derive(Debug, Clone, Args)]
pub struct ImagePullArgs {
    /// Platform.
    #[command(flatten)]
    pub platform: PlatformFlags,
    /// Pull every platform of a multi-platform image.
    #[arg(long, conflicts_with_all = ["platform", "arch", "os"])]
    pub all_platforms: bool,
    /// Registry.
    #[command(flatten)]
    pub registry: RegistryFlags,
    /// Fetch.
    #[command(flatten)]
    pub fetch: FetchFlags,
    /// The image reference.
    #[arg(help_heading = None::<&str>, value_name = "REFERENCE")]
    pub reference: String,
}

/// `container image push`.
#[derive(Debug, Clone, Args)]
pub struct ImagePushArgs {
    /// Platform.
    #[command(flatten)]
    pub platform: PlatformFlags,
    /// Registry.
    #[command(flatten)]
    pub registry: RegistryFlags,
    /// Fetch.
    #[command(flatten)]
    pub fetch: FetchFlags,
    /// The image reference.
    #[arg(help_heading = None::<&str>, value_name = "REFERENCE")]
    pub reference: String,
}

/// `container image list`.
#[derive(Debug, Clone, Args)]
pub struct ImageListArgs {
    /// Print only references.
    #[arg(short = 'q', long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Show every platform of every image.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Also list internal images (there are none yet; images without a name, loaded from
    /// archives that name none, are always listed by digest).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Output format: `table`, `json`, or a Go template (`{{.Names}}`, `{{json .}}`,
    /// `table {{.ID}}\t{{.Status}}`) over Docker's field names.
    #[arg(long, default_value = "table")]
    pub format: ListFormat,
    /// Show only what passes a filter, `key=value` (repeatable; values of one key are
    /// alternatives, different keys must all hold). Keys: reference, label, dangling.
    #[arg(short = 'f', long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Do not shorten IDs and commands.
    #[arg(long)]
    pub no_trunc: bool,
}

/// `container image inspect`.
#[derive(Debug, Clone, Args)]
pub struct ImageInspectArgs {
    /// The images.
    #[arg(value_name = "IMAGE", required = true)]
    pub references: Vec<String>,
}

/// `container image tag`.
#[derive(Debug, Clone, Args)]
pub struct ImageTagArgs {
    /// The existing image.
    #[arg(value_name = "SOURCE")]
    pub source: String,
    /// The new reference.
    #[arg(value_name = "TARGET")]
    pub target: String,
}

/// `container image delete`.
#[derive(Debug, Clone, Args)]
pub struct ImageDeleteArgs {
    /// Delete every image.
    #[arg(short = 'a', long, conflicts_with = "references")]
    pub all: bool,
    /// Delete images even when containers use them.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// The images.
    #[arg(value_name = "IMAGE")]
    pub references: Vec<String>,
}

/// `container image prune`.
#[derive(Debug, Clone, Args)]
pub struct ImagePruneArgs {
    /// Delete every image no container uses, not only untagged ones.
    #[arg(short = 'a', long)]
    pub all: bool,
}

/// `container image save`.
#[derive(Debug, Clone, Args)]
pub struct ImageSaveArgs {
    /// Write to this file instead of stdout.
    #[arg(short = 'o', long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Platform.
    #[command(flatten)]
    pub platform: PlatformFlags,
    /// The images.
    #[arg(help_heading = None::<&str>, value_name = "IMAGE", required = true)]
    pub references: Vec<String>,
}

/// `container image load`.
#[derive(Debug, Clone, Args)]
pub struct ImageLoadArgs {
    /// Read from this file instead of stdin.
    #[arg(short = 'i', long, value_name = "PATH")]
    pub input: Option<PathBuf>,
    /// Accept archive members with absolute paths or "..".
    #[arg(short = 'f', long)]
    pub force: bool,
}

// ---- build -------------------------------------------------------------------------------

/// How `container build` shows progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BuildProgress {
    /// Plain lines (the only renderer so far).
    Auto,
    /// One line per event.
    Plain,
    /// For a terminal (plain lines for now).
    Tty,
}

/// `container build`.
#[derive(Debug, Clone, Args)]
pub struct BuildArgs {
    /// Name the image (repeatable): name[:tag].
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    pub tags: Vec<String>,
    /// The Dockerfile ("-" reads stdin); default CONTEXT/Dockerfile, else CONTEXT/Containerfile.
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<String>,
    /// Set a build argument: KEY=VALUE, or KEY to pass the host's value.
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// Build this stage instead of the last.
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Add a label to the image: KEY=VALUE.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Do not use the build cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Pull base images even when they are present.
    #[arg(long)]
    pub pull: bool,
    /// Also write the result out: type=oci,dest=PATH (the image as an OCI layout tar), type=tar,dest=PATH|- (the final stage's file system as a tar; - for stdout), type=local,dest=DIR (that file system unpacked into a new or empty DIR).
    #[arg(short = 'o', long = "output", value_name = "type=TYPE,dest=PATH")]
    pub output: Option<String>,
    /// The image's platform, os/arch[/variant].
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// How to show progress.
    #[arg(long, value_enum, default_value_t = BuildProgress::Auto)]
    pub progress: BuildProgress,
    /// Print only the image ID.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// A secret for RUN --mount=type=secret: id=ID[,src=PATH|,env=VAR] (never stored).
    #[arg(long = "secret", value_name = "id=ID,src=PATH")]
    pub secrets: Vec<String>,
    /// An SSH agent for RUN --mount=type=ssh: default (=$SSH_AUTH_SOCK) or ID=SOCKET.
    #[arg(long = "ssh", value_name = "default|ID=SOCKET")]
    pub ssh: Vec<String>,
    /// The context directory.
    #[arg(help_heading = None::<&str>, value_name = "CONTEXT", default_value = ".")]
    pub context: PathBuf,
}

/// `container builder ...`.
#[derive(Debug, Subcommand)]
pub enum BuilderCommand {
    /// Remove every entry of the build cache.
    Prune(BuilderPruneArgs),
    /// Boot the builder VM and keep it running for builds.
    Start(BuilderStartArgs),
    /// Show whether the builder runs, its resources and the cache mounts' size.
    Status(BuilderStatusArgs),
    /// Stop the builder VM.
    Stop(BuilderStatusArgs),
    /// Stop the builder and remove its state and cache mounts.
    Delete(BuilderStatusArgs),
}

/// `container builder start`.
#[derive(Debug, Clone, Args)]
pub struct BuilderStartArgs {
    /// vCPUs of the builder VM (default 2).
    #[arg(short = 'c', long)]
    pub cpus: Option<u32>,
    /// Memory of the builder VM, e.g. 2G (default 2 GiB).
    #[arg(short = 'm', long, value_name = "SIZE")]
    pub memory: Option<String>,
}

/// `container builder status|stop|delete`.
#[derive(Debug, Clone, Args)]
pub struct BuilderStatusArgs {}

/// `container builder prune`.
#[derive(Debug, Clone, Args)]
pub struct BuilderPruneArgs {}

// ---- registry ----------------------------------------------------------------------------

/// `container registry ...`.
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Log in to a registry.
    Login(LoginArgs),
    /// Log out of a registry.
    Logout(LogoutArgs),
    /// List registry logins.
    #[command(visible_alias = "ls")]
    List(RegistryListArgs),
}

/// `container registry login`.
#[derive(Debug, Clone, Args)]
pub struct LoginArgs {
    /// The user name.
    #[arg(short = 'u', long, value_name = "USER")]
    pub username: Option<String>,
    /// Read the password from stdin.
    #[arg(long)]
    pub password_stdin: bool,
    /// Registry.
    #[command(flatten)]
    pub registry: RegistryFlags,
    /// The registry host (e.g. ghcr.io, localhost:5000).
    #[arg(help_heading = None::<&str>, value_name = "SERVER")]
    pub server: String,
}

/// `container registry logout`.
#[derive(Debug, Clone, Args)]
pub struct LogoutArgs {
    /// The registry host.
    #[arg(value_name = "SERVER")]
    pub server: String,
}

/// `container registry list`.
#[derive(Debug, Clone, Args)]
pub struct RegistryListArgs {
    /// Print only host names.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

// ---- system ------------------------------------------------------------------------------

/// `container system ...`.
#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Start the container daemon.
    Start(SystemStartArgs),
    /// Stop every running container (each with its stop signal and timeout), then the daemon.
    Stop(SystemStopArgs),
    /// Show whether the daemon runs, and where it keeps its state.
    Status(SystemStatusArgs),
    /// Show the versions of the CLI, the daemon and the guest kernel.
    Version(SystemVersionArgs),
    /// Show the daemon's log.
    Logs(SystemLogsArgs),
    /// Show disk usage of images, containers and volumes.
    Df(SystemDfArgs),
    /// Manage the daemon's configuration properties.
    #[command(subcommand)]
    Property(PropertyCommand),
    /// Manage the kernel containers boot.
    #[command(subcommand)]
    Kernel(KernelCommand),
    /// Manage the DNS domains the daemon answers container names in.
    #[command(subcommand)]
    Dns(DnsCommand),
}

/// `container system start`.
#[derive(Debug, Clone, Args)]
pub struct SystemStartArgs {
    /// Where the daemon keeps its state [default: $CONTAINER_APP_ROOT, else the platform's].
    #[arg(long, value_name = "PATH")]
    pub app_root: Option<PathBuf>,
    /// The daemon program [default: container-apiserver beside this program, else on PATH].
    #[arg(long, value_name = "PATH")]
    pub apiserver: Option<PathBuf>,
    /// Seconds to wait for the daemon to answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub timeout: u64,
    /// Register the daemon as a systemd service (Linux): write the unit, enable and start it
    /// (a user unit when not root). On macOS `system start` always registers a launchd agent.
    #[arg(long)]
    pub systemd: bool,
    /// Serve the Docker Engine API at this socket path instead of <app root>/docker.sock
    /// (`none`: serve none) [default: the daemon's docker.socket property].
    #[arg(long, value_name = "PATH")]
    pub docker_socket: Option<PathBuf>,
}

/// `container system stop`.
#[derive(Debug, Clone, Args)]
pub struct SystemStopArgs {}

/// `container system status`.
#[derive(Debug, Clone, Args)]
pub struct SystemStatusArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// `container system version`.
#[derive(Debug, Clone, Args)]
pub struct SystemVersionArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// `container system logs`.
#[derive(Debug, Clone, Args)]
pub struct SystemLogsArgs {
    /// Keep following new lines.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only lines from the last period, e.g. 30s, 5m, 2h.
    #[arg(long, value_name = "PERIOD")]
    pub last: Option<String>,
}

/// `container system df`.
#[derive(Debug, Clone, Args)]
pub struct SystemDfArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Also list each guest of the warm pool.
    #[arg(short, long)]
    pub verbose: bool,
}

/// `container system property ...`.
#[derive(Debug, Subcommand)]
pub enum PropertyCommand {
    /// List every property with its value.
    #[command(visible_alias = "ls")]
    List(PropertyListArgs),
    /// Print one property's value.
    Get(PropertyKeyArgs),
    /// Set a property.
    Set(PropertySetArgs),
    /// Reset a property to its default.
    Clear(PropertyKeyArgs),
}

/// `container system property list`.
#[derive(Debug, Clone, Args)]
pub struct PropertyListArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// A property key.
#[derive(Debug, Clone, Args)]
pub struct PropertyKeyArgs {
    /// The dotted key (e.g. container.memory).
    #[arg(value_name = "KEY")]
    pub key: String,
}

/// `container system property set`.
#[derive(Debug, Clone, Args)]
pub struct PropertySetArgs {
    /// The dotted key (e.g. container.memory).
    #[arg(value_name = "KEY")]
    pub key: String,
    /// The new value.
    #[arg(value_name = "VALUE")]
    pub value: String,
}

/// `container system kernel ...`.
#[derive(Debug, Subcommand)]
pub enum KernelCommand {
    /// Install a kernel and make it the default for new containers.
    Set(KernelSetArgs),
}

/// `container system kernel set`.
#[derive(Debug, Clone, Args)]
pub struct KernelSetArgs {
    /// The architecture the kernel is for [default: the host's].
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// A kernel image file, or its path inside --tar.
    #[arg(long, value_name = "PATH", required_unless_present_any = ["tar", "recommended"])]
    pub binary: Option<String>,
    /// A tar archive (path or https URL) that holds the kernel.
    #[arg(long, value_name = "PATH|URL")]
    pub tar: Option<String>,
    /// The expected sha256 digest of the download.
    #[arg(long, value_name = "DIGEST")]
    pub digest: Option<String>,
    /// Replace an installed kernel of the same name.
    #[arg(long)]
    pub force: bool,
    /// Install the recommended kernel of this release.
    #[arg(long, conflicts_with_all = ["binary", "tar"])]
    pub recommended: bool,
}

// ---- network -----------------------------------------------------------------------------

/// `container network ...`.
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network.
    Create(NetworkCreateArgs),
    /// Delete networks (refused while a container references one).
    #[command(visible_alias = "rm")]
    Delete(NetworkDeleteArgs),
    /// List networks.
    #[command(visible_alias = "ls")]
    List(NetworkListArgs),
    /// Show networks as JSON.
    Inspect(NetworkInspectArgs),
    /// Delete every network no container references (never `default`).
    Prune(NetworkPruneArgs),
}

/// `container network create`.
#[derive(Debug, Clone, Args)]
pub struct NetworkCreateArgs {
    /// IPv4 subnet in CIDR form [default: the first free 192.168.N.0/24].
    #[arg(long, value_name = "CIDR")]
    pub subnet: Option<String>,
    /// IPv6 subnet in CIDR form.
    #[arg(long = "subnet-v6", value_name = "CIDR")]
    pub subnet_v6: Option<String>,
    /// No route out of the network: containers reach each other and the host only.
    #[arg(long)]
    pub internal: bool,
    /// Set a label: KEY[=VALUE].
    #[arg(short = 'l', long = "label", value_name = "KEY[=VALUE]")]
    pub labels: Vec<String>,
    /// The network's name.
    #[arg(value_name = "NAME")]
    pub name: String,
}

/// `container network delete`.
#[derive(Debug, Clone, Args)]
pub struct NetworkDeleteArgs {
    /// Delete every network but `default`.
    #[arg(short = 'a', long, conflicts_with = "names")]
    pub all: bool,
    /// Networks to delete.
    #[arg(value_name = "NAME", required_unless_present = "all")]
    pub names: Vec<String>,
}

/// `container network list`.
#[derive(Debug, Clone, Args)]
pub struct NetworkListArgs {
    /// Print only names.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Output format: `table`, `json`, or a Go template (`{{.Names}}`, `{{json .}}`,
    /// `table {{.ID}}\t{{.Status}}`) over Docker's field names.
    #[arg(long, default_value = "table")]
    pub format: ListFormat,
    /// Show only what passes a filter, `key=value` (repeatable; values of one key are
    /// alternatives, different keys must all hold). Keys: name, id, label, driver.
    #[arg(short = 'f', long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Do not shorten IDs and commands.
    #[arg(long)]
    pub no_trunc: bool,
}

/// `container network inspect`.
#[derive(Debug, Clone, Args)]
pub struct NetworkInspectArgs {
    /// Networks to show.
    #[arg(value_name = "NAME", required = true)]
    pub names: Vec<String>,
}

/// `container network prune`.
#[derive(Debug, Clone, Args)]
pub struct NetworkPruneArgs {}

/// `container system dns ...`.
#[derive(Debug, Subcommand)]
pub enum DnsCommand {
    /// Answer container names under DOMAIN (`NAME.DOMAIN`) in every network's DNS server.
    Create(DnsDomainArgs),
    /// Stop answering names under DOMAIN.
    #[command(visible_alias = "rm")]
    Delete(DnsDomainArgs),
    /// List the DNS domains.
    #[command(visible_alias = "ls")]
    List(DnsListArgs),
}

/// A DNS domain operand.
#[derive(Debug, Clone, Args)]
pub struct DnsDomainArgs {
    /// The domain (e.g. `test`).
    #[arg(value_name = "DOMAIN")]
    pub domain: String,
}

/// `container system dns list`.
#[derive(Debug, Clone, Args)]
pub struct DnsListArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

// ---- volumes -----------------------------------------------------------------------------

/// `container volume ...`.
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a named volume: an ext4 file system the daemon keeps (sparse).
    Create(VolumeCreateArgs),
    /// List volumes.
    #[command(visible_alias = "ls")]
    List(VolumeListArgs),
    /// Show volumes as JSON.
    Inspect(VolumeInspectArgs),
    /// Delete volumes no container references.
    #[command(visible_alias = "rm")]
    Delete(VolumeDeleteArgs),
    /// Delete every volume no container references.
    Prune(VolumePruneArgs),
}

/// `container volume create`.
#[derive(Debug, Clone, Args)]
pub struct VolumeCreateArgs {
    /// The file system's size, e.g. 10g [default: the volume.size property].
    #[arg(short = 's', long, value_name = "SIZE")]
    pub size: Option<String>,
    /// A driver option: size=SIZE.
    #[arg(long = "opt", value_name = "KEY=VALUE")]
    pub opt: Vec<String>,
    /// Add a label: KEY[=VALUE].
    #[arg(short = 'l', long = "label", value_name = "LABEL")]
    pub label: Vec<String>,
    /// The volume's name.
    #[arg(value_name = "NAME")]
    pub name: String,
}

/// `container volume list`.
#[derive(Debug, Clone, Args)]
pub struct VolumeListArgs {
    /// Print only names.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Output format: `table`, `json`, or a Go template (`{{.Names}}`, `{{json .}}`,
    /// `table {{.ID}}\t{{.Status}}`) over Docker's field names.
    #[arg(long, default_value = "table")]
    pub format: ListFormat,
    /// Show only what passes a filter, `key=value` (repeatable; values of one key are
    /// alternatives, different keys must all hold). Keys: name, label, dangling, driver.
    #[arg(short = 'f', long = "filter", value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Do not shorten IDs and commands.
    #[arg(long)]
    pub no_trunc: bool,
}

/// `container volume inspect`.
#[derive(Debug, Clone, Args)]
pub struct VolumeInspectArgs {
    /// The volumes.
    #[arg(value_name = "NAME", required = true)]
    pub names: Vec<String>,
}

/// `container volume delete`.
#[derive(Debug, Clone, Args)]
pub struct VolumeDeleteArgs {
    /// Delete every volume no container references.
    #[arg(short = 'a', long, conflicts_with = "names")]
    pub all: bool,
    /// The volumes.
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
}

/// `container volume prune`.
#[derive(Debug, Clone, Args)]
pub struct VolumePruneArgs {}
