//! Links (AMQP 1.0 §2.6): attach and detach, credit and drain, transfers
//! (split at the peer's max-frame-size, reassembly left to the caller),
//! and dispositions over ranges.
//!
//! ```text
//!  DETACHED --attach sent--> ATTACH_SENT --attach rcvd--> ATTACHED --detach sent--> DETACH_SENT
//!      \--attach rcvd--> ATTACH_RCVD --accept_attach--> ATTACHED  \--detach rcvd (answered)--> gone
//! ```

use bytes::Bytes;

use super::connection::{Connection, shrink_sparse};
use super::error::EngineError;
use super::event::{Event, IncomingTransfer, LinkSpec};
use super::ids::{LinkId, SessionId};
use super::session::SessionState;
use crate::codec::Str;
use crate::definitions::{
    Attach, DeliveryState, Detach, Disposition, Error, Flow, Handle, Performative, Role,
    SequenceNo, Source, TargetTerminus, Transfer, condition,
};
use crate::frame::HEADER_SIZE;

use super::output::Mark;

/// The last frame written, when it is a disposition that the next may
/// extend to a range (the next delivery id, same role, settlement and
/// state): where it is in the output, and what it said. Only outcomes
/// without fields are merged, so this stays small for every connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LastDisposition {
    mark: Mark,
    channel: u16,
    role: Role,
    first: SequenceNo,
    last: SequenceNo,
    settled: Option<bool>,
    batchable: Option<bool>,
    state: PlainState,
}

/// A disposition's state when it has no fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PlainState {
    None,
    Accepted,
    Released,
}

impl PlainState {
    fn of(state: &Option<DeliveryState>) -> Option<Self> {
        match state {
            None => Some(Self::None),
            Some(DeliveryState::Accepted) => Some(Self::Accepted),
            Some(DeliveryState::Released) => Some(Self::Released),
            Some(_) => None,
        }
    }
}

impl From<PlainState> for Option<DeliveryState> {
    fn from(state: PlainState) -> Self {
        match state {
            PlainState::None => None,
            PlainState::Accepted => Some(DeliveryState::Accepted),
            PlainState::Released => Some(DeliveryState::Released),
        }
    }
}

/// Where a link stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkState {
    /// We sent attach; waiting for the peer's.
    AttachSent,
    /// The peer sent attach; waiting for our answer.
    AttachReceived,
    /// Both attaches exchanged.
    Attached,
    /// We sent detach; waiting for the peer's.
    DetachSent,
}

/// A delivery arriving over several frames.
#[derive(Debug, Clone)]
pub(crate) struct IncomingPartial {
    pub id: SequenceNo,
    pub tag: Bytes,
    pub settled: bool,
    pub size: u64,
    pub message_format: u32,
}

/// Per-link state.
#[derive(Debug)]
pub(crate) struct Link {
    pub session: SessionId,
    pub name: Str,
    pub role: Role,
    pub state: LinkState,
    pub local_handle: Handle,
    pub remote_handle: Option<Handle>,
    /// Our delivery count (sender) or our view of the sender's (receiver).
    pub delivery_count: SequenceNo,
    /// Credit left: what we may send (sender) or what we granted and is
    /// unused (receiver).
    pub credit: u32,
    /// The drain flag from the last flow.
    pub drain: bool,
    /// Receiver: transfers the peer may still send under credit we took
    /// back by lowering it (AMQP 1.0 §2.6.7 lets us accept those).
    pub in_flight_allowance: u32,
    /// Receiver: our flows asking for the sender's state (echo) not yet
    /// answered. Only the answer to the latest shows that the sender has
    /// seen our latest grant: an answer to an earlier echo, crossing a new
    /// grant and a new cut, may state the very limit we cut back to.
    pub echoes: u32,
    /// Transfers beyond credit are taken (see
    /// [`LinkSpec::tolerate_overshoot`]).
    pub tolerate_overshoot: bool,
    /// Sender: the deliveries we last told the receiver wait for credit
    /// (`available`, AMQP 1.0 §2.6.7; see [`Connection::offer`]).
    /// Receiver: what the sender last told us.
    pub available: u32,
    /// The peer's max-message-size (sender) or ours (receiver); 0 = none.
    pub max_message_size: u64,
    /// Sender: the delivery still being sent with `more`.
    pub outgoing_partial: Option<SequenceNo>,
    /// Receiver: the delivery still arriving.
    /// Boxed: only a delivery in several frames has one.
    pub incoming_partial: Option<Box<IncomingPartial>>,
    /// The peer's termini, kept from its attach until we answer it, so a
    /// refusal can echo the half we do not refuse.
    pub peer_termini: Option<Box<(Option<Source>, Option<TargetTerminus>)>>,
}

/// The longest delivery-tag (AMQP 1.0 §2.8.7: binary, 32 octets at most).
const MAX_DELIVERY_TAG: usize = 32;

impl Connection {
    fn link_mut(&mut self, link: LinkId) -> Result<&mut Link, EngineError> {
        self.links
            .get_mut(&link)
            .map(|l| &mut **l)
            .ok_or(EngineError::UnknownLink)
    }

