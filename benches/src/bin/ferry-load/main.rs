//! `ferry-load`: a router-agnostic AMQP 1.0 load generator. Producers and
//! consumers connect to any AMQP 1.0 endpoint by URL and report throughput,
//! one-way latency percentiles and what became of every message. See
//! `ferry-load --help` and `benches/README.md`.
//!
//! ```text
//! ferry-load --url amqp://127.0.0.1:5672 --producers 1 --consumers 1 --size 100 --count 200000
//! ferry-load --sink --count 1000000      # the generator's own ceiling
//! ```

mod args;
mod connect;
mod consumer;
mod payload;
mod producer;
mod report;
mod sink;

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use args::{Args, IdleLink, Settle};
use report::{Outcome, Report, Shared};

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = args.check() {
        eprintln!("ferry-load: {e:#}");
        return ExitCode::from(2);
    }
    if args.idle > 0 {
        return match idle(&args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ferry-load: {}", chain(&e));
                ExitCode::FAILURE
            }
        };
    }
    let report = run(&args).await;
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(j) => println!("{j}"),
            Err(e) => eprintln!("ferry-load: cannot write the JSON report: {e}"),
        }
    } else {
        print!("{report}");
    }
    let _ = std::io::stdout().flush();
    if let Some(l) = report.lost.filter(|&l| l > 0) {
        eprintln!(
            "ferry-load: WARNING: {l} unsettled messages were accepted or never settled but not received"
        );
    }
    match &report.error {
        Some(e) => {
            eprintln!("ferry-load: {e}");
            ExitCode::FAILURE
        }
        None => ExitCode::SUCCESS,
    }
}

/// An error and its causes, each once (some errors repeat their source's
/// text in their own).
fn chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out += ": ";
            }
            out += &text;
        }
    }
    out
}

/// Runs `make(i)` for `i` in `0..n`, at most `concurrency` at once; the
/// results in order, or the first error.
async fn connect_all<T, F, Fut>(n: usize, concurrency: usize, make: F) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize, Arc<Semaphore>) -> Fut,
    Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut set = JoinSet::new();
    for i in 0..n {
        let fut = make(i, permits.clone());
        set.spawn(async move { (i, fut.await) });
    }
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    while let Some(r) = set.join_next().await {
        let (i, r) = r.context("connecting task failed")?;
        out[i] = Some(r?);
    }
    Ok(out
        .into_iter()
        .map(|t| t.expect("every task reported"))
        .collect())
}

async fn run(args: &Args) -> Report {
    let shared = Arc::new(Shared::new(args.producers, args.consumers));
    let mut o = Outcome {
        shared: &shared,
        consumers: Vec::new(),
        producer_urls: args.producer_urls(),
        consumer_urls: args.consumer_urls(),
        start: None,
        producers_done: None,
        cpu_s: None,
    };
    if let Err(e) = drive(args, &shared, &mut o).await {
        shared.fail(chain(&e));
    }
    Report::build(args, o)
}

