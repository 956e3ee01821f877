//! `container-runtime --pool-slot DIR`: a runtime of the daemon's warm pool. It boots the
//! slot's VM with no container (see `runtime_api::pool` for the slot layout and the claim
//! protocol), binds `claim.sock` once the guest agent answers, and waits. Claimed, it takes
//! the bundle's lock, moves its log to the bundle and runs the container exactly as a
//! runtime spawned for it would, on the VM it already has. Unclaimed, it powers the VM off
//! when its stdin (the daemon's pipe) closes or on SIGTERM. It serves at most one claim.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{SignalKind, signal};

use crate::container::{ContainerError, PooledVm};
use crate::run::{RunError, RunOptions};
use runtime_api::bundle::{Bundle, RuntimeLock};
use runtime_api::config::RuntimeConfig;
use runtime_api::pool::{PoolShape, PoolSlot};

/// How long a claimer may take to send its line.
const CLAIM_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the runtime's log goes once claimed.
pub type RedirectLog = Box<dyn FnOnce(&Path) + Send>;

/// Serves the slot until it is claimed (then runs the container to its end) or drained.
pub async fn run(
    slot: PoolSlot,
    options: RunOptions,
    redirect_log: RedirectLog,
) -> Result<(), RunError> {
    let result = serve(&slot, options, redirect_log).await;
    // Nothing in the slot outlives its runtime: the VM is gone by now.
    if let Err(e) = std::fs::remove_dir_all(slot.dir()) {
        tracing::warn!("removing {}: {e}", slot.dir().display());
    }
    result
}

async fn serve(
    slot: &PoolSlot,
    options: RunOptions,
    redirect_log: RedirectLog,
) -> Result<(), RunError> {
    let config = slot
        .load_config()
        .map_err(|e| ContainerError::InvalidArgument(e.to_string()))?;
    let (stdin_tx, mut stdin_closed) = tokio::sync::watch::channel(false);
    // A plain thread: a read blocked on the daemon's pipe must not hold up the exit.
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 64];
        let mut stdin = std::io::stdin().lock();
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        let _ = stdin_tx.send(true);
    });
    let drained = async move {
        let mut term = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
        let mut int = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
        tokio::select! {
            _ = term.recv() => tracing::info!("signalled: draining"),
            _ = int.recv() => tracing::info!("interrupted: draining"),
            _ = stdin_closed.wait_for(|c| *c) => tracing::info!("the daemon closed the pool's pipe: draining"),
        }
        Ok::<(), RunError>(())
    };
    tokio::pin!(drained);
    let started = std::time::Instant::now();
    let pooled = tokio::select! {
        p = PooledVm::boot(slot.clone(), config) => p?,
        r = &mut drained => return r,
    };
    tracing::info!(
        boot_ms = started.elapsed().as_millis() as u64,
        "pooled guest ready"
    );
    let socket = slot.claim_socket();
    let _ = std::fs::remove_file(&socket);
    let listener = match UnixListener::bind(&socket) {
        Ok(l) => l,
        Err(e) => {
            pooled.discard().await;
            return Err(ContainerError::Io {
                op: format!("binding {}", socket.display()),
                source: e,
            }
            .into());
        }
    };
    let claimed = loop {
        tokio::select! {
            r = &mut drained => {
                pooled.discard().await;
                return r;
            }
            exit = pooled.vm().wait() => {
                return Err(ContainerError::FailedPrecondition(format!(
                    "the pooled vm exited before a claim ({exit})"
                ))
                .into());
            }
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                match take_claim(stream, pooled.config().shape.clone()).await {
                    Ok(Some(claim)) => break claim,
                    // The peer went away before naming a bundle: still unclaimed.
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!("claim refused: {e}");
                        pooled.discard().await;
                        return Ok(());
                    }
                }
            }
        }
    };
    drop(listener);
    let _ = std::fs::remove_file(&socket);
    let Claim {
        bundle,
        config,
        lock: _lock,
    } = claimed;
    redirect_log(&bundle.runtime_log());
    tracing::info!(
        pid = std::process::id(),
        slot = %slot.dir().display(),
        bundle = %bundle.dir().display(),
        "container-runtime claimed from the pool"
    );
    let create = pooled.into_container(bundle.clone(), config.clone());
    crate::run::run_with(bundle, config, options, create, None).await
}

/// A claim accepted: the bundle, its config and its lock, held from now to the end.
struct Claim {
    bundle: Bundle,
    config: RuntimeConfig,
    lock: RuntimeLock,
}

/// Reads one claim and answers it. `Ok(None)`: the peer sent nothing.
async fn take_claim(stream: UnixStream, shape: PoolShape) -> Result<Option<Claim>, String> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    match tokio::time::timeout(
        CLAIM_READ_TIMEOUT,
        BufReader::new(read).read_line(&mut line),
    )
    .await
    {
        Ok(Ok(n)) if n > 0 && line.ends_with('\n') => {}
        _ => return Ok(None),
    }
    let dir = PathBuf::from(line.trim_end_matches('\n'));
    let checked = check_claim(&dir, &shape);
    let answer = match &checked {
        Ok(_) => "ok\n".to_owned(),
        Err(e) => format!("error {}\n", e.replace('\n', " ")),
    };
    // Refused: the bundle's lock (if taken) is released before the answer goes out, so the
    // daemon may boot the container cold at once.
    let claim = checked?;
    if let Err(e) = write.write_all(answer.as_bytes()).await {
        // The daemon no longer waits for this claim and will boot the container cold.
        return Err(format!("answering the claim: {e}"));
    }
    Ok(Some(claim))
}

fn check_claim(dir: &Path, shape: &PoolShape) -> Result<Claim, String> {
    if !dir.is_absolute() || !dir.is_dir() {
        return Err(format!("{} is not a bundle directory", dir.display()));
    }
    let bundle = Bundle::new(dir);
    if bundle.socket().as_os_str().len() > 107 {
        return Err(format!(
            "bundle path {} is too long for its runtime.sock",
            dir.display()
        ));
    }
    let lock = bundle.hold_runtime_lock().map_err(|e| e.to_string())?;
    let config = RuntimeConfig::load(&bundle.config()).map_err(|e| e.to_string())?;
    if PoolShape::of(&config).as_ref() != Some(shape) {
        return Err("the container needs a vm of another shape".into());
    }
    Ok(Claim {
        bundle,
        config,
        lock,
    })
}
