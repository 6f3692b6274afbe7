//! A minimal queueing AMQP 1.0 server built on the `ferry_proto` engine, so
//! independent clients (fe2o3-amqp, Qpid Proton) can exercise the engine in
//! the server role. Messages sent to an address queue there until a
//! receiver on the same address takes them; each is accepted on arrival.
//! Test support only: no persistence, no limits.
#![allow(dead_code)] // each test binary uses a different part

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use ferry_proto::definitions::{DeliveryState, Role};
use ferry_proto::engine::{
    Connection, ConnectionConfig, Event, LinkId, LinkSpec, SaslServerConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Queues shared by every connection of the broker.
pub type Queues = Arc<Mutex<HashMap<String, VecDeque<Bytes>>>>;

/// Starts the broker on a free 127.0.0.1 port; returns its address and
/// its queues. It runs until the test's runtime ends.
pub async fn start() -> (SocketAddr, Queues) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let queues: Queues = Arc::default();
    let q = queues.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, q.clone()));
        }
    });
    (addr, queues)
}

struct Outgoing {
    address: String,
}

async fn serve(mut stream: TcpStream, queues: Queues) {
    let config = ConnectionConfig {
        container_id: "mini-broker".into(),
        sasl_server: Some(SaslServerConfig::default()),
        ..ConnectionConfig::default()
    };
    let mut conn = Connection::server(config, Instant::now());
    let mut incoming: HashMap<LinkId, (String, BytesMut)> = HashMap::new();
    let mut outgoing: HashMap<LinkId, Outgoing> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    let mut tag = 0u64;
    loop {
        while let Some(ev) = conn.poll_event() {
            match ev {
                Event::AttachRequested { link, attach, .. } => {
                    let ours = match attach.role {
                        Role::Sender => Role::Receiver,
                        Role::Receiver => Role::Sender,
                    };
                    let spec = LinkSpec {
                        name: attach.name.to_string(),
                        role: ours,
                        source: attach.source.clone(),
                        target: attach.target.clone(),
                        ..LinkSpec::default()
                    };
                    conn.accept_attach(link, spec).unwrap();
                    if ours == Role::Receiver {
                        let address = match &attach.target {
                            Some(ferry_proto::definitions::TargetTerminus::Target(t)) => {
                                t.address.as_deref().unwrap_or_default().to_string()
                            }
                            _ => String::new(),
                        };
                        incoming.insert(link, (address, BytesMut::new()));
                        conn.flow(link, 100, false).unwrap();
                    } else {
                        let address = attach
                            .source
                            .as_ref()
                            .and_then(|s| s.address.as_deref())
                            .unwrap_or_default()
                            .to_string();
                        outgoing.insert(link, Outgoing { address });
                    }
                }
                Event::Transfer(t) => {
                    let Some((address, partial)) = incoming.get_mut(&t.link) else {
                        continue;
                    };
                    if t.aborted {
                        partial.clear();
                        continue;
                    }
                    partial.extend_from_slice(&t.payload);
                    if !t.more {
                        let msg = partial.split().freeze();
                        queues
                            .lock()
                            .unwrap()
                            .entry(address.clone())
                            .or_default()
                            .push_back(msg);
                        if !t.settled {
                            conn.disposition(
                                t.link,
                                t.delivery,
                                Some(DeliveryState::Accepted),
                                true,
                            )
                            .unwrap();
                        }
                        if conn.credit(t.link) < 50 {
                            conn.flow(t.link, 100, false).unwrap();
                        }
                    }
                }
                Event::Detached { link, .. } => {
                    incoming.remove(&link);
                    outgoing.remove(&link);
                }
                Event::Closed { .. } => {
                    flush(&mut conn, &mut stream).await;
                    return;
                }
                _ => {}
            }
        }
        // Deliver queued messages to receivers with credit.
        for (link, o) in &outgoing {
            while conn.credit(*link) > 0 {
                let Some(msg) = queues
                    .lock()
                    .unwrap()
                    .get_mut(&o.address)
                    .and_then(VecDeque::pop_front)
                else {
                    break;
                };
                tag += 1;
                conn.send(
                    *link,
                    Bytes::copy_from_slice(&tag.to_be_bytes()),
                    msg,
                    false,
                    false,
                )
                .unwrap();
            }
        }
        if !flush(&mut conn, &mut stream).await {
            return;
        }
        let read =
            tokio::time::timeout(std::time::Duration::from_millis(20), stream.read(&mut buf));
        match read.await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                conn.handle_eof();
            }
            Ok(Ok(n)) => conn.handle_input(&buf[..n], Instant::now()),
            Err(_) => conn.handle_timeout(Instant::now()),
        }
        if conn.is_finished() {
            flush(&mut conn, &mut stream).await;
            return;
        }
    }
}

async fn flush(conn: &mut Connection, stream: &mut TcpStream) -> bool {
    while let Some(b) = conn.poll_transmit(Instant::now()) {
        if stream.write_all(&b).await.is_err() {
            return false;
        }
    }
    true
}
