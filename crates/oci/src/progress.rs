//! Progress events for pulls and pushes. The library only reports; the CLI decides whether
//! to draw bars (terminal) or print plain lines (pipe).

use crate::digest::Digest;

/// Something that happened during a pull or push. Blob events may arrive from several
/// concurrent transfers, interleaved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgressEvent {
    /// The reference resolved to this manifest or index.
    Resolved { reference: String, digest: Digest },
    /// A blob transfer started. `resumed_from` is non-zero when a partial download continues.
    BlobStarted {
        digest: Digest,
        media_type: String,
        size: u64,
        resumed_from: u64,
    },
    /// Bytes of a blob transferred so far (including any resumed prefix).
    BlobProgress {
        digest: Digest,
        done: u64,
        size: u64,
    },
    /// A blob finished and was verified (pull) or accepted (push).
    BlobDone { digest: Digest, size: u64 },
    /// A blob was already present (locally for pull, remotely for push).
    BlobSkipped { digest: Digest, size: u64 },
    /// A transfer failed and will be retried from where it stopped.
    BlobRetrying {
        digest: Digest,
        attempt: u32,
        error: String,
    },
    /// The manifest (or index) was written.
    ManifestDone { digest: Digest },
}

/// Receives progress events. Implementations must be cheap: events come per network chunk.
pub trait Progress: Send + Sync {
    fn event(&self, event: ProgressEvent);
}

/// Ignores all events.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _: ProgressEvent) {}
}

impl<F: Fn(ProgressEvent) + Send + Sync> Progress for F {
    fn event(&self, event: ProgressEvent) {
        self(event)
    }
}
