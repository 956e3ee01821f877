//! The framework layer: each entry of a [`VzPlan`] becomes its one Virtualization.framework
//! object, and the VM's life is watched through its delegate.
//!
//! The framework's rule is that a `VZVirtualMachine` and everything reached through it is
//! used only on the dispatch queue it was created with. Here every framework object, the
//! configuration included, is made and touched only inside work submitted to the VM's one
//! serial queue ([`OnQueue`]); async callers wait for that work through oneshot channels.

use std::collections::HashSet;
use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use block2::RcBlock;
use dispatch2::{DispatchQueue, DispatchRetained};
use objc2::rc::Retained;
use objc2::runtime::ProtocolObject;
use objc2::{AnyThread, ClassType, DefinedClass, Message, define_class, msg_send};
use objc2_foundation::{NSArray, NSError, NSObject, NSObjectProtocol, NSString, NSURL};
use objc2_virtualization::{
    VZDirectorySharingDeviceConfiguration, VZDiskImageCachingMode,
    VZDiskImageStorageDeviceAttachment, VZDiskImageSynchronizationMode,
    VZEntropyDeviceConfiguration, VZFileSerialPortAttachment, VZLinuxBootLoader,
    VZLinuxRosettaDirectoryShare, VZMACAddress, VZMemoryBalloonDeviceConfiguration,
    VZNATNetworkDeviceAttachment, VZNetworkDeviceConfiguration, VZSerialPortConfiguration,
    VZSharedDirectory, VZSingleDirectoryShare, VZSocketDeviceConfiguration,
    VZStorageDeviceConfiguration, VZVirtioBlockDeviceConfiguration,
    VZVirtioConsoleDeviceSerialPortConfiguration, VZVirtioEntropyDeviceConfiguration,
    VZVirtioFileSystemDeviceConfiguration, VZVirtioNetworkDeviceConfiguration,
    VZVirtioSocketConnection, VZVirtioSocketDevice, VZVirtioSocketDeviceConfiguration,
    VZVirtioSocketListener, VZVirtioSocketListenerDelegate,
    VZVirtioTraditionalMemoryBalloonDeviceConfiguration, VZVirtualMachine,
    VZVirtualMachineConfiguration, VZVirtualMachineDelegate, VZVirtualMachineState,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot, watch};
use vmm::{
    Arch, BoxFuture, Hypervisor, VirtualMachine, VmConfig, VmError, VmExit, VsockConnector,
    VsockListener, VsockStream,
};

use crate::plan::{self, DiskCaching, VzPlan};

/// The pause between two connection attempts to a guest port.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// How many connections the guest may open to one host port before the host accepts them.
const ACCEPT_BACKLOG: usize = 64;

/// A framework object that may be moved between threads only to be used on the VM's queue.
struct OnQueue<T>(T);

// SAFETY: an `OnQueue` is only opened inside work submitted to the VM's serial dispatch
// queue (every use in this module is inside `exec_async`), so the object it holds is only
// ever touched on that one queue, as the framework requires; moving the pointer between
// threads does not touch the object.
unsafe impl<T> Send for OnQueue<T> {}
// SAFETY: as for `Send`: shared references are only dereferenced on the VM's queue.
unsafe impl<T> Sync for OnQueue<T> {}

impl<T> OnQueue<T> {
    /// The object; call only on the VM's queue. (A method rather than the field, so that a
    /// closure captures the whole `OnQueue`, not the bare object inside it.)
    fn get(&self) -> &T {
        &self.0
    }
}

fn start_error(what: impl Into<String>, error: &NSError) -> VmError {
    VmError::Start {
        what: what.into(),
        detail: error.localizedDescription().to_string().to_lowercase(),
    }
}

fn file_url(what: &str, path: &Path) -> Result<Retained<NSURL>, VmError> {
    NSURL::from_file_path(path).ok_or_else(|| VmError::Start {
        what: what.into(),
        detail: format!("{} is not a usable file path", path.display()),
    })
}

fn directory_url(what: &str, path: &Path) -> Result<Retained<NSURL>, VmError> {
    NSURL::from_directory_path(path).ok_or_else(|| VmError::Start {
        what: what.into(),
        detail: format!("{} is not a usable directory path", path.display()),
    })
}

/// The Virtualization.framework hypervisor.
#[derive(Debug, Clone, Default)]
pub struct Vz {
    _private: (),
}

