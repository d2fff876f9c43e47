//! Integration tests of the Rust worker, in one binary (each test binary is
//! a long link): the shared protocol vectors, the bus scenarios against a
//! real Redis, one job end to end, the worker loop, the reuse store, hostile
//! messages, a Redis that refuses the worker, and the worker-parity vectors
//! (`docs/parity.md`).

mod access;
mod bus_scenarios;
mod common;
mod datapath;
mod hostile;
mod parity;
mod pipeline;
mod reuse;
mod reuse_vectors;
mod vectors;
mod worker_loop;
