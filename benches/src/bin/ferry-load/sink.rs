//! A trivial in-process AMQP sink on the `ferry_proto` engine: accepts every
//! link and every message at once. Measures the generator's own ceiling.

use std::net::SocketAddr;
use std::time::Instant;

use ferry_proto::definitions::{DeliveryState, Role};
use ferry_proto::engine::{Connection, ConnectionConfig, Event, LinkSpec, SaslServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CREDIT: u32 = 10_000;

/// Starts the sink on a free 127.0.0.1 port.
pub async fn start() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(serve(stream));
        }
    });
    Ok(addr)
}

async fn serve(mut stream: TcpStream) {
    let config = ConnectionConfig {
        container_id: "ferry-load-sink".into(),
        sasl_server: Some(SaslServerConfig::default()),
        ..ConnectionConfig::default()
    };
    let mut conn = Connection::server(config, Instant::now());
    let mut buf = vec![0u8; 256 * 1024];
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
                    if role == Role::Receiver {
                        let _ = conn.flow(link, CREDIT, false);
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
                Event::Closed { .. } => return,
                _ => {}
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
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => conn.handle_eof(),
            Ok(n) => conn.handle_input(&buf[..n], Instant::now()),
        }
    }
}
