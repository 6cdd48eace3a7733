//! The PROXY protocol (HAProxy's specification, versions 1 and 2): the
//! header a proxy puts in front of what it forwards, naming the client it
//! forwards for. Bytes in, a typed answer out; no I/O, no panics.
//!
//! - **v1** is one line of text, at most [`V1_MAX_LEN`] bytes with its CRLF:
//!   `PROXY TCP4 10.0.1.12 10.0.100.100 42631 12000\r\n` (or `TCP6` with
//!   IPv6 addresses, or `PROXY UNKNOWN ...\r\n`, which names no one).
//!   nginx sends it for UDP too, still labelled `TCP4`.
//! - **v2** is binary: the 12-byte [`V2_SIGNATURE`], a version and command
//!   byte (`LOCAL` or `PROXY`), a family and transport byte (`UNSPEC`,
//!   `INET`, `INET6`, `UNIX`; `STREAM` or `DGRAM`), a 16-bit length, then
//!   that many bytes: the addresses, then TLVs, which are walked (each must
//!   fit) and skipped.
//!
//! [`parse`] reads a datagram, which is whole: what starts like a header
//! but ends too soon is [`Parsed::Malformed`]. [`parse_stream`] reads the
//! start of a stream, which may still be arriving: it says `None` while
//! more bytes could still make a header. A [`Header`] says where the
//! payload starts (`len`), so the caller never scans for it again.
//!
//! [`encode_v1`] and [`encode_v2`] build headers, for tests and for
//! programs that play a proxy.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A v1 header starts with `PROXY` and one space.
pub const V1_SIGNATURE: &[u8; 6] = b"PROXY ";

/// The longest v1 header, CRLF included (the specification's 107 bytes).
pub const V1_MAX_LEN: usize = 107;

/// A v2 header starts with these 12 bytes, which no text protocol starts
/// with (`\r\n\r\n\0\r\nQUIT\n`).
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 header's fixed part: the signature, two bytes of version, command,
/// family and transport, and the 16-bit length of what follows.
pub const V2_FIXED_LEN: usize = 16;

/// The longest v2 header the 16-bit length can describe.
pub const V2_MAX_LEN: usize = V2_FIXED_LEN + u16::MAX as usize;

/// Which version of the protocol a header is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// The transport the header says the proxy received the client's bytes
/// over. v1 knows only TCP (`TCP4`, `TCP6`), even when nginx uses it for
/// UDP, so it tells nothing; v2 can say `DGRAM`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// v2 `UNSPEC`, and every `LOCAL` or v1 `UNKNOWN` header.
    Unspecified,
    /// v2 `STREAM`, v1 `TCP4` and `TCP6`.
    Stream,
    /// v2 `DGRAM`.
    Datagram,
}

/// The client and the address it reached on the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addresses {
    pub source: SocketAddr,
    pub destination: SocketAddr,
}

/// A whole, valid header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: Version,
    pub transport: Transport,
    /// Whom the proxy forwards for; `None` when it names no one: a v2
    /// `LOCAL` command (the proxy's own connection, a health check), the
    /// `UNSPEC` or `UNIX` family, a v1 `UNKNOWN`. The receiver then treats
    /// the bytes as the proxy's own, as the specification says.
    pub addresses: Option<Addresses>,
    /// How many bytes the header takes: the payload starts here.
    pub len: usize,
}

impl Header {
    /// The client the header names, if it names one.
    pub fn source(&self) -> Option<SocketAddr> {
        self.addresses.map(|a| a.source)
    }
}

/// What the bytes at the front of a datagram or stream are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// They start with neither signature: no header, all payload.
    NoHeader,
    /// A valid header, its payload from `header.len` on.
    Header(Header),
    /// They start with a signature (`PROXY ` or v2's) but are no valid
    /// header.
    Malformed(Malformed),
}

