//! Priority sessions (`Connection::set_priority`): their frames overtake
//! normal output not yet handed out, normal output comes in chunks of
//! whole frames, and every session's frames stay in order.

use bytes::BytesMut;

use super::*;
use crate::definitions::Performative;
use crate::frame::{self, Frame, Layer};

/// The most normal output `poll_transmit` hands out at once.
const CHUNK: usize = 64 * 1024;

/// One frame as the peer sees it: channel, performative, payload.
type Seen = (u16, Performative, Bytes);

/// Decodes `chunk` into frames; panics unless it is whole frames.
fn frames_of(chunk: &[u8]) -> Vec<Seen> {
    let mut buf = BytesMut::from(chunk);
    let mut out = Vec::new();
    while !buf.is_empty() {
        match frame::decode_frame(&mut buf, u32::MAX, Layer::Amqp) {
            Ok(Some(Frame::Amqp {
                channel,
                performative,
                payload,
            })) => out.push((channel, performative, payload)),
            Ok(Some(Frame::Empty)) => {}
            other => panic!("a chunk does not end on a frame boundary: {other:?}"),
        }
    }
    out
}

/// Attaches a client sender on `session` that the server accepts with
/// `credit`.
fn sender_on(p: &mut Pair, session: SessionId, name: &str, credit: u32) -> LinkId {
    let link = p
        .client
        .attach(
            session,
            LinkSpec {
                name: name.into(),
                role: Role::Sender,
                source: Some(Source::new("src")),
                target: Some(TargetTerminus::Target(Target::new(name))),
                ..LinkSpec::default()
            },
        )
        .unwrap();
    p.drive();
    let remote = p.take_attach_request();
    p.server
        .accept_attach(
            remote,
            LinkSpec {
                name: name.into(),
                role: Role::Receiver,
                target: Some(TargetTerminus::Target(Target::new(name))),
                ..LinkSpec::default()
            },
        )
        .unwrap();
    p.server.flow(remote, credit, false).unwrap();
    p.drive();
    link
}

/// Takes every chunk the client has, checking that each is whole frames
/// of at most `CHUNK` bytes (or one larger frame), and feeds them to the
/// server in order. Returns the frames, in the order sent.
fn take_all(p: &mut Pair) -> Vec<Seen> {
    let mut seen = Vec::new();
    while let Some(chunk) = p.client.poll_transmit(p.now) {
        let frames = frames_of(&chunk);
        assert!(
            chunk.len() <= CHUNK || frames.len() == 1,
            "a chunk of {} bytes holds {} frames",
            chunk.len(),
            frames.len()
        );
        p.server.handle_input(&chunk, p.now);
        seen.extend(frames);
    }
    p.drive();
    seen
}

/// The delivery ids of the transfers on `channel`, in the order sent.
fn deliveries(seen: &[Seen], channel: u16) -> Vec<u32> {
    seen.iter()
        .filter(|(c, _, _)| *c == channel)
        .filter_map(|(_, p, _)| match p {
            Performative::Transfer(t) => t.delivery_id.map(|d| d.0),
            _ => None,
        })
        .collect()
}

fn payload(i: usize, len: usize) -> Bytes {
    Bytes::from(vec![i as u8; len])
}

#[test]
fn a_priority_message_overtakes_queued_data_and_every_frame_arrives_intact() {
    let mut p = Pair::default_pair();
    // The control session first, so it has channel 0, which connection-
    // level frames (open, close) share and must not make priority.
    let control = p.client.begin_session().unwrap();
    p.client.set_priority(control).unwrap();
    let data = p.client.begin_session().unwrap();
    p.drive();
    let ctl = sender_on(&mut p, control, "ctl", 10);
    let bulk = sender_on(&mut p, data, "bulk", 1000);
    let (ctl_ch, data_ch) = (0, 1);

    // 1 MiB of data queued on the normal session.
    let n = 64;
    for i in 0..n {
        p.client
            .send(
                bulk,
                Bytes::from(vec![i as u8]),
                payload(i, 16 * 1024),
                false,
                false,
            )
            .unwrap();
    }
    // The driver hands the first chunk to the socket, then a control
    // message is sent.
    let first = p.client.poll_transmit(p.now).unwrap();
    assert!(first.len() <= CHUNK, "first chunk {} bytes", first.len());
    p.server.handle_input(&first, p.now);
    let mut seen = frames_of(&first);
    let sent_first = deliveries(&seen, data_ch).len();
    assert!(sent_first < n, "the first chunk holds all the data");
    p.client
        .send(
            ctl,
            Bytes::from_static(b"h"),
            Bytes::from_static(b"HELLO"),
            true,
            false,
        )
        .unwrap();
    p.client.close(None);
    seen.extend(take_all(&mut p));

    // The control transfer comes right after the first chunk, before the
    // data still held by the engine.
    let hello = seen
        .iter()
        .position(|(c, p, _)| *c == ctl_ch && matches!(p, Performative::Transfer(_)))
        .expect("the control message was sent");
    let data_before = deliveries(&seen[..hello], data_ch).len();
    assert_eq!(data_before, sent_first, "data overtook the control message");
    // The close stays behind everything queued before it.
    assert!(matches!(seen.last(), Some((0, Performative::Close(_), _))));

    // Every data frame arrived, in order, intact.
    assert_eq!(
        deliveries(&seen, data_ch),
        (0..n as u32).collect::<Vec<_>>()
    );
    let t = p.server_transfers();
    assert_eq!(t.len(), n + 1);
    assert_eq!(t[sent_first].payload, Bytes::from_static(b"HELLO"));
    let bulk_payloads: Vec<Bytes> = t
        .iter()
        .filter(|t| t.payload != Bytes::from_static(b"HELLO"))
        .map(|t| t.payload.clone())
        .collect();
    assert_eq!(
        bulk_payloads,
        (0..n).map(|i| payload(i, 16 * 1024)).collect::<Vec<_>>()
    );
    assert!(
        !p.server_events
            .iter()
            .any(|e| matches!(e, Event::Closed { error: Some(_), .. })),
        "the server saw a protocol error: {:?}",
        p.server_events
    );
}

