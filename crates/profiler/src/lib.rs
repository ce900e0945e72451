//! masp-profiler (being built).
