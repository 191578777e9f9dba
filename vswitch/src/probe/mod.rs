//! Built-in probes and echo services, run inside namespaces.