    /// The credit a sending link has (0 for unknown links).
    pub fn credit(&self, link: LinkId) -> u32 {
        self.links.get(&link).map_or(0, |l| l.credit)
    }

    /// Whether a delivery started on sending link `link` with `more` is
    /// still being sent: until its last part, the link can start no other
    /// (the transfers of a delivery are contiguous on its link, AMQP 1.0
    /// §2.6.14), and [`send`](Self::send) fails with
    /// [`EngineError::DeliveryInProgress`].
    pub fn is_sending(&self, link: LinkId) -> bool {
        self.links
            .get(&link)
            .is_some_and(|l| l.outgoing_partial.is_some())
    }

    /// A link's name (AMQP 1.0 §2.6.1: unique per direction between two
    /// containers).
    pub fn link_name(&self, link: LinkId) -> Option<&str> {
        self.links.get(&link).map(|l| l.name.as_str())
    }

    /// The session a link belongs to.
    pub fn link_session(&self, link: LinkId) -> Option<SessionId> {
        self.links.get(&link).map(|l| l.session)
    }

    fn attach_frame(&self, link: &Link, spec: &LinkSpec) -> Attach {
        Attach {
            name: link.name.clone(),
            handle: link.local_handle,
            role: link.role,
            snd_settle_mode: Some(spec.snd_settle_mode),
            rcv_settle_mode: Some(spec.rcv_settle_mode),
            source: spec.source.clone(),
            target: spec.target.clone(),
            initial_delivery_count: (link.role == Role::Sender).then_some(link.delivery_count),
            max_message_size: spec.max_message_size,
            offered_capabilities: spec.offered_capabilities.clone(),
            desired_capabilities: spec.desired_capabilities.clone(),
            properties: spec.properties.clone(),
            ..Attach::default()
        }
    }

    fn free_handle(&self, session: SessionId) -> Result<Handle, EngineError> {
        let s = self
            .sessions
            .get(&session)
            .ok_or(EngineError::UnknownSession)?;
        let max = s
            .remote_handle_max
            .min(self.config.max_links_per_session.saturating_sub(1));
        (0..=max)
            .map(Handle)
            .find(|h| !s.local_handles.contains_key(h))
            .ok_or(EngineError::Exhausted)
    }

    /// Attaches a link (AMQP 1.0 §2.6.3). [`Event::Attached`] follows.
    pub fn attach(&mut self, session: SessionId, spec: LinkSpec) -> Result<LinkId, EngineError> {
        self.check_can_send()?;
        let handle = self.free_handle(session)?;
        let s = self
            .sessions
            .get_mut(&session)
            .ok_or(EngineError::UnknownSession)?;
        if s.state == SessionState::EndSent {
            return Err(EngineError::UnknownSession);
        }
        let id = self.alloc_link_id();
        let s = self.sessions.get_mut(&session).expect("checked");
        s.local_handles.insert(handle, id);
        let channel = s.local_channel;
        let link = Link {
            session,
            name: Str::from(spec.name.as_str()),
            role: spec.role,
            state: LinkState::AttachSent,
            local_handle: handle,
            remote_handle: None,
            delivery_count: SequenceNo(0),
            credit: 0,
            drain: false,
            in_flight_allowance: 0,
            echoes: 0,
            available: 0,
            tolerate_overshoot: spec.tolerate_overshoot && spec.role == Role::Receiver,
            max_message_size: if spec.role == Role::Receiver {
                spec.max_message_size.unwrap_or(0)
            } else {
                0
            },
            outgoing_partial: None,
            incoming_partial: None,
            peer_termini: None,
        };
        let attach = self.attach_frame(&link, &spec);
        self.links.insert(id, Box::new(link));
        self.write_frame(channel, &Performative::Attach(Box::new(attach)), &[]);
        Ok(id)
    }

    /// Answers a peer's attach ([`Event::AttachRequested`]) with our half:
    /// `spec` gives our termini and limits (its name and role are taken
    /// from the link).
    pub fn accept_attach(&mut self, link: LinkId, spec: LinkSpec) -> Result<(), EngineError> {
        self.check_can_send()?;
        let l = self.links.get(&link).ok_or(EngineError::UnknownLink)?;
        if l.state != LinkState::AttachReceived {
            return Err(EngineError::UnknownLink);
        }
        let session = l.session;
        let handle = self.free_handle(session)?;
        let l = self.links.get_mut(&link).expect("checked");
        l.local_handle = handle;
        l.state = LinkState::Attached;
        l.peer_termini = None;
        if l.role == Role::Receiver {
            l.max_message_size = spec.max_message_size.unwrap_or(0);
        }
        let s = self
            .sessions
            .get_mut(&session)
            .expect("link's session exists");
        s.local_handles.insert(handle, link);
        let channel = s.local_channel;
        let l = self.links.get(&link).expect("checked");
        let attach = self.attach_frame(l, &spec);
        self.write_frame(channel, &Performative::Attach(Box::new(attach)), &[]);
        Ok(())
    }

