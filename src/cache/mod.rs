//! The sharded cache (in progress): its eviction policy.

#[allow(dead_code)]
pub(crate) mod policy;