impl Vz {
    /// The backend, if this Mac can run VMs (Apple silicon or a Mac with VT-x, macOS 13 or
    /// newer, and a binary signed with the `com.apple.security.virtualization` entitlement).
    pub fn new() -> Result<Self, VmError> {
        // SAFETY: a class property without arguments; callable from any thread.
        if unsafe { VZVirtualMachine::isSupported() } {
            Ok(Self { _private: () })
        } else {
            Err(VmError::MissingTool {
                program: "virtualization.framework".into(),
                hint: "this mac cannot run virtual machines (or the binary lacks the com.apple.security.virtualization entitlement)".into(),
            })
        }
    }

    /// Checks `config`, creates the VM on its own serial queue and starts it. Returns once the
    /// framework reports the VM running; the guest then boots on its own.
    pub async fn boot_vm(&self, config: VmConfig) -> Result<VzVm, VmError> {
        let plan = plan::plan(&config, Arch::host())?;
        if let Some(log) = &plan.console_log {
            create_console_log(log)?;
        }
        let queue = DispatchQueue::new("dev.container.vz", None);
        let (exit_tx, exit_rx) = watch::channel(None);
        let exit_tx = Arc::new(exit_tx);
        let (made_tx, made_rx) = oneshot::channel();
        let work_queue = queue.clone();
        let observer_exit = Arc::clone(&exit_tx);
        queue.exec_async(move || {
            let made = create_machine(&plan, &work_queue, observer_exit);
            let _ = made_tx.send(made);
        });
        let machine = made_rx.await.map_err(|_| queue_gone())??;
        let machine = Arc::new(machine);

        let (started_tx, started_rx) = oneshot::channel();
        let on_queue = Arc::clone(&machine);
        queue.exec_async(move || {
            let tx = Mutex::new(Some(started_tx));
            let done = RcBlock::new(move |error: *mut NSError| {
                // SAFETY: the framework passes either null or a valid NSError that lives for
                // the duration of this callback.
                let result = match unsafe { error.as_ref() } {
                    None => Ok(()),
                    Some(e) => Err(start_error("the vm", e)),
                };
                if let Some(tx) = tx.lock().ok().and_then(|mut t| t.take()) {
                    let _ = tx.send(result);
                }
            });
            // SAFETY: on the VM's queue, with a block the framework copies.
            unsafe { on_queue.vm.get().startWithCompletionHandler(&done) };
        });
        let vm = VzVm {
            queue,
            machine,
            exit: exit_rx,
            exit_tx,
            listening: Arc::new(Mutex::new(HashSet::new())),
        };
        match started_rx.await {
            Ok(Ok(())) => Ok(vm),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(queue_gone()),
        }
    }
}

impl Hypervisor for Vz {
    type Vm = VzVm;

    fn boot(&self, config: VmConfig) -> BoxFuture<'_, Result<VzVm, VmError>> {
        Box::pin(self.boot_vm(config))
    }
}

fn queue_gone() -> VmError {
    VmError::Start {
        what: "the vm's dispatch queue".into(),
        detail: "its work was dropped before it answered".into(),
    }
}

/// The console log exists before the framework opens it, private to the owner like every
/// other log of the app root.
fn create_console_log(path: &Path) -> Result<(), VmError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|source| VmError::Io {
            op: format!("creating {}", path.display()),
            source,
        })
}

/// The framework objects of one VM; only ever touched on its queue.
struct Machine {
    vm: OnQueue<Retained<VZVirtualMachine>>,
    // The framework holds its delegate weakly: this keeps it alive as long as the VM.
    _observer: OnQueue<Retained<MachineObserver>>,
}

/// Builds the configuration and the VM. Runs on the VM's queue.
fn create_machine(
    plan: &VzPlan,
    queue: &DispatchRetained<DispatchQueue>,
    exit: Arc<watch::Sender<Option<VmExit>>>,
) -> Result<Machine, VmError> {
    let config = configuration(plan)?;
    // SAFETY: on the queue the VM is created with, from a validated configuration.
    let vm = unsafe {
        VZVirtualMachine::initWithConfiguration_queue(VZVirtualMachine::alloc(), &config, queue)
    };
    let observer = MachineObserver::new(exit);
    // SAFETY: on the VM's queue; the observer outlives the VM's use of it (kept in `Machine`).
    unsafe { vm.setDelegate(Some(ProtocolObject::from_ref(&*observer))) };
    Ok(Machine {
        vm: OnQueue(vm),
        _observer: OnQueue(observer),
    })
}

