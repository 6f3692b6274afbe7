//! Credit: producers get what their address's consumers grant.

use super::*;

impl Links {
    /// Sets a producer link's credit to what its address's budget allows.
    pub(super) fn recredit(&mut self, engine: &mut Connection, link: LinkId) {
        let window = self.credit_window();
        let client = self.hop() == Hop::Local;
        let Some(Producer {
            address: Some(a),
            grant: last,
            ..
        }) = self.producers.get_mut(&link)
        else {
            return;
        };
        // An edge router's multicast producer waits for the interior's word
        // on its address (see `links::interest`), as a mesh producer waits for
        // its tree's links: else its first copies reach this edge only.
        let window = if a.distribution() == crate::config::Distribution::Multicast
            && client
            && self.core.mesh().edges().undecided(a.name())
        {
            0
        } else {
            window
        };
        let grant = a.grant(
            &self.core.mesh().table(),
            self.me.id,
            link,
            window,
            self.now,
        );
        *last = grant.credit;
        if grant.credit != engine.credit(link) {
            let _ = engine.flow(link, grant.credit, false);
        }
        match grant.recheck {
            Some(at) => self.rechecks.insert(link, at),
            None => self.rechecks.remove(&link),
        };
    }

    /// The sender of producer link `link` told how many deliveries wait
    /// behind it: a neighbour's data link asks its address again. (A
    /// client's is taken to want credit whatever it says: few clients
    /// say.)
    pub(super) fn producer_wants(&mut self, link: LinkId, available: u32) {
        if !self.hop().is_neighbour() {
            return;
        }
        let Some(a) = self.producers.get(&link).and_then(|p| p.address.as_ref()) else {
            return;
        };
        let table = self.core.mesh().table();
        a.set_wants(&table, self.me.id, link, available > 0, self.now);
        // Asked again once every event of this input is handled: the
        // engine has counted the transfers that came after this flow
        // already, the address not yet, and a grant now would give their
        // credit again.
        self.me.post(ToConn::Recredit { link });
    }

    /// When a producer short of credit should ask its address again.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let recheck = self.rechecks.values().min().copied();
        let broker = self.broker.as_ref().and_then(|b| b.poll_timeout());
        [recheck, self.poll_stuck(), self.poll_starved(), broker]
            .into_iter()
            .flatten()
            .min()
    }

    /// Asks again for the producers whose recheck time has come.
    pub(crate) fn handle_timeout(&mut self, engine: &mut Connection, now: Instant) {
        self.now = now;
        let mut due: Vec<LinkId> = self
            .rechecks
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(l, _)| *l)
            .collect();
        due.sort();
        for link in due {
            self.rechecks.remove(&link);
            self.recredit(engine, link);
        }
        self.check_stuck();
        self.check_starved(engine);
        if self
            .broker
            .as_ref()
            .and_then(|b| b.poll_timeout())
            .is_some_and(|at| at <= now)
        {
            self.follow_broker_demand(engine);
        }
    }

    pub(super) fn consumer_credit(
        &mut self,
        engine: &mut Connection,
        link: LinkId,
        credit: u32,
        granted: u32,
        drain: bool,
    ) {
        let Some(c) = self.consumers.get_mut(&link) else {
            return;
        };
        if c.retiring {
            // Out of the address's budget: nothing to report, nothing to
            // send.
            c.reported = credit;
            if drain {
                let _ = engine.drained(link);
            }
            return;
        }
        let delta = credit as i64 - c.reported as i64;
        c.reported = credit;
        let table = self.core.mesh().table();
        c.address
            .consumer_flow(&table, self.me.id, link, delta, granted);
        self.send_held(engine, link);
        let Some(c) = self.consumers.get_mut(&link) else {
            return;
        };
        if drain {
            // What waited here for credit has just gone out as far as the
            // credit went; what producers have not sent yet cannot be
            // promised, so the rest of the credit goes back now.
            let _ = engine.drained(link);
            c.address
                .adjust_consumer_credit(&table, self.me.id, link, -(c.reported as i64));
            c.reported = 0;
        }
    }
}
