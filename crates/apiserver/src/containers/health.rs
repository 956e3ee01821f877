//! The healthcheck probe loop: one task per running container with a healthcheck runs the
//! probe through the runtime's exec on its schedule, records the result in the container's
//! record ([`crate::health`] decides the status) and publishes `health_status` events when
//! the status changes. The loop ends with the run it watches; a re-adopted container gets a
//! new loop that goes on from the health its record kept.

use std::sync::Arc;
use std::time::Duration;

use runtime_api::client::{ExecSpec, Output, StdioEvent};

use super::CONNECT_TIMEOUT;
use crate::daemon::Daemon;
use crate::health::{HealthConfig, ProbeResult, output_text};
use crate::record::Phase;

impl Daemon {
    /// Starts the probe loop of a running container, if it has a healthcheck.
    pub(crate) fn watch_health(self: &Arc<Self>, id: &str) {
        let Ok(r) = self.record(id) else { return };
        let Some(config) = r.healthcheck.clone() else {
            return;
        };
        let me = Arc::clone(self);
        let id = id.to_owned();
        tokio::spawn(async move { me.health_loop(id, r.started_ms, config).await });
    }

    async fn health_loop(self: Arc<Self>, id: String, started: i64, config: HealthConfig) {
        let interval = Duration::from_millis(config.interval_ms.max(1));
        let mut shutdown = self.shutdown.subscribe();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.wait_for(|v| *v) => return,
            }
            let this_run = |d: &Daemon| {
                d.record(&id)
                    .is_ok_and(|r| r.phase == Phase::Running && r.started_ms == started)
            };
            if !this_run(&self) {
                return;
            }
            let result = self.probe(&id, &config).await;
            // The run may have ended while the probe ran: its result is then dropped.
            let mut changed = None;
            let Ok(record) = self.update(&id, |r| {
                if r.phase == Phase::Running && r.started_ms == started {
                    let health = r
                        .health
                        .get_or_insert_with(crate::health::HealthState::starting);
                    changed = health.record(result, &config, started);
                }
            }) else {
                return;
            };
            if let Some(status) = changed {
                tracing::info!(%id, status = status.as_str(), "health changed");
                self.container_event(&record, &format!("health_status: {}", status.as_str()), &[]);
            }
        }
    }

    /// Runs one probe; a probe that outlives the timeout is killed and fails.
    async fn probe(&self, id: &str, config: &HealthConfig) -> ProbeResult {
        let start_ms = crate::fsutil::now_ms();
        let failed = |output: String| ProbeResult {
            start_ms,
            end_ms: crate::fsutil::now_ms(),
            exit_code: -1,
            output,
        };
        let bundle = self.bundle(id);
        let client =
            match runtime_api::RuntimeClient::connect(&bundle.socket(), CONNECT_TIMEOUT).await {
                Ok(c) => c,
                Err(e) => return failed(format!("cannot reach the container's runtime: {e}")),
            };
        let exec_id = Arc::new(std::sync::Mutex::new(String::new()));
        let seen = Arc::clone(&exec_id);
        let spec = ExecSpec {
            args: config.argv(),
            ..Default::default()
        };
        let run = async {
            let mut session = client.exec(spec).await?;
            let mut output = Vec::new();
            loop {
                match session.next().await? {
                    Some(StdioEvent::Started { exec_id, .. }) => {
                        *seen.lock().unwrap_or_else(|p| p.into_inner()) = exec_id;
                    }
                    Some(StdioEvent::Output(Output::Stdout(d) | Output::Stderr(d))) => {
                        let room = crate::health::MAX_OUTPUT.saturating_sub(output.len());
                        output.extend_from_slice(&d[..d.len().min(room)]);
                    }
                    Some(StdioEvent::Output(Output::ExitCode(code))) => {
                        return Ok::<_, runtime_api::client::ClientError>((code, output));
                    }
                    None => return Ok((-1, output)),
                }
            }
        };
        let timeout = Duration::from_millis(config.timeout_ms.max(1));
        match tokio::time::timeout(timeout, run).await {
            Ok(Ok((code, output))) => ProbeResult {
                start_ms,
                end_ms: crate::fsutil::now_ms(),
                exit_code: code,
                output: output_text(&output),
            },
            Ok(Err(e)) => failed(format!("the healthcheck could not run: {e}")),
            Err(_) => {
                let exec = exec_id.lock().unwrap_or_else(|p| p.into_inner()).clone();
                if !exec.is_empty() {
                    let _ = client.kill(libc::SIGKILL as u32, false, &exec).await;
                }
                let limit = if config.timeout_ms.is_multiple_of(1000) {
                    format!("{}s", config.timeout_ms / 1000)
                } else {
                    format!("{}ms", config.timeout_ms)
                };
                // Docker's words, so scripts that look for them find them.
                failed(format!("Health check exceeded timeout ({limit})"))
            }
        }
    }
}
