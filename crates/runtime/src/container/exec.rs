//! Exec: running extra processes in the container, signalling and resizing them.

use super::*;

/// What to run with [`Container::exec`].
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// The program and its arguments.
    pub args: Vec<String>,
    /// KEY=VALUE pairs over the container's environment.
    pub env: Vec<String>,
    /// Working directory; empty keeps the container's.
    pub cwd: String,
    /// User; empty keeps the container's.
    pub user: String,
    /// Allocate a terminal.
    pub terminal: bool,
    /// Attach stdin.
    pub stdin: bool,
    /// Initial terminal size.
    pub rows: u32,
    /// Initial terminal size.
    pub cols: u32,
}

/// What an exec reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent {
    /// It runs.
    Started {
        /// Its id.
        exec_id: String,
        /// Its pid in the guest.
        pid: u32,
    },
    /// Its output, then its exit code; nothing follows the exit code.
    Output(Output),
}

/// A running exec's stdin.
pub struct ExecHandle {
    /// The exec's id.
    pub exec_id: String,
    /// Its stdin, when it was asked for.
    pub stdin: Option<WriteHalf<VsockStream>>,
}

impl Container {
    pub(super) fn process_id(&self, exec_id: &str) -> Result<String, ContainerError> {
        if exec_id.is_empty() {
            return Ok(self.config.id.clone());
        }
        let execs = self.execs.lock().unwrap_or_else(|e| e.into_inner());
        if execs.contains(exec_id) {
            Ok(exec_id.to_string())
        } else {
            Err(ContainerError::NotFound(format!(
                "no running exec {exec_id}"
            )))
        }
    }

    /// Sends `signal` to the init process (or an exec; or, with `all`, every process).
    pub async fn kill(&self, exec_id: &str, signal: u32, all: bool) -> Result<(), ContainerError> {
        let id = self.process_id(exec_id)?;
        if exec_id.is_empty() && self.exited.borrow().is_some() {
            return Err(ContainerError::FailedPrecondition(format!(
                "container {} is not running",
                self.config.id
            )));
        }
        let signal = if signal == 0 {
            libc::SIGKILL as u32
        } else {
            signal
        };
        if exec_id.is_empty() {
            self.thaw_if_frozen().await;
        }
        self.agent
            .kill_process(pb::KillProcessRequest { id, signal, all })
            .await
            .map(|_| ())
            .map_err(agent_err(format!("sending signal {signal}")))
    }

    /// Resizes the terminal of the init process or an exec.
    pub async fn resize(&self, exec_id: &str, rows: u32, cols: u32) -> Result<(), ContainerError> {
        let id = self.process_id(exec_id)?;
        self.agent
            .resize_process(pb::ResizeProcessRequest {
                id,
                size: Some(wire::v1::TerminalSize { rows, cols }),
            })
            .await
            .map(|_| ())
            .map_err(agent_err("resizing the terminal"))
    }

