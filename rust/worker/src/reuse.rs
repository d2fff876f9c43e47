//! The reuse store on the worker's side (`docs/reuse.md`): vectors computed
//! once are reused by every worker of the fleet, so a distinct text costs
//! one model call in the whole fleet.
//!
//! - `entry`: the stored value of a vector and the precision classes;
//! - `store`: what the worker needs from the store, and an in-memory store
//!   for tests;
//! - `redis_store`: the store over Redis (`MGET`, `reuse_claim.lua`,
//!   `reuse_put.lua`);
//! - `fleet`: the protocol for one chunk of a job.

mod entry;
mod fleet;
mod redis_store;
mod store;

pub use entry::{decode_entry, encode_entry, Class, Entry, ENTRY_BYTES, NORM_TOLERANCE};
pub use fleet::{FleetReuse, Resolved, POLL_FIRST, POLL_MAX};
pub use redis_store::RedisReuseStore;
pub use store::{Claimed, MemoryReuseStore, ReuseStore};
