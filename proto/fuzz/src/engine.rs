//! The checks behind the `engine` fuzz target: a server-side
//! `ferry_proto::engine::Connection` given a valid handshake (SASL
//! ANONYMOUS or a bare AMQP header, then an open), then arbitrary bytes in
//! chunks of arbitrary sizes, with arbitrary time passing between them. A
//! small application answers what the engine reports as a router would:
//! it accepts SASL, accepts every attach with the mirrored role, grants
//! credit to the peer's senders, settles what arrives and sends on credit
//! it is given.
//!
//! Checked besides "no panic": every byte the engine sends parses as
//! protocol headers and frames, no frame exceeds the peer's max-frame-size,
//! and output stays bounded by input.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ferry_proto::codec::{Str, Symbol};
use ferry_proto::definitions::{
    DeliveryState, Open, Performative, Role, SaslFrame, SaslInit, SenderSettleMode,
};
use ferry_proto::engine::{Connection, ConnectionConfig, Event, LinkSpec, SaslServerConfig};
use ferry_proto::frame::{
    Frame, Layer, ProtocolHeader, decode_frame, encode_amqp_frame, encode_sasl_frame,
};

/// Reads a byte of the input's prefix (0 when it is short).
fn byte(data: &[u8], i: usize) -> u8 {
    data.get(i).copied().unwrap_or(0)
}

/// Feeds one input to an engine. The first four bytes choose the setup
/// (SASL or not, the max-frame-sizes of both sides, the session window, the
/// peer's idle-time-out); each chunk after is one byte of length `n` then
/// `n` bytes, one byte of milliseconds to let pass, then input; the rest
/// of a short input is one chunk.
pub fn run(data: &[u8]) {
    let setup = byte(data, 0);
    let sasl = setup & 1 != 0;
    let ours = [512, 4096, 65536, u32::MAX][usize::from(setup >> 1 & 3)];
    let theirs = [None, Some(512), Some(1024), Some(65536)][usize::from(setup >> 3 & 3)];
    let idle = [None, Some(0), Some(50), Some(1000)][usize::from(setup >> 5 & 3)];
    let window = u32::from(byte(data, 1) % 8);
    let t0 = Instant::now();
    let mut now = t0;
    let config = ConnectionConfig {
        max_frame_size: ours,
        session_window: if window == 0 { 2048 } else { window },
        max_sessions: 4,
        max_links_per_session: 8,
        channel_max: u16::from(byte(data, 2) % 8),
        idle_timeout: Some(Duration::from_millis(1000)),
        sasl_server: sasl.then(|| SaslServerConfig {
            mechanisms: vec!["ANONYMOUS".into()],
            required: true,
        }),
        ..ConnectionConfig::default()
    };
    let mut engine = Connection::server(config, now);
    let mut peer = Peer {
        out: Stream::new(),
        max_frame: theirs.unwrap_or(u32::MAX),
        in_bytes: 0,
        out_bytes: 0,
        sent: 0,
    };

    let mut hello = BytesMut::new();
    if sasl {
        hello.extend_from_slice(&ProtocolHeader::Sasl.bytes());
        encode_sasl_frame(
            &SaslFrame::Init(SaslInit {
                mechanism: Symbol::from_static("ANONYMOUS"),
                initial_response: None,
                hostname: None,
            }),
            &mut hello,
        );
    }
    hello.extend_from_slice(&ProtocolHeader::Amqp.bytes());
    let open = Open {
        container_id: Str::from("fuzz"),
        max_frame_size: theirs,
        idle_time_out: idle,
        channel_max: Some(u16::from(byte(data, 3))),
        ..Open::default()
    };
    encode_amqp_frame(0, &Performative::Open(Box::new(open)), &[], &mut hello);
    peer.input(&mut engine, &hello, now);

    let mut rest = data.get(4..).unwrap_or(&[]);
    let mut steps = 0usize;
    while !rest.is_empty() {
        steps += 1;
        let (chunk, wait, tail) = if rest.len() >= 2 {
            let n = usize::from(rest[0]).min(rest.len() - 2);
            (&rest[2..2 + n], rest[1], &rest[2 + n..])
        } else {
            (rest, 0, &[][..])
        };
        rest = tail;
        if wait > 0 {
            now += Duration::from_millis(u64::from(wait) * 8);
            if engine.poll_timeout().is_some_and(|t| t <= now) {
                engine.handle_timeout(now);
                peer.serve(&mut engine, now);
            }
        }
        peer.input(&mut engine, chunk, now);
    }
    let bound = (1 << 20) + 256 * (peer.in_bytes + 64 * steps);
    assert!(
        peer.out_bytes <= bound,
        "{} bytes out for {} in",
        peer.out_bytes,
        peer.in_bytes
    );
    engine.handle_eof();
    peer.serve(&mut engine, now);
}

/// The application and the peer's view of the output.
struct Peer {
    out: Stream,
    max_frame: u32,
    in_bytes: usize,
    out_bytes: usize,
    /// Deliveries the application sent.
    sent: u32,
}

