//! Integration tests of masp-budget: one binary, one module per topic.

mod ledger;
mod trim;
