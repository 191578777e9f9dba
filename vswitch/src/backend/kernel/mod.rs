//! The kernel backend: the same scenario built the way Docker builds it on
//! Linux — bridges, veths, macvlan, nftables — inside the scenario's machine
//! namespaces. (Stub: filled in by the kernel backend work.)

use crate::backend::{BuildError, BuildOptions, World};
use crate::scenario::plan::Plan;

/// What this backend cannot build on this machine, one reason per item.
pub fn unsupported(_plan: &Plan) -> Vec<String> {
    vec!["backend kernel: not implemented yet (use --backend userspace)".to_string()]
}

/// The kernel data path of a world.
#[derive(Debug)]
pub struct Dataplane {}

impl Dataplane {
    /// Builds the kernel data path between the world's namespaces.
    pub fn build(
        _world: &World,
        _plan: &Plan,
        _opts: &BuildOptions,
    ) -> Result<Dataplane, BuildError> {
        Err(BuildError {
            step: "backend kernel".into(),
            source: "not implemented yet".into(),
        })
    }

    /// Tears the data path down (what the namespaces' deletion does not
    /// remove by itself) and returns its counters.
    pub fn stop(self) -> serde_json::Value {
        serde_json::Value::Null
    }
}