#[test]
fn a_session_marked_priority_behind_queued_data_keeps_its_begin_first() {
    let mut p = Pair::default_pair();
    let data = p.client.begin_session().unwrap();
    p.drive();
    let bulk = sender_on(&mut p, data, "bulk", 1000);
    for i in 0..32 {
        p.client
            .send(
                bulk,
                Bytes::from(vec![i as u8]),
                payload(i, 16 * 1024),
                false,
                false,
            )
            .unwrap();
    }
    // Begun behind 512 KiB of data, then marked and used at once: its
    // attach must not overtake its begin.
    let control = p.client.begin_session().unwrap();
    p.client.set_priority(control).unwrap();
    let ctl = p
        .client
        .attach(
            control,
            LinkSpec {
                name: "ctl".into(),
                role: Role::Sender,
                source: Some(Source::new("src")),
                target: Some(TargetTerminus::Target(Target::new("ctl"))),
                ..LinkSpec::default()
            },
        )
        .unwrap();
    let seen = take_all(&mut p);
    let begin = seen
        .iter()
        .position(|(c, p, _)| *c == 1 && matches!(p, Performative::Begin(_)))
        .expect("begin sent");
    let attach = seen
        .iter()
        .position(|(c, p, _)| *c == 1 && matches!(p, Performative::Attach(_)))
        .expect("attach sent");
    assert!(begin < attach);
    assert!(p.client.is_open() && p.server.is_open());

    // Now mapped: its output overtakes the next batch of data.
    let remote = p.take_attach_request();
    p.server
        .accept_attach(
            remote,
            LinkSpec {
                name: "ctl".into(),
                role: Role::Receiver,
                target: Some(TargetTerminus::Target(Target::new("ctl"))),
                ..LinkSpec::default()
            },
        )
        .unwrap();
    p.server.flow(remote, 10, false).unwrap();
    p.drive();
    for i in 32..64 {
        p.client
            .send(
                bulk,
                Bytes::from(vec![i as u8]),
                payload(i, 16 * 1024),
                false,
                false,
            )
            .unwrap();
    }
    p.client
        .send(
            ctl,
            Bytes::from_static(b"h"),
            Bytes::from_static(b"HELLO"),
            true,
            false,
        )
        .unwrap();
    let seen = take_all(&mut p);
    assert!(
        matches!(&seen[0], (1, Performative::Transfer(_), b) if b == &Bytes::from_static(b"HELLO")),
        "first frame {:?}",
        seen[0].1
    );
    assert_eq!(deliveries(&seen, 0), (32..64).collect::<Vec<_>>());
    assert_eq!(p.server_transfers().len(), 64 + 1);
}

#[test]
fn normal_output_comes_in_chunks_of_whole_frames() {
    // The server takes frames larger than a chunk.
    let mut p = Pair::new(
        ConnectionConfig::default(),
        ConnectionConfig {
            max_frame_size: 1 << 20,
            ..Default::default()
        },
    );
    let data = p.client.begin_session().unwrap();
    p.drive();
    let bulk = sender_on(&mut p, data, "bulk", 1000);
    // Sizes around the chunk size, frames larger than a chunk, and small
    // ones between them.
    let sizes = [100, 60_000, 5_000, 70_000, 1, 65_400, 65_536, 200_000, 3];
    for (i, len) in sizes.iter().enumerate() {
        p.client
            .send(
                bulk,
                Bytes::from(vec![i as u8]),
                payload(i, *len),
                false,
                false,
            )
            .unwrap();
    }
    let total = p.client.pending_output();
    let seen = take_all(&mut p);
    assert_eq!(p.client.pending_output(), 0);
    let sent: usize = seen.iter().map(|(_, _, b)| b.len()).sum();
    assert_eq!(sent, sizes.iter().sum::<usize>());
    assert!(total > sent);
    let t = p.server_transfers();
    let joined: Vec<u8> = t.iter().flat_map(|f| f.payload.to_vec()).collect();
    let expected: Vec<u8> = sizes
        .iter()
        .enumerate()
        .flat_map(|(i, len)| vec![i as u8; *len])
        .collect();
    assert_eq!(joined, expected);
}

#[test]
fn dispositions_on_a_priority_session_still_merge() {
    let mut p = Pair::default_pair();
    let (snd, rcv) = p.sender_link(100);
    let server_session = p.server.link_session(rcv).unwrap();
    p.server.set_priority(server_session).unwrap();
    p.send_small(snd, 50, false);
    p.drive();
    for f in p.server_transfers() {
        p.server
            .disposition(rcv, f.delivery, Some(DeliveryState::Accepted), true)
            .unwrap();
    }
    let bytes = p.server.poll_transmit(p.now).unwrap();
    assert!(bytes.len() < 40, "{} bytes", bytes.len());
    assert!(p.server.poll_transmit(p.now).is_none());
}
