//! One MQTT connection: a TCP socket, its read buffer and a batching writer.
//!
//! The client owns its buffers, as mini-redis's `Connection` does: packets
//! are decoded from the front of the read buffer by `mqtt_codec::decode`,
//! and packets to send are encoded into the write buffer, which is written
//! with as few `write` calls as the socket allows. Callers queue as many
//! packets as they can before writing, so a burst of publishes or acks costs
//! one syscall.
//!
//! Writing is measured in progress, not in batches: the client counts the
//! bytes queued and written since it connected, and remembers where each
//! queued packet ends, so a caller can tell which packets went out and drop
//! the ones that did not (never a packet the broker has seen part of). A
//! broker that takes bytes slowly is slow; only one that takes nothing for
//! a whole timeout is an error.
//!
//! Invariants: every wait on the network takes a deadline, so no call here
//! can block forever; [`Client::recv`] and [`Client::write_some`] are
//! cancel-safe (they only move bytes between the socket and the buffers), so
//! they may sit in a `select!`.

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::{Buf, BytesMut};
use mqtt_codec::{
    ConnAck, Connect, ConnectProperties, Disconnect, Packet, ProtocolVersion, Publish, ReasonCode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
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
    /// SO_SNDBUF to ask for (the kernel doubles it); `None` keeps the
    /// kernel's auto-tuned buffer, which grows to megabytes. Publishers ask
    /// for a small one, so that what they have written is soon read by the
    /// broker, and so that the socket turns writable again as soon as the
    /// broker takes a little (Linux wakes a writer once half the buffer is
    /// free): a slow broker then shows as slow progress, not as none.
    pub send_buffer: Option<u32>,
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
    /// Bytes written to the socket since the connection opened; the write
    /// buffer holds the bytes from here on.
    written: u64,
    /// Where each packet in the write buffer ends (counted like `written`),
    /// oldest first; only packets not yet wholly written are kept.
    packet_ends: VecDeque<u64>,
    /// Where the last wholly written packet ends: `written` is past it while
    /// a packet is partly written.
    completed: u64,
}

