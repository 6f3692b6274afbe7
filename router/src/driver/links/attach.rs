//! Attaching links: what a client may attach, and what is refused.

use super::*;

impl Links {
    pub(super) fn attach(&mut self, engine: &mut Connection, link: LinkId, attach: &Attach) {
        if self.mesh.is_control_attach(attach) {
            return self.accept_control(engine, link, attach);
        }
        let count = self.producers.len() + self.consumers.len();
        let max = self.max_links();
        let inter_router = self.mesh.peer().is_some() || self.mesh.edge().is_some();
        if self.mesh.is_uplink() && self.accept_interest(engine, link, attach) {
            return;
        }
        let result = if self.mesh.is_uplink() {
            Err(refusal(
                condition::NOT_ALLOWED,
                "an interior router attaches nothing on an edge router's uplink",
            ))
        } else if self.mesh.peer().is_some() && attach.role == Role::Receiver {
            Err(refusal(
                condition::NOT_ALLOWED,
                "routers send to each other on links they attach as senders",
            ))
        } else if !inter_router && count >= max {
            Err(refusal(
                condition::RESOURCE_LIMIT_EXCEEDED,
                &format!("at most {max} links per connection"),
            ))
        } else {
            match attach.role {
                Role::Sender => self.attach_producer(engine, link, attach),
                Role::Receiver => self.attach_consumer(engine, link, attach),
            }
        };
        if let Err(error) = result {
            let why = error.description.as_deref().unwrap_or("no reason given");
            tracing::debug!("link {} refused: {why}", attach.name);
            let _ = engine.refuse_attach(link, error);
        }
    }

    pub(super) fn attach_producer(
        &mut self,
        engine: &mut Connection,
        link: LinkId,
        attach: &Attach,
    ) -> Result<(), Error> {
        let target = match &attach.target {
            Some(TargetTerminus::Target(t)) => t,
            Some(TargetTerminus::Coordinator(_)) => {
                return Err(refusal(
                    condition::NOT_IMPLEMENTED,
                    "transactions are not supported: Ferry routes, it does not store",
                ));
            }
            None => return Err(refusal(condition::INVALID_FIELD, "attach has no target")),
        };
        if target.dynamic == Some(true) {
            return Err(refusal(
                condition::NOT_IMPLEMENTED,
                "dynamic targets are not supported; attach a dynamic receiver for a reply address",
            ));
        }
        if let Some(a) = target.address.as_deref() {
            // Before anything about the address is looked at: a refusal
            // must not tell whether it has consumers.
            self.may_send(a)?;
        }
        let address = target
            .address
            .as_deref()
            .map(|a| self.core.address(&self.scoped(a)));
        // A neighbour's multicast data link names its tree; one that does
        // not is taken to carry the neighbour's own producers' messages.
        let tree = self
            .mesh
            .peer()
            .map(|peer| mesh::tree_of(attach).unwrap_or_else(|| peer.clone()));
        let spec = LinkSpec {
            name: attach.name.to_string(),
            role: Role::Receiver,
            source: attach.source.clone(),
            target: attach.target.clone(),
            snd_settle_mode: attach.snd_settle_mode.unwrap_or_default(),
            rcv_settle_mode: ReceiverSettleMode::First,
            max_message_size: Some(self.max_message_size()),
            ..LinkSpec::default()
        };
        engine
            .accept_attach(link, spec)
            .map_err(|e| refusal(condition::INTERNAL_ERROR, &e.to_string()))?;
        match &address {
            Some(a) => {
                let budget = Some(self.budget().clone());
                if a.add_producer(
                    self.me.clone(),
                    link,
                    self.hop(),
                    tree.clone(),
                    budget,
                    self.now,
                ) {
                    self.core.tree_producers_changed(a);
                }
                self.core.own_links_changed(a, &self.hop());
            }
            // Anonymous senders get a fixed window: their messages' addresses
            // are unknown until they arrive (unroutable ones are released).
            None => {
                self.note_relay(link, attach);
                let _ = engine.flow(link, self.window(), false);
            }
        }
        match &address {
            Some(a) => tracing::debug!("producer {} attached to {}", attach.name, a.name()),
            None => tracing::debug!("producer {} attached (anonymous)", attach.name),
        }
        let _open = self.core.metrics().link_opened(LinkDirection::In);
        self.producers.insert(
            link,
            Producer {
                address,
                tree,
                counts: Default::default(),
                grant: 0,
                _open,
            },
        );
        self.recredit(engine, link);
        self.tell_interest(engine, link);
        Ok(())
    }

    pub(super) fn attach_consumer(
        &mut self,
        engine: &mut Connection,
        link: LinkId,
        attach: &Attach,
    ) -> Result<(), Error> {
        let Some(source) = &attach.source else {
            return Err(refusal(condition::INVALID_FIELD, "attach has no source"));
        };
        if source.distribution_mode.as_deref() == Some("copy") {
            return Err(refusal(
                condition::NOT_IMPLEMENTED,
                "distribution-mode copy (browsing) needs a queue; Ferry routes, it does not store",
            ));
        }
        let name = if source.dynamic == Some(true) {
            self.may_receive(None)?;
            self.core.dynamic_address()
        } else {
            match &source.address {
                Some(a) => {
                    self.may_receive(Some(a))?;
                    a.to_string()
                }
                None => {
                    return Err(refusal(
                        condition::INVALID_FIELD,
                        "source has no address and is not dynamic",
                    ));
                }
            }
        };
        let mut answer = source.clone();
        answer.address = Some(name.as_str().into());
        // Filters are not supported: leaving them out of our source tells
        // the client they are not applied (AMQP 1.0 §3.5.3).
        answer.filter = None;
        let spec = LinkSpec {
            name: attach.name.to_string(),
            role: Role::Sender,
            source: Some(answer),
            target: attach.target.clone(),
            snd_settle_mode: SenderSettleMode::Mixed,
            rcv_settle_mode: attach.rcv_settle_mode.unwrap_or_default(),
            ..LinkSpec::default()
        };
        engine
            .accept_attach(link, spec)
            .map_err(|e| refusal(condition::INTERNAL_ERROR, &e.to_string()))?;
        // A brokered address's consumers are fed by the broker only.
        let address = self
            .core
            .address(&self.core.consumer_address(self.scoped(&name)));
        let to = self.hop();
        tracing::debug!("consumer {} attached to {name}", attach.name);
        if self.add_consumer_link(link, address.clone(), to.clone(), None) {
            self.core.local_consumers(&address, true);
        }
        self.core.own_links_changed(&address, &to);
        Ok(())
    }
}