/// The `VZVirtualMachineConfiguration` for `plan`, validated by the framework.
fn configuration(plan: &VzPlan) -> Result<Retained<VZVirtualMachineConfiguration>, VmError> {
    // SAFETY: every framework call in this block is plain object construction or a
    // property setter with arguments of the declared types, on the VM's queue before the VM
    // exists; nothing here is shared with another thread.
    unsafe {
        let boot = VZLinuxBootLoader::initWithKernelURL(
            VZLinuxBootLoader::alloc(),
            &*file_url("the kernel", &plan.kernel)?,
        );
        if let Some(initrd) = &plan.initrd {
            boot.setInitialRamdiskURL(Some(&*file_url("the initrd", initrd)?));
        }
        boot.setCommandLine(&NSString::from_str(&plan.cmdline));

        let config = VZVirtualMachineConfiguration::new();
        config.setBootLoader(Some(boot.as_super()));
        config.setCPUCount(plan.cpus as usize);
        config.setMemorySize(plan.memory_bytes);

        let mut storage: Vec<Retained<VZStorageDeviceConfiguration>> = Vec::new();
        for disk in &plan.disks {
            let what = format!("disk {:?}", disk.id);
            let (caching, sync) = match disk.caching {
                DiskCaching::CachedFsync => (
                    VZDiskImageCachingMode::Cached,
                    VZDiskImageSynchronizationMode::Fsync,
                ),
            };
            let attachment =
                VZDiskImageStorageDeviceAttachment::initWithURL_readOnly_cachingMode_synchronizationMode_error(
                    VZDiskImageStorageDeviceAttachment::alloc(),
                    &*file_url(&what, &disk.path)?,
                    disk.read_only,
                    caching,
                    sync,
                )
                .map_err(|e| start_error(what.clone(), &e))?;
            let device = VZVirtioBlockDeviceConfiguration::initWithAttachment(
                VZVirtioBlockDeviceConfiguration::alloc(),
                attachment.as_super(),
            );
            let id = NSString::from_str(&disk.id);
            VZVirtioBlockDeviceConfiguration::validateBlockDeviceIdentifier_error(&id)
                .map_err(|e| start_error(what.clone(), &e))?;
            device.setBlockDeviceIdentifier(&id);
            storage.push(Retained::into_super(device));
        }
        config.setStorageDevices(&NSArray::from_retained_slice(&storage));

        let mut nics: Vec<Retained<VZNetworkDeviceConfiguration>> = Vec::new();
        for nic in &plan.nics {
            let what = format!("interface {}", nic.mac);
            let mac =
                VZMACAddress::initWithString(VZMACAddress::alloc(), &NSString::from_str(&nic.mac))
                    .ok_or_else(|| VmError::Start {
                        what: what.clone(),
                        detail: "the framework refused the mac address".into(),
                    })?;
            let device = VZVirtioNetworkDeviceConfiguration::new();
            device.setMACAddress(&mac);
            let nat = VZNATNetworkDeviceAttachment::new();
            device.setAttachment(Some(nat.as_super()));
            nics.push(Retained::into_super(device));
        }
        config.setNetworkDevices(&NSArray::from_retained_slice(&nics));

        let mut shares: Vec<Retained<VZDirectorySharingDeviceConfiguration>> = Vec::new();
        for share in &plan.shares {
            let what = format!("share {:?}", share.tag);
            let directory = VZSharedDirectory::initWithURL_readOnly(
                VZSharedDirectory::alloc(),
                &*directory_url(&what, &share.host_path)?,
                share.read_only,
            );
            let single = VZSingleDirectoryShare::initWithDirectory(
                VZSingleDirectoryShare::alloc(),
                &directory,
            );
            let tag = NSString::from_str(&share.tag);
            VZVirtioFileSystemDeviceConfiguration::validateTag_error(&tag)
                .map_err(|e| start_error(what.clone(), &e))?;
            let device = VZVirtioFileSystemDeviceConfiguration::initWithTag(
                VZVirtioFileSystemDeviceConfiguration::alloc(),
                &tag,
            );
            device.setShare(Some(single.as_super()));
            shares.push(Retained::into_super(device));
        }
        if plan.rosetta {
            let what = "the rosetta share";
            let rosetta =
                VZLinuxRosettaDirectoryShare::initWithError(VZLinuxRosettaDirectoryShare::alloc())
                    .map_err(|e| start_error(what, &e))?;
            let device = VZVirtioFileSystemDeviceConfiguration::initWithTag(
                VZVirtioFileSystemDeviceConfiguration::alloc(),
                &NSString::from_str(vmm::ROSETTA_SHARE_TAG),
            );
            device.setShare(Some(rosetta.as_super()));
            shares.push(Retained::into_super(device));
        }
        config.setDirectorySharingDevices(&NSArray::from_retained_slice(&shares));

        let sockets: [Retained<VZSocketDeviceConfiguration>; 1] = [Retained::into_super(
            VZVirtioSocketDeviceConfiguration::new(),
        )];
        config.setSocketDevices(&NSArray::from_retained_slice(&sockets));

        let balloons: [Retained<VZMemoryBalloonDeviceConfiguration>; 1] = [Retained::into_super(
            VZVirtioTraditionalMemoryBalloonDeviceConfiguration::new(),
        )];
        config.setMemoryBalloonDevices(&NSArray::from_retained_slice(&balloons));

        let entropy: [Retained<VZEntropyDeviceConfiguration>; 1] = [Retained::into_super(
            VZVirtioEntropyDeviceConfiguration::new(),
        )];
        config.setEntropyDevices(&NSArray::from_retained_slice(&entropy));

        if let Some(log) = &plan.console_log {
            let attachment = VZFileSerialPortAttachment::initWithURL_append_error(
                VZFileSerialPortAttachment::alloc(),
                &*file_url("the console log", log)?,
                false,
            )
            .map_err(|e| start_error("the console log", &e))?;
            let console = VZVirtioConsoleDeviceSerialPortConfiguration::new();
            console.setAttachment(Some(attachment.as_super()));
            let ports: [Retained<VZSerialPortConfiguration>; 1] = [Retained::into_super(console)];
            config.setSerialPorts(&NSArray::from_retained_slice(&ports));
        }

        config
            .validateWithError()
            .map_err(|e| start_error("the vm configuration", &e))?;
        Ok(config)
    }
}

