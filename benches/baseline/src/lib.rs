//! The physical-limit baseline: the least work any MQTT broker must do to
//! move `mqtt-bench`'s messages, on the same sockets, so that each mqttd
//! figure can be reported as a fraction of it (issue 9).
//!
//! What it does, for every connection: read and frame MQTT packets (fixed
//! header and remaining length, nothing decoded that need not be); answer
//! CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ and the publisher's side of QoS
//! 1/2 with fixed, pre-encoded replies; and forward every PUBLISH frame, as
//! received, to every connection that has subscribed to anything. There is
//! no topic matching, no session, no retained store, no auth, no
//! keep-alive timer and no in-flight tracking.
//!
//! Why it is a fair ceiling: a broker must at least read each message,
//! find where it ends, and write its bytes to each recipient's socket; this
//! program does exactly that and nothing more. A frame is cut out of the
//! read buffer without copying (`BytesMut::split_to`), shared by every
//! recipient as one [`Bytes`], never re-encoded, and written with vectored
//! writes of up to [`MAX_IOV`] frames, as many as have queued while the
//! socket drained. Yet it keeps the two duties whose absence would make any
//! number meaningless: it loses nothing (a recipient's queue is bounded by
//! [`OUTBOX_BYTES`]; when it is full the publisher is not read until it
//! drains, so TCP pushes back on the publisher), and it keeps each
//! publisher's order (one queue per recipient, filled by one publisher at
//! a time per batch).
//!
//! QoS: a QoS 1 PUBLISH is answered with PUBACK and a QoS 2 one with PUBREC
//! (PUBREL with PUBCOMP); the frame is forwarded at the lesser of its QoS
//! and the recipient's granted QoS, which is at most 1 (a QoS 2 request is
//! granted 1). A forwarded QoS 1 frame carries a packet id from one global
//! counter, written into the frame in place; the recipient's PUBACKs are
//! read and dropped, nothing is kept for resending (so ids are unique per
//! recipient only while fewer than 65,535 are unacknowledged). Only a QoS 1
//! frame sent to a QoS 0 recipient is rebuilt (without its packet id).
//!
//! One socket tweak besides TCP_NODELAY: while a frame larger than 16 KiB
//! is still arriving, the connection asks for immediate ACKs
//! (TCP_QUICKACK). Without it, messages over 64 KiB from mqtt-bench (whose
//! publishers keep a small send buffer, about one loopback segment) stalled
//! 40 ms each on Linux's delayed ACK.
//!
//! Both MQTT 3.1.1 and 5.0 clients are answered (5.0 replies carry empty
//! properties), but a frame goes out as its publisher encoded it, so all
//! clients of a run must speak the same version, as mqtt-bench's do.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, TryAcquireError};

/// Bytes queued for one connection and not yet written, at most: a sender
/// waits for room (and reads nothing from its own socket meanwhile).
pub const OUTBOX_BYTES: usize = 1 << 20;
/// The largest packet accepted; a larger one closes the connection.
pub const MAX_PACKET: usize = 512 * 1024;
/// Frames per vectored write at most.
pub const MAX_IOV: usize = 512;
/// A frame larger than this that is still arriving gets the ACKs of its
/// segments sent at once (see [`Connection::read_loop`]).
const QUICKACK_FRAME: usize = 16 * 1024;
/// Room made in a read buffer before each read.
const READ_CHUNK: usize = 64 * 1024;
/// Frames read are forwarded once they add up to this many bytes, or at the
/// end of each read, whichever comes first.
const FORWARD_BATCH: usize = 64 * 1024;

const CONNACK_V4: &[u8] = &[0x20, 0x02, 0x00, 0x00];
const CONNACK_V5: &[u8] = &[0x20, 0x03, 0x00, 0x00, 0x00];
const PINGRESP: &[u8] = &[0xD0, 0x00];

/// The scenario the baseline is run for. All are served by one
/// forwarding path, which already does what each needs: a writer writes as
/// soon as its socket takes bytes, so a lone frame goes out at once
/// (latency), and whatever queued while the socket drained goes out in the
/// next write (fan-out, fan-in). Letting other tasks run before each write,
/// to gather more frames, made no difference in CPU per message, so the
/// mode only names the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// One publisher, many subscribers.
    Fanout,
    /// Many publishers, one subscriber.
    Fanin,
    /// A paced flow whose send-to-receive time is measured.
    Latency,
    /// Connections opened and held: CONNECT answered with CONNACK (and
    /// SUBSCRIBE with SUBACK), the least a connect storm costs.
    Conn,
}

