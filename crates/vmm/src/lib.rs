//! The VMM trait (work in progress).