/// What the VM delegate reports into.
struct ObserverIvars {
    exit: Arc<watch::Sender<Option<VmExit>>>,
}

/// Keeps the first way the VM ended: a kill that raced a power-off stays what came first.
fn record_exit(exit: &watch::Sender<Option<VmExit>>, how: VmExit) {
    exit.send_if_modified(|exit| {
        if exit.is_none() {
            *exit = Some(how);
            true
        } else {
            false
        }
    });
}

define_class!(
    // SAFETY: NSObject has no subclassing requirements, and `MachineObserver` does not
    // implement `Drop`.
    #[unsafe(super(NSObject))]
    #[name = "DevContainerVzMachineObserver"]
    #[ivars = ObserverIvars]
    struct MachineObserver;

    unsafe impl NSObjectProtocol for MachineObserver {}

    unsafe impl VZVirtualMachineDelegate for MachineObserver {
        #[unsafe(method(guestDidStopVirtualMachine:))]
        fn guest_did_stop(&self, _vm: &VZVirtualMachine) {
            self.record(VmExit::PoweredOff);
        }

        #[unsafe(method(virtualMachine:didStopWithError:))]
        fn did_stop_with_error(&self, _vm: &VZVirtualMachine, error: &NSError) {
            self.record(VmExit::Failed {
                detail: error.localizedDescription().to_string().to_lowercase(),
            });
        }
    }
);

impl MachineObserver {
    fn new(exit: Arc<watch::Sender<Option<VmExit>>>) -> Retained<Self> {
        let this = Self::alloc().set_ivars(ObserverIvars { exit });
        // SAFETY: NSObject's designated initialiser on a freshly allocated object.
        unsafe { msg_send![super(this), init] }
    }

    fn record(&self, how: VmExit) {
        record_exit(&self.ivars().exit, how);
    }
}

/// A connection to or from the guest: the framework's socket, duplicated into tokio, plus
/// the connection object itself. The framework tears the vsock mapping down when that object
/// is closed, which would cut the duplicate too, so it lives exactly as long as the stream.
struct VzConnection {
    io: tokio::net::UnixStream,
    _connection: ConnectionGuard,
}

