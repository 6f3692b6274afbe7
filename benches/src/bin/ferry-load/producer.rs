//! A producer connection: sends as fast as credit and its window allow
//! (closed loop) or at a fixed rate (open loop), stamping each message with
//! its intended send time.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ferry_proto::client::{Client, ClientOptions, Outcome};
use ferry_proto::definitions::DeliveryState;
use ferry_proto::engine::LinkId;

use crate::args::{Args, Settle, host_port};
use crate::payload;
use crate::report::Shared;

pub struct Producer {
    client: Client,
    link: LinkId,
    args: Args,
    shared: Arc<Shared>,
    index: usize,
}

impl Producer {
    pub async fn connect(
        url: &str,
        args: &Args,
        shared: Arc<Shared>,
        index: usize,
    ) -> anyhow::Result<Self> {
        let options = ClientOptions {
            container_id: format!("ferry-load-p{index}-{}", std::process::id()),
            timeout: Duration::from_secs(120),
            ..ClientOptions::default()
        };
        let mut client = Client::connect(host_port(url)?, options).await?;
        let link = client.open_sender(Some(&args.address)).await?;
        Ok(Self {
            client,
            link,
            args: args.clone(),
            shared,
            index,
        })
    }

    fn record(&self, o: Outcome) {
        let counter = match o.state {
            Some(DeliveryState::Accepted) => &self.shared.accepted,
            Some(DeliveryState::Rejected(_)) => &self.shared.rejected,
            Some(DeliveryState::Released) => &self.shared.released,
            _ => &self.shared.modified,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub async fn run(mut self, start: Instant) -> anyhow::Result<()> {
        let presettled = self.args.settle == Settle::Presettled;
        let deadline = self
            .args
            .duration
            .map(|d| start + Duration::from_secs_f64(d));
        let count = if deadline.is_some() {
            u64::MAX
        } else {
            self.args.count
        };
        // Open loop: each producer sends every `interval`, offset so the
        // producers interleave.
        let interval = self
            .args
            .rate
            .map(|r| Duration::from_secs_f64(self.args.producers as f64 / r));
        let offset = interval.map_or(Duration::ZERO, |i| {
            i * self.index as u32 / self.args.producers as u32
        });
        let base_ns = payload::now_ns() - start.elapsed().as_nanos() as u64;
        let mut in_flight = 0usize;
        let mut seq = 0u64;
        while seq < count {
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) || self.shared.stop.load(Ordering::Relaxed) {
                break;
            }
            let intended = match interval {
                Some(i) => {
                    let t = start + offset + i.mul_f64(seq as f64);
                    if t > now + Duration::from_millis(1) {
                        self.client.flush().await?;
                        tokio::time::sleep_until(t.into()).await;
                    }
                    t
                }
                None => now,
            };
            while self.client.credit(self.link) == 0
                || (!presettled && in_flight >= self.args.window)
            {
                if !presettled && in_flight > 0 {
                    let o = self.client.next_outcome().await?;
                    self.record(o);
                    in_flight -= 1;
                } else {
                    self.client.wait_credit(self.link).await?;
                }
            }
            let stamp = base_ns + (intended - start).as_nanos() as u64;
            let message = payload::encode(self.args.size, stamp, seq);
            self.client.send_nowait(self.link, message, presettled)?;
            self.shared.sent.fetch_add(1, Ordering::Relaxed);
            seq += 1;
            if !presettled {
                in_flight += 1;
            }
            let done: Vec<Outcome> = self.client.take_outcomes().collect();
            for o in done {
                self.record(o);
                in_flight -= 1;
            }
            if seq.is_multiple_of(32) {
                self.client.flush().await?;
            }
        }
        self.client.flush().await?;
        while in_flight > 0 {
            let o = self.client.next_outcome().await?;
            self.record(o);
            in_flight -= 1;
        }
        Ok(())
    }
}
