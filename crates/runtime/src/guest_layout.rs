//! Where the container's files live in the guest: shared by the container's setup and the
//! socket relays, so neither has to reach into the other.

/// The guest directory holding everything of the container.
pub const GUEST_DIR: &str = "/run/container";
/// The container's root in the guest.
pub const GUEST_ROOTFS: &str = "/run/container/rootfs";
/// The overlay's upper directory in the guest, on the writable layer's disk: the container's
/// changes, which `commit` and `diff` capture.
pub const GUEST_UPPER: &str = "/run/container/rw/upper";