async fn drive(args: &Args, shared: &Arc<Shared>, o: &mut Outcome<'_>) -> anyhow::Result<()> {
    if args.sink {
        let addr = sink::start(args, shared.clone())
            .await
            .context("starting the in-process sink")?;
        o.producer_urls = vec![format!("amqp://{addr}")];
        o.consumer_urls = o.producer_urls.clone();
    }
    {
        let shared = shared.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                shared.fail("interrupted".into());
            }
        });
    }

    // Consumers first, so producers find credit.
    let consumers = {
        let urls = o.consumer_urls.clone();
        connect_all(args.consumers, args.connect_concurrency, |i, permits| {
            let url = urls[i % urls.len()].clone();
            let (args, shared) = (args.clone(), shared.clone());
            async move {
                let _permit = permits.acquire_owned().await?;
                consumer::Consumer::connect(&url, &args, shared, i)
                    .await
                    .with_context(|| format!("consumer {i} connecting to {url}"))
            }
        })
        .await?
    };
    if args.start_delay > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(args.start_delay)).await;
    }
    // Producers: every one connected and attached, and one granted credit
    // (the endpoint knows where the consumers are), before the clock
    // starts. Not every one: an endpoint that never promises more than
    // its consumers' credit may have none to give some producers yet.
    let urls = o.producer_urls.clone();
    let credited = tokio::sync::watch::channel(false).0;
    let connecting = connect_all(args.producers, args.connect_concurrency, |i, permits| {
        let url = urls[i % urls.len()].clone();
        let (args, shared) = (args.clone(), shared.clone());
        let credited = credited.clone();
        async move {
            let permit = permits.acquire_owned().await?;
            let mut p = producer::Producer::connect(&url, &args, shared, i)
                .await
                .with_context(|| format!("producer {i} connecting to {url}"))?;
            drop(permit);
            let mut any = credited.subscribe();
            tokio::select! {
                r = p.wait_credit() => {
                    r.with_context(|| format!("producer {i} waiting for credit from {url}"))?;
                    credited.send_replace(true);
                }
                () = report::set(&mut any) => {}
            }
            Ok(p)
        }
    });
    let producers = tokio::time::timeout(Duration::from_secs_f64(args.start_timeout), connecting)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the producers were not all attached, and one granted credit, within --start-timeout {} s",
                args.start_timeout
            )
        })??;

    let start = Instant::now();
    let cpu0 = report::process_cpu_s();
    o.start = Some(start);
    shared.started.send_replace(true);
    let consumer_tasks: Vec<_> = consumers
        .into_iter()
        .map(|c| tokio::spawn(c.run(start)))
        .collect();
    let mut producer_tasks = JoinSet::new();
    for p in producers {
        producer_tasks.spawn(p.run(start));
    }
    let progress =
        (args.progress > 0.0).then(|| tokio::spawn(progress(args.clone(), shared.clone(), start)));

    // Until the producers finish, or something stops the run.
    let mut stop = shared.stop.subscribe();
    let mut finished = Vec::with_capacity(args.producers);
    if args.producers == 0 {
        let duration = Duration::from_secs_f64(args.duration.unwrap_or_default());
        tokio::select! {
            () = tokio::time::sleep(duration) => {}
            () = report::set(&mut stop) => {}
        }
    }
    let mut check = tokio::time::interval(Duration::from_millis(20));
    let hold = Duration::from_millis(args.quiet_ms);
    loop {
        tokio::select! {
            _ = check.tick() => {
                // Finished producers keep their links (and any credit)
                // until every producer is done, or for --quiet-ms when
                // some are still sending (perhaps for want of that credit).
                let all = shared.finished.load(Ordering::Relaxed) >= args.producers as u64;
                let first = *shared.first_finished.lock().expect("lock");
                if all {
                    shared.producers_done.store(true, Ordering::Relaxed);
                }
                if all || first.is_some_and(|f| f.elapsed() >= hold) {
                    shared.release.send_replace(true);
                }
            }
            r = producer_tasks.join_next() => match r {
                None => break,
                Some(Err(e)) if e.is_panic() => shared.fail(format!("a producer panicked: {e}")),
                Some(Err(_)) => {}
                Some(Ok(p)) => finished.push(p),
            },
            () = report::set(&mut stop) => {
                let grace = Duration::from_secs_f64(args.drain_secs) + Duration::from_secs(3);
                let _ = tokio::time::timeout(grace, async {
                    while let Some(r) = producer_tasks.join_next().await {
                        finished.extend(r.ok());
                    }
                })
                .await;
                producer_tasks.abort_all();
                break;
            }
        }
    }
    // When the last producer finished sending (not detaching).
    let producers_done = shared
        .last_finished
        .lock()
        .expect("lock")
        .unwrap_or_else(Instant::now);
    o.producers_done = Some(producers_done);
    shared.producers_done.store(true, Ordering::Relaxed);

    // Messages still on their way: until all expected arrived, nothing
    // arrived for --quiet-ms, or --drain-secs passed.
    if args.consumers > 0 {
        let deadline = producers_done + Duration::from_secs_f64(args.drain_secs);
        let quiet = Duration::from_millis(args.quiet_ms);
        let (mut last, mut changed) = (shared.received_total(), Instant::now());
        while !shared.stopping() {
            let received = shared.received_total();
            let now = Instant::now();
            if received >= shared.expected(args, args.consumers) || now >= deadline {
                break;
            }
            if received != last {
                (last, changed) = (received, now);
            } else if now - changed >= quiet {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    shared.stop.send_replace(true);
    for t in consumer_tasks {
        match tokio::time::timeout(Duration::from_secs(5), t).await {
            Ok(Ok(r)) => o.consumers.push(r),
            Ok(Err(e)) => shared.fail(format!("a consumer task failed: {e}")),
            Err(_) => shared.fail("a consumer did not stop within 5 s".into()),
        }
    }
    o.cpu_s = cpu0.and_then(|c| Some(report::process_cpu_s()? - c));
    // Only now, untimed: close the producers' connections.
    let mut closing: JoinSet<()> = finished
        .into_iter()
        .map(producer::Producer::close)
        .collect();
    while closing.join_next().await.is_some() {}
    if let Some(p) = progress {
        p.abort();
        let _ = p.await;
        if std::io::stderr().is_terminal() {
            eprintln!();
        }
    }
    Ok(())
}

/// Prints a progress line on stderr every `--progress` seconds: rewritten
/// in place on a terminal, one line each otherwise.
async fn progress(args: Args, shared: Arc<Shared>, start: Instant) {
    let every = Duration::from_secs_f64(args.progress);
    let tty = std::io::stderr().is_terminal();
    let mut tick = tokio::time::interval_at((start + every).into(), every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut last_sent, mut last_received, mut last_at) = (0u64, 0u64, start);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let (sent, received) = (shared.sent_total(), shared.received_total());
        let dt = (now - last_at).as_secs_f64().max(1e-6);
        let send_rate = sent.saturating_sub(last_sent) as f64 / dt;
        let recv_rate = received.saturating_sub(last_received) as f64 / dt;
        (last_sent, last_received, last_at) = (sent, received, now);
        let mut line = format!(
            "[{:>6.1}s] sent {sent} ({send_rate:.0}/s)  received {received} ({recv_rate:.0}/s)",
            (now - start).as_secs_f64()
        );
        if args.settle == Settle::Unsettled {
            line += &format!(
                "  awaiting outcome {}",
                sent.saturating_sub(shared.outcomes())
            );
        }
        if shared.producers_done() {
            line += "  (producers done, draining)";
        }
        let mut err = std::io::stderr().lock();
        let _ = if tty {
            write!(err, "\r\x1b[K{line}")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }
}

/// Opens `--idle` connections and holds them.
async fn idle(args: &Args) -> anyhow::Result<()> {
    let urls = args.producer_urls();
    let t0 = Instant::now();
    let held = connect_all(args.idle, args.connect_concurrency, |i, permits| {
        let url = urls[i % urls.len()].clone();
        let made = connect::options(
            args,
            &url,
            format!("ferry-load-idle-{i}-{}", std::process::id()),
        );
        let (link, credit) = (args.idle_link, args.credit);
        let address = args.address.replace("{i}", &i.to_string());
        async move {
            let _permit = permits.acquire_owned().await?;
            let (addr, options) = made?;
            let options = ferry_proto::client::ClientOptions {
                idle_timeout: None,
                ..options
            };
            let mut client = ferry_proto::client::Client::connect(addr, options)
                .await
                .with_context(|| format!("idle connection {i} to {url}"))?;
            match link {
                None => {}
                Some(IdleLink::Receiver) => {
                    client
                        .open_receiver(&address, credit)
                        .await
                        .with_context(|| format!("idle connection {i}: receiver from {address}"))?;
                }
                Some(IdleLink::Sender) => {
                    client
                        .open_sender(Some(&address))
                        .await
                        .with_context(|| format!("idle connection {i}: sender to {address}"))?;
                }
            }
            anyhow::Ok(client)
        }
    })
    .await?;
    eprintln!(
        "idle connections open: {} (in {:.3} s)",
        held.len(),
        t0.elapsed().as_secs_f64()
    );
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs_f64(args.hold)) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
