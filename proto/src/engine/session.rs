//! Sessions (AMQP 1.0 §2.5): channels, transfer windows, delivery ids, and
//! the handle maps of the links on them.
//!
//! ```text
//!  UNMAPPED --begin sent--> BEGIN_SENT --begin rcvd--> MAPPED --end sent--> END_SENT
//!      \--begin rcvd (we answer at once)-------------->/   \--end rcvd (we answer)--> gone
//! ```

use std::collections::VecDeque;

// A fast seeded hasher: these maps are looked up several times per
// delivery, where SipHash showed in profiles.
use foldhash::{HashMap, HashMapExt};

use bytes::Bytes;

use super::connection::Connection;
use super::error::EngineError;
use super::event::Event;
use super::ids::{LinkId, SessionId};
use super::small_map::SmallMap;
use crate::definitions::{
    Begin, End, Error, Flow, Handle, Performative, SequenceNo, Transfer, condition,
};

/// Where a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionState {
    /// We sent begin, waiting for the peer's.
    BeginSent,
    /// Both begins exchanged.
    Mapped,
    /// We sent end, waiting for the peer's.
    EndSent,
}

/// A transfer frame held back because the peer's incoming window is shut.
#[derive(Debug)]
pub(crate) struct PendingTransfer {
    pub transfer: Transfer,
    pub payload: Bytes,
}

/// Per-session state.
#[derive(Debug)]
pub(crate) struct Session {
    pub local_channel: u16,
    pub remote_channel: Option<u16>,
    pub state: SessionState,
    /// Transfer-id of our next transfer frame.
    pub next_outgoing_id: SequenceNo,
    /// Transfer frames we will still accept before replenishing.
    pub incoming_window: u32,
    /// Transfer-id of the peer's next transfer frame.
    pub next_incoming_id: SequenceNo,
    /// Transfer frames the peer will still accept from us.
    pub remote_incoming_window: u32,
    /// Delivery id of our next delivery.
    pub next_delivery_id: SequenceNo,
    /// The delivery-id the peer's next new delivery must have (`None`
    /// before its first).
    pub next_incoming_delivery: Option<SequenceNo>,
    /// Highest handle the peer accepts.
    pub remote_handle_max: u32,
    pub local_handles: SmallMap<Handle, LinkId>,
    pub remote_handles: SmallMap<Handle, LinkId>,
    /// Deliveries we sent and the peer has not settled, by delivery id.
    pub outgoing_unsettled: HashMap<u32, LinkId>,
    /// Deliveries we received and have not settled, by delivery id.
    pub incoming_unsettled: HashMap<u32, LinkId>,
    /// Frames waiting for the peer's incoming window.
    pub pending: VecDeque<PendingTransfer>,
}

/// Our outgoing window: we never hold transfers back on our own account.
const OUTGOING_WINDOW: u32 = i32::MAX as u32;

impl Session {
    fn new(local_channel: u16, window: u32) -> Self {
        Self {
            local_channel,
            remote_channel: None,
            state: SessionState::BeginSent,
            next_outgoing_id: SequenceNo(0),
            incoming_window: window,
            next_incoming_id: SequenceNo(0),
            remote_incoming_window: 0,
            next_delivery_id: SequenceNo(0),
            next_incoming_delivery: None,
            remote_handle_max: u32::MAX,
            local_handles: SmallMap::new(),
            remote_handles: SmallMap::new(),
            outgoing_unsettled: HashMap::new(),
            incoming_unsettled: HashMap::new(),
            pending: VecDeque::new(),
        }
    }

    /// Empties the handle maps; returns the session's links, sorted.
    fn take_links(&mut self) -> Vec<LinkId> {
        let mut links: Vec<LinkId> = self.local_handles.drain().map(|(_, l)| l).collect();
        links.extend(self.remote_handles.drain().map(|(_, l)| l));
        links.sort();
        links.dedup();
        links
    }

