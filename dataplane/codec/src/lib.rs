//! Sans-I/O MQTT 3.1, 3.1.1 and 5.0 codec: bytes in, packets out, and back.
//!
//! The crate knows nothing of sockets, sessions or brokers. [`decode`] takes
//! a read buffer and returns a whole packet once one is there, leaving the
//! buffer untouched when more bytes are needed; [`encode`] appends one packet
//! to a write buffer. Every validation rule that the specifications make
//! about a single packet lives here, with the reason code the spec gives.
#![forbid(unsafe_code)]

mod packet;
mod reason;

pub use packet::*;
pub use reason::ReasonCode;

mod decode;
mod encode;
mod error;
mod packets;
mod primitives;
mod properties;
#[cfg(test)]
mod test_support;

pub use decode::{decode, frame_length, FrameStatus};
pub use encode::{encode, encode_publish, encode_publish_ref, encoded_len};
pub use error::{DecodeError, EncodeError};

/// The largest remaining length the variable-byte integer can express.
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;