/// Accepts connections on `listener` and serves them until the task is
/// dropped.
pub async fn serve(listener: TcpListener, _mode: Mode) -> io::Result<()> {
    let broker =
        Arc::new(Broker { subscribers: Mutex::new(Arc::new(Vec::new())), packet_ids: AtomicU32::new(0) });
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(stream, broker.clone()));
            }
            // Out of descriptors, or a connection reset before accept:
            // wait a little rather than spin.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// What every connection shares.
struct Broker {
    /// Every connection that has subscribed; replaced, never edited in
    /// place, so that a publisher can hold a snapshot across its awaits.
    subscribers: Mutex<Arc<Vec<Arc<Outbox>>>>,
    /// Source of the packet ids of forwarded QoS 1 frames.
    packet_ids: AtomicU32,
}

impl Broker {
    fn subscribers(&self) -> Arc<Vec<Arc<Outbox>>> {
        self.subscribers.lock().clone()
    }

    fn add(&self, outbox: &Arc<Outbox>) {
        let mut subscribers = self.subscribers.lock();
        if !subscribers.iter().any(|known| Arc::ptr_eq(known, outbox)) {
            let mut next = Vec::clone(&subscribers);
            next.push(outbox.clone());
            *subscribers = Arc::new(next);
        }
    }

    fn remove(&self, outbox: &Arc<Outbox>) {
        let mut subscribers = self.subscribers.lock();
        if subscribers.iter().any(|known| Arc::ptr_eq(known, outbox)) {
            let next = subscribers.iter().filter(|known| !Arc::ptr_eq(known, outbox)).cloned().collect();
            *subscribers = Arc::new(next);
        }
    }

    /// The next packet id for a forwarded QoS 1 frame: 1 to 65535 in turn.
    fn next_packet_id(&self) -> u16 {
        let n = self.packet_ids.fetch_add(1, Ordering::Relaxed) % 65_535;
        u16::try_from(n + 1).unwrap_or(u16::MAX)
    }
}

/// The bounded queue of frames to write to one connection, shared by its
/// writer task and every task that sends to it.
struct Outbox {
    frames: Mutex<VecDeque<Bytes>>,
    /// Wakes the writer when frames arrive in an empty queue, or on close.
    ready: Notify,
    /// One permit per byte of room: senders take them, the writer gives
    /// them back as bytes leave. Closed with the connection.
    room: Semaphore,
    closed: AtomicBool,
    /// The highest QoS granted to this connection's subscriptions.
    qos: AtomicU8,
}

impl Outbox {
    fn new() -> Outbox {
        Outbox {
            frames: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            room: Semaphore::new(OUTBOX_BYTES),
            closed: AtomicBool::new(false),
            qos: AtomicU8::new(0),
        }
    }

    /// Queues `frames` once there is room for them; `false` if the
    /// connection has closed (the frames are then dropped, as there is no
    /// one to deliver them to). `frames` add up to at most
    /// [`FORWARD_BATCH`] + [`MAX_PACKET`] bytes, less than [`OUTBOX_BYTES`].
    async fn push(&self, frames: &[Bytes]) -> bool {
        let bytes: usize = frames.iter().map(Bytes::len).sum();
        debug_assert!(bytes <= OUTBOX_BYTES);
        let permits = u32::try_from(bytes).unwrap_or(u32::MAX);
        match self.room.try_acquire_many(permits) {
            Ok(taken) => taken.forget(),
            Err(TryAcquireError::Closed) => return false,
            Err(TryAcquireError::NoPermits) => match self.room.acquire_many(permits).await {
                Ok(taken) => taken.forget(),
                Err(_) => return false,
            },
        }
        let was_empty = {
            let mut queue = self.frames.lock();
            let was_empty = queue.is_empty();
            queue.extend(frames.iter().cloned());
            was_empty
        };
        if was_empty {
            self.ready.notify_one();
        }
        true
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.room.close();
        self.frames.lock().clear();
        self.ready.notify_one();
    }
}

async fn serve_connection(stream: TcpStream, broker: Arc<Broker>) {
    if stream.set_nodelay(true).is_err() {
        return;
    }
    let (reader, writer) = stream.into_split();
    let outbox = Arc::new(Outbox::new());
    let writing = tokio::spawn(write_loop(writer, outbox.clone()));
    let mut connection = Connection {
        broker: broker.clone(),
        outbox: outbox.clone(),
        version: None,
        forward: Vec::new(),
        forward_bytes: 0,
        has_qos1: false,
        replies: BytesMut::new(),
    };
    // An error only ends this connection; there is no one to report it to.
    let _ = connection.read_loop(reader).await;
    broker.remove(&outbox);
    outbox.close();
    writing.abort();
}