    /// A session-level flow describing our state.
    pub fn flow(&self) -> Flow {
        Flow {
            next_incoming_id: self.remote_channel.map(|_| self.next_incoming_id),
            incoming_window: self.incoming_window,
            next_outgoing_id: self.next_outgoing_id,
            outgoing_window: OUTGOING_WINDOW,
            ..Flow::default()
        }
    }
}

impl Connection {
    fn free_local_channel(&self) -> Option<u16> {
        let max = self
            .config
            .channel_max
            .min(self.remote_channel_max_or_default());
        (0..=max).find(|c| !self.local_channels.contains_key(c))
    }

    fn remote_channel_max_or_default(&self) -> u16 {
        if self.remote_open {
            self.remote_channel_max
        } else {
            u16::MAX
        }
    }

    fn begin_frame(&self, remote_channel: Option<u16>) -> Begin {
        Begin {
            remote_channel,
            next_outgoing_id: SequenceNo(0),
            incoming_window: self.config.session_window,
            outgoing_window: OUTGOING_WINDOW,
            handle_max: Some(Handle(self.config.max_links_per_session.saturating_sub(1))),
            ..Begin::default()
        }
    }

    /// Begins a session (AMQP 1.0 §2.5.2). [`Event::SessionBegun`] follows
    /// when the peer answers.
    pub fn begin_session(&mut self) -> Result<SessionId, EngineError> {
        self.check_can_send()?;
        let channel = self.free_local_channel().ok_or(EngineError::Exhausted)?;
        let id = self.alloc_session_id();
        self.sessions.insert(
            id,
            Box::new(Session::new(channel, self.config.session_window)),
        );
        self.local_channels.insert(channel, id);
        let begin = self.begin_frame(None);
        self.write_frame(channel, &Performative::Begin(begin), &[]);
        Ok(id)
    }

    /// Ends a session (AMQP 1.0 §2.5.4); its links are detached with it.
    pub fn end_session(
        &mut self,
        session: SessionId,
        error: Option<Error>,
    ) -> Result<(), EngineError> {
        self.check_can_send()?;
        let s = self
            .sessions
            .get_mut(&session)
            .ok_or(EngineError::UnknownSession)?;
        if s.state == SessionState::EndSent {
            return Ok(());
        }
        s.state = SessionState::EndSent;
        let channel = s.local_channel;
        self.write_frame(channel, &Performative::End(End { error }), &[]);
        Ok(())
    }

    /// Makes `session` a priority session: from now on its frames are
    /// sent ahead of the output of other sessions that
    /// [`poll_transmit`](Self::poll_transmit) has not handed out yet (for
    /// control traffic that must not wait behind bulk data).
    ///
    /// Priority is per session, never per link: frames of different
    /// channels may be interleaved on a connection (AMQP 1.0 §2.1, §2.3),
    /// but the frames of one session must stay in order — its transfer ids
    /// are sequential (§2.5.6) and its links' frames are ordered. Frames
    /// already queued for the session (its begin) still go out first, in
    /// order, as do connection-level frames (open, close).
    pub fn set_priority(&mut self, session: SessionId) -> Result<(), EngineError> {
        let s = self
            .sessions
            .get(&session)
            .ok_or(EngineError::UnknownSession)?;
        let channel = s.local_channel;
        self.last_disposition = None;
        self.out.prioritize(channel);
        Ok(())
    }

    pub(crate) fn check_can_send(&self) -> Result<(), EngineError> {
        if self.is_finished() || self.close_sent() {
            Err(EngineError::Closed)
        } else if !self.open_sent() {
            Err(EngineError::NotOpen)
        } else {
            Ok(())
        }
    }

    /// The session a frame on `channel` belongs to, or a connection error.
    /// The session a frame on `channel` belongs to. `None` (after closing
    /// the connection) for a channel with no session, and `None` silently
    /// for a session we are ending: its frames are discarded until the
    /// peer's end (AMQP 1.0 §2.5.4).
    pub(crate) fn session_for_channel(&mut self, channel: u16) -> Option<SessionId> {
        let Some(&id) = self.remote_channels.get(&channel) else {
            self.fail(
                condition::NOT_FOUND,
                format!("frame on channel {channel}, which has no session"),
            );
            return None;
        };
        (self.sessions[&id].state != SessionState::EndSent).then_some(id)
    }

