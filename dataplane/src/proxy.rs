//! The PROXY protocol (v1 text and v2 binary, as HAProxy defines them): a
//! load balancer in front of a listener tells us the client's real address
//! in a header before the client's own bytes, so ACLs and bans see it.
//!
//! Invariants: on a listener with `proxy_protocol = true` every connection
//! must start with a valid header (a connection without one is closed: it
//! did not come through the proxy); exactly the header's bytes are read,
//! nothing of the client's stream; a header that does not arrive within the
//! timeout, is longer than the protocol allows, or is malformed closes the
//! connection. `LOCAL` (v2) and `UNKNOWN` (v1) keep the socket's own peer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// How long a proxy has to send its header.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The v2 signature.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v1 line, CRLF included (the specification's bound).
const V1_MAX: usize = 107;
/// Largest v2 address block (with TLVs) we read.
const V2_MAX: usize = 4096;

/// Why a PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no PROXY header within {0:?}")]
    Timeout(Duration),
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a PROXY protocol header")]
    NotProxy,
    #[error("malformed PROXY header: {0}")]
    Malformed(&'static str),
}

/// Reads one PROXY header from `stream`; returns the client's address, or
/// `None` when the proxy says to use the connection's own (`LOCAL`,
/// `UNKNOWN`, or an address family other than TCP over IPv4/IPv6).
pub async fn read_header<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Option<SocketAddr>, ProxyError> {
    match tokio::time::timeout(HEADER_TIMEOUT, read(stream)).await {
        Ok(result) => result,
        Err(_) => Err(ProxyError::Timeout(HEADER_TIMEOUT)),
    }
}

async fn read<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Option<SocketAddr>, ProxyError> {
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).await?;
    if &head == b"PROXY" {
        let mut line = head.to_vec();
        while !line.ends_with(b"\r\n") {
            if line.len() >= V1_MAX {
                return Err(ProxyError::Malformed("v1 line longer than 107 bytes"));
            }
            line.push(stream.read_u8().await?);
        }
        return parse_v1(&line);
    }
    if head != V2_SIGNATURE[..5] {
        return Err(ProxyError::NotProxy);
    }
    let mut rest = [0u8; 11];
    stream.read_exact(&mut rest).await?;
    let mut header = [0u8; 16];
    header[..5].copy_from_slice(&head);
    header[5..].copy_from_slice(&rest);
    if header[..12] != V2_SIGNATURE {
        return Err(ProxyError::NotProxy);
    }
    let len = u16::from_be_bytes([header[14], header[15]]) as usize;
    if len > V2_MAX {
        return Err(ProxyError::Malformed("v2 address block too large"));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    parse_v2(header[12], header[13], &body)
}

/// Parses a v1 line (`PROXY TCP4 src dst sport dport\r\n`).
pub fn parse_v1(line: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
    let text = std::str::from_utf8(line).map_err(|_| ProxyError::Malformed("v1 line is not ASCII"))?;
    let text = text.strip_suffix("\r\n").ok_or(ProxyError::Malformed("v1 line without CRLF"))?;
    let mut fields = text.split(' ');
    if fields.next() != Some("PROXY") {
        return Err(ProxyError::NotProxy);
    }
    let family = fields.next().ok_or(ProxyError::Malformed("v1 without a protocol"))?;
    if family == "UNKNOWN" {
        return Ok(None);
    }
    let parts: Vec<&str> = fields.collect();
    let [source, _destination, source_port, _destination_port] = parts[..] else {
        return Err(ProxyError::Malformed("v1 needs two addresses and two ports"));
    };
    let address: IpAddr = source.parse().map_err(|_| ProxyError::Malformed("v1 source address"))?;
    let port: u16 = source_port.parse().map_err(|_| ProxyError::Malformed("v1 source port"))?;
    match (family, address) {
        ("TCP4", IpAddr::V4(_)) | ("TCP6", IpAddr::V6(_)) => Ok(Some(SocketAddr::new(address, port))),
        _ => Err(ProxyError::Malformed("v1 protocol and address family disagree")),
    }
}

/// Parses a v2 header's command, family and address block.
pub fn parse_v2(version_command: u8, family: u8, body: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
    if version_command >> 4 != 2 {
        return Err(ProxyError::Malformed("v2 version is not 2"));
    }
    match version_command & 0x0F {
        0 => return Ok(None), // LOCAL: the proxy's own connection (health checks)
        1 => {}
        _ => return Err(ProxyError::Malformed("v2 command")),
    }
    match family {
        0x11 => {
            let bytes: [u8; 12] = body
                .get(..12)
                .and_then(|b| b.try_into().ok())
                .ok_or(ProxyError::Malformed("v2 TCP4 block"))?;
            let address = Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]);
            let port = u16::from_be_bytes([bytes[8], bytes[9]]);
            Ok(Some(SocketAddr::new(address.into(), port)))
        }
        0x21 => {
            let bytes: [u8; 36] = body
                .get(..36)
                .and_then(|b| b.try_into().ok())
                .ok_or(ProxyError::Malformed("v2 TCP6 block"))?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&bytes[..16]);
            let port = u16::from_be_bytes([bytes[32], bytes[33]]);
            Ok(Some(SocketAddr::new(Ipv6Addr::from(octets).into(), port)))
        }
        // UNSPEC, UDP or UNIX: keep the connection's own address.
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn v1_and_v2_headers_and_exactly_their_bytes() {
        let mut input: &[u8] = b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 1883\r\n\x10rest";
        let addr = read_header(&mut input).await.unwrap();
        assert_eq!(addr, Some("203.0.113.7:51000".parse().unwrap()));
        assert_eq!(input, b"\x10rest", "the client's bytes are left unread");

        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend([0x21, 0x11, 0, 12, 198, 51, 100, 9, 10, 0, 0, 1, 0xC3, 0x50, 0x07, 0x5B]);
        v2.extend(b"\x10more");
        let mut input = &v2[..];
        assert_eq!(read_header(&mut input).await.unwrap(), Some("198.51.100.9:50000".parse().unwrap()));
        assert_eq!(input, b"\x10more");

        let mut local = V2_SIGNATURE.to_vec();
        local.extend([0x20, 0x00, 0, 0]);
        assert_eq!(read_header(&mut &local[..]).await.unwrap(), None);
        assert_eq!(read_header(&mut &b"PROXY UNKNOWN\r\n"[..]).await.unwrap(), None);
    }

    #[tokio::test]
    async fn anything_else_is_refused() {
        for bad in [
            &b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
            b"PROXY TCP4 not-an-ip 5.6.7.8 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        ] {
            assert!(read_header(&mut &bad[..]).await.is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let long = format!("PROXY TCP4 {}\r\n", "1".repeat(200));
        assert!(matches!(read_header(&mut long.as_bytes()).await, Err(ProxyError::Malformed(_))));
        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend([0x21, 0x11, 0xFF, 0xFF]);
        assert!(matches!(read_header(&mut &v2[..]).await, Err(ProxyError::Malformed(_))));
        let mut short = V2_SIGNATURE.to_vec();
        short.extend([0x21, 0x11, 0, 4, 1, 2, 3, 4]);
        assert!(read_header(&mut &short[..]).await.is_err());
    }
}
