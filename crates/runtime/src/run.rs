//! The runtime's whole life for one bundle, as `container-runtime --bundle DIR` runs it.

use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use crate::container::{Container, ContainerError};
use runtime_api::bundle::Bundle;
use runtime_api::config::RuntimeConfig;
use runtime_api::state::State;

/// Errors that end the runtime.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The container failed to boot or start; state.json says why.
    #[error("{0}")]
    Container(#[from] ContainerError),
    /// The API could not be served.
    #[error(transparent)]
    Serve(#[from] crate::server::ServeError),
    /// A signal handler could not be installed.
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
}

/// How [`run`] behaves.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// How long State and Wait stay served after the container finished.
    pub linger: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            linger: Duration::from_secs(2),
        }
    }
}

/// Runs the container of `bundle` to its end. Records failures in state.json before
/// returning them.
pub async fn run(bundle: Bundle, options: RunOptions) -> Result<(), RunError> {
    let config = match RuntimeConfig::load(&bundle.config()) {
        Ok(c) => c,
        Err(e) => {
            let id = bundle
                .dir()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let e = ContainerError::from(e);
            record(&bundle, &id, &e);
            return Err(e.into());
        }
    };
    let create = Container::create(bundle.clone(), config.clone());
    run_with(bundle, config, options, create, None).await
}

/// Runs the container of `bundle` whose VM `create` boots (or takes from the pool), serves
/// it and waits for its end. `on_created` runs once the container serves.
pub(crate) async fn run_with(
    bundle: Bundle,
    config: RuntimeConfig,
    options: RunOptions,
    create: impl std::future::Future<Output = Result<Arc<Container>, ContainerError>>,
    on_created: Option<Box<dyn FnOnce() + Send>>,
) -> Result<(), RunError> {
    let id = config.id.clone();
    // sun_path holds 107 bytes and a NUL; refuse before booting anything.
    if bundle.socket().as_os_str().len() > 107 {
        let e = ContainerError::InvalidArgument(format!(
            "bundle path {} is too long for its runtime.sock (at most 94 bytes)",
            bundle.dir().display()
        ));
        record(&bundle, &id, &e);
        return Err(e.into());
    }
    // The daemon can see the runtime alive (and its pid) while the VM boots.
    if let Err(e) = State::new(&id).save(&bundle.state()) {
        tracing::error!("writing state.json: {e}");
    }
    let mut term = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
    let container = tokio::select! {
        c = create => c,
        _ = term.recv() => Err(ContainerError::FailedPrecondition("terminated while booting".into())),
        _ = int.recv() => Err(ContainerError::FailedPrecondition("interrupted while booting".into())),
    };
    let container = match container {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            record(&bundle, &id, &e);
            return Err(e.into());
        }
    };
    tracing::info!("container created; serving {}", bundle.socket().display());
    if let Some(f) = on_created {
        f();
    }
    let on_signal = Arc::clone(&container);
    // A signal, or a Stop rpc once the container has finished, cuts the linger short: the
    // daemon stops a finished runtime once it has recorded the end and wants it gone
    // (`run --rm` waits for that).
    let (signalled_tx, mut signalled) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("signalled: stopping the container");
        on_signal.shutdown().await;
        let _ = signalled_tx.send(true);
    });
    let ending = Arc::clone(&container);
    let linger = options.linger;
    let release = Arc::new(tokio::sync::Notify::new());
    let released = Arc::clone(&release);
    let shutdown = async move {
        let f = ending.wait().await;
        tracing::info!(
            code = f.exit_code,
            "container finished; lingering {linger:?}"
        );
        tokio::select! {
            () = tokio::time::sleep(linger) => {}
            _ = signalled.wait_for(|s| *s) => {}
            () = released.notified() => tracing::info!("released by a client's stop"),
        }
    };
    // A client holding a stream open must not keep the runtime alive for ever.
    let socket = bundle.socket();
    let served = crate::server::serve(&socket, Arc::clone(&container), release, shutdown);
    let finished = async {
        container.wait().await;
        tokio::time::sleep(linger + Duration::from_secs(3)).await;
    };
    tokio::select! {
        r = served => if let Err(e) = r {
            // Nobody can reach the container: end it rather than leave it unmanaged.
            tracing::error!("{e}; stopping the container");
            container.fail(&e.to_string());
            let _ = container.stop(Some(libc::SIGKILL as u32), Some(Duration::ZERO)).await;
            container.wait().await;
            return Err(e.into());
        },
        () = finished => tracing::warn!("clients kept streams open; exiting anyway"),
    }
    let _ = std::fs::remove_file(bundle.socket());
    Ok(())
}

fn record(bundle: &Bundle, id: &str, e: &ContainerError) {
    if let Err(w) = Container::record_failure(bundle, id, e) {
        tracing::error!("writing state.json: {w}");
    }
}
