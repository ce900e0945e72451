//! Workspace-level integration tests for masp live in `tests/`; this library is empty on purpose.
