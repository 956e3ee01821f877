//! The Docker Engine API: the daemon also serves Docker's HTTP API on `<app root>/docker.sock`
//! (mode 0600, bound by the same binder as the gRPC socket), so the docker CLI, docker-py and
//! compose drive the same containers as `container`.
//!
//! One job: translate Docker's wire format to the daemon's own services. Every handler calls
//! the gRPC services of this same daemon over its own socket, so there is one state store,
//! one set of rules and one event stream; this layer holds only what Docker has and our
//! services do not (exec instances between create and start, attach streams waiting for
//! their container's start). It never touches container state on disk itself.
//!
//! Split by concern: [`build`] (`/build`, the classic builder), [`error`] (Docker's error JSON and status codes), [`stream`] (hijacked
//! connections, stdcopy frames, JSON-message streams, Docker's booleans), [`filters`], [`ids`],
//! [`create`] (the create body's translation), [`containers`], [`exec`], [`images`],
//! [`networks`], [`volumes`], [`system`]. This module holds the router, the `/vX.Y` prefix
//! stripping and the server.

pub mod build;
pub mod commit;
pub mod containers;
pub mod create;
pub mod error;
pub mod exec;
pub mod filters;
pub mod ids;
pub mod images;
pub mod networks;
pub mod stream;
pub mod system;
pub mod verbs;
pub mod volumes;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::routing::{any, get, head, post};

pub use error::DockerError;

/// The API version advertised by `/_ping` and `/version`: the version the docker CLI, compose
/// and docker-py were recorded against (see docs/docker-api.md).
pub const API_VERSION: &str = "1.43";
/// The oldest API version accepted.
pub const MIN_API_VERSION: &str = "1.24";
/// The socket's file name under the app root.
pub const SOCKET_NAME: &str = "docker.sock";
/// How long connecting to the daemon's own gRPC socket may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the Docker socket goes: `docker.socket` set (a path, or `none` for no socket),
/// else beside the gRPC socket.
pub fn socket_path(app_root: &Path, setting: &str) -> Option<PathBuf> {
    match setting.trim() {
        "" => Some(app_root.join(SOCKET_NAME)),
        "none" => None,
        path => Some(PathBuf::from(path)),
    }
}

/// The environment variable that places the Docker socket (`system start --docker-socket`),
/// over the `docker.socket` property.
pub const SOCKET_ENV: &str = "CONTAINER_DOCKER_SOCKET";

impl crate::Daemon {
    /// Where this daemon serves the Docker API, if anywhere.
    pub fn docker_socket(&self) -> Option<PathBuf> {
        let setting = std::env::var(SOCKET_ENV)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| self.properties.value("docker.socket"));
        socket_path(&self.app_root, &setting)
    }
}

/// The shared state of the Docker API server.
pub struct Docker {
    /// The daemon's own gRPC socket.
    grpc_socket: PathBuf,
    /// The daemon's app root (volume mount points, `/info`).
    app_root: PathBuf,
    client: tokio::sync::OnceCell<api::Client>,
    /// Attach streams of containers that are not running yet, taken by their `start`.
    pending_attaches: Mutex<HashMap<String, Vec<containers::PendingAttach>>>,
    /// Exec instances between `exec create` and their end.
    execs: Mutex<HashMap<String, exec::ExecEntry>>,
    /// The last exit code each attach saw, by container ID.
    exits: Mutex<HashMap<String, i32>>,
}

/// The handlers' state.
pub type Ctx = Arc<Docker>;

impl Docker {
    /// A server for the daemon whose gRPC socket is `grpc_socket`.
    pub fn new(app_root: &Path, grpc_socket: PathBuf) -> Ctx {
        Arc::new(Docker {
            grpc_socket,
            app_root: app_root.to_path_buf(),
            client: tokio::sync::OnceCell::new(),
            pending_attaches: Mutex::new(HashMap::new()),
            execs: Mutex::new(HashMap::new()),
            exits: Mutex::new(HashMap::new()),
        })
    }

    /// The IDs of the execs that run in container `id` (its full ID), sorted: a container's
    /// `ExecIDs`.
    pub fn running_execs(&self, id: &str) -> Vec<String> {
        let execs = self.execs.lock().unwrap_or_else(|p| p.into_inner());
        let mut running: Vec<String> = execs
            .iter()
            .filter(|(_, e)| e.runs_in(id))
            .map(|(exec_id, _)| exec_id.clone())
            .collect();
        running.sort();
        running
    }

    /// The daemon's gRPC client, connected on first use.
    pub async fn client(&self) -> Result<&api::Client, DockerError> {
        self.client
            .get_or_try_init(|| api::Client::connect(&self.grpc_socket, CONNECT_TIMEOUT))
            .await
            .map_err(|e| DockerError::internal(format!("reaching the daemon: {e}")))
    }

    /// The daemon's app root.
    pub fn app_root(&self) -> &Path {
        &self.app_root
    }
}

