//! AMQP 1.0 messages (AMQP 1.0 §3.2): the sections a message is made of,
//! in two shapes.
//!
//! - [`MessageView`]: a lazy view for the router's hot path. Parsing only
//!   finds the section boundaries (O(1) per section: every section value
//!   carries its size); fields are read on demand, and
//!   [`MessageView::to`] reads `properties.to` without a heap allocation.
//!   [`MessageView::with_message_annotations`] rewrites the
//!   message-annotations section and keeps every other byte as a slice of
//!   the original buffer.
//! - [`Message`]: an owned message for clients and tests, with
//!   [`Message::encode`] and a full [`Message::decode`].
//!
//! A message is a sequence of sections, each a described value, in this
//! order (AMQP 1.0 §3.2):
//!
//! ```text
//!                                                      bare message
//!                                    .--------------------+--------------------.
//! +--------+-------------+-------------+------------+--------------+------------------+--------+
//! | header | delivery-   | message-    | properties | application- | application-data | footer |
//! |        | annotations | annotations |            | properties   | (body)           |        |
//! +--------+-------------+-------------+------------+--------------+------------------+--------+
//!   0..1       0..1          0..1          0..1         0..1          see below          0..1
//! ```
//!
//! The body is one or more `data` sections, one or more `amqp-sequence`
//! sections, or a single `amqp-value` section. The spec requires a body;
//! some clients (e.g. Qpid Proton with an unset body) send none, so a
//! message without one is accepted and its body is [`Body::Empty`].
//!
//! A message split over several transfer frames (AMQP 1.0 §2.6.14) is
//! parsed once the whole payload is in one `Bytes`: the caller concatenates
//! the frames' payloads (for a single-frame message, the frame's payload
//! slice is used as is, without a copy).

mod annotations;
mod body;
mod cursor;
mod header;
mod owned;
mod properties;
mod rewrite;
mod section;
mod view;

#[cfg(test)]
mod tests;

pub use annotations::{AnnotationKey, Annotations, ApplicationProperties};
pub use body::Body;
pub use header::Header;
pub use owned::Message;
pub use properties::{MessageId, Properties};
pub use rewrite::MessageBytes;
pub use section::SectionKind;
pub use view::MessageView;

/// The message format of AMQP 1.0 messages as laid out here, for the
/// transfer's `message-format` field (AMQP 1.0 §3.2.17).
pub const MESSAGE_FORMAT: u32 = 0;
