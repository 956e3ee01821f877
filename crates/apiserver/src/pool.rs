//! The warm pool: pre-booted guests a container start claims instead of booting its own VM.
//!
//! Each slot is a `container-runtime --pool-slot <app root>/pool/<slot>` process whose VM
//! has booted with placeholder disks and whose agent answers (`runtime_api::pool` has the
//! slot layout and the claim protocol). A start whose VM has the pool's shape
//! ([`PoolShape::of`]) claims a ready slot; the slot's runtime then becomes that container's
//! runtime, and the slot leaves the pool for good, so a guest never serves two containers.
//! Anything that goes wrong before the runtime accepts the claim sends the start down the
//! cold path (a runtime spawned for the container), so a pool failure never loses a start.
//!
//! The shape is learned: the pool boots guests shaped like the containers being started
//! with a poolable config. The first start after the daemon starts sets it; three starts in
//! a row of another shape switch it (one odd start does not drain the pool). So the first
//! start, and the first ones after the shape changes, are cold. At most one slot boots at a time, so a refill never takes more
//! than one core from running containers. `container.pool.size` (0 disables) sets how many
//! ready guests are kept; `$CONTAINER_POOL_SIZE` overrides it at daemon start. Each slot holds
//! a pipe to its runtime's stdin: when the daemon stops (or dies), the pipes close and every
//! unclaimed guest powers off.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runtime_api::Bundle;
use runtime_api::config::RuntimeConfig;
use runtime_api::pool::{PoolShape, PoolSlot, PoolSlotConfig};
use tokio::sync::{Notify, watch};

/// How long a drained slot's runtime may take to power its VM off before it is killed.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How many starts in a row of another shape make the pool switch to it.
const SHAPE_SWITCH_AFTER: u32 = 3;
/// How often the pool looks at itself even when nothing woke it.
const TICK: Duration = Duration::from_secs(2);

/// One pooled runtime.
struct Slot {
    dir: PathBuf,
    shape: PoolShape,
    pid: u32,
    /// The runtime's stdin: dropping it drains the slot.
    stdin: Option<tokio::process::ChildStdin>,
    exited: watch::Receiver<bool>,
    started: Instant,
}

impl Slot {
    fn ready(&self) -> bool {
        PoolSlot::new(&self.dir).claim_socket().exists()
    }
}

#[derive(Default)]
struct Inner {
    shape: Option<PoolShape>,
    /// Another shape and how many starts in a row asked for it.
    misses: Option<(PoolShape, u32)>,
    slots: Vec<Slot>,
    draining: bool,
}

/// What `system status` and `system df` say about the pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolStatus {
    /// The configured size.
    pub size: u32,
    /// Guests ready to be claimed.
    pub ready: u32,
    /// Guests booting.
    pub booting: u32,
    /// Guest memory each pooled VM is given, MiB (0 before the shape is known).
    pub memory_mib: u64,
    /// Resident host memory of the pooled VMs' processes together, bytes (Linux; 0
    /// elsewhere).
    pub resident_bytes: u64,
}

/// One pooled guest, as `system df -v` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PooledGuest {
    /// The slot's directory name.
    pub slot: String,
    /// Booted and claimable.
    pub ready: bool,
    /// Its runtime's pid.
    pub pid: u32,
    /// vCPUs.
    pub cpus: u32,
    /// Guest memory, MiB.
    pub memory_mib: u64,
    /// Resident host memory of its runtime and VM, bytes (Linux; 0 elsewhere).
    pub resident_bytes: u64,
    /// Time since it was spawned.
    pub age: Duration,
}

/// The pool.
pub struct Pool {
    dir: PathBuf,
    runtime_binary: PathBuf,
    size: std::sync::atomic::AtomicU32,
    inner: Mutex<Inner>,
    wake: Notify,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("dir", &self.dir).finish()
    }
}

/// `<app root>/pool`.
pub fn dir(app_root: &Path) -> PathBuf {
    app_root.join("pool")
}

