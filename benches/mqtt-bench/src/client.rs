//! One MQTT connection: a TCP socket, its read buffer and a batching writer.
//!
//! The client owns its buffers, as mini-redis's `Connection` does: packets
//! are decoded from the front of the read buffer by `mqtt_codec::decode`,
//! and packets to send are encoded into the write buffer, which `flush`
//! writes with one `write_all`. Callers queue as many packets as they can
//! before flushing, so a burst of publishes or acks costs one syscall.
//!
//! Invariants: every wait on the network takes a deadline, so no call here
//! can block forever; [`Client::recv`] is cancel-safe (it only reads into
//! the buffer and decodes whole packets), so it may sit in a `select!`.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::BytesMut;
use mqtt_codec::{
    ConnAck, Connect, ConnectProperties, Disconnect, Packet, ProtocolVersion, Publish, ReasonCode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{timeout_at, Instant};

use crate::config::Broker;

/// Time allowed for the TCP handshake plus CONNECT/CONNACK.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest packet we accept from the broker.
const MAX_PACKET_SIZE: usize = 64 * 1024 * 1024;

/// How to open one connection.
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    pub broker: Broker,
    /// Local address to bind before connecting (port chosen by the kernel).
    pub source: Option<Ipv4Addr>,
    pub client_id: String,
    /// Keep alive in seconds, as sent in CONNECT.
    pub keep_alive: u16,
    /// Bytes to make room for before each read: small for idle connections,
    /// large for subscribers that read bursts.
    pub read_chunk: usize,
    /// The handshake fails if it is not done by then.
    pub deadline: Instant,
}

/// A connected MQTT client (CONNACK received and successful).
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    read_buf: BytesMut,
    write_buf: BytesMut,
    version: ProtocolVersion,
    read_chunk: usize,
    /// Receive Maximum of the broker (MQTT 5.0 CONNACK); 65535 when unsaid.
    server_receive_maximum: u16,
}

/// The source address for the `index`-th client: 127.0.0.1 .. 127.0.0.254 in
/// turn, so that many connections do not exhaust one address's ports.
pub fn source_address(index: usize) -> Ipv4Addr {
    // index % 254 < 254, so the last octet is 1..=254.
    Ipv4Addr::new(127, 0, 0, 1 + (index % 254) as u8)
}

impl Client {
    /// Opens the TCP connection, sends CONNECT and waits for a successful
    /// CONNACK.
    pub async fn connect(request: &ConnectRequest) -> anyhow::Result<Client> {
        let stream = timeout_at(request.deadline, open_socket(request.broker.addr, request.source))
            .await
            .map_err(|_| anyhow!("TCP connect to {} timed out", request.broker.addr))??;
        let mut client = Client {
            stream,
            read_buf: BytesMut::with_capacity(request.read_chunk),
            write_buf: BytesMut::with_capacity(256),
            version: request.broker.version,
            read_chunk: request.read_chunk,
            server_receive_maximum: u16::MAX,
        };
        let connect = Connect {
            protocol: request.broker.version,
            clean_start: true,
            keep_alive: request.keep_alive,
            client_id: request.client_id.clone(),
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties::default(),
        };
        client.queue(&Packet::Connect(Box::new(connect)))?;
        client.flush(request.deadline).await?;
        match client.recv(request.deadline).await? {
            Some(Packet::ConnAck(connack)) => client.accept_connack(&connack)?,
            Some(Packet::Disconnect(disconnect)) => return Err(disconnect_error(&disconnect)),
            Some(other) => bail!("expected CONNACK, got packet type {}", other.packet_type()),
            None => bail!("no CONNACK in time"),
        }
        Ok(client)
    }

    fn accept_connack(&mut self, connack: &ConnAck) -> anyhow::Result<()> {
        if connack.reason != ReasonCode::SUCCESS {
            bail!(
                "broker refused the connection: CONNACK {} ({})",
                reason_number(self.version, connack.reason),
                describe_reason(connack.reason)
            );
        }
        if let Some(maximum) = connack.properties.receive_maximum {
            self.server_receive_maximum = maximum;
        }
        Ok(())
    }

    /// How many QoS 1/2 publishes the broker lets us have unacknowledged.
    pub fn server_receive_maximum(&self) -> u16 {
        self.server_receive_maximum
    }

    /// Encodes `packet` into the write buffer; [`Client::flush`] sends it.
    pub fn queue(&mut self, packet: &Packet) -> anyhow::Result<()> {
        mqtt_codec::encode(packet, self.version, &mut self.write_buf).context("encoding a packet")
    }

    /// Encodes a PUBLISH into the write buffer.
    pub fn queue_publish(&mut self, publish: &Publish) -> anyhow::Result<()> {
        mqtt_codec::encode_publish(publish, self.version, &mut self.write_buf).context("encoding a PUBLISH")
    }

    /// Bytes queued and not yet written.
    pub fn pending_bytes(&self) -> usize {
        self.write_buf.len()
    }

    /// Writes everything queued, in one `write_all`.
    pub async fn flush(&mut self, deadline: Instant) -> anyhow::Result<()> {
        if self.write_buf.is_empty() {
            return Ok(());
        }
        match timeout_at(deadline, self.stream.write_all(&self.write_buf)).await {
            Ok(result) => result.context("writing to the broker")?,
            Err(_) => bail!("the broker did not take {} queued bytes in time", self.write_buf.len()),
        }
        self.write_buf.clear();
        Ok(())
    }

