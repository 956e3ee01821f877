//! `POST /build` (the classic builder protocol: `DOCKER_BUILDKIT=0 docker build`, docker-py's
//! `images.build`, compose) and `POST /build/prune`, translated to the Builds service, so
//! Docker clients build with the same executor and cache as `container build`.
//!
//! The body is the context tar (plain, gzip or zstd; the client applied `.dockerignore`) and
//! goes to the daemon as it arrives; the query's `dockerfile` is a path inside it, which the
//! daemon reads. The answer is a JSON-message stream in the classic builder's words
//! (`Step 2/4 : COPY a /a`, ` ---> Using cache`, `{"aux":{"ID":…}}`, `Successfully built`,
//! `Successfully tagged`). As moby does, an error before any output is an HTTP error; once
//! output has begun it is an `errorDetail` message in the stream (the status is already
//! 200). Steps are counted as `container build` counts them: each stage's FROM and its
//! layer steps (COPY, ADD, RUN); metadata instructions are applied without a line.

use std::collections::HashMap;

use api::v1;
use axum::extract::{Request, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use super::Ctx;
use super::error::{DResult, DockerError};
use super::ids::familiar;
use super::stream::{Params, json, streamed};

/// A JSON object parameter (`buildargs`, `labels`): string values; a null value (a build
/// arg named without a value the client could not resolve) is left out, as moby does.
fn string_map(q: &Params, key: &str) -> DResult<HashMap<String, String>> {
    let Some(text) = q.get(key).filter(|t| !t.trim().is_empty()) else {
        return Ok(HashMap::new());
    };
    let raw: HashMap<String, Option<String>> = serde_json::from_str(text).map_err(|e| {
        DockerError::bad_request(format!(
            "invalid {key}: expected a JSON object of strings: {e}"
        ))
    })?;
    Ok(raw
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect())
}

/// The build header a `/build` query asks for.
pub fn header(q: &Params) -> DResult<v1::BuildHeader> {
    if q.get("remote").is_some_and(|r| !r.is_empty()) {
        return Err(DockerError::unsupported_field(
            "remote",
            "this daemon builds from a context sent in the request body only",
        ));
    }
    if q.get("version") == Some("2") {
        return Err(DockerError::unsupported_field(
            "version=2 (BuildKit)",
            "this daemon serves the classic builder: set DOCKER_BUILDKIT=0",
        ));
    }
    if q.flag("squash") {
        return Err(DockerError::unsupported_field(
            "squash",
            "images are built layer by layer",
        ));
    }
    let dockerfile = q
        .get("dockerfile")
        .filter(|d| !d.is_empty())
        .unwrap_or("Dockerfile");
    Ok(v1::BuildHeader {
        dockerfile: String::new(),
        dockerfile_name: String::new(),
        tags: q
            .all("t")
            .into_iter()
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
        build_args: string_map(q, "buildargs")?,
        target: q.get("target").unwrap_or("").to_string(),
        labels: string_map(q, "labels")?,
        no_cache: q.flag("nocache"),
        pull: q.flag("pull"),
        platform: q.get("platform").unwrap_or("").to_string(),
        context_dockerfile: dockerfile.to_string(),
        context_key: String::new(),
        // The classic builder has no secrets or SSH forwarding (BuildKit's session does).
        secrets: Default::default(),
        ssh: Default::default(),
    })
}

/// Turns the Builds service's events into the classic builder's messages.
#[derive(Debug, Default)]
pub struct Classic {
    quiet: bool,
    /// Steps the build planned.
    planned: u32,
    /// Steps shown so far.
    shown: u32,
}

fn stream_line(text: impl Into<String>) -> Value {
    let mut text = text.into();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    json!({ "stream": text })
}

/// The short form of an image ID: its first 12 hex digits.
fn short_id(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.get(..12).unwrap_or(hex)
}

impl Classic {
    pub fn new(quiet: bool) -> Classic {
        Classic {
            quiet,
            ..Classic::default()
        }
    }

    /// The messages one event becomes.
    pub fn messages(&mut self, event: v1::build_response::Event) -> Vec<Value> {
        use v1::build_response::Event as E;
        let result = match &event {
            E::Result(r) => Some(r.clone()),
            _ => None,
        };
        if let Some(r) = result {
            let mut out = Vec::new();
            if self.quiet {
                out.push(json!({ "aux": { "ID": r.digest } }));
                out.push(stream_line(r.digest.clone()));
                return out;
            }
            let short = short_id(&r.digest).to_string();
            out.push(stream_line(format!(" ---> {short}")));
            out.push(json!({ "aux": { "ID": r.digest } }));
            out.push(stream_line(format!("Successfully built {short}")));
            for t in &r.references {
                out.push(stream_line(format!("Successfully tagged {}", familiar(t))));
            }
            return out;
        }
        if self.quiet {
            return Vec::new();
        }
        match event {
            E::Planned(p) => {
                self.planned = p.steps;
                Vec::new()
            }
            E::Step(s) => {
                self.shown += 1;
                let total = self.planned.max(self.shown);
                // A named stage's FROM reads as written (`FROM busybox AS build`); the
                // stage of an unnamed one is its index.
                let named = s.instruction.starts_with("FROM ")
                    && !s.stage.is_empty()
                    && s.stage.parse::<u32>().is_err();
                let suffix = if named {
                    format!(" AS {}", s.stage)
                } else {
                    String::new()
                };
                vec![stream_line(format!(
                    "Step {}/{total} : {}{suffix}",
                    self.shown, s.instruction
                ))]
            }
            E::Done(d) if d.cached => vec![stream_line(" ---> Using cache")],
            E::Done(_) => Vec::new(),
            E::Log(l) => vec![stream_line(l.text)],
            E::Warning(w) => vec![stream_line(format!("[Warning] {w}"))],
            E::Result(_) => Vec::new(),
        }
    }
}

/// `POST /build`.
pub async fn build(State(ctx): State<Ctx>, uri: Uri, req: Request) -> DResult<Response> {
    let q = Params::from_uri(&uri)?;
    let header = header(&q)?;
    let mut classic = Classic::new(q.flag("q"));
    let (tx, rx) = mpsc::channel(8);
    let _ = tx
        .send(v1::BuildRequest {
            part: Some(v1::build_request::Part::Header(header)),
        })
        .await;
    // The body goes to the daemon as it arrives; a body that breaks off fails the build
    // rather than building a truncated context.
    let (broken_tx, broken_rx) = oneshot::channel::<String>();
    let mut body = req.into_body().into_data_stream();
    tokio::spawn(async move {
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(c) => {
                    let msg = v1::BuildRequest {
                        part: Some(v1::build_request::Part::Context(c.to_vec())),
                    };
                    if tx.send(msg).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = broken_tx.send(e.to_string());
                    return;
                }
            }
        }
    });
    let mut builds = ctx.client().await?.builds();
    let call = builds.build(ReceiverStream::new(rx));
    let mut stream = tokio::select! {
        r = call => r.map_err(DockerError::from)?.into_inner(),
        Ok(e) = broken_rx => {
            return Err(DockerError::bad_request(format!("reading the build context: {e}")));
        }
    };
    // Nothing is written before the first event: an error then is the HTTP answer.
    let first = stream
        .message()
        .await
        .map_err(DockerError::from)?
        .and_then(|m| m.event);
    let (out, resp) = streamed("application/json");
    tokio::spawn(async move {
        let mut next = first;
        loop {
            if let Some(event) = next.take() {
                for m in classic.messages(event) {
                    if !out.json(&m).await {
                        return;
                    }
                }
            }
            match stream.message().await {
                Ok(Some(m)) => next = m.event,
                Ok(None) => return,
                Err(s) => {
                    out.error(s.message()).await;
                    return;
                }
            }
        }
    });
    Ok(resp)
}