    /// Refuses a peer's attach: answers with a null terminus and detaches
    /// with `error` (AMQP 1.0 §2.6.3).
    pub fn refuse_attach(&mut self, link: LinkId, error: Error) -> Result<(), EngineError> {
        self.attach_null(link)?;
        self.detach(link, true, Some(error))
    }

    /// Answers the peer's attach with ours, whose own terminus is null
    /// (the target when we receive, the source when we send; the peer's
    /// half is echoed): the first half of a refusal.
    fn attach_null(&mut self, link: LinkId) -> Result<(), EngineError> {
        let l = self.links.get_mut(&link).ok_or(EngineError::UnknownLink)?;
        let role = l.role;
        let (source, target) = l.peer_termini.take().map(|b| *b).unwrap_or_default();
        let spec = match role {
            Role::Receiver => LinkSpec {
                role,
                source,
                ..LinkSpec::default()
            },
            Role::Sender => LinkSpec {
                role,
                target,
                ..LinkSpec::default()
            },
        };
        self.accept_attach(link, spec)
    }

    /// Detaches (or with `closed`, closes) a link (AMQP 1.0 §2.6.5). Its
    /// unsettled deliveries are forgotten; [`Event::Detached`] follows.
    pub fn detach(
        &mut self,
        link: LinkId,
        closed: bool,
        error: Option<Error>,
    ) -> Result<(), EngineError> {
        self.check_can_send()?;
        let l = self.link_mut(link)?;
        if l.state == LinkState::DetachSent {
            return Ok(());
        }
        l.state = LinkState::DetachSent;
        let (session, handle) = (l.session, l.local_handle);
        let channel = self.sessions[&session].local_channel;
        self.forget_unsettled(session, link, handle);
        let detach = Detach {
            handle,
            closed: closed.then_some(true),
            error,
        };
        self.write_frame(channel, &Performative::Detach(detach), &[]);
        Ok(())
    }

    /// Drops a detaching link's unsettled deliveries and held-back frames
    /// (a transfer must not follow its link's detach).
    fn forget_unsettled(&mut self, session: SessionId, link: LinkId, handle: Handle) {
        if let Some(s) = self.sessions.get_mut(&session) {
            s.outgoing_unsettled.retain(|_, l| *l != link);
            s.incoming_unsettled.retain(|_, l| *l != link);
            shrink_sparse(&mut s.outgoing_unsettled);
            shrink_sparse(&mut s.incoming_unsettled);
            s.pending.retain(|p| p.transfer.handle != handle);
        }
    }

    fn link_flow(&self, link: &Link, echo: bool) -> Flow {
        let s = &self.sessions[&link.session];
        let sender = link.role == Role::Sender;
        // A sender's flow goes ahead of its transfers still waiting for
        // the peer's session window: it states the count (and credit) as
        // of the transfers before it on the wire. Counting those waiting,
        // it read to the receiver as credit given back (§2.6.7), and the
        // transfers that followed as transfers without credit.
        let queued = if sender {
            s.pending
                .iter()
                .filter(|p| p.transfer.handle == link.local_handle)
                .filter(|p| p.transfer.delivery_tag.is_some())
                .count() as u32
        } else {
            0
        };
        Flow {
            handle: Some(link.local_handle),
            delivery_count: Some(link.delivery_count.wrapping_add(queued.wrapping_neg())),
            link_credit: Some(link.credit + queued),
            available: sender.then_some(link.available),
            drain: link.drain.then_some(true),
            echo: echo.then_some(true),
            ..s.flow()
        }
    }

    fn send_link_flow(&mut self, link: LinkId, echo: bool) {
        let l = &self.links[&link];
        let flow = self.link_flow(l, echo);
        let channel = self.sessions[&l.session].local_channel;
        self.write_frame(channel, &Performative::Flow(flow), &[]);
    }

    /// Grants a receiving link `credit` (replacing what is left of the
    /// previous grant), optionally asking the sender to drain (AMQP 1.0
    /// §2.6.7).
    pub fn flow(&mut self, link: LinkId, credit: u32, drain: bool) -> Result<(), EngineError> {
        self.check_can_send()?;
        let l = self.link_mut(link)?;
        if l.role != Role::Receiver {
            return Err(EngineError::WrongRole);
        }
        // Transfers already on the wire under the credit we take back are
        // still welcome: count them. Credit granted again covers them first
        // (the sender's limit is absolute, §2.6.7: a new grant below its
        // old limit gives it nothing new to send). While some are owed, the
        // flow asks the sender for its state (echo): its answer, sent once
        // it has our flow, shows every transfer under the old credit in.
        l.in_flight_allowance = if credit < l.credit {
            l.in_flight_allowance.saturating_add(l.credit - credit)
        } else {
            l.in_flight_allowance.saturating_sub(credit - l.credit)
        };
        l.credit = credit;
        l.drain = drain;
        let echo = l.in_flight_allowance > 0;
        l.echoes += u32::from(echo);
        self.send_link_flow(link, echo);
        Ok(())
    }

