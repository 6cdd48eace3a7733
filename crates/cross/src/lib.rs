//! The other systems, checked from this one: `cargo xtask cross` and
//! `cargo xtask wine`.
//!
//! - `cross`: the workspace type-checked for macOS (x86_64, aarch64),
//!   FreeBSD and Windows with Debian's packaged Rust and `-Zbuild-std`,
//!   since no other toolchain can be fetched here.
//! - `debian`: that toolchain, and apt-get for what is missing.
//! - `windows`: Windows GNU builds (MinGW's linker, the start and end
//!   objects `-Zbuild-std` does not make, the `ProcessPrng` shim Wine 8
//!   lacks) and `Wine`, a prefix and server for running them.
//! - `wine`: the Windows programs' end-to-end test under Wine.
//!
//! A crate of its own, like the bench and dist: a few hundred lines of
//! tooling with tests of their own, which xtask only dispatches to.

#![forbid(unsafe_code)]

mod cross;
mod debian;
mod windows;
mod wine;

use upcase_e2e::workspace;

pub use cross::{CrossArgs, run as cross};
pub use wine::run as wine;