/// Writes what is queued for one connection, up to [`MAX_IOV`] frames per
/// write, for as long as the connection lasts.
async fn write_loop(writer: OwnedWriteHalf, outbox: Arc<Outbox>) -> io::Result<()> {
    let mut pending: VecDeque<Bytes> = VecDeque::with_capacity(MAX_IOV);
    loop {
        if pending.len() < MAX_IOV {
            let mut queue = outbox.frames.lock();
            let take = (MAX_IOV - pending.len()).min(queue.len());
            pending.extend(queue.drain(..take));
        }
        if pending.is_empty() {
            if outbox.closed.load(Ordering::Acquire) {
                return Ok(());
            }
            outbox.ready.notified().await;
            continue;
        }
        let written = match write_some(&writer, &pending).await {
            Ok(written) => written,
            Err(error) => {
                outbox.close();
                return Err(error);
            }
        };
        outbox.room.add_permits(written);
        let mut left = written;
        while left > 0 {
            let Some(front) = pending.front_mut() else { break };
            if front.len() <= left {
                left -= front.len();
                pending.pop_front();
            } else {
                front.advance(left);
                left = 0;
            }
        }
    }
}

/// One vectored write of the first [`MAX_IOV`] of `frames`, once the socket
/// takes any; returns the bytes written.
async fn write_some(writer: &OwnedWriteHalf, frames: &VecDeque<Bytes>) -> io::Result<usize> {
    loop {
        let result = {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let count = frames.len().min(MAX_IOV);
            for (slice, frame) in slices.iter_mut().zip(frames) {
                *slice = IoSlice::new(frame);
            }
            writer.try_write_vectored(&slices[..count])
        };
        match result {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => return Ok(written),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => writer.writable().await?,
            Err(error) => return Err(error),
        }
    }
}

/// The reading side of one connection.
struct Connection {
    broker: Arc<Broker>,
    /// This connection's own queue: its replies, and deliveries once it
    /// subscribes.
    outbox: Arc<Outbox>,
    /// The protocol level from CONNECT (4 or 5); `None` before it.
    version: Option<u8>,
    /// PUBLISH frames read and not yet forwarded, in order.
    forward: Vec<Bytes>,
    forward_bytes: usize,
    /// Whether `forward` holds a QoS 1 frame.
    has_qos1: bool,
    /// Replies to this connection not yet queued.
    replies: BytesMut,
}

impl Connection {
    async fn read_loop(&mut self, mut reader: OwnedReadHalf) -> anyhow::Result<()> {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        loop {
            if buf.capacity() - buf.len() < READ_CHUNK / 2 {
                buf.reserve(READ_CHUNK);
            }
            if reader.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
            while let Some((header, total)) = frame_len(&buf)? {
                if buf.len() < total {
                    buf.reserve(total - buf.len());
                    if total > QUICKACK_FRAME {
                        // Loopback's MSS is 64 KiB, so a publisher with a
                        // small send buffer (mqtt-bench's) has one segment
                        // out and waits for its ACK, which Linux delays by
                        // 40 ms after a lone full segment: ask for it now.
                        reader.as_ref().set_quickack(true)?;
                    }
                    break;
                }
                let frame = buf.split_to(total);
                let more = self.on_frame(frame, header).await?;
                if !more {
                    return Ok(());
                }
                if self.forward_bytes >= FORWARD_BATCH {
                    self.flush().await;
                }
            }
            self.flush().await;
        }
    }