    /// Sender side of drain: gives back the credit we cannot use by
    /// advancing the delivery count (AMQP 1.0 §2.6.7).
    pub fn drained(&mut self, link: LinkId) -> Result<(), EngineError> {
        self.check_can_send()?;
        let l = self.link_mut(link)?;
        if l.role != Role::Sender {
            return Err(EngineError::WrongRole);
        }
        l.delivery_count = l.delivery_count.wrapping_add(l.credit);
        l.credit = 0;
        self.send_link_flow(link, false);
        Ok(())
    }

    /// Sender: tells the receiver that `available` deliveries wait for its
    /// credit (the flow's `available`, AMQP 1.0 §2.6.7: a hint it may use
    /// to grant some). A flow goes only when the number changed.
    pub fn offer(&mut self, link: LinkId, available: u32) -> Result<(), EngineError> {
        self.check_can_send()?;
        let l = self.link_mut(link)?;
        if l.role != Role::Sender {
            return Err(EngineError::WrongRole);
        }
        if l.available == available {
            return Ok(());
        }
        l.available = available;
        // Before the peer's attach, it goes with the answer (see
        // `handle_attach`).
        if l.state == LinkState::Attached {
            self.send_link_flow(link, false);
        }
        Ok(())
    }

    /// Sends a delivery, or its first part when `more` is set (continue
    /// with [`send_more`](Self::send_more)). Consumes one credit. Returns
    /// the delivery id, by which the peer's dispositions are reported.
    pub fn send(
        &mut self,
        link: LinkId,
        tag: Bytes,
        payload: Bytes,
        settled: bool,
        more: bool,
    ) -> Result<SequenceNo, EngineError> {
        self.check_can_send()?;
        let l = self.links.get(&link).ok_or(EngineError::UnknownLink)?;
        if l.role != Role::Sender || l.state != LinkState::Attached {
            return Err(if l.role != Role::Sender {
                EngineError::WrongRole
            } else {
                EngineError::UnknownLink
            });
        }
        if l.outgoing_partial.is_some() {
            return Err(EngineError::DeliveryInProgress);
        }
        if l.credit == 0 {
            return Err(EngineError::NoCredit);
        }
        if l.max_message_size > 0 && payload.len() as u64 > l.max_message_size {
            return Err(EngineError::MessageTooLarge {
                size: payload.len() as u64,
                max: l.max_message_size,
            });
        }
        let session = l.session;
        let handle = l.local_handle;
        let s = self
            .sessions
            .get_mut(&session)
            .expect("link's session exists");
        let id = s.next_delivery_id;
        s.next_delivery_id = id.wrapping_add(1);
        if !settled {
            s.outgoing_unsettled.insert(id.0, link);
        }
        let l = self.links.get_mut(&link).expect("checked");
        l.credit -= 1;
        l.delivery_count = l.delivery_count.wrapping_add(1);
        if more {
            l.outgoing_partial = Some(id);
        }
        let first = Transfer {
            handle,
            delivery_id: Some(id),
            delivery_tag: Some(tag),
            message_format: Some(0),
            settled: Some(settled),
            ..Transfer::default()
        };
        self.send_frames(session, first, payload, more);
        Ok(id)
    }

    /// Sends the next part of a delivery started with `more`.
    pub fn send_more(
        &mut self,
        link: LinkId,
        delivery: SequenceNo,
        payload: Bytes,
        more: bool,
    ) -> Result<(), EngineError> {
        self.check_can_send()?;
        let l = self.link_mut(link)?;
        if l.outgoing_partial != Some(delivery) {
            return Err(EngineError::UnknownDelivery);
        }
        if !more {
            l.outgoing_partial = None;
        }
        let (session, handle) = (l.session, l.local_handle);
        let t = Transfer {
            handle,
            delivery_id: Some(delivery),
            ..Transfer::default()
        };
        self.send_frames(session, t, payload, more);
        Ok(())
    }

    /// Aborts a delivery still being sent (AMQP 1.0 §2.6.14).
    pub fn abort(&mut self, link: LinkId, delivery: SequenceNo) -> Result<(), EngineError> {
        self.check_can_send()?;
        let l = self.link_mut(link)?;
        if l.outgoing_partial != Some(delivery) {
            return Err(EngineError::UnknownDelivery);
        }
        l.outgoing_partial = None;
        let (session, handle) = (l.session, l.local_handle);
        self.sessions
            .get_mut(&session)
            .expect("link's session exists")
            .outgoing_unsettled
            .remove(&delivery.0);
        let t = Transfer {
            handle,
            delivery_id: Some(delivery),
            aborted: Some(true),
            settled: Some(true),
            ..Transfer::default()
        };
        self.send_transfer_frame(session, t, Bytes::new());
        Ok(())
    }