struct ConnectionGuard {
    queue: DispatchRetained<DispatchQueue>,
    connection: Option<OnQueue<Retained<VZVirtioSocketConnection>>>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            self.queue.exec_async(move || {
                // SAFETY: on the VM's queue; closing twice is harmless.
                unsafe { connection.get().close() };
            });
        }
    }
}

/// Wraps a connection the framework handed over. Runs on the VM's queue; `runtime` is the
/// tokio runtime the stream will be polled on (the queue's thread has none of its own).
fn adopt_connection(
    connection: Retained<VZVirtioSocketConnection>,
    queue: DispatchRetained<DispatchQueue>,
    runtime: &tokio::runtime::Handle,
) -> io::Result<VsockStream> {
    // SAFETY: on the VM's queue; the connection owns this descriptor until it is closed,
    // which happens only when the guard below is dropped, after the duplicate is made.
    let fd: RawFd = unsafe { connection.fileDescriptor() };
    let guard = ConnectionGuard {
        queue,
        connection: Some(OnQueue(connection)),
    };
    if fd < 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotConnected,
            "the framework handed over a closed vsock connection",
        ));
    }
    // SAFETY: `fd` is open and owned by the connection, which `guard` keeps alive for this
    // whole function; only a duplicate is taken from it.
    let owned = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()?;
    let std = std::os::unix::net::UnixStream::from(owned);
    std.set_nonblocking(true)?;
    let _entered = runtime.enter();
    let io = tokio::net::UnixStream::from_std(std)?;
    Ok(VsockStream::new(VzConnection {
        io,
        _connection: guard,
    }))
}

impl AsyncRead for VzConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for VzConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// What a listener's delegate hands accepted connections to.
struct AcceptorIvars {
    queue: DispatchRetained<DispatchQueue>,
    runtime: tokio::runtime::Handle,
    incoming: mpsc::Sender<io::Result<VsockStream>>,
}

define_class!(
    // SAFETY: NSObject has no subclassing requirements, and `VsockAcceptor` does not
    // implement `Drop`.
    #[unsafe(super(NSObject))]
    #[name = "DevContainerVzVsockAcceptor"]
    #[ivars = AcceptorIvars]
    struct VsockAcceptor;

    unsafe impl NSObjectProtocol for VsockAcceptor {}

    unsafe impl VZVirtioSocketListenerDelegate for VsockAcceptor {
        #[unsafe(method(listener:shouldAcceptNewConnection:fromSocketDevice:))]
        fn should_accept(
            &self,
            _listener: &VZVirtioSocketListener,
            connection: &VZVirtioSocketConnection,
            _device: &VZVirtioSocketDevice,
        ) -> bool {
            let ivars = self.ivars();
            let stream = adopt_connection(connection.retain(), ivars.queue.clone(), &ivars.runtime);
            // A full backlog or a dropped listener refuses the guest's connection.
            ivars.incoming.try_send(stream).is_ok()
        }
    }
);

impl VsockAcceptor {
    fn new(ivars: AcceptorIvars) -> Retained<Self> {
        let this = Self::alloc().set_ivars(ivars);
        // SAFETY: NSObject's designated initialiser on a freshly allocated object.
        unsafe { msg_send![super(this), init] }
    }
}

/// Stops listening when the [`VsockListener`] is dropped.
struct ListenGuard {
    port: u32,
    queue: DispatchRetained<DispatchQueue>,
    machine: Arc<Machine>,
    listening: Arc<Mutex<HashSet<u32>>>,
    // The framework keeps the listener; this keeps its delegate (held weakly) alive.
    acceptor: Option<OnQueue<Retained<VsockAcceptor>>>,
}

impl Drop for ListenGuard {
    fn drop(&mut self) {
        let port = self.port;
        let machine = Arc::clone(&self.machine);
        let acceptor = self.acceptor.take();
        self.queue.exec_async(move || {
            if let Some(device) = socket_device(&machine) {
                // SAFETY: on the VM's queue.
                unsafe { device.removeSocketListenerForPort(port) };
            }
            drop(acceptor);
        });
        if let Ok(mut ports) = self.listening.lock() {
            ports.remove(&port);
        }
    }
}

