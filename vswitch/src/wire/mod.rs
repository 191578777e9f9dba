//! Wire types shared by the engine and everything around it (the scenario
//! model, backends, probes), so the sans-IO engine depends on nothing but
//! these: the engine's own header views live in `engine::wire` for now.

mod ethernet;

pub use ethernet::MacAddr;
