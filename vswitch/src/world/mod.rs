//! Building and tearing down a world: namespaces, links, run ids, cleanup.
