//! Named network namespaces, compatible with `ip netns`: each one is a bind
//! mount of a namespace file under `/run/netns/NAME`, and its
//! `/etc/netns/NAME/` holds files that `ip netns exec` binds over `/etc`.
//!
//! Work inside a namespace runs on a dedicated thread that `setns`es into it
//! first (network namespaces are per thread), so the calling thread never
//! leaves the namespace it started in. Sockets and TAP fds created there keep
//! their namespace when handed back.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};

mod guard;
pub use guard::{DeleteError, DeleteOnDrop};

/// Where `ip netns` keeps its namespace files.
pub const NETNS_RUN_DIR: &str = "/run/netns";
/// Where `ip netns exec` looks for per-namespace `/etc` files.
pub const NETNS_ETC_DIR: &str = "/etc/netns";

/// Errors of namespace handling.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// Creating a namespace failed.
    #[error("cannot create network namespace {name}: {source}")]
    Create {
        /// Namespace name.
        name: String,
        /// Cause.
        source: io::Error,
    },
    /// Opening a namespace failed.
    #[error("cannot open network namespace {name}: {source}")]
    Open {
        /// Namespace name.
        name: String,
        /// Cause.
        source: io::Error,
    },
    /// Entering a namespace failed.
    #[error("cannot enter network namespace {name}: {source}")]
    Enter {
        /// Namespace name.
        name: String,
        /// Cause.
        source: io::Error,
    },
    /// Writing a namespace's /etc file failed.
    #[error("cannot write {path}: {source}")]
    Etc {
        /// File.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// Setting up a fresh namespace failed (it was removed again).
    #[error("cannot set up network namespace {name}: {why}")]
    Init {
        /// Namespace name.
        name: String,
        /// Cause.
        why: String,
    },
    /// The worker thread panicked.
    #[error("thread inside network namespace {name} panicked")]
    Panicked {
        /// Namespace name.
        name: String,
    },
}

fn errno(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// A named network namespace (an open handle on it).
#[derive(Debug)]
pub struct NetNs {
    name: String,
    file: File,
}

impl NetNs {
    /// Creates `/run/netns/NAME` holding a fresh network namespace, as
    /// `ip netns add NAME` does. Fails if the name exists.
    pub fn create(name: &str) -> Result<NetNs, NetnsError> {
        NetNs::create_with(name, || Ok(()))
    }

    /// As [`NetNs::create`], then runs `init` inside the new namespace on
    /// the thread that made it (one thread instead of two); an error of
    /// `init` removes the namespace again.
    pub fn create_with<F>(name: &str, init: F) -> Result<NetNs, NetnsError>
    where
        F: FnOnce() -> Result<(), Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    {
        let err = |source| NetnsError::Create {
            name: name.to_string(),
            source,
        };
        let _in_flight = Creating::enter().map_err(err)?;
        ensure_run_dir().map_err(err)?;
        let path = Path::new(NETNS_RUN_DIR).join(name);
        File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(err)?;
        let target = path.clone();
        let made = std::thread::spawn(move || -> io::Result<Result<(), String>> {
            unshare(CloneFlags::CLONE_NEWNET).map_err(errno)?;
            mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                Some("none"),
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(errno)?;
            Ok(init().map_err(|e| e.to_string()))
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")));
        match made {
            Ok(Ok(())) => NetNs::open(name),
            Ok(Err(why)) => {
                let _ = delete(name);
                Err(NetnsError::Init {
                    name: name.to_string(),
                    why,
                })
            }
            Err(e) => {
                let _ = fs::remove_file(&path);
                Err(err(e))
            }
        }
    }

    /// Opens an existing named namespace.
    pub fn open(name: &str) -> Result<NetNs, NetnsError> {
        let file =
            File::open(Path::new(NETNS_RUN_DIR).join(name)).map_err(|source| NetnsError::Open {
                name: name.to_string(),
                source,
            })?;
        Ok(NetNs {
            name: name.to_string(),
            file,
        })
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A second handle on the same namespace.
    pub fn try_clone(&self) -> io::Result<NetNs> {
        Ok(NetNs {
            name: self.name.clone(),
            file: self.file.try_clone()?,
        })
    }

    /// Moves the calling thread into this namespace. Only for threads that
    /// are dedicated to it; prefer [`NetNs::run`] and [`NetNs::spawn`].
    pub fn enter(&self) -> Result<(), NetnsError> {
        setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| NetnsError::Enter {
            name: self.name.clone(),
            source: errno(e),
        })
    }

    /// Runs `f` on a fresh thread inside this namespace and returns its result.
    pub fn run<F, R>(&self, f: F) -> Result<R, NetnsError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let h = self.spawn(f)?;
        h.join().map_err(|_| NetnsError::Panicked {
            name: self.name.clone(),
        })
    }

    /// Starts a named thread inside this namespace.
    pub fn spawn<F, R>(&self, f: F) -> Result<JoinHandle<R>, NetnsError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let ns = self.try_clone().map_err(|source| NetnsError::Open {
            name: self.name.clone(),
            source,
        })?;
        let (tx, rx) = std::sync::mpsc::channel();
        let h = std::thread::Builder::new()
            .name(format!("ns:{}", short(&self.name)))
            .spawn(move || {
                let entered = ns.enter();
                let ok = entered.is_ok();
                let _ = tx.send(entered);
                drop(ns);
                if !ok {
                    // The caller gets the error; the closure must not run
                    // in the wrong namespace. Unwinding ends this thread
                    // alone (no panic message: the error is the report).
                    std::panic::resume_unwind(Box::new("namespace not entered"));
                }
                f()
            })
            .map_err(|source| NetnsError::Enter {
                name: self.name.clone(),
                source,
            })?;
        match rx.recv() {
            Ok(Ok(())) => Ok(h),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(NetnsError::Panicked {
                name: self.name.clone(),
            }),
        }
    }

    /// Writes `/etc/netns/NAME/FILE` (e.g. `resolv.conf`), which `ip netns
    /// exec` and `vswitch exec` bind over `/etc/FILE`.
    pub fn write_etc(&self, file: &str, content: &str) -> Result<PathBuf, NetnsError> {
        write_etc(&self.name, file, content)
    }
}

/// [`NetNs::write_etc`] for namespace `name`, before its handle is open
/// (from [`NetNs::create_with`]'s `init`).
pub fn write_etc(name: &str, file: &str, content: &str) -> Result<PathBuf, NetnsError> {
    let dir = Path::new(NETNS_ETC_DIR).join(name);
    let path = dir.join(file);
    fs::create_dir_all(&dir)
        .and_then(|_| fs::write(&path, content))
        .map_err(|source| NetnsError::Etc {
            path: path.clone(),
            source,
        })?;
    Ok(path)
}

impl AsFd for NetNs {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.file.as_fd()
    }
}

