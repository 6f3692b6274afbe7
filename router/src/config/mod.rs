//! Router configuration: typed entities, loading from TOML and `FERRY_…`
//! environment variables, validation, and one-line errors.
//!
//! Sources, later ones winning: the embedded default ([`DEFAULT_TOML`]) or
//! the file given with `--config`, then environment variables (scheme in
//! [`mod@env`]). The user-facing reference is `router/CONFIG.md`.

mod address;
pub mod broker;
pub mod env;
mod error;
mod load;
mod logging;
mod memory;
mod model;
mod render;
mod validate;

pub use address::distribution_in;
pub(crate) use address::prefix_matches;
pub use broker::{BROKERED_PREFIX, BrokerConfig, Brokered, brokered_entry};
pub use error::{ConfigError, Origin};
pub use load::DEFAULT_TOML;
pub use logging::{LOG_LEVELS, RUST_LOG, effective_log_filter, log_filter};
pub use model::{
    AddressConfig, AuthConfig, ClientCert, Config, ConnectorConfig, Distribution, GroupConfig,
    HttpConfig, Limits, ListenerConfig, LogConfig, ManagementConfig, Named, Role, RouterConfig,
    RouterMode, TlsProfileConfig, TlsVersion, TransportKind, VhostConfig, default_router_id,
    default_sasl_mechanisms,
};
pub use validate::{
    MAX_CONNECTIONS_LIMIT, MAX_ROUTER_ID_LEN, MIN_MAX_FRAME_SIZE, SUPPORTED_SASL_MECHANISMS,
};
