//! One module per command family; each command takes the shared [`crate::Context`] and its
//! parsed arguments and returns the exit code. What several families share sits below them in a
//! module of its own (`progress`, `stream`, `each`), so no family calls another.

pub mod build;
pub mod builder;
pub mod container;
pub mod copy;
pub mod each;
pub mod image;
pub mod network;
pub mod progress;
pub mod stream;
pub mod system;
pub mod unpack;
pub mod verbs;
pub mod volume;
