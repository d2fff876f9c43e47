//! Integration tests of the Rust worker, in one binary (each test binary is
//! a long link): the shared protocol vectors, the bus scenarios against a
//! real Redis, one job end to end, the worker loop, the reuse store, hostile
//! messages, and a Redis that refuses the worker.

mod access;
mod bus_scenarios;
mod common;
mod hostile;
mod pipeline;
mod reuse;
mod reuse_vectors;
mod vectors;
mod worker_loop;