impl Peer {
    fn input(&mut self, engine: &mut Connection, data: &[u8], now: Instant) {
        self.in_bytes += data.len();
        engine.handle_input(data, now);
        self.serve(engine, now);
    }

    /// Answers the engine's events, then takes and checks its output.
    fn serve(&mut self, engine: &mut Connection, now: Instant) {
        let mut events = 0;
        while let Some(event) = engine.poll_event() {
            events += 1;
            assert!(events < 1 << 20, "runaway events");
            match event {
                Event::SaslInit { mechanism, .. } => {
                    let _ = engine.sasl_accept(&mechanism, None, None);
                }
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
                        snd_settle_mode: attach.snd_settle_mode.unwrap_or(SenderSettleMode::Mixed),
                        max_message_size: Some(4096),
                        ..LinkSpec::default()
                    };
                    if engine.accept_attach(link, spec).is_ok() && role == Role::Receiver {
                        let _ = engine.flow(link, 4, false);
                    }
                }
                Event::Transfer(t) => {
                    if !t.more && !t.settled {
                        let _ = engine.disposition(
                            t.link,
                            t.delivery,
                            Some(DeliveryState::Accepted),
                            true,
                        );
                    }
                    if engine.credit(t.link) == 0 {
                        let _ = engine.flow(t.link, 4, false);
                    }
                }
                Event::Credit {
                    link,
                    credit,
                    drain,
                } => {
                    if credit > 0 && !drain && self.sent < 64 {
                        self.sent += 1;
                        let tag = Bytes::from(self.sent.to_be_bytes().to_vec());
                        let _ = engine.send(
                            link,
                            tag,
                            Bytes::from_static(b"\x00\x53\x77\xa1\x01x"),
                            false,
                            false,
                        );
                    }
                }
                Event::Disposition {
                    link,
                    delivery,
                    settled: false,
                    ..
                } => {
                    let _ = engine.disposition(link, delivery, None, true);
                }
                _ => {}
            }
        }
        while let Some(bytes) = engine.poll_transmit(now) {
            self.out_bytes += bytes.len();
            assert!(self.out_bytes <= 256 << 20, "runaway output");
            if let Err(e) = self.out.push(&bytes, self.max_frame) {
                panic!("the engine sent something that is not AMQP: {e}");
            }
        }
    }
}

/// One direction of a connection, parsed as headers and frames.
struct Stream {
    buf: BytesMut,
    header: bool,
    layer: Layer,
    broken: bool,
}

impl Stream {
    fn new() -> Self {
        Self {
            buf: BytesMut::new(),
            header: true,
            layer: Layer::Amqp,
            broken: false,
        }
    }

    fn push(&mut self, data: &[u8], max_frame: u32) -> Result<(), String> {
        if self.broken {
            return Ok(());
        }
        self.buf.extend_from_slice(data);
        loop {
            if self.header {
                if self.buf.len() < 8 {
                    return Ok(());
                }
                let h: [u8; 8] = self.buf[..8].try_into().expect("8 bytes");
                let _ = self.buf.split_to(8);
                self.layer = match ProtocolHeader::parse(&h) {
                    Ok(ProtocolHeader::Sasl) => Layer::Sasl,
                    Ok(ProtocolHeader::Amqp) => Layer::Amqp,
                    _ => {
                        self.broken = true;
                        return Err(format!("bad protocol header {h:02x?}"));
                    }
                };
                self.header = false;
                continue;
            }
            let before = self.buf.len();
            match decode_frame(&mut self.buf, u32::MAX, self.layer) {
                Ok(None) => return Ok(()),
                Ok(Some(Frame::Sasl(SaslFrame::Outcome(_)))) => self.header = true,
                Ok(Some(Frame::Amqp { performative, .. })) => {
                    let size = before - self.buf.len();
                    if !matches!(performative, Performative::Open(_))
                        && size as u64 > u64::from(max_frame)
                    {
                        return Err(format!(
                            "a {} frame of {size} bytes over the peer's max-frame-size {max_frame}",
                            performative.name()
                        ));
                    }
                }
                Ok(Some(_)) => {}
                Err(e) => {
                    self.broken = true;
                    return Err(format!("undecodable frame: {e}"));
                }
            }
        }
    }
}

/// Seeds for the `engine` target: each performative of the `frame` seeds
/// as a frame on channel 0, after each of a few setups, and a session with
/// a link and a transfer.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let chunks = |setup: u8, frames: &[u8]| {
        let mut v = vec![setup, 0, 3, 3];
        for piece in frames.chunks(255) {
            v.push(piece.len() as u8);
            v.push(0);
            v.extend_from_slice(piece);
        }
        v
    };
    for p in super::performatives() {
        let mut buf = BytesMut::new();
        encode_amqp_frame(0, &p, &[], &mut buf);
        for setup in [0u8, 1, 0b0000_1010] {
            out.push(chunks(setup, &buf));
        }
    }
    out
}