    /// Handles one packet; `false` when the connection should close.
    async fn on_frame(&mut self, mut frame: BytesMut, header: usize) -> anyhow::Result<bool> {
        let kind = frame[0] >> 4;
        let Some(version) = self.version else {
            if kind != 1 {
                bail!("the first packet is not CONNECT");
            }
            let body = &frame[header..];
            let name_len = usize::from(read_u16(body, 0)?);
            let level = *body.get(2 + name_len).context("CONNECT too short")?;
            self.version = Some(level);
            self.replies.put_slice(if level >= 5 { CONNACK_V5 } else { CONNACK_V4 });
            return Ok(true);
        };
        match kind {
            3 => self.on_publish(frame, header)?,
            // A recipient's PUBACK for a forwarded QoS 1 frame: nothing is
            // kept for resending, so there is nothing to release.
            4 => {}
            // PUBREL of a QoS 2 publish: complete it.
            6 => {
                let id = read_u16(&frame, header)?;
                self.replies.put_slice(&[0x70, 0x02]);
                self.replies.put_u16(id);
            }
            8 => {
                let body = frame.split_off(header);
                self.on_subscribe(&body, version).await?;
            }
            10 => {
                let body = &frame[header..];
                let id = read_u16(body, 0)?;
                let filters = count_filters(body, version, false)?;
                self.replies.put_u8(0xB0);
                if version >= 5 {
                    put_remaining_length(&mut self.replies, 3 + filters.len());
                    self.replies.put_u16(id);
                    self.replies.put_u8(0);
                    self.replies.put_bytes(0, filters.len());
                } else {
                    self.replies.put_slice(&[0x02]);
                    self.replies.put_u16(id);
                }
                self.broker.remove(&self.outbox);
            }
            12 => self.replies.put_slice(PINGRESP),
            14 => {
                self.flush().await;
                return Ok(false);
            }
            other => bail!("unexpected packet type {other}"),
        }
        Ok(true)
    }

    fn on_publish(&mut self, mut frame: BytesMut, header: usize) -> anyhow::Result<()> {
        let qos = (frame[0] >> 1) & 0x03;
        // Deliveries carry neither DUP nor RETAIN (there is no retained
        // store); QoS 2 is forwarded at QoS 1.
        frame[0] &= !0x09;
        if qos > 0 {
            if qos == 3 {
                bail!("PUBLISH with QoS 3");
            }
            let id_at = header + 2 + usize::from(read_u16(&frame, header)?);
            let id = read_u16(&frame, id_at)?;
            self.replies.put_u8(if qos == 1 { 0x40 } else { 0x50 });
            self.replies.put_u8(0x02);
            self.replies.put_u16(id);
            if qos == 2 {
                frame[0] = (frame[0] & !0x06) | 0x02;
            }
            let ours = self.broker.next_packet_id().to_be_bytes();
            frame[id_at..id_at + 2].copy_from_slice(&ours);
            self.has_qos1 = true;
        }
        self.forward_bytes += frame.len();
        self.forward.push(frame.freeze());
        Ok(())
    }

    async fn on_subscribe(&mut self, body: &[u8], version: u8) -> anyhow::Result<()> {
        let id = read_u16(body, 0)?;
        let granted: Vec<u8> =
            count_filters(body, version, true)?.into_iter().map(|options| (options & 0x03).min(1)).collect();
        self.replies.put_u8(0x90);
        let properties = usize::from(version >= 5);
        put_remaining_length(&mut self.replies, 2 + properties + granted.len());
        self.replies.put_u16(id);
        if version >= 5 {
            self.replies.put_u8(0);
        }
        self.replies.put_slice(&granted);
        // The SUBACK is queued before the first delivery can be.
        self.flush().await;
        let highest = granted.iter().copied().max().unwrap_or(0);
        self.outbox.qos.fetch_max(highest, Ordering::Relaxed);
        self.broker.add(&self.outbox);
        Ok(())
    }

    /// Queues the frames read so far for every subscriber, then this
    /// connection's replies, waiting for room where a queue is full.
    async fn flush(&mut self) {
        if !self.forward.is_empty() {
            let subscribers = self.broker.subscribers();
            let mut downgraded: Option<Vec<Bytes>> = None;
            for subscriber in subscribers.iter() {
                let frames = if self.has_qos1 && subscriber.qos.load(Ordering::Relaxed) == 0 {
                    downgraded.get_or_insert_with(|| self.forward.iter().map(at_qos0).collect())
                } else {
                    &self.forward
                };
                subscriber.push(frames).await;
            }
            self.forward.clear();
            self.forward_bytes = 0;
            self.has_qos1 = false;
        }
        if !self.replies.is_empty() {
            let replies = self.replies.split().freeze();
            self.outbox.push(&[replies]).await;
        }
    }
}