/// Why bytes that start like a header are not a valid one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// v1: no CRLF within the first [`V1_MAX_LEN`] bytes (or before the end).
    V1NoLineEnd,
    /// v1: the protocol is not `TCP4`, `TCP6` or `UNKNOWN`.
    V1Protocol,
    /// v1: not the four fields after the protocol, each after one space.
    V1Fields,
    /// v1: an address that is not one of the protocol's family.
    V1Address { field: &'static str },
    /// v1: a port that is not a decimal from 0 to 65535 without leading zeros.
    V1Port { field: &'static str },
    /// v2: the bytes end before the header does.
    V2Truncated { need: usize, have: usize },
    /// v2: a version other than 2.
    V2Version(u8),
    /// v2: a command other than `LOCAL` (0) and `PROXY` (1).
    V2Command(u8),
    /// v2: a family other than `UNSPEC`, `INET`, `INET6` and `UNIX`.
    V2Family(u8),
    /// v2: a transport other than `UNSPEC`, `STREAM` and `DGRAM`.
    V2Transport(u8),
    /// v2: a length too short for the family's addresses.
    V2AddressLen { need: usize, len: usize },
    /// v2: a TLV that runs past the end of the header.
    V2Tlv,
    /// v2 on a stream: longer than the caller reads for a header.
    V2TooLong { len: usize, max: usize },
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::V1NoLineEnd => write!(
                f,
                "a PROXY v1 line without its CRLF within {V1_MAX_LEN} bytes"
            ),
            Malformed::V1Protocol => {
                f.write_str("a PROXY v1 line whose protocol is not TCP4, TCP6 or UNKNOWN")
            }
            Malformed::V1Fields => f.write_str(
                "a PROXY v1 line without exactly two addresses and two ports, one space apart",
            ),
            Malformed::V1Address { field } => {
                write!(f, "a PROXY v1 line whose {field} is not of its protocol")
            }
            Malformed::V1Port { field } => write!(
                f,
                "a PROXY v1 line whose {field} is not a number from 0 to 65535"
            ),
            Malformed::V2Truncated { need, have } => write!(
                f,
                "a PROXY v2 header of {need} bytes cut short at {have} bytes"
            ),
            Malformed::V2Version(version) => {
                write!(f, "a PROXY v2 signature with version {version}, not 2")
            }
            Malformed::V2Command(command) => {
                write!(f, "a PROXY v2 header with the unknown command {command}")
            }
            Malformed::V2Family(family) => {
                write!(
                    f,
                    "a PROXY v2 header with the unknown address family {family}"
                )
            }
            Malformed::V2Transport(transport) => {
                write!(
                    f,
                    "a PROXY v2 header with the unknown transport {transport}"
                )
            }
            Malformed::V2AddressLen { need, len } => write!(
                f,
                "a PROXY v2 header of {len} bytes after its fixed part, too short for its {need} bytes of addresses"
            ),
            Malformed::V2Tlv => f.write_str("a PROXY v2 header whose TLVs run past its end"),
            Malformed::V2TooLong { len, max } => write!(
                f,
                "a PROXY v2 header of {len} bytes, more than the {max} read for one"
            ),
        }
    }
}

/// What a datagram starts with. The datagram is whole, so a header cut
/// short is [`Malformed`]; bytes shorter than a signature, even the start of
/// one, are [`Parsed::NoHeader`].
pub fn parse(datagram: &[u8]) -> Parsed {
    match step(datagram, V2_MAX_LEN) {
        Step::Done(parsed) | Step::NeedMore { at_end: parsed } => parsed,
    }
}

/// What a stream starts with, once `bytes` (all it has sent so far) tell:
/// `None` while more bytes could still make them a header. A v2 header
/// longer than `max_v2_len` is [`Malformed::V2TooLong`] as soon as its
/// length is read, so a caller reading a header into a buffer of that size
/// never needs a larger one (a v1 line is at most [`V1_MAX_LEN`] anyway).
/// When the stream ends while this says `None`, [`parse`] of the same bytes
/// says what they were.
pub fn parse_stream(bytes: &[u8], max_v2_len: usize) -> Option<Parsed> {
    match step(bytes, max_v2_len) {
        Step::Done(parsed) => Some(parsed),
        Step::NeedMore { .. } => None,
    }
}

