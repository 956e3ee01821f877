//! `container-runtime --bundle DIR`: runs one container in the foreground (the daemon
//! detaches it) and logs to `<bundle>/runtime.log` (filter: `$CONTAINER_RUNTIME_LOG`, a
//! tracing filter, default `info`). Exits 0 once the container has run and ended, 1 when
//! it could not be booted or served (state.json says why), or when another runtime holds
//! the bundle's `runtime.lock`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

/// Runs the container described by <bundle>/config.json in its own VM.
#[derive(Debug, Parser)]
#[command(name = "container-runtime", version)]
struct Args {
    /// The container's bundle directory (holding config.json).
    #[arg(
        long,
        required_unless_present_any = ["pool_slot", "builder"],
        conflicts_with_all = ["pool_slot", "builder"]
    )]
    bundle: Option<PathBuf>,
    /// Boot a builder VM from <DIR>/builder.json and serve the RUN steps of builds on
    /// <DIR>/builder.sock until stdin closes (see runtime_api::builder).
    #[arg(long, value_name = "DIR", conflicts_with = "pool_slot")]
    builder: Option<PathBuf>,
    /// Boot a pooled VM from <DIR>/pool.json and wait to be claimed for a container (see
    /// runtime_api::pool); powers off when stdin closes before a claim.
    #[arg(long, value_name = "DIR")]
    pool_slot: Option<PathBuf>,
    /// Serve the stopped container's files read-only (for export and cp) from
    /// <bundle>/maintenance.json until stdin closes, instead of running it.
    #[arg(long)]
    maintenance: bool,
    /// With --maintenance: mount the container's root writable and accept copies into its
    /// writable layer (cp into a stopped container).
    #[arg(long, requires = "maintenance")]
    writable: bool,
    /// Seconds to keep serving State and Wait after the container has finished.
    #[arg(long, default_value_t = 2.0)]
    linger_secs: f64,
}

/// The log file, behind a lock so a claimed pool runtime can move it to the bundle.
#[derive(Clone)]
struct SwitchableLog(std::sync::Arc<std::sync::Mutex<std::fs::File>>);

impl std::io::Write for SwitchableLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // A poisoned lock still holds a usable file.
        let mut file = self.0.lock().unwrap_or_else(|p| p.into_inner());
        file.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let mut file = self.0.lock().unwrap_or_else(|p| p.into_inner());
        file.flush()
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // A pool slot is laid out like a bundle: its own lock, log and VM dir.
    let dir = match (&args.bundle, &args.pool_slot, &args.builder) {
        (Some(dir), _, _) | (None, Some(dir), _) | (None, None, Some(dir)) => dir.clone(),
        (None, None, None) => anyhow::bail!("--bundle, --pool-slot or --builder is required"),
    };
    let bundle = runtime_api::Bundle::new(&dir);
    if !dir.is_dir() {
        anyhow::bail!("bundle {} is not a directory", dir.display());
    }
    // The daemon's only liveness test is this lock: take it before writing anything, and
    // hold it until the process ends (the kernel drops it even on SIGKILL). A maintenance
    // runtime serves a stopped container and must not make it look alive.
    let _alive = if args.maintenance || args.builder.is_some() {
        None
    } else {
        Some(bundle.hold_runtime_lock()?)
    };
    // What QEMU and its helpers create (sockets, their own files) is the owner's alone too.
    // SAFETY: umask only swaps the process's file mode mask; no memory is involved.
    unsafe { libc::umask(0o077) };
    let log = runtime_api::fsutil::open_private_append(&bundle.runtime_log())
        .with_context(|| format!("opening {}", bundle.runtime_log().display()))?;
    // Behind a lock the pool mode can swap: a claimed runtime logs into its container's
    // bundle from then on.
    let log = SwitchableLog(std::sync::Arc::new(std::sync::Mutex::new(log)));
    let redirect = std::sync::Arc::clone(&log.0);
    tracing_subscriber::fmt()
        .with_writer(move || log.clone())
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CONTAINER_RUNTIME_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    tracing::info!(pid = std::process::id(), bundle = %dir.display(), "container-runtime starting");
    let linger = Duration::try_from_secs_f64(args.linger_secs).context("--linger-secs")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result: anyhow::Result<()> = if args.pool_slot.is_some() {
        let redirect_log: runtime::pool::RedirectLog =
            Box::new(
                move |path| match runtime_api::fsutil::open_private_append(path) {
                    Ok(file) => {
                        if let Ok(mut current) = redirect.lock() {
                            *current = file;
                        }
                    }
                    Err(e) => {
                        tracing::warn!("opening {}: {e}; logging stays in the slot", path.display())
                    }
                },
            );
        rt.block_on(runtime::pool::run(
            runtime_api::pool::PoolSlot::new(&dir),
            runtime::run::RunOptions { linger },
            redirect_log,
        ))
        .map_err(Into::into)
    } else if args.builder.is_some() {
        rt.block_on(runtime::builder::run(
            runtime_api::builder::BuilderDir::new(&dir),
        ))
        .map_err(Into::into)
    } else if args.maintenance {
        rt.block_on(runtime::maintenance::run(bundle, args.writable))
            .map_err(Into::into)
    } else {
        rt.block_on(runtime::run::run(
            bundle,
            runtime::run::RunOptions { linger },
        ))
        .map_err(Into::into)
    };
    if let Err(e) = &result {
        tracing::error!("{e}");
    }
    tracing::info!("container-runtime exiting");
    // Blocking tasks (a stuck log write) must not keep the process alive.
    rt.shutdown_timeout(Duration::from_secs(2));
    result
}