    /// Splits `payload` into frames no larger than the peer's
    /// max-frame-size; every frame but the last carries `more`.
    fn send_frames(&mut self, session: SessionId, first: Transfer, mut payload: Bytes, more: bool) {
        let max = self.remote_max_frame_size as usize;
        let mut t = first;
        loop {
            // The common case, a payload far below the frame size, needs no
            // measuring: a transfer performative is under 100 bytes plus its
            // tag.
            let tag_len = t.delivery_tag.as_ref().map_or(0, |b| b.len());
            if payload.len() + tag_len + 128 <= max {
                t.more = more.then_some(true);
                self.send_transfer_frame(session, t, payload);
                return;
            }
            // Size with `more` set is an upper bound for the frame's header.
            let mut probe = t.clone();
            probe.more = Some(true);
            let overhead = HEADER_SIZE + crate::codec::Encode::to_bytes(&probe).len();
            let room = max.saturating_sub(overhead).max(1);
            if payload.len() <= room {
                t.more = more.then_some(true);
                self.send_transfer_frame(session, t, payload);
                return;
            }
            let chunk = payload.split_to(room);
            let mut frame = t.clone();
            frame.more = Some(true);
            self.send_transfer_frame(session, frame, chunk);
            // Continuation frames repeat only the handle and delivery id.
            t = Transfer {
                handle: t.handle,
                delivery_id: t.delivery_id,
                ..Transfer::default()
            };
        }
    }

    /// Updates the state of a delivery: an outcome, settlement, or both
    /// (AMQP 1.0 §2.7.6). Consecutive dispositions with the same state are
    /// merged into one range frame.
    pub fn disposition(
        &mut self,
        link: LinkId,
        delivery: SequenceNo,
        state: Option<DeliveryState>,
        settled: bool,
    ) -> Result<(), EngineError> {
        self.check_can_send()?;
        let l = self.links.get(&link).ok_or(EngineError::UnknownLink)?;
        let role = l.role;
        let s = self
            .sessions
            .get_mut(&l.session)
            .expect("link's session exists");
        let map = match role {
            Role::Receiver => &mut s.incoming_unsettled,
            Role::Sender => &mut s.outgoing_unsettled,
        };
        if map.get(&delivery.0) != Some(&link) {
            return Err(EngineError::UnknownDelivery);
        }
        if settled {
            map.remove(&delivery.0);
            shrink_sparse(map);
        }
        let channel = s.local_channel;
        let d = Disposition {
            role,
            first: delivery,
            last: None,
            settled: settled.then_some(true),
            state,
            batchable: None,
        };
        self.write_disposition(channel, d);
        Ok(())
    }

    fn write_disposition(&mut self, channel: u16, d: Disposition) {
        if let Some(prev) = self.last_disposition.take()
            && prev.channel == channel
            && prev.role == d.role
            && prev.settled == d.settled
            && Some(prev.state) == PlainState::of(&d.state)
            && prev.last.wrapping_add(1) == d.first
        {
            let merged = Disposition {
                role: prev.role,
                first: prev.first,
                last: Some(d.first),
                settled: prev.settled,
                state: prev.state.into(),
                batchable: prev.batchable,
            };
            self.out.rewind(prev.mark);
            return self.write_disposition_frame(channel, merged);
        }
        self.write_disposition_frame(channel, d);
    }

    fn write_disposition_frame(&mut self, channel: u16, d: Disposition) {
        let (role, first, last, settled, batchable) = (
            d.role,
            d.first,
            d.last.unwrap_or(d.first),
            d.settled,
            d.batchable,
        );
        let state = PlainState::of(&d.state);
        let mark = self.write_frame(channel, &Performative::Disposition(d), &[]);
        self.last_disposition = state.map(|state| LastDisposition {
            mark,
            channel,
            role,
            first,
            last,
            settled,
            batchable,
            state,
        });
    }

    // ---- incoming frames ----

    fn link_for_remote_handle(&mut self, session: SessionId, handle: Handle) -> Option<LinkId> {
        let id = self.sessions[&session].remote_handles.get(&handle).copied();
        if id.is_none() {
            self.fail_session(
                session,
                condition::UNATTACHED_HANDLE,
                format!("frame for handle {}, which is not attached", handle.0),
            );
        }
        id
    }

