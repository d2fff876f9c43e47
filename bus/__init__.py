"""The embedfleet job bus: protocol constants, job messages, Lua scripts and
the transports (Redis, in-memory) that workers and the manager speak through.

``docs/protocol.md`` is the specification; ``rust/core`` is the Rust twin.
"""
