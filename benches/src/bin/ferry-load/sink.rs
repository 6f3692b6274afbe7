//! A trivial in-process AMQP peer on the `ferry_proto` engine, for the
//! generator's own ceiling (`--sink`). Nothing is routed: it accepts every
//! link, settles every message it receives as accepted at once, and on the
//! links consumers attach it sends stamped messages as fast as their
//! credit allows, as many as the producers send in all (each consumer all
//! of them with `--multicast`). Producers and consumers thus do the same
//! work as against a router.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use ferry_proto::definitions::{DeliveryState, Role};
use ferry_proto::engine::{
    Connection, ConnectionConfig, Event, LinkId, LinkSpec, SaslServerConfig,
};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::args::{Args, Settle};
use crate::payload;
use crate::report::Shared;

const CREDIT: u32 = 10_000;

/// Transfers sent per turn of a connection's loop before it writes and
/// reads again.
const BATCH: u32 = 256;

/// What the source sends.
struct Source {
    size: usize,
    presettled: bool,
    /// Messages per consumer link (`--multicast`), or in all.
    total: u64,
    multicast: bool,
    /// `--duration`: send until the producers finish.
    timed: bool,
    /// Messages taken from `total` by all links (anycast).
    taken: AtomicU64,
    shared: Arc<Shared>,
}

impl Source {
    /// The sequence number of the next message for a link that sent
    /// `link_sent` so far, if one is due.
    fn take(&self, link_sent: u64) -> Option<u64> {
        if self.multicast {
            return (link_sent < self.total).then_some(link_sent);
        }
        self.taken
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                (t < self.total).then_some(t + 1)
            })
            .ok()
    }

    /// Whether the clock has started, and (with `--duration`) the
    /// producers have not finished.
    fn running(&self) -> bool {
        self.shared.started() && !(self.timed && self.shared.producers_done())
    }
}

/// Starts the sink on a free 127.0.0.1 port.
pub async fn start(args: &Args, shared: Arc<Shared>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let source = Arc::new(Source {
        size: args.size,
        presettled: args.settle == Settle::Presettled,
        total: match args.duration {
            None => args.count.saturating_mul(args.producers as u64),
            Some(_) => u64::MAX,
        },
        multicast: args.multicast,
        timed: args.duration.is_some(),
        taken: AtomicU64::new(0),
        shared,
    });
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(serve(stream, source.clone()));
        }
    });
    Ok(addr)
}

async fn serve(mut stream: TcpStream, source: Arc<Source>) {
    let config = ConnectionConfig {
        container_id: "ferry-load-sink".into(),
        sasl_server: Some(SaslServerConfig::default()),
        ..ConnectionConfig::default()
    };
    let mut conn = Connection::server(config, Instant::now());
    let mut buf = vec![0u8; 256 * 1024];
    // Outgoing links (consumers') and what each has sent.
    let mut outgoing: HashMap<LinkId, u64> = HashMap::new();
    let mut started = source.shared.started.subscribe();
    let mut next_tag = 0u64;
    loop {
        while let Some(ev) = conn.poll_event() {
            match ev {
                Event::AttachRequested { link, attach, .. } => {
                    let role = match attach.role {
                        Role::Sender => Role::Receiver,
                        Role::Receiver => Role::Sender,
                    };
                    let spec = LinkSpec {
                        name: attach.name.to_string(),
                        role,
                        source: attach.source.clone(),
                        target: attach.target.clone(),
                        ..LinkSpec::default()
                    };
                    let _ = conn.accept_attach(link, spec);
                    match role {
                        Role::Receiver => {
                            let _ = conn.flow(link, CREDIT, false);
                        }
                        Role::Sender => {
                            outgoing.insert(link, 0);
                        }
                    }
                }
                Event::Transfer(t) => {
                    if !t.more && !t.settled && !t.aborted {
                        let _ = conn.disposition(
                            t.link,
                            t.delivery,
                            Some(DeliveryState::Accepted),
                            true,
                        );
                    }
                    if !t.more && conn.credit(t.link) < CREDIT / 2 {
                        let _ = conn.flow(t.link, CREDIT, false);
                    }
                }
                Event::Detached { link, .. } => {
                    outgoing.remove(&link);
                }
                Event::Closed { .. } => return,
                _ => {}
            }
        }
        // The source: as many as credit allows, a batch at a time.
        let mut sent = 0;
        if source.running() {
            for (&link, link_sent) in outgoing.iter_mut() {
                while sent < BATCH && conn.credit(link) > 0 {
                    let Some(seq) = source.take(*link_sent) else {
                        break;
                    };
                    let message = payload::encode(source.size, payload::now_ns(), 0, seq);
                    next_tag += 1;
                    let tag = Bytes::copy_from_slice(&next_tag.to_be_bytes());
                    if conn
                        .send(link, tag, message, source.presettled, false)
                        .is_err()
                    {
                        break;
                    }
                    *link_sent += 1;
                    source.shared.generated.fetch_add(1, Ordering::Relaxed);
                    sent += 1;
                }
            }
        }
        while let Some(b) = conn.poll_transmit(Instant::now()) {
            if stream.write_all(&b).await.is_err() {
                return;
            }
        }
        if conn.is_finished() {
            return;
        }
        let read = if sent > 0 {
            // More may be due: read only what is there.
            match stream.try_read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    tokio::task::yield_now().await;
                    continue;
                }
                r => r,
            }
        } else if !outgoing.is_empty() && !source.shared.started() {
            tokio::select! {
                r = stream.readable() => match r {
                    Ok(()) => match stream.try_read(&mut buf) {
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                        r => r,
                    },
                    Err(e) => Err(e),
                },
                () = crate::report::set(&mut started) => continue,
            }
        } else {
            stream
                .readable()
                .await
                .and_then(|()| stream.try_read(&mut buf))
        };
        match read {
            Ok(0) => conn.handle_eof(),
            Ok(n) => conn.handle_input(&buf[..n], Instant::now()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => conn.handle_eof(),
        }
    }
}