    pub(crate) fn handle_attach(&mut self, channel: u16, attach: Attach) {
        let Some(session) = self.session_for_channel(channel) else {
            return;
        };
        let handle_max = self.config.max_links_per_session.saturating_sub(1);
        if attach.handle.0 > handle_max {
            // AMQP 1.0 §2.7.2 (handle-max): a framing error.
            return self.fail(
                condition::FRAMING_ERROR,
                format!("handle {} exceeds handle-max {handle_max}", attach.handle.0),
            );
        }
        let s = &self.sessions[&session];
        if s.remote_handles.contains_key(&attach.handle) {
            return self.fail_session(
                session,
                condition::HANDLE_IN_USE,
                format!("handle {} is already attached", attach.handle.0),
            );
        }
        let our_role = match attach.role {
            Role::Sender => Role::Receiver,
            Role::Receiver => Role::Sender,
        };
        // An answer to our attach: same name, opposite role, waiting (or
        // detached by us since: the answer to our detach follows).
        let ours = s.local_handles.values().copied().find(|id| {
            let l = &self.links[id];
            let waiting = l.state == LinkState::AttachSent
                || (l.state == LinkState::DetachSent && l.remote_handle.is_none());
            waiting && l.role == our_role && l.name == attach.name
        });
        let s = self.sessions.get_mut(&session).expect("exists");
        if let Some(id) = ours
            && self.links[&id].state == LinkState::DetachSent
        {
            s.remote_handles.insert(attach.handle, id);
            self.links.get_mut(&id).expect("exists").remote_handle = Some(attach.handle);
            return;
        }
        if let Some(id) = ours {
            s.remote_handles.insert(attach.handle, id);
            let l = self.links.get_mut(&id).expect("exists");
            l.remote_handle = Some(attach.handle);
            l.state = LinkState::Attached;
            if our_role == Role::Sender {
                l.max_message_size = attach.max_message_size.unwrap_or(0);
            } else if let Some(dc) = attach.initial_delivery_count {
                l.delivery_count = dc;
            }
            // What we offered before the peer answered goes now.
            let offered = our_role == Role::Sender && l.available > 0;
            self.events.push_back(Event::Attached {
                link: id,
                attach: Box::new(attach),
            });
            if offered {
                self.send_link_flow(id, false);
            }
            return;
        }
        // Link names are unique per direction between two containers
        // (AMQP 1.0 §2.6.1): a second attach of an attached link's name is
        // refused, the first carries on.
        let taken = self.links.values().any(|l| {
            l.name == attach.name
                && l.role == our_role
                && matches!(l.state, LinkState::Attached | LinkState::AttachReceived)
        });
        let id = self.alloc_link_id();
        let s = self.sessions.get_mut(&session).expect("exists");
        s.remote_handles.insert(attach.handle, id);
        self.links.insert(
            id,
            Box::new(Link {
                session,
                // A copy: the attach's own name shares the buffer its
                // frame was read into, which the link would keep for life.
                name: Str::from(attach.name.as_str()),
                role: our_role,
                state: LinkState::AttachReceived,
                local_handle: Handle(u32::MAX),
                remote_handle: Some(attach.handle),
                delivery_count: attach.initial_delivery_count.unwrap_or_default(),
                credit: 0,
                drain: false,
                in_flight_allowance: 0,
                echoes: 0,
                available: 0,
                tolerate_overshoot: false,
                max_message_size: if our_role == Role::Sender {
                    attach.max_message_size.unwrap_or(0)
                } else {
                    0
                },
                outgoing_partial: None,
                incoming_partial: None,
                peer_termini: Some(Box::new((attach.source.clone(), attach.target.clone()))),
            }),
        );
        if taken {
            let error = Error::new(
                condition::INVALID_FIELD,
                format!(
                    "a link named {:?} is already attached in this direction (AMQP 1.0 §2.6.1)",
                    attach.name.as_str()
                ),
            );
            let _ = self.refuse_attach(id, error);
            return;
        }
        self.events.push_back(Event::AttachRequested {
            link: id,
            session,
            attach: Box::new(attach),
        });
    }

    pub(crate) fn handle_detach(&mut self, channel: u16, detach: Detach) {
        let Some(session) = self.session_for_channel(channel) else {
            return;
        };
        let Some(id) = self.link_for_remote_handle(session, detach.handle) else {
            return;
        };
        if self.links[&id].state == LinkState::AttachReceived {
            // Detached before we answered its attach (e.g. a client that
            // opens a link and closes it at once): an attach is answered
            // by an attach (AMQP 1.0 §2.6.3), then the detach below.
            let _ = self.attach_null(id);
        }
        let l = self.links.remove(&id).expect("handle maps to a link");
        self.links.shrink_sparse();
        let s = self.sessions.get_mut(&session).expect("exists");
        s.remote_handles.remove(&detach.handle);
        if l.state != LinkState::AttachReceived {
            s.local_handles.remove(&l.local_handle);
        }
        s.remote_handles.shrink_sparse();
        s.local_handles.shrink_sparse();
        let local_channel = s.local_channel;
        if l.state != LinkState::DetachSent {
            s.outgoing_unsettled.retain(|_, v| *v != id);
            s.incoming_unsettled.retain(|_, v| *v != id);
            shrink_sparse(&mut s.outgoing_unsettled);
            shrink_sparse(&mut s.incoming_unsettled);
            if l.state != LinkState::AttachReceived {
                let answer = Detach {
                    handle: l.local_handle,
                    closed: detach.closed,
                    error: None,
                };
                self.write_frame(local_channel, &Performative::Detach(answer), &[]);
            }
        }
        self.events.push_back(Event::Detached {
            link: id,
            closed: detach.closed.unwrap_or(false),
            error: detach.error,
        });
    }