    /// The next packet already in the read buffer, if a whole one is there.
    pub fn try_decode(&mut self) -> anyhow::Result<Option<Packet>> {
        mqtt_codec::decode(&mut self.read_buf, self.version, MAX_PACKET_SIZE)
            .context("decoding a packet from the broker")
    }

    /// Waits for the next packet until `deadline`; `None` when it passes.
    /// Cancel-safe.
    pub async fn recv(&mut self, deadline: Instant) -> anyhow::Result<Option<Packet>> {
        loop {
            if let Some(packet) = self.try_decode()? {
                return Ok(Some(packet));
            }
            match timeout_at(deadline, self.fill()).await {
                Ok(result) => result?,
                Err(_) => return Ok(None),
            }
        }
    }

    /// Reads what the socket has into the read buffer. Cancel-safe: bytes
    /// are either appended or not read at all.
    pub async fn fill(&mut self) -> anyhow::Result<()> {
        if self.read_buf.capacity() - self.read_buf.len() < self.read_chunk / 2 {
            self.read_buf.reserve(self.read_chunk);
        }
        let read = self.stream.read_buf(&mut self.read_buf).await.context("reading from the broker")?;
        if read == 0 {
            bail!("the broker closed the connection");
        }
        Ok(())
    }

    /// Sends DISCONNECT and closes the socket, ignoring errors: the run is
    /// over and the broker may already have gone.
    pub async fn close(mut self, deadline: Instant) {
        if self.queue(&Packet::Disconnect(Disconnect::default())).is_ok()
            && self.flush(deadline).await.is_ok()
        {
            let _ = timeout_at(deadline, self.stream.shutdown()).await;
        }
    }
}

async fn open_socket(addr: SocketAddr, source: Option<Ipv4Addr>) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4().context("creating a socket")?;
    if let Some(source) = source {
        socket
            .bind(SocketAddr::from((source, 0)))
            .with_context(|| format!("binding the socket to {source}:0"))?;
    }
    let stream = socket.connect(addr).await.with_context(|| format!("TCP connect to {addr}"))?;
    stream.set_nodelay(true).context("setting TCP_NODELAY")?;
    Ok(stream)
}

/// The error for a DISCONNECT sent by the broker.
pub fn disconnect_error(disconnect: &Disconnect) -> anyhow::Error {
    let reason = disconnect.reason;
    match &disconnect.properties.reason_string {
        Some(text) => {
            anyhow!("the broker sent DISCONNECT 0x{:02x} ({}): {text}", reason.0, describe_reason(reason))
        }
        None => anyhow!("the broker sent DISCONNECT 0x{:02x} ({})", reason.0, describe_reason(reason)),
    }
}

/// The code as the broker sent it: a 3.1.1 return code or a 5.0 reason code.
fn reason_number(version: ProtocolVersion, reason: ReasonCode) -> String {
    if version.is_v5() {
        format!("reason 0x{:02x}", reason.0)
    } else {
        format!("return code {}", reason.to_v3_connack())
    }
}

/// A short name for the reason codes a broker is likely to send us.
pub fn describe_reason(reason: ReasonCode) -> &'static str {
    match reason {
        ReasonCode::SUCCESS => "success",
        ReasonCode::UNSPECIFIED_ERROR => "unspecified error",
        ReasonCode::MALFORMED_PACKET => "malformed packet",
        ReasonCode::PROTOCOL_ERROR => "protocol error",
        ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR => "implementation specific error",
        ReasonCode::UNSUPPORTED_PROTOCOL_VERSION => "unsupported protocol version",
        ReasonCode::CLIENT_IDENTIFIER_NOT_VALID => "client identifier not valid",
        ReasonCode::BAD_USER_NAME_OR_PASSWORD => "bad user name or password",
        ReasonCode::NOT_AUTHORIZED => "not authorized",
        ReasonCode::SERVER_UNAVAILABLE => "server unavailable",
        ReasonCode::SERVER_BUSY => "server busy",
        ReasonCode::BANNED => "banned",
        ReasonCode::SERVER_SHUTTING_DOWN => "server shutting down",
        ReasonCode::KEEP_ALIVE_TIMEOUT => "keep alive timeout",
        ReasonCode::SESSION_TAKEN_OVER => "session taken over",
        ReasonCode::TOPIC_FILTER_INVALID => "topic filter invalid",
        ReasonCode::TOPIC_NAME_INVALID => "topic name invalid",
        ReasonCode::RECEIVE_MAXIMUM_EXCEEDED => "receive maximum exceeded",
        ReasonCode::PACKET_TOO_LARGE => "packet too large",
        ReasonCode::MESSAGE_RATE_TOO_HIGH => "message rate too high",
        ReasonCode::QUOTA_EXCEEDED => "quota exceeded",
        ReasonCode::QOS_NOT_SUPPORTED => "QoS not supported",
        ReasonCode::CONNECTION_RATE_EXCEEDED => "connection rate exceeded",
        ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED => "wildcard subscriptions not supported",
        _ => "other reason",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_cycle_over_127_0_0_1_to_254() {
        assert_eq!(source_address(0), Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(source_address(253), Ipv4Addr::new(127, 0, 0, 254));
        assert_eq!(source_address(254), Ipv4Addr::new(127, 0, 0, 1));
    }

    #[test]
    fn v3_connack_codes_are_shown_as_return_codes() {
        let reason = ReasonCode::from_v3_connack(5);
        assert_eq!(reason_number(ProtocolVersion::V311, reason), "return code 5");
        assert_eq!(describe_reason(reason), "not authorized");
        assert_eq!(reason_number(ProtocolVersion::V5, ReasonCode::BANNED), "reason 0x8a");
    }
}
