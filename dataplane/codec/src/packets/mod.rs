//! One module per control packet, each with `read` (body bytes to packet),
//! `remaining_len` (exact body size) and `write` (packet to body bytes), with
//! 3.1/3.1.1 and 5.0 side by side.
//!
//! Invariants: a module reads only the body (the dispatcher in
//! [`crate::decode`] has already checked the fixed-header flags and checks
//! for trailing bytes afterwards), and `write` produces exactly
//! `remaining_len` bytes. PINGREQ and PINGRESP have no body and no module.

pub(crate) mod ack;
pub(crate) mod auth;
pub(crate) mod connack;
pub(crate) mod connect;
pub(crate) mod disconnect;
pub(crate) mod publish;
pub(crate) mod suback;
pub(crate) mod subscribe;
pub(crate) mod unsuback;
pub(crate) mod unsubscribe;
