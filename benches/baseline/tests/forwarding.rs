//! The baseline over real sockets: handshakes, byte-identical forwarding to
//! every subscriber, QoS 1, and back-pressure without loss.

use std::net::SocketAddr;
use std::time::Duration;

use baseline::Mode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

async fn start() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(baseline::serve(listener, Mode::Fanout));
    addr
}

async fn read_exactly(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    timeout(WAIT, stream.read_exact(&mut buf)).await.expect("read timed out").unwrap();
    buf
}

/// An MQTT 3.1.1 client, connected: CONNECT answered by CONNACK.
async fn connect(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let connect = [0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 1, b'c'];
    stream.write_all(&connect).await.unwrap();
    assert_eq!(read_exactly(&mut stream, 4).await, [0x20, 0x02, 0x00, 0x00], "CONNACK");
    stream
}

/// Subscribes to "t" at `qos` and checks the SUBACK.
async fn subscribe(stream: &mut TcpStream, packet_id: u16, qos: u8) {
    let [high, low] = packet_id.to_be_bytes();
    stream.write_all(&[0x82, 6, high, low, 0, 1, b't', qos]).await.unwrap();
    assert_eq!(read_exactly(stream, 5).await, [0x90, 0x03, high, low, qos.min(1)], "SUBACK");
}

/// A PUBLISH on "t" at QoS 0 (no packet id) or 1 (with one).
fn publish(qos: u8, packet_id: u16, payload: &[u8]) -> Vec<u8> {
    let id_len = if qos > 0 { 2 } else { 0 };
    let remaining = 3 + id_len + payload.len();
    let mut frame = vec![0x30 | (qos << 1)];
    let mut value = remaining;
    loop {
        let byte = (value % 128) as u8;
        value /= 128;
        frame.push(if value > 0 { byte | 0x80 } else { byte });
        if value == 0 {
            break;
        }
    }
    frame.extend_from_slice(&[0, 1, b't']);
    if qos > 0 {
        frame.extend_from_slice(&packet_id.to_be_bytes());
    }
    frame.extend_from_slice(payload);
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_reaches_every_subscriber_byte_identical() {
    let addr = start().await;
    let mut first = connect(addr).await;
    let mut second = connect(addr).await;
    subscribe(&mut first, 7, 0).await;
    subscribe(&mut second, 0x0102, 0).await;
    let mut publisher = connect(addr).await;

    // Sizes around the one- and two-byte remaining lengths.
    let frames: Vec<u8> = [0usize, 5, 124, 125, 300, 20_000]
        .into_iter()
        .flat_map(|size| publish(0, 0, &vec![size as u8; size]))
        .collect();
    publisher.write_all(&frames).await.unwrap();
    publisher.write_all(&[0xC0, 0x00]).await.unwrap();
    assert_eq!(read_exactly(&mut publisher, 2).await, [0xD0, 0x00], "PINGRESP");

    assert_eq!(read_exactly(&mut first, frames.len()).await, frames);
    assert_eq!(read_exactly(&mut second, frames.len()).await, frames);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_is_acknowledged_and_forwarded_at_the_granted_qos() {
    let addr = start().await;
    let mut at_qos1 = connect(addr).await;
    let mut at_qos0 = connect(addr).await;
    subscribe(&mut at_qos1, 1, 1).await;
    subscribe(&mut at_qos0, 1, 0).await;
    let mut publisher = connect(addr).await;

    // DUP set: it is not forwarded.
    let mut frame = publish(1, 0x1234, b"hello");
    frame[0] |= 0x08;
    publisher.write_all(&frame).await.unwrap();
    assert_eq!(read_exactly(&mut publisher, 4).await, [0x40, 0x02, 0x12, 0x34], "PUBACK");

    let delivered = read_exactly(&mut at_qos1, frame.len()).await;
    assert_eq!(delivered[..5], [0x32, 10, 0, 1, b't']);
    assert_ne!(delivered[5..7], [0, 0], "a packet id of our own");
    assert_eq!(&delivered[7..], b"hello");
    // The recipient's PUBACK is read and dropped.
    at_qos1.write_all(&[0x40, 0x02, delivered[5], delivered[6]]).await.unwrap();

    assert_eq!(read_exactly(&mut at_qos0, frame.len() - 2).await, publish(0, 0, b"hello"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_does_not_read_holds_the_publisher_back_and_loses_nothing() {
    let addr = start().await;
    let mut subscriber = connect(addr).await;
    subscribe(&mut subscriber, 1, 0).await;
    let mut publisher = connect(addr).await;

    // 80 MB: more than the baseline's queue and both kernels' buffers.
    const MESSAGES: u32 = 800_000;
    const PAYLOAD: usize = 96;
    let sending = tokio::spawn(async move {
        let mut batch = Vec::new();
        for sequence in 0..MESSAGES {
            let mut payload = [0u8; PAYLOAD];
            payload[..4].copy_from_slice(&sequence.to_be_bytes());
            batch.extend_from_slice(&publish(0, 0, &payload));
            if batch.len() >= 64 * 1024 {
                publisher.write_all(&batch).await.unwrap();
                batch.clear();
            }
        }
        publisher.write_all(&batch).await.unwrap();
        publisher
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!sending.is_finished(), "the publisher was not held back");

    let frame_len = publish(0, 0, &[0; PAYLOAD]).len();
    let mut buf = vec![0u8; frame_len * 1024];
    let mut next = 0u32;
    while next < MESSAGES {
        let want = frame_len * usize::try_from((MESSAGES - next).min(1024)).unwrap();
        timeout(WAIT, subscriber.read_exact(&mut buf[..want])).await.expect("read timed out").unwrap();
        for frame in buf[..want].chunks(frame_len) {
            assert_eq!(frame[..5], [0x30, (frame_len - 2) as u8, 0, 1, b't']);
            assert_eq!(frame[5..9], next.to_be_bytes(), "lost or reordered");
            next += 1;
        }
    }
    timeout(WAIT, sending).await.expect("the publisher did not finish").unwrap();
}