impl Pool {
    /// A pool of `size` guests under `app_root`. Removes what dead slots of an earlier
    /// daemon left.
    pub fn new(app_root: &Path, runtime_binary: PathBuf, size: u32) -> Arc<Pool> {
        let dir = dir(app_root);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let slot = PoolSlot::new(entry.path());
                // A live one is an earlier daemon's: its pipe is closed, so it powers off
                // and removes its directory itself (or it was claimed and is a container's).
                if !slot.bundle().runtime_alive() {
                    let _ = std::fs::remove_dir_all(slot.dir());
                }
            }
        }
        Arc::new(Pool {
            dir,
            runtime_binary,
            size: std::sync::atomic::AtomicU32::new(size),
            inner: Mutex::new(Inner::default()),
            wake: Notify::new(),
        })
    }

    /// How many ready guests the pool keeps.
    pub fn size(&self) -> u32 {
        self.size.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Changes the size; a smaller pool drains its extra guests at once.
    pub fn set_size(&self, size: u32) {
        self.size.store(size, std::sync::atomic::Ordering::Relaxed);
        self.wake.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The state is a list of slots; a panic elsewhere leaves it consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps the pool filled until [`Pool::drain`].
    pub fn start(self: &Arc<Self>) {
        let pool = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                if pool.lock().draining {
                    break;
                }
                pool.fill();
                tokio::select! {
                    () = pool.wake.notified() => {}
                    () = tokio::time::sleep(TICK) => {}
                }
            }
        });
    }

    /// Drops slots of another shape or beyond the size, and boots one more when every slot
    /// is ready and the pool is short.
    fn fill(self: &Arc<Self>) {
        let size = self.size() as usize;
        let mut inner = self.lock();
        if inner.draining {
            return;
        }
        let shape = inner.shape.clone();
        let mut keep = Vec::new();
        for mut slot in std::mem::take(&mut inner.slots) {
            if shape.as_ref() == Some(&slot.shape) && keep.len() < size {
                keep.push(slot);
            } else {
                tracing::info!(slot = %slot.dir.display(), "pool: draining a slot");
                slot.stdin.take();
            }
        }
        inner.slots = keep;
        let Some(shape) = shape else { return };
        if inner.slots.len() >= size || inner.slots.iter().any(|s| !s.ready()) {
            return;
        }
        match self.spawn_slot(&shape) {
            Ok(slot) => inner.slots.push(slot),
            Err(e) => tracing::warn!("pool: cannot start a pooled runtime: {e}"),
        }
    }

    fn spawn_slot(self: &Arc<Self>, shape: &PoolShape) -> std::io::Result<Slot> {
        statefs::create_private_dir(&self.dir)?;
        let id = format!("{:016x}", rand_u64());
        let dir = self.dir.join(&id);
        statefs::create_private_dir(&dir)?;
        let slot = PoolSlot::new(&dir);
        let macs = shape
            .nics
            .iter()
            .enumerate()
            .map(|(i, _)| {
                let b = id.as_bytes();
                // Locally administered, unicast; unique enough within one host's pool.
                format!(
                    "02:50:{}{}:{}{}:{}{}:{:02x}",
                    b[0] as char,
                    b[1] as char,
                    b[2] as char,
                    b[3] as char,
                    b[4] as char,
                    b[5] as char,
                    i
                )
            })
            .collect();
        slot.save_config(&PoolSlotConfig {
            shape: shape.clone(),
            macs,
        })
        .map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut cmd = tokio::process::Command::new(&self.runtime_binary);
        cmd.arg("--pool-slot")
            .arg(&dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(false);
        // SAFETY: setsid is async-signal-safe and touches no memory of the parent; a claimed
        // runtime must outlive the daemon as a spawned one does.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        let pid = child.id().unwrap_or(0);
        let stdin = child.stdin.take();
        let (exited_tx, exited) = watch::channel(false);
        let pool = Arc::clone(self);
        let reaped_dir = dir.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            let _ = exited_tx.send(true);
            // Still listed: it died unclaimed (crashed, killed, or its guest failed).
            let lost = {
                let mut inner = pool.lock();
                let before = inner.slots.len();
                inner.slots.retain(|s| s.dir != reaped_dir);
                inner.slots.len() != before
            };
            if lost {
                tracing::warn!(slot = %reaped_dir.display(), ?status, "pool: a pooled runtime ended unclaimed");
                if !PoolSlot::new(&reaped_dir).bundle().runtime_alive() {
                    let _ = std::fs::remove_dir_all(&reaped_dir);
                }
                pool.wake.notify_one();
            }
        });
        tracing::info!(slot = %dir.display(), pid, "pool: booting a guest");
        Ok(Slot {
            dir,
            shape: shape.clone(),
            pid,
            stdin,
            exited,
            started: Instant::now(),
        })
    }

    /// Hands a ready guest to the container of `bundle` whose config is `config`. `Some`
    /// with the runtime's exit watch when the slot's runtime accepted (it is the container's
    /// runtime now); `None` when the start must boot its own VM. Either way the pool learns
    /// the shape and refills.
    pub async fn claim(
        &self,
        config: &RuntimeConfig,
        bundle: &Bundle,
    ) -> Option<(u32, watch::Receiver<bool>)> {
        if self.size() == 0 {
            return None;
        }
        let shape = PoolShape::of(config)?;
        let slot = {
            let mut inner = self.lock();
            if inner.draining {
                return None;
            }
            if inner.shape.as_ref() == Some(&shape) {
                inner.misses = None;
            } else {
                let missed = match inner.misses.take() {
                    Some((other, n)) if other == shape => n + 1,
                    _ => 1,
                };
                // One start of another shape does not drain the pool; a run of them does.
                if inner.shape.is_none() || missed >= SHAPE_SWITCH_AFTER {
                    tracing::info!("pool: learning a new vm shape");
                    inner.shape = Some(shape.clone());
                } else {
                    inner.misses = Some((shape.clone(), missed));
                }
            }
            let found = inner
                .slots
                .iter()
                .position(|s| s.shape == shape && s.ready() && !*s.exited.borrow());
            // Out of the list before anything else: no second start can see this slot.
            found.map(|i| inner.slots.remove(i))
        };
        self.wake.notify_one();
        let mut slot = slot?;
        tracing::debug!(
            age_ms = slot.started.elapsed().as_millis() as u64,
            "pool: claiming"
        );
        match runtime_api::pool::claim(&PoolSlot::new(&slot.dir), bundle.dir()).await {
            Ok(()) => {
                tracing::info!(slot = %slot.dir.display(), pid = slot.pid, "pool: guest claimed");
                // The runtime no longer reads its stdin; closing it changes nothing.
                slot.stdin.take();
                Some((slot.pid, slot.exited))
            }
            Err(e) => {
                tracing::warn!("pool: claim failed, booting cold: {e}");
                slot.stdin.take();
                // The cold runtime needs the bundle's lock: wait until this one let go.
                let ended = async {
                    let _ = slot.exited.wait_for(|e| *e).await;
                };
                if tokio::time::timeout(DRAIN_TIMEOUT, ended).await.is_err() {
                    // SAFETY: kill(2) on a runtime the pool spawned; no memory is involved.
                    unsafe { libc::kill(slot.pid as i32, libc::SIGKILL) };
                    let _ = tokio::time::timeout(DRAIN_TIMEOUT, slot.exited.wait_for(|e| *e)).await;
                }
                None
            }
        }
    }

    /// Powers every unclaimed guest off and waits for their runtimes (`system stop`).
    pub async fn drain(&self) -> usize {
        let slots = {
            let mut inner = self.lock();
            inner.draining = true;
            std::mem::take(&mut inner.slots)
        };
        self.wake.notify_one();
        let n = slots.len();
        let mut waits = tokio::task::JoinSet::new();
        for mut slot in slots {
            slot.stdin.take();
            waits.spawn(async move {
                let ended = async {
                    let _ = slot.exited.wait_for(|e| *e).await;
                };
                if tokio::time::timeout(DRAIN_TIMEOUT, ended).await.is_err() {
                    // SAFETY: kill(2) on a runtime the pool spawned; no memory is involved.
                    unsafe { libc::kill(slot.pid as i32, libc::SIGKILL) };
                }
                let _ = std::fs::remove_dir_all(&slot.dir);
            });
        }
        while waits.join_next().await.is_some() {}
        n
    }

    /// How the pool stands.
    pub fn status(&self) -> PoolStatus {
        let inner = self.lock();
        let ready = inner.slots.iter().filter(|s| s.ready()).count() as u32;
        let resident_bytes = inner
            .slots
            .iter()
            .map(|s| crate::platform::process_tree_rss(s.pid))
            .sum();
        PoolStatus {
            size: self.size(),
            ready,
            booting: inner.slots.len() as u32 - ready,
            memory_mib: inner.shape.as_ref().map_or(0, |s| s.memory_mib),
            resident_bytes,
        }
    }
}

impl Pool {
    /// Each guest of the pool, oldest first.
    pub fn guests(&self) -> Vec<PooledGuest> {
        let inner = self.lock();
        let mut guests: Vec<PooledGuest> = inner
            .slots
            .iter()
            .map(|s| PooledGuest {
                slot: s
                    .dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                ready: s.ready(),
                pid: s.pid,
                cpus: s.shape.cpus,
                memory_mib: s.shape.memory_mib,
                resident_bytes: crate::platform::process_tree_rss(s.pid),
                age: s.started.elapsed(),
            })
            .collect();
        guests.sort_by_key(|g| std::cmp::Reverse(g.age));
        guests
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}
