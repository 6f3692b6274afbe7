//! The header section (AMQP 1.0 §3.2.1): delivery details that the
//! intermediaries between sender and receiver may read and change.

crate::composite! {
    /// Transport headers for a message (AMQP 1.0 §3.2.1). An absent field
    /// takes its default; the `*_or_default` methods apply them.
    pub struct Header("amqp:header:list", 0x70) {
        /// Whether the message must survive an intermediary's restart
        /// (default false).
        pub durable: Option<bool>,
        /// Relative priority, higher is more urgent (default 4).
        pub priority: Option<u8>,
        /// Time to live in milliseconds, counted from when an intermediary
        /// or receiver gets the message (AMQP 1.0 §3.2.1, "ttl").
        pub ttl: Option<u32>,
        /// Whether no earlier acquirer exists (default false).
        pub first_acquirer: Option<bool>,
        /// Number of earlier unsuccessful delivery attempts (default 0).
        pub delivery_count: Option<u32>,
    }
}

impl Header {
    /// The default priority (AMQP 1.0 §3.2.1).
    pub const DEFAULT_PRIORITY: u8 = 4;

    /// `durable`, false when absent.
    pub fn durable_or_default(&self) -> bool {
        self.durable.unwrap_or(false)
    }

    /// `priority`, [`DEFAULT_PRIORITY`](Self::DEFAULT_PRIORITY) when absent.
    pub fn priority_or_default(&self) -> u8 {
        self.priority.unwrap_or(Self::DEFAULT_PRIORITY)
    }

    /// `first-acquirer`, false when absent.
    pub fn first_acquirer_or_default(&self) -> bool {
        self.first_acquirer.unwrap_or(false)
    }

    /// `delivery-count`, 0 when absent.
    pub fn delivery_count_or_default(&self) -> u32 {
        self.delivery_count.unwrap_or(0)
    }
}
