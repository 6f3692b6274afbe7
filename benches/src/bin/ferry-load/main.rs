//! `ferry-load`: a router-agnostic AMQP 1.0 load generator. Producers and
//! consumers connect to any AMQP 1.0 endpoint by URL and report throughput,
//! end-to-end latency percentiles and outcomes.
//!
//! ```text
//! ferry-load --url amqp://127.0.0.1:5672 --producers 1 --consumers 1 --size 100 --count 200000
//! ferry-load --sink --producers 1 --count 1000000      # the generator's own ceiling
//! ```

mod args;
mod consumer;
mod payload;
mod producer;
mod report;
mod sink;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;

use args::Args;
use report::{Report, Shared};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.check()?;
    if args.idle > 0 {
        return idle(&args).await;
    }
    let (producer_urls, consumer_urls) = if args.sink {
        let addr = sink::start()
            .await
            .context("starting the in-process sink")?;
        (vec![format!("amqp://{addr}")], Vec::new())
    } else {
        (args.producer_urls(), args.consumer_urls())
    };
    let shared = Arc::new(Shared::new());
    let consumers = if args.sink { 0 } else { args.consumers };

    // Consumers first, so producers find credit.
    let mut tasks = Vec::new();
    for i in 0..consumers {
        let url = consumer_urls[i % consumer_urls.len()].clone();
        let (shared, args) = (shared.clone(), args.clone());
        let c = consumer::Consumer::connect(&url, &args, shared)
            .await
            .with_context(|| format!("consumer {i} connecting to {url}"))?;
        tasks.push(tokio::spawn(c.run()));
    }
    let start = Instant::now();
    *shared.start.lock().expect("lock") = Some(start);
    let mut producers = Vec::new();
    for i in 0..args.producers {
        let url = producer_urls[i % producer_urls.len()].clone();
        let (shared, args) = (shared.clone(), args.clone());
        let p = producer::Producer::connect(&url, &args, shared, i)
            .await
            .with_context(|| format!("producer {i} connecting to {url}"))?;
        producers.push(tokio::spawn(p.run(start)));
    }

    let progress = {
        let shared = shared.clone();
        let quiet = args.json;
        tokio::spawn(async move {
            let mut last = (0, Instant::now());
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let sent = shared.sent.load(Ordering::Relaxed);
                let received = shared.received.load(Ordering::Relaxed);
                let now = Instant::now();
                let rate = (received.max(sent) - last.0) as f64 / (now - last.1).as_secs_f64();
                last = (received.max(sent), now);
                if !quiet {
                    eprintln!(
                        "[{:>5.1}s] sent {sent} received {received} ({rate:.0} msg/s)",
                        (now - start).as_secs_f64()
                    );
                }
            }
        })
    };

    let mut failed = None;
    for p in producers {
        if let Err(e) = p.await? {
            failed.get_or_insert(e);
        }
    }
    let producers_done = Instant::now();
    // Consumers stop once everything sent has arrived, or after a grace.
    let expected = shared.expected_deliveries(consumers, args.multicast);
    let grace = Instant::now() + Duration::from_secs(args.drain_secs);
    while consumers > 0
        && shared.received.load(Ordering::Relaxed) < expected
        && Instant::now() < grace
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let end = if consumers > 0 {
        shared.last_receive()
    } else {
        Some(producers_done)
    };
    shared.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(5), t).await {
            failed.get_or_insert(e);
        }
    }
    progress.abort();
    let report = Report::build(&args, &shared, start, end.unwrap_or(producers_done));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    if let Some(e) = failed {
        bail!(e);
    }
    Ok(())
}

/// Opens `--idle` connections and holds them.
async fn idle(args: &Args) -> anyhow::Result<()> {
    let addr = args::host_port(&args.url)?;
    let mut held = Vec::with_capacity(args.idle);
    for i in 0..args.idle {
        let options = ferry_proto::client::ClientOptions {
            container_id: format!("ferry-load-idle-{i}"),
            idle_timeout: None,
            ..Default::default()
        };
        let c = ferry_proto::client::Client::connect(addr.as_str(), options)
            .await
            .with_context(|| format!("idle connection {i}"))?;
        held.push(c);
    }
    eprintln!("idle connections open: {}", held.len());
    tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    Ok(())
}