    pub(crate) fn handle_flow(&mut self, channel: u16, flow: Flow) {
        let Some(session) = self.session_for_channel(channel) else {
            return;
        };
        let Some(handle) = flow.handle else {
            self.apply_session_flow(session, &flow);
            if flow.echo == Some(true) {
                let f = self.sessions[&session].flow();
                let ch = self.sessions[&session].local_channel;
                self.write_frame(ch, &Performative::Flow(f), &[]);
            }
            return;
        };
        let Some(id) = self.link_for_remote_handle(session, handle) else {
            return;
        };
        self.apply_session_flow(session, &flow);
        let l = self.links.get_mut(&id).expect("exists");
        if l.state == LinkState::DetachSent {
            // In flight when we detached: the link's credit is moot, and
            // no flow may follow our detach (an echo answered now would
            // reach a peer that has forgotten the handle).
            return;
        }
        match l.role {
            Role::Sender => {
                // AMQP 1.0 §2.6.7: credit = delivery-count(rcv) + link-credit(rcv)
                //                          - delivery-count(snd)
                // A flow the receiver sent before our latest transfers
                // reached it can set a limit we have already passed: that
                // is no credit, not a wrapped-around lot of it.
                let rcv_count = flow.delivery_count.unwrap_or(l.delivery_count);
                let credit = flow.link_credit.unwrap_or(0);
                let limit = rcv_count.wrapping_add(credit);
                l.credit = if limit.precedes(l.delivery_count) {
                    0
                } else {
                    limit.distance_from(l.delivery_count).min(credit)
                };
                l.drain = flow.drain.unwrap_or(false);
                self.events.push_back(Event::Credit {
                    link: id,
                    credit: l.credit,
                    granted: credit,
                    drain: l.drain,
                });
            }
            Role::Receiver => {
                if let Some(dc) = flow.delivery_count
                    && !dc.precedes(l.delivery_count)
                {
                    // The sender advanced its count past deliveries it did not
                    // send (drain): that credit is gone. (A count behind ours
                    // is an old flow: transfers it has not seen are on their
                    // way.)
                    let unused = dc.distance_from(l.delivery_count).min(l.credit);
                    l.credit -= unused;
                    l.delivery_count = dc;
                }
                // The sender's count of deliveries waiting for credit:
                // news to pass on when it changed. A flow bringing such news
                // is taken for the sender's own, not an answer to our echo
                // (if it was one, a later flow shows the same, and the
                // allowance below lasts until then: lenient, never short).
                let offer = flow.available.is_some_and(|a| a != l.available);
                if let Some(available) = flow.available.filter(|_| offer) {
                    l.available = available;
                    self.events.push_back(Event::Available {
                        link: id,
                        available,
                    });
                }
                // An answer to our echo (a flow of the sender's, counted
                // as one: the sender sends few of its own).
                if !offer {
                    l.echoes = l.echoes.saturating_sub(1);
                }
                if let Some(credit) = flow.link_credit
                    && l.echoes == 0
                    && !offer
                {
                    // The sender's limit (its count plus its credit) within
                    // ours, in its answer to our latest echo: it has seen
                    // our latest grant, and what it sent before is in.
                    // Nothing more is owed.
                    let theirs = flow.delivery_count.unwrap_or(l.delivery_count);
                    let ours = l.delivery_count.wrapping_add(l.credit);
                    let theirs = theirs.wrapping_add(credit);
                    if theirs == ours || theirs.precedes(ours) {
                        l.in_flight_allowance = 0;
                    }
                }
                if l.drain && l.credit == 0 {
                    l.drain = false;
                    self.events.push_back(Event::Drained { link: id });
                }
            }
        }
        if flow.echo == Some(true) {
            self.send_link_flow(id, false);
        }
    }

