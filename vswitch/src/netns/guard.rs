//! [`DeleteOnDrop`]: the one guard that removes, by name, what a run made
//! — a network namespace, or a link in a namespace that outlives the run
//! (the shared Docker daemon's uplink) — when it is dropped: on success,
//! on an error that unwinds a build, on panic. A failure to delete is
//! logged (`tracing` warning) and `vswitch cleanup` removes what is left;
//! [`DeleteOnDrop::delete`] deletes now and hands the error to the caller.

use std::io;

use super::{NetNs, NetnsError, delete};
use crate::sys::netlink::{Netlink, NetlinkError};

/// What a [`DeleteOnDrop`] deletes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    /// A named namespace (`/run/netns/NAME`).
    Namespace(String),
    /// Link `link` in namespace `netns` (absent is fine).
    Link { netns: String, link: String },
}

/// Why a [`DeleteOnDrop`] could not delete its target.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// The namespace could not be deleted.
    #[error("cannot delete network namespace {name}: {source}")]
    Namespace {
        /// Namespace name.
        name: String,
        /// Cause.
        source: io::Error,
    },
    /// The namespace holding the link could not be entered.
    #[error("cannot delete link {link} in {netns}: {source}")]
    Enter {
        /// Namespace name.
        netns: String,
        /// Link name.
        link: String,
        /// Cause.
        source: NetnsError,
    },
    /// Netlink refused to delete the link.
    #[error("cannot delete link {link} in {netns}: {source}")]
    Link {
        /// Namespace name.
        netns: String,
        /// Link name.
        link: String,
        /// Cause.
        source: NetlinkError,
    },
}

/// Deletes a namespace or a link by name when dropped (see the module
/// documentation).
#[derive(Debug)]
#[must_use = "dropping the guard deletes at once"]
pub struct DeleteOnDrop(Option<Target>);

impl DeleteOnDrop {
    /// A guard for namespace `name`.
    pub fn namespace(name: impl Into<String>) -> DeleteOnDrop {
        DeleteOnDrop(Some(Target::Namespace(name.into())))
    }

    /// A guard for link `link` in namespace `netns`.
    pub fn link(netns: impl Into<String>, link: impl Into<String>) -> DeleteOnDrop {
        DeleteOnDrop(Some(Target::Link {
            netns: netns.into(),
            link: link.into(),
        }))
    }

    /// Deletes now, returning the error instead of logging it.
    pub fn delete(mut self) -> Result<(), DeleteError> {
        match self.0.take() {
            Some(t) => remove(&t),
            None => Ok(()),
        }
    }
}

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        let Some(t) = self.0.take() else { return };
        if let Err(e) = remove(&t) {
            match &t {
                Target::Namespace(n) => {
                    tracing::warn!(namespace = %n, error = %e, "cannot delete namespace")
                }
                Target::Link { netns, link } => {
                    tracing::warn!(link = %link, namespace = %netns, error = %e, "cannot remove link")
                }
            }
        }
    }
}

fn remove(t: &Target) -> Result<(), DeleteError> {
    match t {
        Target::Namespace(name) => delete(name).map_err(|source| DeleteError::Namespace {
            name: name.clone(),
            source,
        }),
        Target::Link { netns, link } => {
            let enter = |source| DeleteError::Enter {
                netns: netns.clone(),
                link: link.clone(),
                source,
            };
            let ns = NetNs::open(netns).map_err(enter)?;
            let name = link.clone();
            ns.run(move || -> Result<(), NetlinkError> {
                let mut nl = Netlink::new()?;
                if nl.link_exists(&name)? {
                    nl.link_del(&name)?;
                }
                Ok(())
            })
            .map_err(enter)?
            .map_err(|source| DeleteError::Link {
                netns: netns.clone(),
                link: link.clone(),
                source,
            })
        }
    }
}
