//! Integration tests of masp-audio, one binary (see STYLE.md): each module is a topic.

mod bad_input;
mod common;
mod decode;
mod memory;
mod resample;