/// The header length and total length of the frame at the start of `buf`,
/// once its fixed header is there (the rest may not be yet).
fn frame_len(buf: &[u8]) -> anyhow::Result<Option<(usize, usize)>> {
    let mut remaining = 0usize;
    for index in 0..4 {
        let Some(&byte) = buf.get(1 + index) else { return Ok(None) };
        remaining |= usize::from(byte & 0x7F) << (7 * index);
        if byte & 0x80 == 0 {
            if remaining > MAX_PACKET {
                bail!("packet of {remaining} bytes, more than {MAX_PACKET}");
            }
            let header = 2 + index;
            return Ok(Some((header, header + remaining)));
        }
    }
    bail!("malformed remaining length")
}

/// A QoS 1 PUBLISH frame rebuilt at QoS 0 (without its packet id); a QoS 0
/// frame as it is.
fn at_qos0(frame: &Bytes) -> Bytes {
    if frame[0] & 0x06 == 0 {
        return frame.clone();
    }
    // The frame was checked when it was read.
    let (header, _) = frame_len(frame).ok().flatten().unwrap_or((2, frame.len()));
    let id_at = header + 2 + usize::from(read_u16(frame, header).unwrap_or(0));
    let mut out = BytesMut::with_capacity(frame.len());
    out.put_u8(frame[0] & !0x06);
    put_remaining_length(&mut out, frame.len() - header - 2);
    out.put_slice(&frame[header..id_at]);
    out.put_slice(&frame[id_at + 2..]);
    out.freeze()
}

/// The options byte of each filter of a SUBSCRIBE (`with_options`) or
/// UNSUBSCRIBE body (then each entry is 0).
fn count_filters(body: &[u8], version: u8, with_options: bool) -> anyhow::Result<Vec<u8>> {
    let mut at = 2;
    if version >= 5 {
        let (properties, len) = read_remaining_length(&body[at.min(body.len())..])?;
        at += len + properties;
    }
    let mut filters = Vec::new();
    while at < body.len() {
        at += 2 + usize::from(read_u16(body, at)?);
        if with_options {
            filters.push(*body.get(at).context("filter without options")?);
            at += 1;
        } else {
            filters.push(0);
        }
    }
    if at > body.len() || filters.is_empty() {
        bail!("malformed filter list");
    }
    Ok(filters)
}

fn read_u16(buf: &[u8], at: usize) -> anyhow::Result<u16> {
    match buf.get(at..at + 2) {
        Some(&[high, low]) => Ok(u16::from_be_bytes([high, low])),
        _ => bail!("packet too short"),
    }
}

/// A variable byte integer at the start of `buf`, and its length.
fn read_remaining_length(buf: &[u8]) -> anyhow::Result<(usize, usize)> {
    let mut value = 0usize;
    for (index, &byte) in buf.iter().take(4).enumerate() {
        value |= usize::from(byte & 0x7F) << (7 * index);
        if byte & 0x80 == 0 {
            return Ok((value, index + 1));
        }
    }
    bail!("malformed variable byte integer")
}

fn put_remaining_length(out: &mut BytesMut, mut value: usize) {
    loop {
        let byte = (value % 128) as u8;
        value /= 128;
        if value == 0 {
            out.put_u8(byte);
            return;
        }
        out.put_u8(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lengths_are_read_from_the_fixed_header() {
        assert_eq!(frame_len(&[]).unwrap(), None);
        assert_eq!(frame_len(&[0x30]).unwrap(), None);
        assert_eq!(frame_len(&[0x30, 0x80]).unwrap(), None);
        assert_eq!(frame_len(&[0xC0, 0x00]).unwrap(), Some((2, 2)));
        assert_eq!(frame_len(&[0x30, 0x03, 1]).unwrap(), Some((2, 5)));
        assert_eq!(frame_len(&[0x30, 0x80, 0x01]).unwrap(), Some((3, 131)));
        assert!(frame_len(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F]).is_err(), "over MAX_PACKET");
        assert!(frame_len(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]).is_err());
    }

    #[test]
    fn a_qos1_frame_loses_its_packet_id_at_qos0() {
        // QoS 1, topic "ab", packet id 7, payload "xyz".
        let frame = Bytes::from_static(&[0x32, 0x09, 0, 2, b'a', b'b', 0, 7, b'x', b'y', b'z']);
        assert_eq!(&at_qos0(&frame)[..], &[0x30, 0x07, 0, 2, b'a', b'b', b'x', b'y', b'z']);
    }

    #[test]
    fn remaining_lengths_round_trip() {
        for value in [0, 127, 128, 16_383, 16_384, 2_097_151] {
            let mut out = BytesMut::new();
            put_remaining_length(&mut out, value);
            assert_eq!(read_remaining_length(&out).unwrap(), (value, out.len()));
        }
    }
}
