//! One module per command family; each command takes the shared [`crate::Context`] and its
//! parsed arguments and returns the exit code.

pub mod container;
pub mod copy;
pub mod image;
pub mod network;
pub mod system;
pub mod unpack;
pub mod volume;
