//! Connection parameters.

use std::fmt;
use std::time::Duration;

/// What the engine advertises and enforces on a connection. A connection
/// holds it behind an `Arc`: connections made with one shared config (a
/// listener's clients) hold one copy between them.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// Our container id (AMQP 1.0 §2.7.1).
    pub container_id: String,
    /// The hostname we connect to (client side).
    pub hostname: Option<String>,
    /// Largest frame we accept; at least 512.
    pub max_frame_size: u32,
    /// Highest channel number we accept.
    pub channel_max: u16,
    /// Close the connection after this long without a frame from the peer;
    /// we advertise half of it as our idle-time-out so a peer that honours
    /// it has slack. `None`: no idle timeout.
    pub idle_timeout: Option<Duration>,
    /// The incoming window we grant per session, in transfer frames.
    pub session_window: u32,
    /// Most sessions the peer may begin; more are refused with
    /// `amqp:resource-limit-exceeded`.
    pub max_sessions: u32,
    /// Most links per session the peer may attach (our handle-max + 1).
    pub max_links_per_session: u32,
    /// Client side: the SASL exchange to perform, if any.
    pub sasl_client: Option<SaslClientConfig>,
    /// Server side: the SASL mechanisms offered, if any.
    pub sasl_server: Option<SaslServerConfig>,
    /// Connection properties sent in our open.
    pub properties: Vec<(String, String)>,
    /// Capabilities offered in our open.
    pub offered_capabilities: Vec<String>,
}

impl fmt::Debug for ConnectionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionConfig")
            .field("container_id", &self.container_id)
            .field("max_frame_size", &self.max_frame_size)
            .field("channel_max", &self.channel_max)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            container_id: "ferry".into(),
            hostname: None,
            max_frame_size: 65536,
            channel_max: 255,
            idle_timeout: Some(Duration::from_secs(60)),
            session_window: 2048,
            max_sessions: 256,
            max_links_per_session: 1024,
            sasl_client: None,
            sasl_server: None,
            properties: Vec::new(),
            offered_capabilities: Vec::new(),
        }
    }
}

/// The SASL exchange a client performs.
#[derive(Clone, PartialEq, Eq)]
pub enum SaslClientConfig {
    /// `ANONYMOUS`.
    Anonymous,
    /// `EXTERNAL`: the identity the transport proved (a TLS client
    /// certificate).
    External,
    /// `PLAIN` with a user name and password (RFC 4616).
    Plain {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// `SCRAM-SHA-256` (RFC 5802, RFC 7677): the password never crosses
    /// the wire, and the server proves it knows the user's verifier.
    ScramSha256 {
        /// The user name.
        username: String,
        /// The password.
        password: String,
        /// The client nonce: printable ASCII without `,`, fresh and
        /// unpredictable for every exchange (the engine draws no random
        /// numbers itself).
        nonce: String,
    },
}

impl SaslClientConfig {
    /// The mechanism's name.
    pub fn mechanism(&self) -> &'static str {
        match self {
            Self::Anonymous => "ANONYMOUS",
            Self::External => "EXTERNAL",
            Self::Plain { .. } => "PLAIN",
            Self::ScramSha256 { .. } => "SCRAM-SHA-256",
        }
    }

    /// The user name it authenticates as, if it names one.
    pub fn username(&self) -> Option<&str> {
        match self {
            Self::Anonymous | Self::External => None,
            Self::Plain { username, .. } | Self::ScramSha256 { username, .. } => Some(username),
        }
    }
}

impl fmt::Debug for SaslClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the password.
        f.debug_struct("SaslClientConfig")
            .field("mechanism", &self.mechanism())
            .field("username", &self.username())
            .finish()
    }
}

/// The SASL layer a server offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslServerConfig {
    /// The mechanisms offered, in order (AMQP 1.0 §5.3.3.1). The engine
    /// completes `ANONYMOUS` itself; the peer's choice of any other is
    /// reported as [`Event::SaslInit`](super::Event::SaslInit) for the
    /// user to decide.
    pub mechanisms: Vec<String>,
    /// Refuse peers that skip SASL and send the AMQP header directly.
    pub required: bool,
}

impl Default for SaslServerConfig {
    /// `ANONYMOUS` only, SASL optional.
    fn default() -> Self {
        Self {
            mechanisms: vec!["ANONYMOUS".into()],
            required: false,
        }
    }
}
