//! The one line a user reads for an error: the error and its sources, "a: b: c". Every
//! message that leaves a process (gRPC statuses, the guest's reports, the CLI's stderr) is
//! written this way, from the guest up to the CLI.

/// An error and its sources on one line, "a: b: c". A source whose message already ends the
/// line (an error that prints its source itself) is not repeated.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut cur = e.source();
    while let Some(cause) = cur {
        let message = cause.to_string();
        if !line.ends_with(&message) {
            line.push_str(": ");
            line.push_str(&message);
        }
        cur = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle: {0}")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn every_source_follows_once() {
        let e = Outer(Middle(std::io::Error::other("inner")));
        // Middle prints its source itself: "inner" is not repeated.
        assert_eq!(error_chain(&e), "outer: middle: inner");
        assert_eq!(error_chain(&std::io::Error::other("alone")), "alone");
    }
}
