//! masp-testkit (being built).