    /// Ends a session for the peer's error on it (a session error, AMQP 1.0
    /// §2.8.16): its links are gone at once; the peer's end is awaited.
    pub(crate) fn fail_session(
        &mut self,
        id: SessionId,
        condition: crate::definitions::ErrorCondition,
        description: impl Into<String>,
    ) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        if s.state == SessionState::EndSent {
            return;
        }
        s.state = SessionState::EndSent;
        let channel = s.local_channel;
        let links = s.take_links();
        s.outgoing_unsettled.clear();
        s.incoming_unsettled.clear();
        s.pending.clear();
        self.links_gone(links);
        let error = Error::new(condition, description.into());
        self.write_frame(channel, &Performative::End(End { error: Some(error) }), &[]);
    }

    pub(crate) fn handle_begin(&mut self, channel: u16, begin: Begin) {
        if self.remote_channels.contains_key(&channel) {
            return self.fail(
                condition::ILLEGAL_STATE,
                format!("begin on channel {channel}, which is in use"),
            );
        }
        if channel > self.config.channel_max {
            return self.fail(
                condition::NOT_ALLOWED,
                format!(
                    "channel {channel} exceeds channel-max {}",
                    self.config.channel_max
                ),
            );
        }
        let remote_window = begin.incoming_window;
        let handle_max = begin.handle_max.map_or(u32::MAX, |h| h.0);
        let next_incoming = begin.next_outgoing_id;
        let id = match begin.remote_channel {
            Some(local) => {
                // The answer to our begin.
                let Some(&id) = self.local_channels.get(&local) else {
                    return self.fail(
                        condition::ILLEGAL_STATE,
                        format!("begin answers channel {local}, which we did not begin"),
                    );
                };
                let s = self
                    .sessions
                    .get_mut(&id)
                    .expect("channel maps to a session");
                if s.state != SessionState::BeginSent {
                    return self.fail(condition::ILLEGAL_STATE, "begin answered twice");
                }
                s.state = SessionState::Mapped;
                self.events.push_back(Event::SessionBegun {
                    session: id,
                    remote: false,
                });
                id
            }
            None => {
                // The peer begins: answer at once.
                let Some(local) = self.free_local_channel() else {
                    return self.fail(condition::RESOURCE_LIMIT_EXCEEDED, "no free channel");
                };
                let over_limit = self.sessions.len() as u32 >= self.config.max_sessions;
                let id = self.alloc_session_id();
                let mut s = Session::new(local, self.config.session_window);
                s.state = SessionState::Mapped;
                self.sessions.insert(id, Box::new(s));
                self.local_channels.insert(local, id);
                let answer = self.begin_frame(Some(channel));
                self.write_frame(local, &Performative::Begin(answer), &[]);
                if over_limit {
                    let error = Error::new(
                        condition::RESOURCE_LIMIT_EXCEEDED,
                        format!(
                            "at most {} sessions per connection",
                            self.config.max_sessions
                        ),
                    );
                    self.sessions.get_mut(&id).expect("inserted").state = SessionState::EndSent;
                    self.write_frame(local, &Performative::End(End { error: Some(error) }), &[]);
                } else {
                    self.events.push_back(Event::SessionBegun {
                        session: id,
                        remote: true,
                    });
                }
                id
            }
        };
        self.remote_channels.insert(channel, id);
        let s = self.sessions.get_mut(&id).expect("session exists");
        s.remote_channel = Some(channel);
        s.remote_incoming_window = remote_window;
        s.remote_handle_max = handle_max;
        s.next_incoming_id = next_incoming;
    }

    pub(crate) fn handle_end(&mut self, channel: u16, end: End) {
        let Some(&id) = self.remote_channels.get(&channel) else {
            return self.fail(
                condition::NOT_FOUND,
                format!("end on channel {channel}, which has no session"),
            );
        };
        let mut s = self.sessions.remove(&id).expect("mapped session exists");
        if s.state != SessionState::EndSent {
            self.write_frame(s.local_channel, &Performative::End(End::default()), &[]);
        }
        // Its channel may be reused by a normal session.
        self.out.unprioritize(s.local_channel);
        self.local_channels.remove(&s.local_channel);
        self.remote_channels.remove(&channel);
        let links = s.take_links();
        self.links_gone(links);
        self.events.push_back(Event::SessionEnded {
            session: id,
            error: end.error,
        });
    }

    /// Forgets links whose session ended, reporting each detached.
    fn links_gone(&mut self, links: Vec<LinkId>) {
        for link in links {
            if self.links.remove(&link).is_some() {
                self.events.push_back(Event::Detached {
                    link,
                    closed: false,
                    error: None,
                });
            }
        }
        self.links.shrink_sparse();
    }

    /// Updates the session's view of the peer's window from a flow, then
    /// sends what the window now allows (AMQP 1.0 §2.5.6).
    pub(crate) fn apply_session_flow(&mut self, id: SessionId, flow: &Flow) {
        let s = self.sessions.get_mut(&id).expect("caller checked");
        // remote-incoming-window = next-incoming-id(flow) + incoming-window(flow)
        //                          - next-outgoing-id(ours)
        let base = flow.next_incoming_id.unwrap_or(SequenceNo(0));
        s.remote_incoming_window = base
            .wrapping_add(flow.incoming_window)
            .distance_from(s.next_outgoing_id)
            .min(flow.incoming_window);
        self.pump_pending(id);
    }

    /// Sends held-back transfer frames while the peer's window allows.
    pub(crate) fn pump_pending(&mut self, id: SessionId) {
        loop {
            let Some(s) = self.sessions.get_mut(&id) else {
                return;
            };
            if s.remote_incoming_window == 0 {
                return;
            }
            let Some(p) = s.pending.pop_front() else {
                return;
            };
            s.remote_incoming_window -= 1;
            s.next_outgoing_id = s.next_outgoing_id.wrapping_add(1);
            let channel = s.local_channel;
            self.write_frame(channel, &Performative::Transfer(p.transfer), &p.payload);
        }
    }

    /// Queues one transfer frame: sent now if the peer's window allows,
    /// else held until a flow opens it.
    pub(crate) fn send_transfer_frame(
        &mut self,
        id: SessionId,
        transfer: Transfer,
        payload: Bytes,
    ) {
        let s = self.sessions.get_mut(&id).expect("caller checked");
        if s.remote_incoming_window == 0 || !s.pending.is_empty() {
            s.pending.push_back(PendingTransfer { transfer, payload });
            return;
        }
        s.remote_incoming_window -= 1;
        s.next_outgoing_id = s.next_outgoing_id.wrapping_add(1);
        let channel = s.local_channel;
        self.write_frame(channel, &Performative::Transfer(transfer), &payload);
    }

    /// Accounts one incoming transfer frame against our window; refills
    /// the window with a flow when it is half spent. Returns false (after
    /// closing the connection) on a window violation.
    pub(crate) fn consume_incoming_window(&mut self, id: SessionId) -> bool {
        let window = self.config.session_window;
        let s = self.sessions.get_mut(&id).expect("caller checked");
        if s.incoming_window == 0 {
            self.fail_session(
                id,
                condition::WINDOW_VIOLATION,
                "transfer beyond the session's incoming window",
            );
            return false;
        }
        s.incoming_window -= 1;
        s.next_incoming_id = s.next_incoming_id.wrapping_add(1);
        if s.incoming_window <= window / 2 {
            s.incoming_window = window;
            let flow = s.flow();
            let channel = s.local_channel;
            self.write_frame(channel, &Performative::Flow(flow), &[]);
        }
        true
    }
}
