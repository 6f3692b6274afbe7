//! A passive reader of one direction of an AMQP byte stream: protocol
//! headers, SASL frames, AMQP frames. It never answers anything; the
//! simulator uses it to watch what crosses a pipe and, for injected bugs
//! only, to rewrite it.

use bytes::{Bytes, BytesMut};
use ferry_proto::definitions::Performative;
use ferry_proto::frame::{self, Frame, Layer};

/// One thing read from the stream, with its raw bytes.
#[derive(Debug, Clone)]
pub struct Item {
    /// The bytes as they were on the wire.
    pub raw: Bytes,
    /// What they are.
    pub kind: ItemKind,
}

/// What an [`Item`] is.
#[derive(Debug, Clone)]
pub enum ItemKind {
    /// A protocol header (`AMQP` + 4 bytes).
    Header,
    /// A SASL frame.
    Sasl,
    /// An empty frame (heartbeat).
    Empty,
    /// An AMQP frame.
    Amqp {
        /// Its channel.
        channel: u16,
        /// Its performative.
        performative: Performative,
        /// The transfer payload, if any.
        payload: Bytes,
    },
}

/// Reads one direction of a connection.
#[derive(Debug)]
pub struct FrameReader {
    buf: BytesMut,
    layer: Layer,
    /// A frame did not decode: the reader stops (the engine will have
    /// closed the connection).
    pub broken: Option<String>,
}

impl Default for FrameReader {
    fn default() -> Self {
        Self {
            buf: BytesMut::new(),
            layer: Layer::Amqp,
            broken: None,
        }
    }
}

impl FrameReader {
    /// Reads what `bytes` completes. With `keep_raw`, each item keeps a
    /// copy of its bytes (for rewriting); otherwise `raw` is empty.
    pub fn feed(&mut self, bytes: &[u8], keep_raw: bool) -> Vec<Item> {
        let mut out = Vec::new();
        if self.broken.is_some() {
            return out;
        }
        self.buf.extend_from_slice(bytes);
        loop {
            if self.buf.len() >= 4 && &self.buf[..4] == b"AMQP" {
                if self.buf.len() < 8 {
                    break;
                }
                self.layer = if self.buf[4] == 3 {
                    Layer::Sasl
                } else {
                    Layer::Amqp
                };
                let header = self.buf.split_to(8).freeze();
                let raw = if keep_raw { header } else { Bytes::new() };
                out.push(Item {
                    raw,
                    kind: ItemKind::Header,
                });
                continue;
            }
            if self.buf.len() < 8 {
                break;
            }
            let size = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
            let raw = if keep_raw {
                self.buf.get(..size as usize).map(Bytes::copy_from_slice)
            } else {
                Some(Bytes::new())
            };
            match frame::decode_frame(&mut self.buf, u32::MAX, self.layer) {
                Ok(None) => break,
                Ok(Some(f)) => {
                    let raw = raw.unwrap_or_default();
                    let kind = match f {
                        Frame::Sasl(_) => ItemKind::Sasl,
                        Frame::Empty => ItemKind::Empty,
                        Frame::Amqp {
                            channel,
                            performative,
                            payload,
                        } => ItemKind::Amqp {
                            channel,
                            performative,
                            payload,
                        },
                    };
                    out.push(Item { raw, kind });
                }
                Err(e) => {
                    self.broken = Some(e.to_string());
                    break;
                }
            }
        }
        out
    }
}

/// Encodes an AMQP frame (for a rewritten item).
pub fn encode(channel: u16, performative: &Performative, payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::new();
    frame::encode_amqp_frame(channel, performative, payload, &mut buf);
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_proto::definitions::Close;

    #[test]
    fn headers_and_frames_are_split_whatever_the_chunks() {
        let mut wire = BytesMut::new();
        wire.extend_from_slice(b"AMQP\x00\x01\x00\x00");
        frame::encode_empty_frame(&mut wire);
        frame::encode_amqp_frame(0, &Performative::Close(Close::default()), &[], &mut wire);
        let wire = wire.freeze();
        let mut r = FrameReader::default();
        let mut items = Vec::new();
        for chunk in wire.chunks(3) {
            items.extend(r.feed(chunk, true));
        }
        assert_eq!(items.len(), 3);
        assert!(matches!(items[0].kind, ItemKind::Header));
        assert!(matches!(items[1].kind, ItemKind::Empty));
        assert!(matches!(
            items[2].kind,
            ItemKind::Amqp {
                performative: Performative::Close(_),
                ..
            }
        ));
        let joined: Vec<u8> = items.iter().flat_map(|i| i.raw.to_vec()).collect();
        assert_eq!(joined, wire.to_vec());
    }
}
