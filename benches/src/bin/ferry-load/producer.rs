//! A producer connection: sends as fast as credit and its window allow
//! (closed loop) or on a fixed schedule (open loop), stamping each message
//! with its send time and id.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ferry_proto::client::{Client, ClientError, ClientOptions, Outcome};
use ferry_proto::definitions::DeliveryState;
use ferry_proto::engine::LinkId;

use crate::args::{Args, Settle};
use crate::payload;
use crate::report::Shared;

/// How early an open-loop producer may send a message (the timer's
/// resolution is 1 ms): the stamp is then the actual send time.
const EARLY: Duration = Duration::from_millis(1);

/// Transfers queued before they are written out (closed loop).
const FLUSH_EVERY: u64 = 32;

pub struct Producer {
    client: Client,
    link: LinkId,
    args: Args,
    shared: Arc<Shared>,
    index: usize,
    in_flight: usize,
    /// Reused for outcomes taken from the client.
    outcomes: Vec<Outcome>,
}

impl Producer {
    /// Connects and attaches the sender.
    pub async fn connect(
        url: &str,
        args: &Args,
        shared: Arc<Shared>,
        index: usize,
    ) -> anyhow::Result<Self> {
        let (addr, options) = crate::connect::options(
            args,
            url,
            format!("ferry-load-p{index}-{}", std::process::id()),
        )?;
        let options = ClientOptions {
            timeout: Duration::from_secs(120),
            ..options
        };
        let mut client = Client::connect(addr, options).await?;
        let link = client.open_sender(Some(&args.address)).await?;
        Ok(Self {
            client,
            link,
            args: args.clone(),
            shared,
            index,
            in_flight: 0,
            outcomes: Vec::new(),
        })
    }

    /// Waits until the endpoint grants the sender credit.
    pub async fn wait_credit(&mut self) -> Result<u32, ClientError> {
        self.client.wait_credit(self.link).await
    }

    fn record(&mut self, o: Outcome) {
        let s = &self.shared;
        let counter = match o.state {
            Some(DeliveryState::Accepted) => &s.accepted,
            Some(DeliveryState::Rejected(_)) => &s.rejected,
            Some(DeliveryState::Released) => &s.released,
            // Modified, or settled without an outcome.
            _ => &s.modified,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Sends until the count, the duration or a stop; then waits (at most
    /// `--drain-secs`) for the outcomes still due. Failures are recorded
    /// in [`Shared`]. Returns the connection, still open: closing it while
    /// other producers still send would be timed too.
    pub async fn run(mut self, start: Instant) -> Self {
        if let Err(e) = self.send_all(start).await {
            self.shared
                .fail(format!("producer {}: {}", self.index, crate::chain(&e)));
            return self;
        }
        let drain = Duration::from_secs_f64(self.args.drain_secs);
        let outcomes = tokio::time::timeout(drain, async {
            while self.in_flight > 0 {
                let o = self.client.next_outcome().await?;
                self.record(o);
            }
            Ok::<_, ClientError>(())
        })
        .await;
        match outcomes {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.shared.fail(format!("producer {}: {e}", self.index)),
            // Reported as `unsettled`.
            Err(_) => {}
        }
        // Done. Keep the link until main says (every producer done, or
        // some still behind, see `main::drive`), then give the endpoint's
        // credit back: a router may hold credit for this link away from
        // producers still sending. Detaching while others send would time
        // the detach too. The connection stays open until the run ends.
        self.shared.producer_finished();
        crate::report::set(&mut self.shared.release.subscribe()).await;
        let _ =
            tokio::time::timeout(Duration::from_secs(2), self.client.close_link(self.link)).await;
        self
    }

    /// Closes the connection (waiting at most 2 s for the endpoint).
    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.client.close()).await;
    }

    /// Open loop, between sends: keeps reading (outcomes, credit) until
    /// `until`.
    async fn idle_until(&mut self, until: Instant) -> Result<(), ClientError> {
        self.client.flush().await?;
        let sleep = tokio::time::sleep_until(until.into());
        tokio::pin!(sleep);
        loop {
            // `next_outcome` only reads and absorbs what arrives: safe to
            // drop when the timer fires.
            tokio::select! {
                () = &mut sleep => return Ok(()),
                o = self.client.next_outcome() => {
                    let o = o?;
                    self.record(o);
                }
            }
        }
    }

    async fn send_all(&mut self, start: Instant) -> anyhow::Result<()> {
        let presettled = self.args.settle == Settle::Presettled;
        let deadline = self
            .args
            .duration
            .map(|d| start + Duration::from_secs_f64(d));
        // Open loop behind schedule with no credit: give up this long
        // after the end.
        let give_up = deadline.map(|d| d + Duration::from_secs_f64(self.args.drain_secs));
        let count = if deadline.is_some() {
            u64::MAX
        } else {
            self.args.count
        };
        // Open loop: each producer sends every `interval`, offset so the
        // producers interleave evenly.
        let producers = self.args.producers as f64;
        let interval = self.args.rate.map(|r| producers / r);
        let offset = interval.map_or(0.0, |i| i * self.index as f64 / producers);
        // Wall-clock time of `start`, for the stamps.
        let base_ns = payload::now_ns().saturating_sub(start.elapsed().as_nanos() as u64);
        let size = self.args.size;
        let producer = self.index as u32;
        let header = self.args.priority.map(payload::header).unwrap_or_default();
        let mut seq = 0u64;
        while seq < count && !self.shared.stopping() {
            let intended = match interval {
                Some(i) => {
                    let t = start + Duration::from_secs_f64(offset + i * seq as f64);
                    if deadline.is_some_and(|d| t >= d) {
                        break;
                    }
                    let now = Instant::now();
                    if t > now + EARLY {
                        self.idle_until(t - EARLY).await?;
                        continue;
                    }
                    Some(t)
                }
                None => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                    None
                }
            };
            while self.client.credit(self.link) == 0
                || (!presettled && self.in_flight >= self.args.window)
            {
                let outcome = !presettled && self.in_flight > 0;
                let client = &mut self.client;
                let link = self.link;
                let wait = async move {
                    if outcome {
                        client.next_outcome().await.map(Some)
                    } else {
                        client.wait_credit(link).await.map(|_| None)
                    }
                };
                let waited = match give_up {
                    None => wait.await?,
                    Some(at) => {
                        tokio::time::timeout_at(at.into(), wait)
                            .await
                            .map_err(|_| {
                                anyhow::anyhow!(
                                    "no credit {} s after the end of --duration ({seq} sent)",
                                    self.args.drain_secs
                                )
                            })??
                    }
                };
                if let Some(o) = waited {
                    self.record(o);
                }
            }
            // Open loop: the intended time if we are late (the wait is the
            // endpoint's doing: coordinated omission), the actual time if
            // we are early.
            let now = Instant::now();
            let at = intended.map_or(now, |t| t.min(now));
            let stamp = base_ns + at.saturating_duration_since(start).as_nanos() as u64;
            let message = payload::encode_with(&header, size, stamp, producer, seq);
            self.client.send_nowait(self.link, message, presettled)?;
            seq += 1;
            self.shared.sent[self.index].store(seq, Ordering::Relaxed);
            if !presettled {
                self.in_flight += 1;
                let mut done = std::mem::take(&mut self.outcomes);
                done.extend(self.client.take_outcomes());
                for o in done.drain(..) {
                    self.record(o);
                }
                self.outcomes = done;
            }
            if seq.is_multiple_of(FLUSH_EVERY) {
                self.client.flush().await?;
            }
        }
        Ok(self.client.flush().await?)
    }
}
