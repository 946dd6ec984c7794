//! `mqttctl` end to end: control-plane members started in process on free
//! loopback ports, the built binary run as a subprocess against them, and
//! its stdout, stderr and exit code checked as an operator or a script
//! would see them.

mod acl;
mod banned;
mod cluster;
mod common;
mod errors;
mod tokens;
mod users;
