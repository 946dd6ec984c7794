//! `TimedChannel`: a tonic `Channel` that notes when the first byte of a
//! response body arrives and how many body bytes came, so the snapshot step
//! can tell the member's time to build and encode a snapshot (time to first
//! byte) from the transfer and decoding that follow.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body as HttpBody, Frame, SizeHint};
use parking_lot::Mutex;
use tonic::body::Body;
use tonic::codegen::{http, BoxFuture, Service};
use tonic::transport::Channel;

/// What the body of the responses carried, and when it started.
#[derive(Default)]
pub struct Probe {
    first_byte: Mutex<Option<Instant>>,
    bytes: AtomicU64,
}

impl Probe {
    fn record(&self, len: usize) {
        let mut first_byte = self.first_byte.lock();
        if first_byte.is_none() {
            *first_byte = Some(Instant::now());
        }
        drop(first_byte);
        self.bytes.fetch_add(len as u64, Ordering::Relaxed);
    }

    /// When the first body byte arrived, if one did.
    pub fn first_byte(&self) -> Option<Instant> {
        *self.first_byte.lock()
    }

    /// Body bytes received (gRPC framing included).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
pub struct TimedChannel {
    inner: Channel,
    probe: Arc<Probe>,
}

impl TimedChannel {
    pub fn new(inner: Channel) -> (TimedChannel, Arc<Probe>) {
        let probe = Arc::new(Probe::default());
        (TimedChannel { inner, probe: probe.clone() }, probe)
    }
}

impl Service<http::Request<Body>> for TimedChannel {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let probe = self.probe.clone();
        let call = Service::call(&mut self.inner, request);
        Box::pin(async move {
            let response = call.await?;
            Ok(response.map(|inner| Body::new(TimedBody { inner, probe })))
        })
    }
}

struct TimedBody {
    inner: Body,
    probe: Arc<Probe>,
}

impl HttpBody for TimedBody {
    type Data = tonic::codegen::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.probe.record(data.len());
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