/// The VM's one virtio socket device. Runs on the VM's queue.
fn socket_device(machine: &Machine) -> Option<Retained<VZVirtioSocketDevice>> {
    // SAFETY: on the VM's queue; the configuration always has exactly one socket device,
    // which the framework instantiates as a `VZVirtioSocketDevice`.
    let devices = unsafe { machine.vm.get().socketDevices() };
    devices
        .firstObject()?
        .downcast::<VZVirtioSocketDevice>()
        .ok()
}

/// A VM run by Virtualization.framework.
pub struct VzVm {
    queue: DispatchRetained<DispatchQueue>,
    machine: Arc<Machine>,
    exit: watch::Receiver<Option<VmExit>>,
    exit_tx: Arc<watch::Sender<Option<VmExit>>>,
    listening: Arc<Mutex<HashSet<u32>>>,
}

impl VzVm {
    /// Stops the VM without the guest's cooperation and without waiting (the VM is dropped).
    fn force_stop(&self) {
        record_exit(&self.exit_tx, VmExit::Killed);
        let machine = Arc::clone(&self.machine);
        self.queue.exec_async(move || {
            // SAFETY: on the VM's queue.
            let state = unsafe { machine.vm.get().state() };
            if state == VZVirtualMachineState::Stopped || state == VZVirtualMachineState::Error {
                return;
            }
            let done = RcBlock::new(|_error: *mut NSError| {});
            // SAFETY: on the VM's queue, with a block the framework copies.
            unsafe { machine.vm.get().stopWithCompletionHandler(&done) };
        });
    }
}

async fn connect_once(
    queue: DispatchRetained<DispatchQueue>,
    machine: Arc<Machine>,
    port: u32,
    runtime: tokio::runtime::Handle,
) -> Result<VsockStream, String> {
    let (tx, rx) = oneshot::channel();
    let work_queue = queue.clone();
    queue.exec_async(move || {
        let Some(device) = socket_device(&machine) else {
            let _ = tx.send(Err("the vm has no virtio socket device".to_owned()));
            return;
        };
        let tx = Mutex::new(Some(tx));
        let done = RcBlock::new(
            move |connection: *mut VZVirtioSocketConnection, error: *mut NSError| {
                // SAFETY: the framework passes exactly one of a valid connection and a valid
                // error, each alive for the duration of this callback, on the VM's queue.
                let result = match unsafe { (connection.as_ref(), error.as_ref()) } {
                    (Some(c), _) => adopt_connection(c.retain(), work_queue.clone(), &runtime)
                        .map_err(|e| e.to_string()),
                    (None, Some(e)) => Err(e.localizedDescription().to_string().to_lowercase()),
                    (None, None) => {
                        Err("the framework returned neither a connection nor an error".into())
                    }
                };
                if let Some(tx) = tx.lock().ok().and_then(|mut t| t.take()) {
                    let _ = tx.send(result);
                }
            },
        );
        // SAFETY: on the VM's queue, with a block the framework copies.
        unsafe { device.connectToPort_completionHandler(port, &done) };
    });
    rx.await
        .unwrap_or_else(|_| Err("the vm's dispatch queue dropped the dial".to_owned()))
}