/// How far `bytes` got.
enum Step {
    /// Decided, whatever follows.
    Done(Parsed),
    /// More bytes could change the answer; `at_end` is the answer if none come.
    NeedMore { at_end: Parsed },
}

fn step(bytes: &[u8], max_v2_len: usize) -> Step {
    if let Some(rest) = bytes.strip_prefix(V1_SIGNATURE) {
        return v1(bytes, rest);
    }
    if bytes.starts_with(V2_SIGNATURE) {
        return v2(bytes, max_v2_len);
    }
    if V1_SIGNATURE.starts_with(bytes) || V2_SIGNATURE.starts_with(bytes) {
        // Shorter than a signature, and the start of one.
        return Step::NeedMore {
            at_end: Parsed::NoHeader,
        };
    }
    Step::Done(Parsed::NoHeader)
}

/// A v1 line: `bytes` starts with `PROXY `, `fields` is what follows it.
fn v1(bytes: &[u8], fields: &[u8]) -> Step {
    let window = bytes.get(..V1_MAX_LEN).unwrap_or(bytes);
    let Some(end) = window.windows(2).position(|pair| pair == b"\r\n") else {
        let malformed = Parsed::Malformed(Malformed::V1NoLineEnd);
        return if bytes.len() >= V1_MAX_LEN {
            Step::Done(malformed)
        } else {
            Step::NeedMore { at_end: malformed }
        };
    };
    // `end` is at least the signature's length: the signature has no CR.
    let line = fields
        .get(..end.saturating_sub(V1_SIGNATURE.len()))
        .unwrap_or(fields);
    Step::Done(match v1_fields(line) {
        Ok((transport, addresses)) => Parsed::Header(Header {
            version: Version::V1,
            transport,
            addresses,
            len: end + 2,
        }),
        Err(malformed) => Parsed::Malformed(malformed),
    })
}

/// The fields of a v1 line after `PROXY `, without the CRLF.
fn v1_fields(line: &[u8]) -> Result<(Transport, Option<Addresses>), Malformed> {
    let mut fields = line.split(|&b| b == b' ');
    let family = match fields.next() {
        Some(b"TCP4") => Family::V4,
        Some(b"TCP6") => Family::V6,
        // Whatever follows UNKNOWN is ignored, as the specification says.
        Some(b"UNKNOWN") => return Ok((Transport::Unspecified, None)),
        _ => return Err(Malformed::V1Protocol),
    };
    let (Some(source), Some(destination), Some(source_port), Some(destination_port), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(Malformed::V1Fields);
    };
    let source = v1_address(source, family, "source address")?;
    let destination = v1_address(destination, family, "destination address")?;
    let source_port = v1_port(source_port, "source port")?;
    let destination_port = v1_port(destination_port, "destination port")?;
    Ok((
        Transport::Stream,
        Some(Addresses {
            source: SocketAddr::new(source, source_port),
            destination: SocketAddr::new(destination, destination_port),
        }),
    ))
}

#[derive(Clone, Copy)]
enum Family {
    V4,
    V6,
}

fn v1_address(text: &[u8], family: Family, field: &'static str) -> Result<IpAddr, Malformed> {
    let text = std::str::from_utf8(text).map_err(|_| Malformed::V1Address { field })?;
    let parsed = match family {
        // std refuses leading zeros, which some parsers read as octal.
        Family::V4 => text.parse::<Ipv4Addr>().map(IpAddr::V4),
        Family::V6 => text.parse::<Ipv6Addr>().map(IpAddr::V6),
    };
    parsed.map_err(|_| Malformed::V1Address { field })
}