    /// Runs a new process in the container. `events` receives its output and, last, its
    /// exit; the returned [`ExecHandle`] feeds its stdin.
    pub async fn exec(
        self: &Arc<Self>,
        request: ExecRequest,
        events: mpsc::Sender<ExecEvent>,
    ) -> Result<ExecHandle, ContainerError> {
        if request.args.is_empty() {
            return Err(ContainerError::InvalidArgument(
                "exec: no command given".into(),
            ));
        }
        if self.state().status != Status::Running {
            return Err(ContainerError::FailedPrecondition(format!(
                "container {} is not running",
                self.config.id
            )));
        }
        let exec_id = format!("exec-{}", self.next_exec.fetch_add(1, Ordering::Relaxed));
        let mut spec = self.spec.clone();
        let process = spec
            .get_mut("process")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| ContainerError::InvalidArgument("spec has no process".into()))?;
        process.insert("args".into(), json!(request.args));
        let mut env: Vec<String> = process
            .get("env")
            .and_then(|e| serde_json::from_value(e.clone()).ok())
            .unwrap_or_default();
        for kv in &request.env {
            let key = kv.split('=').next().unwrap_or_default();
            env.retain(|e| e.split('=').next() != Some(key));
            env.push(kv.clone());
        }
        process.insert("env".into(), json!(env));
        if !request.cwd.is_empty() {
            process.insert("cwd".into(), json!(request.cwd));
        }
        process.insert("terminal".into(), json!(request.terminal));
        if request.rows > 0 && request.cols > 0 {
            process.insert(
                "consoleSize".into(),
                json!({"height": request.rows, "width": request.cols}),
            );
        } else {
            process.remove("consoleSize");
        }
        let user = if request.user.is_empty() {
            self.config.user.clone().unwrap_or_default()
        } else {
            request.user.clone()
        };
        let listeners = self.listen(request.stdin, true, !request.terminal).await?;
        let create = pb::CreateProcessRequest {
            id: exec_id.clone(),
            container_id: self.config.id.clone(),
            oci_spec: serde_json::to_vec(&spec)
                .map_err(|e| ContainerError::InvalidArgument(format!("spec: {e}")))?,
            stdio: Some(listeners.ports),
            terminal: request.terminal,
            user,
            init: false,
        };
        let agent = self.agent.clone();
        let (created, stdio) = tokio::join!(
            async move { agent.create_process(create).await },
            listeners.accept_all()
        );
        created.map_err(|e| self.start_error("creating the exec", e))?;
        let stdio = stdio?;
        let pid = match self
            .agent
            .start_process(pb::ProcessRef {
                id: exec_id.clone(),
            })
            .await
        {
            Ok(r) => r.pid,
            Err(e) => {
                let err = self.start_error("starting the exec", e);
                let _ = self
                    .agent
                    .delete_process(pb::ProcessRef {
                        id: exec_id.clone(),
                    })
                    .await;
                return Err(err);
            }
        };
        self.execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(exec_id.clone());
        let _ = events
            .send(ExecEvent::Started {
                exec_id: exec_id.clone(),
                pid,
            })
            .await;
        // Output is forwarded only after `Started`: clients take the first event to say
        // whether the exec started, and a fast program's output would otherwise overtake it.
        // Nothing is lost meanwhile; it waits in the vsock streams.
        let mut pumps = Vec::new();
        for (stream, stderr) in [(stdio.stdout, false), (stdio.stderr, true)] {
            if let Some(s) = stream {
                pumps.push(tokio::spawn(pump_exec_output(s, stderr, events.clone())));
            }
        }
        let me = Arc::clone(self);
        let id = exec_id.clone();
        tokio::spawn(async move {
            let code = match me
                .agent
                .wait_process(pb::ProcessRef { id: id.clone() })
                .await
            {
                Ok(w) => w.exit_code,
                Err(e) => {
                    tracing::warn!("waiting for {id}: {e}");
                    255
                }
            };
            for p in pumps {
                let _ = tokio::time::timeout(Duration::from_secs(2), p).await;
            }
            me.execs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            let _ = me.agent.delete_process(pb::ProcessRef { id }).await;
            let _ = events.send(ExecEvent::Output(Output::ExitCode(code))).await;
        });
        Ok(ExecHandle {
            exec_id,
            stdin: stdio.stdin.map(|s| tokio::io::split(s).1),
        })
    }
}

pub(super) async fn pump_exec_output(
    mut stream: VsockStream,
    stderr: bool,
    events: mpsc::Sender<ExecEvent>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let data = buf[..n].to_vec();
                let event = ExecEvent::Output(if stderr {
                    Output::Stderr(data)
                } else {
                    Output::Stdout(data)
                });
                if events.send(event).await.is_err() {
                    // The client went away; keep draining so the process never blocks.
                    continue;
                }
            }
        }
    }
}
