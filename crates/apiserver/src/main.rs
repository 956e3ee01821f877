//! `container-apiserver`: parses flags, sets up logging, and serves until SIGTERM/SIGINT or a
//! `system stop`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// The container daemon: serves the API on `<app root>/apiserver.sock`.
#[derive(Debug, Parser)]
#[command(name = "container-apiserver", version)]
struct Args {
    /// The app root (default: $CONTAINER_APP_ROOT, else the platform's data directory).
    #[arg(long)]
    app_root: Option<PathBuf>,
    /// The container-runtime program (default: beside this program, else on PATH).
    #[arg(long)]
    runtime: Option<PathBuf>,
    /// Also log to stderr.
    #[arg(long)]
    debug: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let app_root = match args.app_root {
        Some(p) if p.is_absolute() => p,
        Some(p) => std::env::current_dir()?.join(p),
        None => api::app_root().context("finding the app root")?,
    };
    // Every file the daemon and its helpers create is the owner's alone; modes are also set
    // explicitly where files are made, this only catches what a helper creates itself.
    // SAFETY: umask only swaps the process's file mode mask; no memory is involved.
    unsafe { libc::umask(0o077) };
    apiserver::fsutil::secure_app_root(&app_root)
        .with_context(|| format!("creating {}", app_root.display()))?;
    let log_path = app_root.join(apiserver::system::LOG_NAME);
    let log = apiserver::fsutil::open_private_append(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("CONTAINER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use tracing_subscriber::prelude::*;
    let file_layer = tracing_subscriber::fmt::layer()
        .with_writer(std::sync::Mutex::new(log))
        .with_ansi(false);
    let stderr_layer = args
        .debug
        .then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr));
    tracing_subscriber::registry()
        .with(filter)
        .with(file_layer)
        .with(stderr_layer)
        .init();
    tracing::info!(pid = std::process::id(), app_root = %app_root.display(), "container-apiserver starting");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let options = apiserver::DaemonOptions {
        app_root,
        runtime_binary: args.runtime,
    };
    rt.block_on(async move {
        let stop = async {
            use tokio::signal::unix::{SignalKind, signal};
            match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => std::future::pending::<()>().await,
            }
        };
        apiserver::serve(options, stop).await
    })
    .map_err(|e| {
        tracing::error!("{e}");
        anyhow::anyhow!(e)
    })
}
