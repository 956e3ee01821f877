//! `system start`, `status` and `stop` spawn, find and stop a real daemon process.
//!
//! The daemon is a stand-in: this test binary re-executed (through a small shell script,
//! because `system start` passes no arguments) runs the ignored `standin_daemon_process`
//! test, which serves the System service on `$CONTAINER_APP_ROOT/apiserver.sock` until
//! asked to shut down.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use api::v1;
use api::v1::system_server::{System, SystemServer};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::Status;

struct StandIn {
    stop: tokio::sync::mpsc::Sender<()>,
    app_root: String,
}

fn standin_version() -> v1::VersionResponse {
    v1::VersionResponse {
        version: "0.0.0-standin".into(),
        commit: "none".into(),
        build: "debug".into(),
        api_version: api::API_VERSION,
        app_name: "container-apiserver".into(),
    }
}

#[tonic::async_trait]
impl System for StandIn {
    async fn version(
        &self,
        _: tonic::Request<v1::VersionRequest>,
    ) -> Result<tonic::Response<v1::VersionResponse>, Status> {
        Ok(tonic::Response::new(standin_version()))
    }

    async fn status(
        &self,
        _: tonic::Request<v1::StatusRequest>,
    ) -> Result<tonic::Response<v1::StatusResponse>, Status> {
        Ok(tonic::Response::new(v1::StatusResponse {
            status: "running".into(),
            app_root: self.app_root.clone(),
            vmm: "qemu".into(),
            version: Some(standin_version()),
            ..Default::default()
        }))
    }

    async fn shutdown(
        &self,
        _: tonic::Request<v1::ShutdownRequest>,
    ) -> Result<tonic::Response<v1::ShutdownResponse>, Status> {
        let _ = self.stop.send(()).await;
        Ok(tonic::Response::new(v1::ShutdownResponse {}))
    }
}

/// Not a test: the daemon process `system start` spawns (see the module doc).
#[test]
#[ignore = "helper process, run by system_start_status_stop"]
fn standin_daemon_process() {
    let app_root =
        std::env::var("CONTAINER_APP_ROOT").expect("started by `container system start`");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let socket = api::socket_path(Path::new(&app_root));
        let listener = api::server::bind_socket(&socket).await.unwrap();
        // As the real daemon does: `system stop` waits for this process to be gone.
        std::fs::write(
            Path::new(&app_root).join("apiserver.pid"),
            std::process::id().to_string(),
        )
        .unwrap();
        let (stop, mut stopped) = tokio::sync::mpsc::channel(1);
        tonic::transport::Server::builder()
            .add_service(SystemServer::new(StandIn { stop, app_root }))
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
                stopped.recv().await;
            })
            .await
            .unwrap();
        let _ = std::fs::remove_file(&socket);
    });
}

fn container(app_root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_container"))
        .args(args)
        .env("CONTAINER_APP_ROOT", app_root)
        .output()
        .unwrap()
}

#[test]
fn system_start_status_stop() {
    let dir = tempfile::tempdir().unwrap();
    let app_root = dir.path().join("root");
    let script = dir.path().join("container-apiserver");
    let exe = std::env::current_exe().unwrap();
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec '{}' standin_daemon_process --exact --ignored --nocapture\n",
            exe.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = api::socket_path(&app_root);

    let out = container(
        &app_root,
        &["system", "start", "--apiserver", script.to_str().unwrap()],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("container daemon started at {}\n", socket.display())
    );
    assert!(app_root.join("apiserver.log").exists());

    // A second start finds it running and leaves it alone.
    let out = container(
        &app_root,
        &["system", "start", "--apiserver", script.to_str().unwrap()],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("container daemon already running at {}\n", socket.display())
    );

    let out = container(&app_root, &["system", "status", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["status"], "running");
    assert_eq!(status["apiServerVersion"], "0.0.0-standin");

    let out = container(&app_root, &["system", "version"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .nth(2)
            .unwrap_or_default()
            .starts_with("container-apiserver   0.0.0-standin   debug"),
        "{text}"
    );

    let out = container(&app_root, &["system", "stop"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "container daemon stopped\n"
    );
    assert!(!socket.exists());

    let out = container(&app_root, &["system", "status"]);
    assert_eq!(out.status.code(), Some(1));
    let out = container(&app_root, &["system", "stop"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "container daemon is not running\n"
    );
}

#[test]
fn a_daemon_that_dies_at_once_is_reported_with_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("container-apiserver");
    std::fs::write(
        &script,
        "#!/bin/sh\necho 'cannot open the app root' >&2\nexit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = container(
        dir.path(),
        &["system", "start", "--apiserver", script.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(125));
    let log = dir.path().join("apiserver.log");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "container: {} exited (exit status: 3) before answering: see {}\n",
            script.display(),
            log.display()
        )
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "cannot open the app root\n"
    );
}
