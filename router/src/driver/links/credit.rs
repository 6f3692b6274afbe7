//! Credit: producers get what their address's consumers grant.

use super::*;

impl Links {
    /// Sets a producer link's credit to what its address's budget allows.
    pub(super) fn recredit(&mut self, engine: &mut Connection, link: LinkId) {
        let Some(Producer { address: Some(a) }) = self.producers.get(&link) else {
            return;
        };
        let credit = a.grant(&self.core.mesh().table(), self.me.id, link, self.window());
        if credit != engine.credit(link) {
            let _ = engine.flow(link, credit, false);
        }
    }

    pub(super) fn consumer_credit(
        &mut self,
        engine: &mut Connection,
        link: LinkId,
        credit: u32,
        drain: bool,
    ) {
        let Some(c) = self.consumers.get_mut(&link) else {
            return;
        };
        let delta = credit as i64 - c.reported as i64;
        c.reported = credit;
        c.address.adjust_consumer_credit(self.me.id, link, delta);
        if drain {
            // Nothing is queued here for a consumer: what producers have not
            // sent yet cannot be promised, so the credit goes back now.
            let _ = engine.drained(link);
            c.address
                .adjust_consumer_credit(self.me.id, link, -(c.reported as i64));
            c.reported = 0;
        }
    }
}