fn short(name: &str) -> &str {
    // Thread names are cut at 15 bytes by the kernel; keep the distinctive tail.
    let n = name.len();
    if n > 12 {
        let mut i = n - 12;
        while !name.is_char_boundary(i) {
            i += 1;
        }
        &name[i..]
    } else {
        name
    }
}

/// Makes `/run/netns` exist and be a shared mount, as iproute2 does, so that
/// namespace files stay visible to `ip netns exec`'s private mount namespace.
fn ensure_run_dir() -> io::Result<()> {
    fs::create_dir_all(NETNS_RUN_DIR)?;
    let shared = |flags| {
        mount(
            None::<&str>,
            NETNS_RUN_DIR,
            Some("none"),
            flags,
            None::<&str>,
        )
    };
    if shared(MsFlags::MS_SHARED | MsFlags::MS_REC).is_ok() {
        return Ok(());
    }
    mount(
        Some(NETNS_RUN_DIR),
        NETNS_RUN_DIR,
        Some("none"),
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(errno)?;
    shared(MsFlags::MS_SHARED | MsFlags::MS_REC).map_err(errno)
}

/// A namespace the caller made and owns, with its handle: deleted when
/// dropped, after the handle is closed ([`DeleteOnDrop`]).
#[derive(Debug)]
pub struct OwnedNs {
    // Declared first: closed before the guard deletes the namespace.
    ns: Option<NetNs>,
    _delete: DeleteOnDrop,
}

impl OwnedNs {
    /// Takes ownership of `ns`.
    pub fn new(ns: NetNs) -> OwnedNs {
        let guard = DeleteOnDrop::namespace(ns.name());
        OwnedNs {
            ns: Some(ns),
            _delete: guard,
        }
    }

    /// The namespace.
    pub fn ns(&self) -> Option<&NetNs> {
        self.ns.as_ref()
    }
}

/// Namespace creations under way in this process, and whether new ones
/// are refused (the process is removing its runs on a signal).
static IN_FLIGHT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// One namespace creation under way (see [`close_creation`]).
struct Creating;

impl Creating {
    fn enter() -> io::Result<Creating> {
        use std::sync::atomic::Ordering::SeqCst;
        IN_FLIGHT.fetch_add(1, SeqCst);
        if CLOSED.load(SeqCst) {
            IN_FLIGHT.fetch_sub(1, SeqCst);
            return Err(io::Error::other("the process is shutting down"));
        }
        Ok(Creating)
    }
}

impl Drop for Creating {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Refuses every later namespace creation of this process and waits
/// (bounded by `within`) for those under way to finish, so that what a
/// signal-time clean-up lists is all there will be: a namespace half made
/// while it deletes would otherwise be mounted after its deletion and left
/// behind. Returns whether none was still under way.
pub fn close_creation(within: std::time::Duration) -> bool {
    use std::sync::atomic::Ordering::SeqCst;
    CLOSED.store(true, SeqCst);
    let deadline = std::time::Instant::now() + within;
    while IN_FLIGHT.load(SeqCst) > 0 {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

/// Deletes a named namespace and its `/etc/netns` files, as `ip netns del`
/// does. The namespace itself (and every link in it) goes away once no
/// process or fd holds it. Missing names are not an error.
///
/// A namespace being created elsewhere can be mounted between the unmount
/// and the unlink (EBUSY): both are tried again, a few times.
pub fn delete(name: &str) -> io::Result<()> {
    let path = Path::new(NETNS_RUN_DIR).join(name);
    for attempt in 0.. {
        match umount2(&path, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
            Err(e) => return Err(errno(e)),
        }
        match fs::remove_file(&path) {
            Ok(()) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 5 => continue,
            Err(e) => return Err(e),
        }
    }
    match fs::remove_dir_all(Path::new(NETNS_ETC_DIR).join(name)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Names of namespaces under `/run/netns` that start with `prefix`.
pub fn list(prefix: &str) -> Vec<String> {
    let Ok(rd) = fs::read_dir(NETNS_RUN_DIR) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    v.sort();
    v
}

/// True when this process may create namespaces (root or CAP_SYS_ADMIN +
/// CAP_NET_ADMIN). Checked by trying, not by looking at the uid.
pub fn can_create() -> bool {
    std::thread::spawn(|| unshare(CloneFlags::CLONE_NEWNET).is_ok())
        .join()
        .unwrap_or(false)
        && nix::unistd::Uid::effective().is_root()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keeps_tail() {
        assert_eq!(short("vsw1234567-c-web"), "234567-c-web");
        assert_eq!(short("abc"), "abc");
    }
}
