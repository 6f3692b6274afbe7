//! Framing (AMQP 1.0 §2.3): the protocol headers that open each layer, and
//! the frames that follow: a 4-byte size, a data offset, a type and a
//! type-specific field (the channel), then a body.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::codec::{Decode, DecodeError, Decoder, Encode};
use crate::definitions::{ErrorCondition, Performative, SaslFrame, condition};

/// Size of the fixed frame header.
pub const HEADER_SIZE: usize = 8;

/// The smallest max-frame-size a peer may announce (AMQP 1.0 §2.7.1).
pub const MIN_MAX_FRAME_SIZE: u32 = 512;

/// The protocol header of a layer (AMQP 1.0 §2.2, §5.2.1, §5.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolHeader {
    /// `AMQP 0 1.0.0`: the AMQP layer.
    Amqp,
    /// `AMQP 2 1.0.0`: TLS.
    Tls,
    /// `AMQP 3 1.0.0`: SASL.
    Sasl,
}

impl ProtocolHeader {
    /// The eight bytes on the wire.
    pub fn bytes(self) -> [u8; 8] {
        let id = match self {
            ProtocolHeader::Amqp => 0,
            ProtocolHeader::Tls => 2,
            ProtocolHeader::Sasl => 3,
        };
        [b'A', b'M', b'Q', b'P', id, 1, 0, 0]
    }

    /// Parses eight bytes; `Err` carries what the peer sent, which the
    /// engine answers with its own header before closing (AMQP 1.0 §2.2).
    pub fn parse(b: &[u8; 8]) -> Result<Self, [u8; 8]> {
        match b {
            [b'A', b'M', b'Q', b'P', 0, 1, 0, 0] => Ok(ProtocolHeader::Amqp),
            [b'A', b'M', b'Q', b'P', 2, 1, 0, 0] => Ok(ProtocolHeader::Tls),
            [b'A', b'M', b'Q', b'P', 3, 1, 0, 0] => Ok(ProtocolHeader::Sasl),
            _ => Err(*b),
        }
    }
}

/// How far [`decode_frame`] grows the buffer ahead of a partial frame.
const RESERVE_AHEAD: usize = 64 * 1024;

/// The two frame types (AMQP 1.0 §2.3.2, §5.3.2).
const TYPE_AMQP: u8 = 0x00;
const TYPE_SASL: u8 = 0x01;

/// A decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// An AMQP frame: a performative on a channel, and for a transfer the
    /// payload bytes after it (a slice of the input, not a copy).
    Amqp {
        /// The session's channel.
        channel: u16,
        /// The performative.
        performative: Performative,
        /// Bytes after the performative (the message data of a transfer).
        payload: Bytes,
    },
    /// A SASL frame.
    Sasl(SaslFrame),
    /// An AMQP frame with no body: a heartbeat (AMQP 1.0 §2.4.5).
    Empty,
}

/// Why a frame could not be read. Each maps to the error condition the
/// connection is closed with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The size field is below the header size or the data offset points
    /// outside the frame.
    #[error("malformed frame header: {0}")]
    BadHeader(&'static str),
    /// The frame is larger than we allow.
    #[error("frame of {size} bytes exceeds max-frame-size {max}")]
    TooLarge {
        /// The frame's size field.
        size: u32,
        /// Our max-frame-size.
        max: u32,
    },
    /// A frame type this layer does not accept.
    #[error("unexpected frame type 0x{0:02x}")]
    BadType(u8),
    /// The body did not decode.
    #[error("frame body: {0}")]
    Decode(#[from] DecodeError),
}

impl FrameError {
    /// The error condition to close the connection with.
    pub fn condition(&self) -> ErrorCondition {
        match self {
            FrameError::Decode(_) => condition::DECODE_ERROR,
            _ => condition::FRAMING_ERROR,
        }
    }
}

/// The layer whose frames are expected: decides which frame type is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// SASL frames (type 1).
    Sasl,
    /// AMQP frames (type 0).
    Amqp,
}

