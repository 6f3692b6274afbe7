//! A consumer connection: keeps `--credit` granted, accepts what arrives and
//! records end-to-end latency from each message's send stamp.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ferry_proto::client::{Client, ClientOptions};
use ferry_proto::engine::LinkId;

use crate::args::{Args, host_port};
use crate::payload;
use crate::report::Shared;

pub struct Consumer {
    client: Client,
    link: LinkId,
    credit: u32,
    shared: Arc<Shared>,
}

impl Consumer {
    pub async fn connect(url: &str, args: &Args, shared: Arc<Shared>) -> anyhow::Result<Self> {
        let options = ClientOptions {
            container_id: format!("ferry-load-c-{}", std::process::id()),
            timeout: Duration::from_secs(3600),
            ..ClientOptions::default()
        };
        let mut client = Client::connect(host_port(url)?, options).await?;
        let link = client.open_receiver(&args.address, args.credit).await?;
        Ok(Self {
            client,
            link,
            credit: args.credit,
            shared,
        })
    }

    pub async fn run(mut self) -> anyhow::Result<()> {
        while !self.shared.stop.load(Ordering::Relaxed) {
            let d = self.client.receive(self.link).await?;
            let mut batch = vec![d];
            while let Some(d) = self.client.try_receive(self.link) {
                batch.push(d);
            }
            let now_ns = payload::now_ns();
            {
                let mut h = self.shared.latency.lock().expect("lock");
                for d in &batch {
                    if let Some(sent) = payload::sent_ns(&d.payload) {
                        let _ = h.record((now_ns.saturating_sub(sent) / 1000).max(1));
                    }
                }
            }
            for d in &batch {
                self.shared
                    .received_bytes
                    .fetch_add(d.payload.len() as u64, Ordering::Relaxed);
                if !d.settled {
                    self.client.accept(d)?;
                }
            }
            self.shared
                .received
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            *self.shared.last_receive.lock().expect("lock") = Some(Instant::now());
            if self.client.credit(self.link) < self.credit / 2 {
                self.client.flow(self.link, self.credit).await?;
            }
        }
        Ok(())
    }
}
