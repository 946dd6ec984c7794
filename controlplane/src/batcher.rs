//! `Batcher`: coalesces route registrations and heartbeats from data-plane
//! nodes into few Raft writes.
//!
//! Requests wait in a bounded queue ([`QUEUE_CAPACITY`]); one task takes
//! whatever is queued (up to [`MAX_BATCH`]) and proposes it as one
//! `Command::Batch`. While a write is in flight new requests queue up, so
//! the busier the cluster the larger the batches: a subscribe storm is not
//! a Raft-write storm. When the queue is full, callers wait (backpressure),
//! nothing is dropped.

use tokio::sync::{mpsc, oneshot, watch};

use crate::state::{Command, Response};
use crate::writer::{WriteError, Writer};

pub(crate) const QUEUE_CAPACITY: usize = 1024;
pub(crate) const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<(u64, Response), WriteError>>;

#[derive(Clone)]
pub(crate) struct Batcher {
    queue: mpsc::Sender<(Command, Reply)>,
}

impl Batcher {
    /// Starts the batching task; it ends when `shutdown` turns true or every
    /// `Batcher` is dropped.
    pub fn spawn(writer: Writer, shutdown: watch::Receiver<bool>) -> (Self, tokio::task::JoinHandle<()>) {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let task = tokio::spawn(run(writer, receiver, shutdown));
        (Batcher { queue }, task)
    }

    /// Queues one command and waits until it is applied.
    pub async fn submit(&self, command: Command) -> Result<(u64, Response), WriteError> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((command, reply)).await.map_err(|_| WriteError::ShuttingDown)?;
        answer.await.map_err(|_| WriteError::ShuttingDown)?
    }
}

async fn run(
    writer: Writer,
    mut receiver: mpsc::Receiver<(Command, Reply)>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let first = tokio::select! {
            received = receiver.recv() => match received {
                Some(first) => first,
                None => return,
            },
            _ = shutdown.wait_for(|stopped| *stopped) => return,
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (commands, replies): (Vec<Command>, Vec<Reply>) = batch.into_iter().unzip();
        tracing::debug!(commands = commands.len(), "writing a coalesced batch");
        match writer.write(Command::Batch(commands)).await {
            Ok((index, Response::Batch(responses))) if responses.len() == replies.len() => {
                for (reply, response) in replies.into_iter().zip(responses) {
                    // A caller that left no longer needs its answer.
                    let _ = reply.send(Ok((index, response)));
                }
            }
            Ok((_, other)) => {
                let error = WriteError::Internal(format!("a batch was answered with {other:?}"));
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
            Err(error) => {
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}