    pub(crate) fn handle_transfer(&mut self, channel: u16, t: Transfer, payload: Bytes) {
        let Some(session) = self.session_for_channel(channel) else {
            return;
        };
        let Some(id) = self.link_for_remote_handle(session, t.handle) else {
            return;
        };
        if !self.consume_incoming_window(session) {
            return;
        }
        let l = self.links.get_mut(&id).expect("exists");
        if l.role != Role::Receiver {
            return self.fail_session(
                session,
                condition::ERRANT_LINK,
                "transfer on a link we send on",
            );
        }
        if l.state == LinkState::DetachSent {
            // In flight when we detached: dropped, but a new delivery's
            // first frame still took the session's next delivery-id
            // (§2.7.5), which the peer's next delivery on another link
            // follows. (Its other frames repeat that id, or none.) Not
            // counting it, the next delivery looked out of sequence and
            // closed the connection: every delivery on it failed.
            let s = self.sessions.get_mut(&session).expect("exists");
            if let (Some(expected), Some(delivery)) = (s.next_incoming_delivery, t.delivery_id)
                && expected == delivery
            {
                s.next_incoming_delivery = Some(delivery.wrapping_add(1));
            }
            return;
        }
        if l.incoming_partial.is_none()
            && let Some(delivery) = t.delivery_id
        {
            // Delivery ids come from one counter per session (AMQP 1.0
            // §2.7.5, §2.6.12): the first frame of each new delivery takes
            // the next one.
            let s = self.sessions.get_mut(&session).expect("exists");
            match s.next_incoming_delivery {
                Some(expected) if expected != delivery => {
                    return self.fail(
                        condition::INVALID_FIELD,
                        format!(
                            "delivery-id {} out of sequence: {} was next",
                            delivery.0, expected.0
                        ),
                    );
                }
                _ => s.next_incoming_delivery = Some(delivery.wrapping_add(1)),
            }
        }
        let l = self.links.get_mut(&id).expect("exists");
        let more = t.more.unwrap_or(false);
        let aborted = t.aborted.unwrap_or(false);
        let (first, mut partial, revoked) = match l.incoming_partial.take() {
            Some(p) => {
                if t.delivery_id.is_some_and(|d| d != p.id) {
                    return self.fail_session(
                        session,
                        condition::ERRANT_LINK,
                        "new delivery before the previous one finished",
                    );
                }
                (false, *p, false)
            }
            None => {
                let (Some(delivery), Some(tag)) = (t.delivery_id, t.delivery_tag.clone()) else {
                    return self.fail_session(
                        session,
                        condition::ERRANT_LINK,
                        "first transfer of a delivery lacks delivery-id or delivery-tag",
                    );
                };
                if tag.len() > MAX_DELIVERY_TAG {
                    let error = Error::new(
                        condition::INVALID_FIELD,
                        format!(
                            "a delivery-tag of {} octets: AMQP 1.0 §2.8.7 allows {MAX_DELIVERY_TAG} at most",
                            tag.len()
                        ),
                    );
                    let _ = self.detach(id, true, Some(error));
                    return;
                }
                let revoked = l.credit == 0 && l.in_flight_allowance > 0;
                if revoked {
                    l.in_flight_allowance -= 1;
                    l.credit += 1;
                }
                if l.credit == 0 && !l.tolerate_overshoot {
                    let error = Error::new(
                        condition::TRANSFER_LIMIT_EXCEEDED,
                        "transfer without link credit",
                    );
                    let _ = self.detach(id, true, Some(error));
                    return;
                }
                l.credit = l.credit.saturating_sub(1);
                l.delivery_count = l.delivery_count.wrapping_add(1);
                let p = IncomingPartial {
                    id: delivery,
                    tag,
                    settled: false,
                    size: 0,
                    message_format: t.message_format.unwrap_or(0),
                };
                (true, p, revoked)
            }
        };
        partial.settled |= t.settled.unwrap_or(false);
        partial.size += payload.len() as u64;
        if l.max_message_size > 0 && partial.size > l.max_message_size && !aborted {
            let error = Error::new(
                condition::MESSAGE_SIZE_EXCEEDED,
                format!("message exceeds max-message-size {}", l.max_message_size),
            );
            let _ = self.detach(id, true, Some(error));
            return;
        }
        let done = !more || aborted;
        if !done {
            l.incoming_partial = Some(Box::new(partial.clone()));
        }
        let s = self.sessions.get_mut(&session).expect("exists");
        if first && !partial.settled {
            s.incoming_unsettled.insert(partial.id.0, id);
        }
        if partial.settled || aborted {
            s.incoming_unsettled.remove(&partial.id.0);
        }
        self.events.push_back(Event::Transfer(IncomingTransfer {
            link: id,
            delivery: partial.id,
            tag: partial.tag,
            first,
            more: more && !aborted,
            settled: partial.settled,
            aborted,
            message_format: partial.message_format,
            revoked,
            payload,
        }));
        // A drain is complete when the credit is used up, whether the
        // sender's flow saying so comes before its last transfers (it
        // counts them: see `link_flow`) or after.
        if let Some(l) = self.links.get_mut(&id)
            && first
            && l.drain
            && l.credit == 0
        {
            l.drain = false;
            self.events.push_back(Event::Drained { link: id });
        }
    }

    pub(crate) fn handle_disposition(&mut self, channel: u16, d: Disposition) {
        let Some(session) = self.session_for_channel(channel) else {
            return;
        };
        let first = d.first;
        let last = d.last.unwrap_or(first);
        let span = last.distance_from(first);
        if span >= 1 << 31 {
            return self.fail(condition::INVALID_FIELD, "disposition range is inverted");
        }
        let settled = d.settled.unwrap_or(false);
        let s = self.sessions.get_mut(&session).expect("exists");
        // role=receiver: about deliveries we sent; role=sender: ones we got.
        let map = match d.role {
            Role::Receiver => &mut s.outgoing_unsettled,
            Role::Sender => &mut s.incoming_unsettled,
        };
        let in_range = |id: u32| SequenceNo(id).distance_from(first) <= span;
        // Walk whichever is smaller: the range or the unsettled map.
        let mut hits: Vec<(u32, LinkId)> = if (span as usize) < map.len() {
            (0..=span)
                .filter_map(|i| {
                    let id = first.wrapping_add(i).0;
                    map.get(&id).map(|l| (id, *l))
                })
                .collect()
        } else {
            map.iter()
                .filter(|(id, _)| in_range(**id))
                .map(|(id, l)| (*id, *l))
                .collect()
        };
        hits.sort_by_key(|(id, _)| SequenceNo(*id).distance_from(first));
        if settled {
            for (id, _) in &hits {
                map.remove(id);
            }
            shrink_sparse(map);
        }
        for (id, link) in hits {
            self.events.push_back(Event::Disposition {
                link,
                delivery: SequenceNo(id),
                state: d.state.clone(),
                settled,
            });
        }
    }
}
