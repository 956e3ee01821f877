//! The behaviour every [`VirtualMachine`] must show, whatever its backend. Each backend's test
//! suite boots a real VM and runs [`run_all`] (or the checks one by one) against it, so QEMU
//! and Virtualization.framework are held to the same contract.
//!
//! The checks need only a running VM in which nothing listens on [`UNUSED_GUEST_PORT`]; they
//! end by stopping it. Failures panic with what was expected: this module is test support.

use std::time::{Duration, Instant};

use crate::{ErrorKind, VirtualMachine, VmError, VmExit};

/// A guest port nothing listens on.
pub const UNUSED_GUEST_PORT: u32 = 0x7fff_0001;
/// A host port for the listener checks.
pub const TEST_HOST_PORT: u32 = 0x7fff_0002;

/// Runs every check, in an order that ends with the VM stopped.
pub async fn run_all(vm: &dyn VirtualMachine) {
    dial_to_a_closed_port_times_out(vm).await;
    listen_is_exclusive_until_dropped(vm).await;
    stop_kills_when_graceful_does_not_finish(vm).await;
    calls_after_exit_fail_with_the_exit(vm).await;
}

/// A dial to a port nothing listens on keeps trying until its timeout, then says so.
pub async fn dial_to_a_closed_port_times_out(vm: &dyn VirtualMachine) {
    let timeout = Duration::from_millis(400);
    let start = Instant::now();
    match vm.dial(UNUSED_GUEST_PORT, timeout).await {
        Err(VmError::DialTimeout { port, .. }) => assert_eq!(port, UNUSED_GUEST_PORT),
        other => panic!("dial to an unused port: expected DialTimeout, got {other:?}"),
    }
    let waited = start.elapsed();
    assert!(
        waited >= timeout / 2 && waited < timeout + Duration::from_secs(3),
        "dial with a {timeout:?} timeout returned after {waited:?}"
    );
}

/// A host port has one listener at a time; dropping it frees the port.
pub async fn listen_is_exclusive_until_dropped(vm: &dyn VirtualMachine) {
    let first = match vm.listen(TEST_HOST_PORT).await {
        Ok(listener) => listener,
        Err(e) => panic!("listen on a free port: {e}"),
    };
    assert_eq!(first.port(), TEST_HOST_PORT);
    match vm.listen(TEST_HOST_PORT).await {
        Err(e @ VmError::PortInUse { .. }) => assert_eq!(e.kind(), ErrorKind::AlreadyExists),
        other => panic!("second listen on a port: expected PortInUse, got {other:?}"),
    }
    drop(first);
    if let Err(e) = vm.listen(TEST_HOST_PORT).await {
        panic!("listen after the first listener was dropped: {e}");
    }
}

/// `stop` whose graceful part never finishes kills the VM at the timeout.
pub async fn stop_kills_when_graceful_does_not_finish(vm: &dyn VirtualMachine) {
    assert_eq!(vm.exit(), None, "the vm must be running before stop");
    let start = Instant::now();
    let stopped = vm
        .stop(Box::pin(std::future::pending()), Duration::from_millis(300))
        .await;
    assert!(stopped.forced, "{stopped:?}");
    assert_eq!(stopped.exit, VmExit::Killed);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "stop took {:?}",
        start.elapsed()
    );
    assert_eq!(vm.exit(), Some(VmExit::Killed));
    assert_eq!(vm.wait().await, VmExit::Killed);
    // Killing an ended VM changes nothing.
    assert_eq!(vm.kill().await, VmExit::Killed);
}

/// Once the VM has ended, dial and listen fail at once, naming how it ended.
pub async fn calls_after_exit_fail_with_the_exit(vm: &dyn VirtualMachine) {
    let exit = match vm.exit() {
        Some(exit) => exit,
        None => panic!("the vm must have ended before this check"),
    };
    let start = Instant::now();
    match vm.dial(UNUSED_GUEST_PORT, Duration::from_secs(30)).await {
        Err(VmError::Exited(e)) => assert_eq!(e, exit),
        other => panic!("dial after exit: expected Exited, got {other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(1));
    match vm.listen(TEST_HOST_PORT + 1).await {
        Err(e @ VmError::Exited(_)) => assert_eq!(e.kind(), ErrorKind::FailedPrecondition),
        other => panic!("listen after exit: expected Exited, got {other:?}"),
    }
    let connector = vm.connector(UNUSED_GUEST_PORT, Duration::from_secs(30));
    assert_eq!(connector.port(), UNUSED_GUEST_PORT);
    match connector.clone().connect().await {
        Err(VmError::Exited(_)) => {}
        other => panic!("connector after exit: expected Exited, got {other:?}"),
    }
}
