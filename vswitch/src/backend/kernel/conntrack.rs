//! What the kernel backend deletes of a machine's conntrack when a bridge
//! endpoint leaves its network (stop, restart, disconnect, a removed task),
//! as Docker's bridge driver does (libnetwork `clearEndpointConnections`,
//! observed on Docker 20.10.24): every flow whose reply tuple has the
//! endpoint's address as source or destination. The rest of the table
//! stays, the container's own masqueraded flows included (their replies
//! are addressed to the machine), so those replies reach whoever holds the
//! address next (BUG-9). The same rule as the userspace engine's
//! (`engine::ConntrackState::forget_endpoint`); done with `conntrack -D`
//! (package conntrack) in the machine's namespace.

use std::net::IpAddr;

use crate::backend::common::BuildError;
use crate::netns::NetNs;

use crate::backend::linux::{LinuxError, in_ns, run_tool};

/// Deletes the flows of machine namespace `ns` whose reply tuple has `ip`.
pub(crate) fn forget_endpoint(ns: &NetNs, ip: IpAddr) -> Result<(), BuildError> {
    let step = format!("conntrack: deleting the flows of {ip}");
    in_ns(ns, step, move || {
        let family = if ip.is_ipv4() { "ipv4" } else { "ipv6" };
        let addr = ip.to_string();
        for which in ["--reply-src", "--reply-dst"] {
            match run_tool("conntrack", &["-D", "-f", family, which, &addr], "") {
                // `conntrack -D` fails when nothing matched.
                Err(LinuxError::Tool { stderr, .. })
                    if stderr.contains(" 0 flow entries have been deleted") => {}
                other => other?,
            }
        }
        Ok(())
    })
}
