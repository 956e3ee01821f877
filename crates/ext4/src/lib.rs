//! A pure-Rust ext4 writer (work in progress).
