//! The QEMU backend (work in progress).