/// The Docker API's routes, without the version prefix (see [`strip_version`]).
pub fn router(ctx: Ctx) -> Router {
    Router::new()
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/system/df", get(system::df))
        .route("/events", get(system::events))
        .route("/plugins", get(system::plugins))
        .route("/build", post(build::build))
        .route("/build/prune", post(build::prune))
        .route("/containers/create", post(containers::create))
        .route("/containers/json", get(containers::list))
        .route("/containers/prune", post(containers::prune))
        .route(
            "/containers/{id}",
            axum::routing::delete(containers::delete),
        )
        .route("/containers/{id}/json", get(containers::inspect))
        .route("/containers/{id}/start", post(containers::start))
        .route("/containers/{id}/stop", post(containers::stop))
        .route("/containers/{id}/restart", post(containers::restart))
        .route("/containers/{id}/kill", post(containers::kill))
        .route("/containers/{id}/wait", post(containers::wait))
        .route("/containers/{id}/attach", post(containers::attach))
        .route("/containers/{id}/resize", post(containers::resize))
        .route("/containers/{id}/logs", get(containers::logs))
        .route("/containers/{id}/export", get(containers::export))
        .route("/containers/{id}/changes", get(commit::changes))
        .route("/commit", post(commit::commit))
        .route("/containers/{id}/stats", get(containers::stats))
        .route("/containers/{id}/top", get(containers::top))
        .route(
            "/containers/{id}/archive",
            get(containers::archive_get)
                .head(containers::archive_head)
                .put(containers::archive_put),
        )
        .route("/containers/{id}/exec", post(exec::create))
        .route("/containers/{id}/pause", post(verbs::pause))
        .route("/containers/{id}/unpause", post(verbs::unpause))
        .route("/containers/{id}/rename", post(verbs::rename))
        .route("/containers/{id}/{op}", any(containers::unsupported))
        .route("/exec/{id}/start", post(exec::start))
        .route("/exec/{id}/resize", post(exec::resize))
        .route("/exec/{id}/json", get(exec::inspect))
        .route("/images/create", post(images::create))
        .route("/images/json", get(images::list))
        .route("/images/load", post(images::load))
        .route("/images/get", get(images::save))
        .route("/images/prune", post(images::prune))
        .route(
            "/images/{*rest}",
            get(images::by_name_get)
                .post(images::by_name_post)
                .delete(images::delete),
        )
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route("/networks/prune", post(networks::prune))
        .route(
            "/networks/{id}",
            get(networks::inspect).delete(networks::delete),
        )
        .route("/networks/{id}/connect", post(networks::connect))
        .route("/networks/{id}/disconnect", post(networks::disconnect))
        .route("/volumes", get(volumes::list))
        .route("/volumes/create", post(volumes::create))
        .route("/volumes/prune", post(volumes::prune))
        .route(
            "/volumes/{name}",
            get(volumes::inspect).delete(volumes::delete),
        )
        .route("/session", head(not_found).post(not_found))
        .fallback(not_found)
        .with_state(ctx)
}

async fn not_found(req: Request) -> DockerError {
    DockerError::not_found(format!(
        "page not found: {} {}",
        req.method(),
        req.uri().path()
    ))
}

/// Removes a `/v1.NN` prefix: every route answers with and without one, as moby's do.
pub fn strip_version(mut req: Request) -> Request {
    let path = req.uri().path();
    let Some(rest) = path.strip_prefix("/v") else {
        return req;
    };
    let end = rest.find('/').unwrap_or(rest.len());
    let version = &rest[..end];
    let is_version = version.split_once('.').is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && a.bytes().all(|c| c.is_ascii_digit())
            && b.bytes().all(|c| c.is_ascii_digit())
    });
    if !is_version {
        return req;
    }
    let new_path = if end == rest.len() { "/" } else { &rest[end..] };
    let new = match req.uri().query() {
        Some(q) => format!("{new_path}?{q}"),
        None => new_path.to_owned(),
    };
    if let Ok(uri) = new.parse() {
        *req.uri_mut() = uri;
    }
    req
}

/// Serves the Docker API on `listener` until `stop` resolves. Streams still open then
/// (`logs -f`, attach) are dropped with the server.
pub async fn serve(
    ctx: Ctx,
    listener: tokio::net::UnixListener,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use tower::Layer;
    let app = tower::util::MapRequestLayer::new(strip_version).layer(router(ctx));
    axum::serve(
        listener,
        axum::ServiceExt::<Request>::into_make_service(app),
    )
    .with_graceful_shutdown(stop)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_of(uri: &str) -> String {
        let req = Request::builder()
            .uri(uri)
            .body(axum::body::Body::empty())
            .expect("request");
        strip_version(req).uri().to_string()
    }

    #[test]
    fn version_prefixes_are_stripped_and_queries_kept() {
        assert_eq!(
            path_of("/v1.43/containers/json?all=1"),
            "/containers/json?all=1"
        );
        assert_eq!(path_of("/v1.24/_ping"), "/_ping");
        assert_eq!(path_of("/v1.51/version"), "/version");
        assert_eq!(path_of("/containers/json"), "/containers/json");
        assert_eq!(path_of("/volumes/v1.x"), "/volumes/v1.x");
        assert_eq!(path_of("/vx.1/info"), "/vx.1/info");
    }

    #[test]
    fn the_socket_goes_beside_the_grpc_socket_unless_placed() {
        let root = Path::new("/r");
        assert_eq!(socket_path(root, ""), Some(PathBuf::from("/r/docker.sock")));
        assert_eq!(
            socket_path(root, "/var/run/docker.sock"),
            Some(PathBuf::from("/var/run/docker.sock"))
        );
        assert_eq!(socket_path(root, "none"), None);
    }
}