/// `POST /build/prune`: the whole build cache. Filters and storage limits would keep part
/// of it, which this cache cannot choose, so they are refused rather than ignored.
pub async fn prune(State(ctx): State<Ctx>, uri: Uri) -> DResult<Response> {
    let q = Params::from_uri(&uri)?;
    if let Some(f) = q.get("filters").filter(|f| {
        let t = f.trim();
        !t.is_empty() && t != "{}" && t != "null"
    }) {
        return Err(DockerError::unsupported_field(
            "filters",
            &format!("the build cache is pruned whole ({f})"),
        ));
    }
    for key in [
        "keep-storage",
        "reserved-space",
        "max-used-space",
        "min-free-space",
    ] {
        if q.int(key)?.is_some_and(|v| v != 0) {
            return Err(DockerError::unsupported_field(
                key,
                "the build cache is pruned whole",
            ));
        }
    }
    let r = ctx
        .client()
        .await?
        .builds()
        .prune_cache(v1::PruneBuildCacheRequest {})
        .await
        .map_err(DockerError::from)?
        .into_inner();
    Ok(json(
        StatusCode::OK,
        &json!({ "CachesDeleted": r.deleted, "SpaceReclaimed": r.reclaimed_bytes }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use v1::build_response::Event as E;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn the_query_becomes_the_header() {
        let q = params(&[
            ("t", "app:1"),
            ("t", "app:latest"),
            ("dockerfile", "sub/Dockerfile.dev"),
            ("buildargs", r#"{"A":"1","UNSET":null}"#),
            (
                "labels",
                r#"{"com.docker.compose.image.builder":"classic"}"#,
            ),
            ("target", "final"),
            ("nocache", "1"),
            ("pull", "True"),
            ("rm", "1"),
            ("forcerm", "0"),
            ("version", "1"),
            ("platform", "linux/amd64"),
        ]);
        let h = header(&q).unwrap();
        assert_eq!(h.tags, ["app:1", "app:latest"]);
        assert_eq!(h.context_dockerfile, "sub/Dockerfile.dev");
        assert!(h.dockerfile.is_empty());
        assert_eq!(h.build_args.len(), 1);
        assert_eq!(h.build_args["A"], "1");
        assert_eq!(h.labels["com.docker.compose.image.builder"], "classic");
        assert_eq!(h.target, "final");
        assert!(h.no_cache && h.pull);
        assert_eq!(h.platform, "linux/amd64");
        assert_eq!(
            header(&params(&[])).unwrap().context_dockerfile,
            "Dockerfile"
        );
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_by_name() {
        let e = header(&params(&[("remote", "https://example.com/x.git")])).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.starts_with("remote is not supported"), "{e}");
        let e = header(&params(&[("version", "2")])).unwrap_err();
        assert!(e.message.contains("DOCKER_BUILDKIT=0"), "{e}");
        let e = header(&params(&[("buildargs", "[1]")])).unwrap_err();
        assert!(e.message.starts_with("invalid buildargs"), "{e}");
    }

    fn all(c: &mut Classic, events: Vec<E>) -> Vec<Value> {
        events.into_iter().flat_map(|e| c.messages(e)).collect()
    }

    #[test]
    fn events_read_as_the_classic_builder_writes() {
        let digest = format!("sha256:{}", "ab12".repeat(16));
        let step = |n: u32, stage: &str, i: &str| {
            E::Step(v1::BuildStep {
                number: n,
                stage: stage.into(),
                instruction: i.into(),
                ..Default::default()
            })
        };
        let done = |n: u32, cached: bool| {
            E::Done(v1::BuildStepDone {
                number: n,
                cached,
                duration_ms: 3,
            })
        };
        let events = vec![
            E::Planned(v1::BuildPlanned { steps: 3 }),
            step(1, "build", "FROM busybox"),
            done(1, false),
            step(2, "build", "COPY a /a"),
            done(2, true),
            E::Warning("one or more build-args [X] were not consumed".into()),
            step(3, "1", "FROM scratch"),
            done(3, false),
            E::Result(v1::BuildResult {
                digest: digest.clone(),
                references: vec!["docker.io/library/app:latest".into()],
            }),
        ];
        let got = all(&mut Classic::new(false), events.clone());
        let want = vec![
            json!({"stream": "Step 1/3 : FROM busybox AS build\n"}),
            json!({"stream": "Step 2/3 : COPY a /a\n"}),
            json!({"stream": " ---> Using cache\n"}),
            json!({"stream": "[Warning] one or more build-args [X] were not consumed\n"}),
            json!({"stream": "Step 3/3 : FROM scratch\n"}),
            json!({"stream": " ---> ab12ab12ab12\n"}),
            json!({"aux": {"ID": digest}}),
            json!({"stream": "Successfully built ab12ab12ab12\n"}),
            json!({"stream": "Successfully tagged app:latest\n"}),
        ];
        assert_eq!(got, want);
        let quiet = all(&mut Classic::new(true), events);
        assert_eq!(
            quiet,
            vec![
                json!({"aux": {"ID": digest}}),
                json!({"stream": format!("{digest}\n")})
            ]
        );
    }
}
