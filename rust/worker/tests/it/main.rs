//! Integration tests of the Rust worker, in one binary (each test binary is
//! a long link): the shared protocol vectors, the bus scenarios against a
//! real Redis, one job end to end, and the worker loop.

mod bus_scenarios;
mod common;
mod pipeline;
mod vectors;
mod worker_loop;
