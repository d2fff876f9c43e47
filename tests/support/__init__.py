"""Shared test support: oracles, helpers and fixtures that several test
modules (and the benchmarks) use. Test modules import from here, never from
one another."""
