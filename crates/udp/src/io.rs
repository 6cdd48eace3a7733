//! The two ways this crate moves datagrams, and which one a batch uses.
//!
//! [`Io::Batched`] is Linux's: many datagrams per system call (`recvmmsg`,
//! `sendmmsg`), UDP GRO and GSO. [`Io::Portable`] is every system's: one
//! datagram per system call on socket2 (`recvmsg`/`WSARecvFrom`, `sendto`),
//! no GRO or GSO. Both fill the same slots and report the same way, so a
//! caller picks one with [`crate::RecvBatch::with_io`] and
//! [`crate::SendBatch::with_io`] and changes nothing else; the default is
//! the fastest this system has. What depends on the path's offloads is
//! asked of the `Io` itself ([`Io::gso_supported`], [`Io::enable_gro`], in
//! `gso.rs`).

use std::fmt;
use std::str::FromStr;

/// Which datagram path a batch uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Io {
    /// Many datagrams per system call, with UDP GRO and GSO: Linux only.
    /// Asked for elsewhere, a batch uses [`Io::Portable`] (see
    /// [`Io::is_available`]).
    Batched,
    /// One datagram per system call, on every system.
    Portable,
}

impl Io {
    /// Both paths, the default's first where it is available.
    pub const ALL: [Io; 2] = [Io::Batched, Io::Portable];

    /// Whether this system has the path: [`Io::Batched`] only on Linux.
    pub const fn is_available(self) -> bool {
        match self {
            Io::Batched => cfg!(target_os = "linux"),
            Io::Portable => true,
        }
    }

    /// The name a command line uses for it: `batched` or `portable`.
    pub const fn name(self) -> &'static str {
        match self {
            Io::Batched => "batched",
            Io::Portable => "portable",
        }
    }
}

impl Io {
    /// A command line's `--io` value: [`Io::from_str`], refusing a path
    /// this system does not have (rather than quietly taking the other),
    /// for clap's `value_parser`.
    pub fn parse_available(text: &str) -> Result<Io, String> {
        let io: Io = text.parse()?;
        if io.is_available() {
            Ok(io)
        } else {
            Err(format!(
                "the {io} path (recvmmsg/sendmmsg, GRO, GSO) is Linux's; \
                 this system has the portable path only"
            ))
        }
    }
}

impl Default for Io {
    /// The fastest path this system has: batched on Linux, else portable.
    fn default() -> Io {
        if Io::Batched.is_available() {
            Io::Batched
        } else {
            Io::Portable
        }
    }
}

impl fmt::Display for Io {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Io {
    type Err = String;

    /// `batched` or `portable`, as [`Io::name`] gives them.
    fn from_str(text: &str) -> Result<Io, String> {
        Io::ALL
            .into_iter()
            .find(|io| io.name() == text)
            .ok_or_else(|| format!("unknown I/O path {text:?}: expected batched or portable"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_the_default_is_available() {
        for io in Io::ALL {
            assert_eq!(io.to_string().parse::<Io>(), Ok(io));
        }
        assert!(
            "fast"
                .parse::<Io>()
                .unwrap_err()
                .contains("batched or portable")
        );
        assert!(Io::default().is_available());
        assert_eq!(Io::parse_available("portable"), Ok(Io::Portable));
        assert!(Io::parse_available("fast").is_err());
        let batched = Io::parse_available("batched");
        if cfg!(target_os = "linux") {
            assert_eq!(batched, Ok(Io::Batched));
        } else {
            assert!(batched.unwrap_err().contains("Linux's"));
        }
        assert!(Io::Portable.is_available());
        assert_eq!(Io::Batched.is_available(), cfg!(target_os = "linux"));
    }
}
