//! Connection parameters.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Checks PLAIN credentials (AMQP 1.0 §5.3, RFC 4616).
pub type Authenticator = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// What the engine advertises and enforces on a connection.
#[derive(Clone)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslClientConfig {
    /// `ANONYMOUS`.
    Anonymous,
    /// `PLAIN` with a user name and password.
    Plain {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
}

/// The SASL layer a server offers.
#[derive(Clone)]
pub struct SaslServerConfig {
    /// Offer `ANONYMOUS`.
    pub anonymous: bool,
    /// Offer `PLAIN`, checking credentials with this.
    pub plain: Option<Authenticator>,
    /// Refuse peers that skip SASL and send the AMQP header directly.
    pub required: bool,
}

impl fmt::Debug for SaslServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslServerConfig")
            .field("anonymous", &self.anonymous)
            .field("plain", &self.plain.is_some())
            .field("required", &self.required)
            .finish()
    }
}

impl Default for SaslServerConfig {
    fn default() -> Self {
        Self {
            anonymous: true,
            plain: None,
            required: false,
        }
    }
}
