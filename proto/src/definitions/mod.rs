//! The types AMQP 1.0 defines on top of the type system: performatives
//! (part 2), delivery states and termini (part 3), SASL frames (part 5),
//! and the restricted types they use.

mod delivery_state;
mod error;
mod performative;
mod restricted;
mod sasl;
mod terminus;

pub use delivery_state::{Accepted, DeliveryState, Modified, Received, Rejected, Released};
pub use error::Error;
pub use error::{ErrorCondition, condition};
pub use performative::{
    Attach, Begin, Close, Detach, Disposition, End, Flow, Open, Performative, Transfer,
};
pub use restricted::{
    Handle, ReceiverSettleMode, Role, SaslCode, SenderSettleMode, SequenceNo, TerminusDurability,
    TerminusExpiryPolicy,
};
pub use sasl::{SaslChallenge, SaslFrame, SaslInit, SaslMechanisms, SaslOutcome, SaslResponse};
pub use terminus::{Coordinator, Source, Target, TargetTerminus};