/// A port as the specification writes it: 1 to 5 digits, no leading zero.
fn v1_port(text: &[u8], field: &'static str) -> Result<u16, Malformed> {
    let bad = Malformed::V1Port { field };
    let well_formed = matches!(text.len(), 1..=5)
        && text.iter().all(u8::is_ascii_digit)
        && (text == b"0" || !text.starts_with(b"0"));
    if !well_formed {
        return Err(bad);
    }
    let value = text
        .iter()
        .fold(0u32, |n, &digit| n * 10 + u32::from(digit - b'0'));
    u16::try_from(value).map_err(|_| bad)
}

/// A v2 header: `bytes` starts with the signature.
fn v2(bytes: &[u8], max_len: usize) -> Step {
    let Some((fixed, _)) = bytes.split_first_chunk::<V2_FIXED_LEN>() else {
        return Step::NeedMore {
            at_end: Parsed::Malformed(Malformed::V2Truncated {
                need: V2_FIXED_LEN,
                have: bytes.len(),
            }),
        };
    };
    let [.., version_command, family_transport, len_high, len_low] = *fixed;
    let malformed = |why| Step::Done(Parsed::Malformed(why));
    let version = version_command >> 4;
    if version != 2 {
        return malformed(Malformed::V2Version(version));
    }
    let local = match version_command & 0x0F {
        0 => true,
        1 => false,
        command => return malformed(Malformed::V2Command(command)),
    };
    let len = V2_FIXED_LEN + usize::from(u16::from_be_bytes([len_high, len_low]));
    if len > max_len {
        return malformed(Malformed::V2TooLong { len, max: max_len });
    }
    let Some(block) = bytes.get(V2_FIXED_LEN..len) else {
        return Step::NeedMore {
            at_end: Parsed::Malformed(Malformed::V2Truncated {
                need: len,
                have: bytes.len(),
            }),
        };
    };
    let header = |transport, addresses| {
        Step::Done(Parsed::Header(Header {
            version: Version::V2,
            transport,
            addresses,
            len,
        }))
    };
    if local {
        // The specification: a LOCAL header's family and addresses are
        // ignored, and the connection is the proxy's own.
        return header(Transport::Unspecified, None);
    }
    match v2_block(family_transport, block) {
        Ok((transport, addresses)) => header(transport, addresses),
        Err(why) => malformed(why),
    }
}

/// The addresses and TLVs of a v2 `PROXY` header.
fn v2_block(
    family_transport: u8,
    block: &[u8],
) -> Result<(Transport, Option<Addresses>), Malformed> {
    let transport = match family_transport & 0x0F {
        0 => Transport::Unspecified,
        1 => Transport::Stream,
        2 => Transport::Datagram,
        other => return Err(Malformed::V2Transport(other)),
    };
    // UNSPEC has no addresses, UNIX two paths of 108 bytes: neither names
    // an IP client, so the bytes are the proxy's own.
    let (need, ip) = match family_transport >> 4 {
        0 => (0, None),
        1 => (12, Some(Family::V4)),
        2 => (36, Some(Family::V6)),
        3 => (216, None),
        other => return Err(Malformed::V2Family(other)),
    };
    let (Some(addresses), Some(tlvs)) = (block.get(..need), block.get(need..)) else {
        return Err(Malformed::V2AddressLen {
            need,
            len: block.len(),
        });
    };
    check_tlvs(tlvs)?;
    let addresses = match ip {
        Some(Family::V4) => v2_addresses::<4>(addresses, |o| IpAddr::V4(Ipv4Addr::from(o))),
        Some(Family::V6) => v2_addresses::<16>(addresses, |o| IpAddr::V6(Ipv6Addr::from(o))),
        None => None,
    };
    Ok((transport, addresses))
}

/// Source address, destination address (`N` bytes each), source port,
/// destination port (2 bytes each, big-endian).
fn v2_addresses<const N: usize>(bytes: &[u8], ip: impl Fn([u8; N]) -> IpAddr) -> Option<Addresses> {
    let (source, rest) = bytes.split_first_chunk::<N>()?;
    let (destination, rest) = rest.split_first_chunk::<N>()?;
    let (source_port, rest) = rest.split_first_chunk::<2>()?;
    let (destination_port, _) = rest.split_first_chunk::<2>()?;
    Some(Addresses {
        source: SocketAddr::new(ip(*source), u16::from_be_bytes(*source_port)),
        destination: SocketAddr::new(ip(*destination), u16::from_be_bytes(*destination_port)),
    })
}

