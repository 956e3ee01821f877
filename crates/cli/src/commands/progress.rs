//! Registry transfers as the user sees them: blob progress on stderr for `image pull`,
//! `image push`, and `run`/`create` when the image is missing, so all print the same lines.
//! It renders progress only; what moves where is the daemon's business.

use api::v1::{self, pull_image_response::Event as PullEvent};

use crate::args::Scheme;
use crate::error::CliError;
use crate::output;

/// The wire value of a `--scheme` flag.
pub(crate) fn scheme(s: Scheme) -> i32 {
    match s {
        Scheme::Auto => v1::RegistryScheme::Auto as i32,
        Scheme::Https => v1::RegistryScheme::Https as i32,
        Scheme::Http => v1::RegistryScheme::Http as i32,
    }
}

/// Prints blob progress: one line per phase change (`plain` progress; no cursor tricks, so
/// it reads the same in a terminal and in a log).
pub(crate) fn print_progress(
    p: &v1::BlobProgress,
    last: &mut std::collections::HashMap<String, i32>,
) {
    if last.insert(p.digest.clone(), p.phase) == Some(p.phase) {
        return;
    }
    let phase = match v1::blob_progress::Phase::try_from(p.phase) {
        Ok(v1::blob_progress::Phase::Waiting) => "waiting",
        Ok(v1::blob_progress::Phase::Transferring) => "transferring",
        Ok(v1::blob_progress::Phase::Verifying) => "verifying",
        Ok(v1::blob_progress::Phase::Unpacking) => "unpacking",
        Ok(v1::blob_progress::Phase::Done) => "done",
        Ok(v1::blob_progress::Phase::Exists) => "already exists",
        Err(_) => "working",
    };
    let size = if p.total > 0 {
        format!(" ({})", spec::human_bytes(p.total))
    } else {
        String::new()
    };
    eprintln!("{}: {phase}{size}", output::short_digest(&p.digest));
}

/// Pulls with progress on stderr and returns the pulled image.
pub(crate) async fn pull_with_progress(
    client: &api::Client,
    request: v1::PullImageRequest,
) -> Result<v1::ImageInfo, CliError> {
    let mut stream = client.images().pull(request).await?.into_inner();
    let mut last = std::collections::HashMap::new();
    while let Some(message) = stream.message().await? {
        match message.event {
            Some(PullEvent::Progress(p)) => print_progress(&p, &mut last),
            Some(PullEvent::Status(s)) => eprintln!("{s}"),
            Some(PullEvent::Image(image)) => return Ok(image),
            None => {}
        }
    }
    Err(CliError::Daemon(
        "the pull ended without reporting the image".into(),
    ))
}
