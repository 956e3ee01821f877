//! Pause and unpause: the guest's cgroup v2 freezer, through the container's runtime.
//!
//! The daemon records `paused` beside the phase (a paused container is still running); a
//! stop, a kill or the end of the run clears it, since the runtime thaws a frozen container
//! before it signals it.

use std::sync::Arc;

use api::ApiError;

use super::runtime_error;
use crate::daemon::Daemon;
use crate::record::Phase;

impl Daemon {
    /// Freezes (`pause`) or thaws (`unpause`) a running container's processes, with the
    /// `pause` or `unpause` event.
    pub async fn set_paused(self: &Arc<Self>, key: &str, paused: bool) -> Result<(), ApiError> {
        let id = self.lookup(key)?;
        let lock = self.op_lock(&id)?;
        let _guard = lock.lock().await;
        let r = self.record(&id)?;
        if r.phase != Phase::Running {
            return Err(ApiError::failed_precondition(format!(
                "container {} is not running",
                r.name
            )));
        }
        if r.paused == paused {
            return Err(ApiError::failed_precondition(if paused {
                format!("container {} is already paused", r.name)
            } else {
                format!("container {} is not paused", r.name)
            }));
        }
        let client = self.connect(&id).await?;
        client.freeze(paused).await.map_err(runtime_error)?;
        let r = self.update(&id, |r| r.paused = paused)?;
        self.container_event(&r, if paused { "pause" } else { "unpause" }, &[]);
        tracing::info!(%id, paused, "freezer changed");
        Ok(())
    }
}
