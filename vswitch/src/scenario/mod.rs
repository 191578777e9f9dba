//! Scenario files: TOML model, validation, IPAM, and the resolved plan.

pub mod plan;