/// Each TLV: a type byte, a 16-bit length, that many bytes; all within the
/// header.
fn check_tlvs(mut tlvs: &[u8]) -> Result<(), Malformed> {
    while !tlvs.is_empty() {
        let Some((&[_kind, high, low], rest)) = tlvs.split_first_chunk::<3>() else {
            return Err(Malformed::V2Tlv);
        };
        tlvs = rest
            .get(usize::from(u16::from_be_bytes([high, low]))..)
            .ok_or(Malformed::V2Tlv)?;
    }
    Ok(())
}

/// Both addresses in one family: IPv4 when both are, else IPv6, an IPv4
/// address then written IPv4-mapped.
fn same_family(addresses: Addresses) -> Result<(Ipv4Addr, Ipv4Addr), (Ipv6Addr, Ipv6Addr)> {
    let v6 = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    match (addresses.source.ip(), addresses.destination.ip()) {
        (IpAddr::V4(source), IpAddr::V4(destination)) => Ok((source, destination)),
        (source, destination) => Err((v6(source), v6(destination))),
    }
}

/// A v1 line naming `addresses` (`TCP4` when both are IPv4, else `TCP6`),
/// or `PROXY UNKNOWN\r\n` for `None`.
pub fn encode_v1(addresses: Option<Addresses>) -> Vec<u8> {
    let Some(addresses) = addresses else {
        return b"PROXY UNKNOWN\r\n".to_vec();
    };
    let (sport, dport) = (addresses.source.port(), addresses.destination.port());
    let line = match same_family(addresses) {
        Ok((source, destination)) => {
            format!("PROXY TCP4 {source} {destination} {sport} {dport}\r\n")
        }
        Err((source, destination)) => {
            format!("PROXY TCP6 {source} {destination} {sport} {dport}\r\n")
        }
    };
    line.into_bytes()
}

/// A v2 header: `PROXY` over `transport` naming `addresses` (`INET` when
/// both are IPv4, else `INET6`), or `LOCAL` for `None`; then each TLV
/// `(type, value)`. `None` when the TLVs do not fit in its 16-bit length.
pub fn encode_v2(
    transport: Transport,
    addresses: Option<Addresses>,
    tlvs: &[(u8, &[u8])],
) -> Option<Vec<u8>> {
    let mut block = Vec::new();
    let transport = match transport {
        Transport::Unspecified => 0,
        Transport::Stream => 1,
        Transport::Datagram => 2,
    };
    let (command, family_transport) = match addresses {
        None => (0x20, 0x00),
        Some(addresses) => {
            let family = match same_family(addresses) {
                Ok((source, destination)) => {
                    block.extend_from_slice(&source.octets());
                    block.extend_from_slice(&destination.octets());
                    0x10
                }
                Err((source, destination)) => {
                    block.extend_from_slice(&source.octets());
                    block.extend_from_slice(&destination.octets());
                    0x20
                }
            };
            block.extend_from_slice(&addresses.source.port().to_be_bytes());
            block.extend_from_slice(&addresses.destination.port().to_be_bytes());
            (0x21, family | transport)
        }
    };
    for (kind, value) in tlvs {
        block.push(*kind);
        block.extend_from_slice(&u16::try_from(value.len()).ok()?.to_be_bytes());
        block.extend_from_slice(value);
    }
    let len = u16::try_from(block.len()).ok()?;
    let mut header = Vec::with_capacity(V2_FIXED_LEN + block.len());
    header.extend_from_slice(V2_SIGNATURE);
    header.push(command);
    header.push(family_transport);
    header.extend_from_slice(&len.to_be_bytes());
    header.extend_from_slice(&block);
    Some(header)
}

#[cfg(test)]
mod tests;