/// What [`Client::read_or_write`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// Bytes were read into the read buffer.
    Read,
    /// Queued bytes were written.
    Wrote,
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
        let opening = open_socket(request.broker.addr, request.source, request.send_buffer);
        let stream = timeout_at(request.deadline, opening)
            .await
            .map_err(|_| anyhow!("TCP connect to {} timed out", request.broker.addr))??;
        let mut client = Client {
            stream,
            read_buf: BytesMut::with_capacity(request.read_chunk),
            write_buf: BytesMut::with_capacity(256),
            version: request.broker.version,
            read_chunk: request.read_chunk,
            server_receive_maximum: u16::MAX,
            written: 0,
            packet_ends: VecDeque::new(),
            completed: 0,
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

    /// Encodes `packet` into the write buffer; [`Client::flush`] or
    /// [`Client::write_some`] sends it.
    pub fn queue(&mut self, packet: &Packet) -> anyhow::Result<()> {
        mqtt_codec::encode(packet, self.version, &mut self.write_buf).context("encoding a packet")?;
        self.packet_ends.push_back(self.queued());
        Ok(())
    }

    /// Encodes a PUBLISH into the write buffer and returns where it ends (in
    /// the count of [`Client::queued`]): it is sent once
    /// [`Client::written`] reaches that.
    pub fn queue_publish(&mut self, publish: &Publish) -> anyhow::Result<u64> {
        mqtt_codec::encode_publish(publish, self.version, &mut self.write_buf)
            .context("encoding a PUBLISH")?;
        let end = self.queued();
        self.packet_ends.push_back(end);
        Ok(end)
    }

    /// Bytes queued and not yet written.
    pub fn pending_bytes(&self) -> usize {
        self.write_buf.len()
    }

    /// Bytes written since the connection opened.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Bytes queued since the connection opened, written or not.
    pub fn queued(&self) -> u64 {
        self.written + self.write_buf.len() as u64
    }

    /// Drops every queued packet the broker has seen nothing of; a packet
    /// partly written stays, since the stream must go on with its rest.
    pub fn discard_unwritten(&mut self) {
        let partly_written = self.written > self.completed;
        let keep = match self.packet_ends.front() {
            Some(&end) if partly_written => end - self.written,
            _ => 0,
        };
        self.write_buf.truncate(usize::try_from(keep).unwrap_or(usize::MAX));
        self.packet_ends.truncate(usize::from(keep > 0));
    }

    /// One `write` of what is queued, when the socket takes it; returns the
    /// number of bytes written. Cancel-safe.
    pub async fn write_some(&mut self) -> anyhow::Result<usize> {
        if self.write_buf.is_empty() {
            return Ok(0);
        }
        let written = self.stream.write(&self.write_buf).await.context("writing to the broker")?;
        if written == 0 {
            bail!("the broker closed the connection");
        }
        self.advance_written(written);
        Ok(written)
    }

    /// Writes what is queued until the buffer is empty (`true`) or
    /// `give_up` passes (`false`). Fails if the broker takes nothing for
    /// `stall`: each bit of progress starts that wait again, so a broker that
    /// takes bytes slowly only makes this slow.
    pub async fn write_queued(&mut self, stall: Duration, give_up: Instant) -> anyhow::Result<bool> {
        while !self.write_buf.is_empty() {
            let stalled = Instant::now() + stall;
            // The write is polled before the timer, so a task that was
            // polled late still sees bytes the socket took meanwhile.
            match timeout_at(stalled.min(give_up), self.write_some()).await {
                Ok(result) => {
                    result?;
                }
                Err(_) if give_up < stalled => return Ok(false),
                Err(_) => {
                    bail!("the broker took none of {} queued bytes for {stall:?}", self.write_buf.len())
                }
            }
        }
        Ok(true)
    }

    /// Writes everything queued by `deadline`.
    pub async fn flush(&mut self, deadline: Instant) -> anyhow::Result<()> {
        while !self.write_buf.is_empty() {
            match timeout_at(deadline, self.write_some()).await {
                Ok(result) => {
                    result?;
                }
                Err(_) => bail!("the broker did not take {} queued bytes in time", self.write_buf.len()),
            }
        }
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
        self.reserve_read();
        let read = self.stream.read_buf(&mut self.read_buf).await.context("reading from the broker")?;
        if read == 0 {
            bail!("the broker closed the connection");
        }
        Ok(())
    }

    /// Reads what the socket has into the read buffer or, while bytes are
    /// queued, writes some of them, whichever the socket allows first; says
    /// which. Cancel-safe, like [`Client::fill`] and [`Client::write_some`].
    pub async fn read_or_write(&mut self) -> anyhow::Result<Transfer> {
        if self.write_buf.is_empty() {
            self.fill().await?;
            return Ok(Transfer::Read);
        }
        loop {
            let ready = self
                .stream
                .ready(Interest::READABLE | Interest::WRITABLE)
                .await
                .context("waiting on the socket")?;
            if ready.is_writable() {
                match self.stream.try_write(&self.write_buf) {
                    Ok(0) => bail!("the broker closed the connection"),
                    Ok(written) => {
                        self.advance_written(written);
                        return Ok(Transfer::Wrote);
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    Err(error) => return Err(error).context("writing to the broker"),
                }
            }
            if ready.is_readable() {
                self.reserve_read();
                match self.stream.try_read_buf(&mut self.read_buf) {
                    Ok(0) => bail!("the broker closed the connection"),
                    Ok(_) => return Ok(Transfer::Read),
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    Err(error) => return Err(error).context("reading from the broker"),
                }
            }
        }
    }

    fn reserve_read(&mut self) {
        if self.read_buf.capacity() - self.read_buf.len() < self.read_chunk / 2 {
            self.read_buf.reserve(self.read_chunk);
        }
    }

    fn advance_written(&mut self, written: usize) {
        self.write_buf.advance(written);
        self.written += written as u64;
        while let Some(&end) = self.packet_ends.front().filter(|&&end| end <= self.written) {
            self.completed = end;
            self.packet_ends.pop_front();
        }
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

async fn open_socket(
    addr: SocketAddr,
    source: Option<Ipv4Addr>,
    send_buffer: Option<u32>,
) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4().context("creating a socket")?;
    if let Some(size) = send_buffer {
        socket.set_send_buffer_size(size).context("setting SO_SNDBUF")?;
    }
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

    /// A client connected to a listener that answers CONNACK and then
    /// reads nothing; the listener's socket is returned to keep it open.
    async fn client_to_a_deaf_broker() -> (Client, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let broker = async {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut connect = [0u8; 2];
            socket.read_exact(&mut connect).await.unwrap();
            let mut rest = vec![0u8; usize::from(connect[1])];
            socket.read_exact(&mut rest).await.unwrap();
            socket.write_all(&[0x20, 2, 0, 0]).await.unwrap();
            socket
        };
        let request = ConnectRequest {
            broker: Broker { addr, version: ProtocolVersion::V311 },
            source: None,
            client_id: "t".into(),
            keep_alive: 0,
            read_chunk: 64,
            deadline: Instant::now() + Duration::from_secs(5),
            send_buffer: Some(4096),
        };
        let (client, socket) = tokio::join!(Client::connect(&request), broker);
        (client.unwrap(), socket)
    }

    #[tokio::test]
    async fn unwritten_packets_are_dropped_but_a_partly_written_one_is_kept() {
        let (mut client, _broker) = client_to_a_deaf_broker().await;
        let publish =
            Publish { topic: "t".into(), payload: bytes::Bytes::from(vec![0u8; 997]), ..Publish::default() };
        let start = client.queued();
        let mut ends = Vec::new();
        for _ in 0..20_000 {
            ends.push(client.queue_publish(&publish).unwrap());
        }
        let packet = ends[0] - start;
        let give_up = Instant::now() + Duration::from_millis(200);
        assert!(!client.write_queued(Duration::from_secs(5), give_up).await.unwrap());
        let written = client.written();
        assert!(written > start && written < client.queued());
        client.discard_unwritten();
        // What is left is the rest of the packet in progress, if any.
        assert!(client.pending_bytes() < usize::try_from(packet).unwrap());
        assert_eq!((client.queued() - start) % packet, 0);
        assert!(ends.contains(&client.queued()));
    }

    #[tokio::test]
    async fn a_broker_that_takes_nothing_is_an_error() {
        let (mut client, _broker) = client_to_a_deaf_broker().await;
        client.write_buf.extend_from_slice(&vec![0u8; 16 << 20]);
        let far = Instant::now() + Duration::from_secs(60);
        let error = client.write_queued(Duration::from_millis(300), far).await.unwrap_err();
        assert!(error.to_string().contains("took none"), "{error}");
    }

    #[test]
    fn v3_connack_codes_are_shown_as_return_codes() {
        let reason = ReasonCode::from_v3_connack(5);
        assert_eq!(reason_number(ProtocolVersion::V311, reason), "return code 5");
        assert_eq!(describe_reason(reason), "not authorized");
        assert_eq!(reason_number(ProtocolVersion::V5, ReasonCode::BANNED), "reason 0x8a");
    }
}
