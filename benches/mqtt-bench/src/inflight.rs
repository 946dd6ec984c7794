//! A publisher's window of unfinished QoS 1/2 flows, keyed by packet id.
//!
//! A QoS 1 flow is PUBLISH → PUBACK; a QoS 2 flow is PUBLISH → PUBREC →
//! PUBREL → PUBCOMP. A flow holds its packet id until it completes, and the
//! window counts whole flows, so at most `limit` publishes are unfinished.
//!
//! Invariant: `len` equals the number of ids not in `FlowState::Free`, and an
//! id is handed out only while it is free, so two flows never share an id.

use anyhow::bail;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlowState {
    Free,
    /// PUBLISH sent; waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Published,
    /// PUBREL sent; waiting for PUBCOMP.
    Released,
}

#[derive(Debug)]
pub struct InFlight {
    /// Indexed by packet id; index 0 is never used (0 is not a valid id).
    states: Vec<FlowState>,
    next_id: u16,
    len: usize,
    limit: usize,
}

impl InFlight {
    /// A window of `limit` flows (at least 1).
    pub fn new(limit: u16) -> InFlight {
        InFlight {
            states: vec![FlowState::Free; usize::from(u16::MAX) + 1],
            next_id: 1,
            len: 0,
            limit: usize::from(limit.max(1)),
        }
    }

    /// Unfinished flows.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many more flows may start now.
    pub fn room(&self) -> usize {
        self.limit - self.len
    }

    /// Starts a flow and returns its packet id; `None` when the window is full.
    pub fn start(&mut self) -> Option<u16> {
        if self.len >= self.limit {
            return None;
        }
        // At most `limit` <= 65535 ids are taken, so a free one exists.
        loop {
            let id = self.next_id;
            self.next_id = if id == u16::MAX { 1 } else { id + 1 };
            let state = &mut self.states[usize::from(id)];
            if *state == FlowState::Free {
                *state = FlowState::Published;
                self.len += 1;
                return Some(id);
            }
        }
    }

    /// PUBACK: a QoS 1 flow is done.
    pub fn on_puback(&mut self, id: u16) -> anyhow::Result<()> {
        self.advance(id, FlowState::Published, FlowState::Free, "PUBACK")
    }

    /// PUBREC: the caller sends PUBREL next.
    pub fn on_pubrec(&mut self, id: u16) -> anyhow::Result<()> {
        self.advance(id, FlowState::Published, FlowState::Released, "PUBREC")
    }

    /// PUBCOMP: a QoS 2 flow is done.
    pub fn on_pubcomp(&mut self, id: u16) -> anyhow::Result<()> {
        self.advance(id, FlowState::Released, FlowState::Free, "PUBCOMP")
    }

    /// Gives back the id of a flow whose PUBLISH was never written.
    pub fn cancel(&mut self, id: u16) -> anyhow::Result<()> {
        self.advance(id, FlowState::Published, FlowState::Free, "nothing (a PUBLISH never written)")
    }

    fn advance(&mut self, id: u16, from: FlowState, to: FlowState, packet: &str) -> anyhow::Result<()> {
        let state = &mut self.states[usize::from(id)];
        if *state != from {
            bail!("the broker sent {packet} for packet id {id}, which was in state {state:?}");
        }
        *state = to;
        if to == FlowState::Free {
            self.len -= 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_limits_unfinished_flows() {
        let mut window = InFlight::new(2);
        let first = window.start().unwrap();
        let second = window.start().unwrap();
        assert_ne!(first, second);
        assert_eq!(window.start(), None);
        window.on_puback(first).unwrap();
        assert_eq!(window.room(), 1);
        assert!(window.start().is_some());
    }

    #[test]
    fn qos2_flow_holds_its_id_until_pubcomp() {
        let mut window = InFlight::new(1);
        let id = window.start().unwrap();
        window.on_pubrec(id).unwrap();
        assert_eq!(window.start(), None);
        assert!(window.on_puback(id).is_err());
        window.on_pubcomp(id).unwrap();
        assert!(window.is_empty());
    }

    #[test]
    fn ids_wrap_and_skip_ids_still_in_use() {
        let mut window = InFlight::new(3);
        let held = window.start().unwrap();
        assert_eq!(held, 1);
        for _ in 0..70_000 {
            let id = window.start().unwrap();
            assert_ne!(id, 0);
            assert_ne!(id, held);
            window.on_puback(id).unwrap();
        }
    }

    #[test]
    fn cancel_frees_an_unsent_flow() {
        let mut window = InFlight::new(1);
        let id = window.start().unwrap();
        window.cancel(id).unwrap();
        assert!(window.is_empty());
        assert!(window.cancel(id).is_err());
    }

    #[test]
    fn unknown_acks_are_errors() {
        let mut window = InFlight::new(4);
        assert!(window.on_puback(7).is_err());
        assert!(window.on_pubcomp(7).is_err());
    }
}
