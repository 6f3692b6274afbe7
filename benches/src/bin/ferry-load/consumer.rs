//! A consumer connection: keeps `--credit` granted, accepts what arrives,
//! records one-way latency from each message's send stamp and which
//! messages it has seen.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ferry_proto::client::{Client, ClientOptions};
use ferry_proto::engine::LinkId;

use crate::args::Args;
use crate::payload;
use crate::report::{ConsumerResult, Seen, Shared, new_histogram};

pub struct Consumer {
    client: Client,
    link: LinkId,
    credit: u32,
    shared: Arc<Shared>,
    index: usize,
    /// Messages without a stamp, or stamped by a producer at or above
    /// this or with a sequence number at or above `max_seq`, are not from
    /// this run: counted as foreign.
    producers: usize,
    max_seq: u64,
    /// `--close-after`: close once this many messages were received.
    close_after: Option<u64>,
    /// `--consume-rate`: messages a second, at most.
    consume_rate: Option<f64>,
}

impl Consumer {
    pub async fn connect(
        url: &str,
        args: &Args,
        shared: Arc<Shared>,
        index: usize,
    ) -> anyhow::Result<Self> {
        let (addr, options) = crate::connect::options(
            args,
            url,
            format!("ferry-load-c{index}-{}", std::process::id()),
        )?;
        let options = ClientOptions {
            timeout: Duration::from_secs(3600),
            recv_buffer: args.recv_buffer,
            ..options
        };
        let mut client = Client::connect(addr, options).await?;
        let link = client.open_receiver(&args.address, args.credit).await?;
        Ok(Self {
            client,
            link,
            credit: args.credit,
            shared,
            index,
            producers: args.producers,
            max_seq: match (args.duration, args.sink) {
                (None, false) => args.count,
                // The in-process source numbers all it sends as producer 0.
                (None, true) => args.count.saturating_mul(args.producers as u64),
                (Some(_), _) => 1 << 32,
            },
            close_after: args.close_after,
            consume_rate: args.consume_rate,
        })
    }

    /// Receives until the run stops; never fails: an error ends the run
    /// and is handed back with what was counted.
    pub async fn run(mut self, start: Instant) -> ConsumerResult {
        let mut r = ConsumerResult {
            index: self.index,
            received: 0,
            unique: 0,
            foreign: 0,
            latency: new_histogram(),
            by_priority: Default::default(),
            seen: Seen::default(),
            error: None,
        };
        let mut stop = self.shared.stop.subscribe();
        let mut batch = Vec::with_capacity(256);
        let mut paced_from: Option<Instant> = None;
        loop {
            let first = tokio::select! {
                d = self.client.receive(self.link) => d,
                () = crate::report::set(&mut stop) => break,
            };
            let d = match first {
                Ok(d) => d,
                Err(e) => {
                    r.error = Some(format!("consumer {}: {e}", self.index));
                    self.shared.fail(r.error.clone().unwrap_or_default());
                    break;
                }
            };
            batch.push(d);
            while let Some(d) = self.client.try_receive(self.link) {
                batch.push(d);
            }
            let now_ns = payload::now_ns();
            let mut bytes = 0;
            for d in &batch {
                bytes += d.payload.len() as u64;
                let stamp = payload::decode(&d.payload);
                if let Some(s) = stamp {
                    // Any stamp gives a latency, also one from another
                    // ferry-load process (a consumer-only run).
                    let us = (now_ns.saturating_sub(s.sent_ns) / 1000).max(1);
                    let _ = r.latency.record(us);
                    if let Some(p) = payload::priority(&d.payload) {
                        let _ = r
                            .by_priority
                            .entry(p)
                            .or_insert_with(new_histogram)
                            .record(us);
                    }
                }
                match stamp
                    .filter(|s| (s.producer as usize) < self.producers && s.seq < self.max_seq)
                {
                    Some(s) => {
                        if r.seen.insert(s.producer as usize, s.seq) {
                            r.unique += 1;
                        }
                    }
                    None => r.foreign += 1,
                }
                if !d.settled
                    && let Err(e) = self.client.accept(d)
                {
                    r.error = Some(format!("consumer {}: {e}", self.index));
                }
            }
            r.received += batch.len() as u64;
            batch.clear();
            self.shared.received[self.index].store(r.received, Ordering::Relaxed);
            self.shared
                .received_bytes
                .fetch_add(bytes, Ordering::Relaxed);
            self.shared
                .last_receive_ns
                .fetch_max(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
            if let Some(e) = &r.error {
                self.shared.fail(e.clone());
                break;
            }
            if self.close_after.is_some_and(|n| r.received >= n) {
                // Accepted the last one: close at once (below), right
                // behind its disposition.
                break;
            }
            if let Some(rate) = self.consume_rate {
                // A slow consumer: no sooner than its rate allows, from
                // its first message on.
                let first = *paced_from.get_or_insert_with(Instant::now);
                let due = first + Duration::from_secs_f64(r.received as f64 / rate);
                tokio::select! {
                    () = tokio::time::sleep_until(due.into()) => {}
                    () = crate::report::set(&mut stop) => break,
                }
            }
            if self.client.credit(self.link) < self.credit / 2 {
                let flow = tokio::select! {
                    f = self.client.flow(self.link, self.credit) => f,
                    () = crate::report::set(&mut stop) => break,
                };
                if let Err(e) = flow {
                    r.error = Some(format!("consumer {}: {e}", self.index));
                    self.shared.fail(r.error.clone().unwrap_or_default());
                    break;
                }
            }
        }
        // Send outstanding dispositions and close, briefly: the endpoint
        // may be gone.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = self.client.flush().await;
            let _ = self.client.close().await;
        })
        .await;
        r
    }
}
