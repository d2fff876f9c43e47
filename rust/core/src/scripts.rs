//! The shared Lua scripts (`bus/lua/*.lua`): one file per atomic state
//! change, each listing its keys and arguments in its header. Python loads the
//! very same files.

pub const ENQUEUE: &str = include_str!("../../../bus/lua/enqueue.lua");
pub const RENEW: &str = include_str!("../../../bus/lua/renew.lua");
pub const COMPLETE: &str = include_str!("../../../bus/lua/complete.lua");
pub const RETRY: &str = include_str!("../../../bus/lua/retry.lua");
pub const DEAD: &str = include_str!("../../../bus/lua/dead.lua");
pub const PROMOTE: &str = include_str!("../../../bus/lua/promote.lua");
pub const TRIM: &str = include_str!("../../../bus/lua/trim.lua");
pub const HEARTBEAT: &str = include_str!("../../../bus/lua/heartbeat.lua");
pub const REUSE_CLAIM: &str = include_str!("../../../bus/lua/reuse_claim.lua");
pub const REUSE_PUT: &str = include_str!("../../../bus/lua/reuse_put.lua");
pub const BACKLOG: &str = include_str!("../../../bus/lua/backlog.lua");

/// Every script by name, as `bus/redis_transport.py` names them.
pub const ALL: [(&str, &str); 11] = [
    ("enqueue", ENQUEUE),
    ("renew", RENEW),
    ("complete", COMPLETE),
    ("retry", RETRY),
    ("dead", DEAD),
    ("promote", PROMOTE),
    ("trim", TRIM),
    ("heartbeat", HEARTBEAT),
    ("reuse_claim", REUSE_CLAIM),
    ("reuse_put", REUSE_PUT),
    ("backlog", BACKLOG),
];