/// Reads one frame from the front of `buf` if it is complete, consuming it.
/// `Ok(None)`: more bytes are needed. The size field is checked against
/// `max_frame_size` before anything is buffered for it, so a huge length
/// costs nothing.
pub fn decode_frame(
    buf: &mut BytesMut,
    max_frame_size: u32,
    layer: Layer,
) -> Result<Option<Frame>, FrameError> {
    if buf.len() < HEADER_SIZE {
        return Ok(None);
    }
    let size = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let doff = buf[4] as usize * 4;
    let ty = buf[5];
    let channel = u16::from_be_bytes([buf[6], buf[7]]);
    if (size as usize) < HEADER_SIZE {
        return Err(FrameError::BadHeader("size below 8"));
    }
    if size > max_frame_size {
        return Err(FrameError::TooLarge {
            size,
            max: max_frame_size,
        });
    }
    if doff < HEADER_SIZE || doff > size as usize {
        return Err(FrameError::BadHeader("data offset outside the frame"));
    }
    let expected = match layer {
        Layer::Sasl => TYPE_SASL,
        Layer::Amqp => TYPE_AMQP,
    };
    if ty != expected {
        return Err(FrameError::BadType(ty));
    }
    if buf.len() < size as usize {
        // Make room for the rest of this frame, in bounded steps: until its
        // bytes arrive the size is only the peer's claim, and a header
        // alone must not allocate up to max-frame-size (as much as 4 GiB).
        buf.reserve((size as usize - buf.len()).min(RESERVE_AHEAD));
        return Ok(None);
    }
    let mut frame = buf.split_to(size as usize).freeze();
    frame.advance(doff);
    if frame.is_empty() {
        return match layer {
            Layer::Amqp => Ok(Some(Frame::Empty)),
            Layer::Sasl => Err(FrameError::BadHeader("empty SASL frame")),
        };
    }
    let mut d = Decoder::new(frame);
    Ok(Some(match layer {
        Layer::Amqp => {
            let performative = Performative::decode(&mut d)?;
            let payload = d.rest();
            if !matches!(performative, Performative::Transfer(_)) && !payload.is_empty() {
                return Err(DecodeError::TrailingBytes(payload.len()).into());
            }
            Frame::Amqp {
                channel,
                performative,
                payload,
            }
        }
        Layer::Sasl => {
            let f = SaslFrame::decode(&mut d)?;
            d.finish()?;
            Frame::Sasl(f)
        }
    }))
}

fn begin_frame(ty: u8, channel: u16, buf: &mut BytesMut) -> usize {
    let start = buf.len();
    buf.put_u32(0); // size, patched by end_frame
    buf.put_slice(&[2, ty]);
    buf.put_u16(channel);
    start
}

fn end_frame(start: usize, buf: &mut BytesMut) {
    let size = (buf.len() - start) as u32;
    buf[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

/// Appends an AMQP frame holding `performative` and `payload`.
pub fn encode_amqp_frame(
    channel: u16,
    performative: &Performative,
    payload: &[u8],
    buf: &mut BytesMut,
) {
    let start = begin_frame(TYPE_AMQP, channel, buf);
    performative.encode(buf);
    buf.put_slice(payload);
    end_frame(start, buf);
}

/// Appends a SASL frame.
pub fn encode_sasl_frame(frame: &SaslFrame, buf: &mut BytesMut) {
    let start = begin_frame(TYPE_SASL, 0, buf);
    frame.encode(buf);
    end_frame(start, buf);
}

/// Appends an empty AMQP frame (a heartbeat).
pub fn encode_empty_frame(buf: &mut BytesMut) {
    buf.put_slice(&[0, 0, 0, 8, 2, TYPE_AMQP, 0, 0]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definitions::{Close, Open};

    #[test]
    fn open_round_trips_through_a_frame() {
        let open = Performative::Open(Box::new(Open {
            container_id: "c".into(),
            max_frame_size: Some(65536),
            ..Open::default()
        }));
        let mut buf = BytesMut::new();
        encode_amqp_frame(3, &open, &[], &mut buf);
        let frame = decode_frame(&mut buf, 1 << 20, Layer::Amqp)
            .unwrap()
            .unwrap();
        assert_eq!(
            frame,
            Frame::Amqp {
                channel: 3,
                performative: open,
                payload: Bytes::new()
            }
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn partial_frame_waits_for_more() {
        let mut whole = BytesMut::new();
        encode_amqp_frame(0, &Performative::Close(Close::default()), &[], &mut whole);
        let mut buf = BytesMut::from(&whole[..whole.len() - 1]);
        assert_eq!(decode_frame(&mut buf, 512, Layer::Amqp), Ok(None));
        buf.extend_from_slice(&whole[whole.len() - 1..]);
        assert!(decode_frame(&mut buf, 512, Layer::Amqp).unwrap().is_some());
    }

    #[test]
    fn oversized_length_is_refused_without_buffering() {
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0][..]);
        let err = decode_frame(&mut buf, 65536, Layer::Amqp).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { .. }));
        assert_eq!(err.condition(), condition::FRAMING_ERROR);
    }

    #[test]
    fn bad_data_offset_is_a_framing_error() {
        let mut buf = BytesMut::from(&[0, 0, 0, 8, 1, 0, 0, 0][..]);
        assert!(matches!(
            decode_frame(&mut buf, 512, Layer::Amqp),
            Err(FrameError::BadHeader(_))
        ));
    }

    #[test]
    fn garbage_body_is_a_decode_error() {
        let mut buf = BytesMut::from(&[0, 0, 0, 10, 2, 0, 0, 0, 0xff, 0x00][..]);
        let err = decode_frame(&mut buf, 512, Layer::Amqp).unwrap_err();
        assert_eq!(err.condition(), condition::DECODE_ERROR);
    }

    #[test]
    fn empty_frame_is_a_heartbeat() {
        let mut buf = BytesMut::new();
        encode_empty_frame(&mut buf);
        assert_eq!(
            decode_frame(&mut buf, 512, Layer::Amqp),
            Ok(Some(Frame::Empty))
        );
    }
}