async fn dial_until(
    queue: DispatchRetained<DispatchQueue>,
    machine: Arc<Machine>,
    exit: watch::Receiver<Option<VmExit>>,
    port: u32,
    timeout: Duration,
) -> Result<VsockStream, VmError> {
    let deadline = Instant::now() + timeout;
    let runtime = tokio::runtime::Handle::current();
    loop {
        if let Some(how) = exit.borrow().clone() {
            return Err(VmError::Exited(how));
        }
        // The framework answers every connect; the deadline still bounds one that does not.
        let remaining = deadline.saturating_duration_since(Instant::now());
        let attempt = connect_once(queue.clone(), Arc::clone(&machine), port, runtime.clone());
        let last_error = match tokio::time::timeout(remaining, attempt).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => e,
            Err(_) => "the framework did not answer the connect in time".to_owned(),
        };
        if Instant::now() + RETRY_PAUSE >= deadline {
            return Err(VmError::DialTimeout {
                port,
                timeout,
                last_error,
            });
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

impl VirtualMachine for VzVm {
    fn dial(&self, port: u32, timeout: Duration) -> BoxFuture<'_, Result<VsockStream, VmError>> {
        Box::pin(dial_until(
            self.queue.clone(),
            Arc::clone(&self.machine),
            self.exit.clone(),
            port,
            timeout,
        ))
    }

    fn connector(&self, port: u32, timeout: Duration) -> VsockConnector {
        let queue = self.queue.clone();
        let machine = Arc::downgrade(&self.machine);
        let exit = self.exit.clone();
        VsockConnector::new(port, move || {
            let queue = queue.clone();
            let machine = machine.upgrade();
            let exit = exit.clone();
            Box::pin(async move {
                let Some(machine) = machine else {
                    return Err(VmError::Exited(VmExit::Killed));
                };
                dial_until(queue, machine, exit, port, timeout).await
            })
        })
    }

    fn listen(&self, port: u32) -> BoxFuture<'_, Result<VsockListener, VmError>> {
        Box::pin(async move {
            if let Some(how) = self.exit.borrow().clone() {
                return Err(VmError::Exited(how));
            }
            {
                let mut ports = self.listening.lock().map_err(|_| VmError::Start {
                    what: format!("a listener on vsock port {port}"),
                    detail: "the port table was poisoned".into(),
                })?;
                if !ports.insert(port) {
                    return Err(VmError::PortInUse { port });
                }
            }
            let (tx, rx) = mpsc::channel(ACCEPT_BACKLOG);
            let acceptor = VsockAcceptor::new(AcceptorIvars {
                queue: self.queue.clone(),
                runtime: tokio::runtime::Handle::current(),
                incoming: tx,
            });
            let acceptor = OnQueue(acceptor);
            let (set_tx, set_rx) = oneshot::channel();
            let machine = Arc::clone(&self.machine);
            let for_queue = OnQueue(acceptor.0.clone());
            self.queue.exec_async(move || {
                let Some(device) = socket_device(&machine) else {
                    let _ = set_tx.send(false);
                    return;
                };
                // SAFETY: on the VM's queue; the acceptor is kept alive by the listen guard
                // until the listener is removed again.
                unsafe {
                    let listener = VZVirtioSocketListener::new();
                    listener.setDelegate(Some(ProtocolObject::from_ref(&**for_queue.get())));
                    device.setSocketListener_forPort(&listener, port);
                }
                let _ = set_tx.send(true);
            });
            let guard = ListenGuard {
                port,
                queue: self.queue.clone(),
                machine: Arc::clone(&self.machine),
                listening: Arc::clone(&self.listening),
                acceptor: Some(acceptor),
            };
            match set_rx.await {
                Ok(true) => Ok(VsockListener::new(port, rx, Box::new(guard))),
                _ => Err(VmError::Start {
                    what: format!("a listener on vsock port {port}"),
                    detail: "the vm has no virtio socket device".into(),
                }),
            }
        })
    }

    fn wait(&self) -> BoxFuture<'_, VmExit> {
        let mut exit = self.exit.clone();
        Box::pin(async move {
            match exit.wait_for(Option::is_some).await {
                Ok(how) => how.clone().unwrap_or(VmExit::Killed),
                // The observer, and with it the sender, is gone only with the VM.
                Err(_) => VmExit::Killed,
            }
        })
    }

    fn exit(&self) -> Option<VmExit> {
        self.exit.borrow().clone()
    }

    fn kill(&self) -> BoxFuture<'_, VmExit> {
        let machine = Arc::clone(&self.machine);
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            self.queue.exec_async(move || {
                // SAFETY: on the VM's queue.
                let state = unsafe { machine.vm.get().state() };
                if state == VZVirtualMachineState::Stopped || state == VZVirtualMachineState::Error
                {
                    let _ = tx.send(());
                    return;
                }
                let tx = Mutex::new(Some(tx));
                let done = RcBlock::new(move |_error: *mut NSError| {
                    if let Some(tx) = tx.lock().ok().and_then(|mut t| t.take()) {
                        let _ = tx.send(());
                    }
                });
                // SAFETY: on the VM's queue, with a block the framework copies.
                unsafe { machine.vm.get().stopWithCompletionHandler(&done) };
            });
            let _ = rx.await;
            // A stop the host forces does not call the delegate: record it here.
            record_exit(&self.exit_tx, VmExit::Killed);
            self.exit.borrow().clone().unwrap_or(VmExit::Killed)
        })
    }
}

impl Drop for VzVm {
    fn drop(&mut self) {
        self.force_stop();
    }
}
