//! What authenticates peers: the TLS profiles and the users file, both
//! read at start-up and again when they change on disk or on SIGHUP; and
//! the fairness of password hashing, so that failed logins from one
//! address do not slow anyone else's.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::Semaphore;

use crate::auth::{UserStore, UsersError};
use crate::config::{Config, Role};
use crate::ratelog::RateLimited;
use crate::tls::{MaterialError, RecordKeys, TlsProfiles};

/// Why the security material could not be loaded at start-up.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A TLS profile's files.
    #[error(transparent)]
    Tls(#[from] MaterialError),
    /// The users file.
    #[error("auth.users: {0}")]
    Users(#[from] UsersError),
    /// The inter-router profile cannot sign routing records.
    #[error(
        "tls profile {0:?}: routing records are signed with the inter-router profile's cert and key and checked against its ca: it needs all three"
    )]
    Records(String),
}

/// The router's security material and the state shared by every
/// connection's authentication.
pub struct Security {
    /// The TLS profiles.
    pub tls: Arc<TlsProfiles>,
    /// Signs and checks routing records, if inter-router connections use
    /// TLS ([`record_profile`]).
    pub records: Option<Arc<RecordKeys>>,
    users: Option<UsersFile>,
    /// Log lines about refused connections (bad handshakes, intruders).
    pub refusals: RateLimited,
    /// Log lines about failed logins.
    pub failed_logins: RateLimited,
    hashing: Hashing,
}

impl fmt::Debug for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Security")
            .field("tls", &self.tls)
            .field("users", &self.users.as_ref().map(|u| &u.path))
            .finish_non_exhaustive()
    }
}

/// The TLS profile routing records are signed with: that of the first
/// inter-router listener with TLS, else of the first such connector.
/// `None` when no inter-router connection uses TLS: the records are then
/// neither signed nor checked.
pub fn record_profile(config: &Config) -> Option<&str> {
    let listeners = config
        .listeners
        .iter()
        .filter(|l| l.role == Role::InterRouter)
        .filter_map(|l| l.tls.as_deref());
    let connectors = config
        .connectors
        .iter()
        .filter(|c| c.role == Role::InterRouter)
        .filter_map(|c| c.tls.as_deref());
    listeners.chain(connectors).next()
}

/// The users file and the store last read from it.
struct UsersFile {
    path: PathBuf,
    current: RwLock<Arc<UserStore>>,
    stamp: Mutex<Option<(SystemTime, u64)>>,
}

fn stamp(path: &PathBuf) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl Security {
    /// Reads the TLS profiles and the users file of `config`.
    ///
    /// # Errors
    ///
    /// The first file that cannot be used, naming its key.
    pub fn load(config: &Config) -> Result<Self, SecurityError> {
        let tls = TlsProfiles::load(config)?;
        let users = match &config.auth.users {
            Some(path) => Some(UsersFile {
                stamp: Mutex::new(stamp(path)),
                current: RwLock::new(Arc::new(UserStore::load(path)?)),
                path: path.clone(),
            }),
            None => None,
        };
        let mut security = Self::with(tls, users);
        if let Some(profile) = record_profile(config) {
            let keys = RecordKeys::new(security.tls.clone(), profile)
                .ok_or_else(|| SecurityError::Records(profile.to_string()))?;
            security.records = Some(Arc::new(keys));
        }
        Ok(security)
    }

    /// No TLS profiles, no users (the simulator; tests).
    pub fn none() -> Self {
        Self::with(TlsProfiles::default(), None)
    }

    fn with(tls: TlsProfiles, users: Option<UsersFile>) -> Self {
        Self {
            tls: Arc::new(tls),
            records: None,
            users,
            refusals: RateLimited::new("refused connections", 20, Duration::from_secs(10)),
            failed_logins: RateLimited::new("failed logins", 20, Duration::from_secs(10)),
            hashing: Hashing::new(),
        }
    }

    /// The users as last read, if there is a users file.
    pub fn users(&self) -> Option<Arc<UserStore>> {
        let users = self.users.as_ref()?;
        Some(users.current.read().expect("not poisoned").clone())
    }

    /// Reads again what changed on disk (everything when `force`, as on
    /// SIGHUP). What no longer loads is logged; the material in use stays.
    pub fn reload(&self, force: bool) {
        self.tls.reload(force);
        let Some(users) = &self.users else { return };
        let now = stamp(&users.path);
        {
            let mut seen = users.stamp.lock().expect("not poisoned");
            if !force && *seen == now {
                return;
            }
            *seen = now;
        }
        match UserStore::load(&users.path) {
            Ok(store) => {
                *users.current.write().expect("not poisoned") = Arc::new(store);
                tracing::info!(file = %users.path.display(), "users file reloaded");
            }
            Err(error) => {
                tracing::warn!("cannot reload the users file, keeping the users in use: {error}")
            }
        }
    }

    /// Checks a PLAIN login: the password's PBKDF2 runs on the blocking
    /// pool, one at a time per peer address and no more at once than
    /// there are cores, so a flood from one address waits on itself.
    pub fn check_plain(
        self: &Arc<Self>,
        check: PlainCheck,
    ) -> impl Future<Output = bool> + Send + 'static {
        let security = self.clone();
        async move {
            let PlainCheck {
                peer,
                user,
                password,
                store,
            } = check;
            security
                .hashing
                .run(peer, move || store.check_plain(&user, &password))
                .await
        }
    }
}

/// A PLAIN login to check (RFC 4616): a password against the user's
/// SCRAM verifier, which costs a PBKDF2 whether the user exists or not.
pub struct PlainCheck {
    /// The peer's address.
    pub peer: Option<IpAddr>,
    /// The user name.
    pub user: String,
    /// The password (never logged).
    pub password: String,
    /// The users to check against.
    pub store: Arc<UserStore>,
}

impl fmt::Debug for PlainCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainCheck")
            .field("peer", &self.peer)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Password hashing, fair between peer addresses.
struct Hashing {
    per_peer: Mutex<HashMap<Option<IpAddr>, Arc<Semaphore>>>,
    all: Arc<Semaphore>,
}

impl Hashing {
    fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            per_peer: Mutex::default(),
            all: Arc::new(Semaphore::new(cores)),
        }
    }

    async fn run(
        &self,
        peer: Option<IpAddr>,
        work: impl FnOnce() -> bool + Send + 'static,
    ) -> bool {
        let mine = self
            .per_peer
            .lock()
            .expect("not poisoned")
            .entry(peer)
            .or_insert_with(|| Arc::new(Semaphore::new(1)))
            .clone();
        let _forget = Forget {
            hashing: self,
            peer,
            mine: mine.clone(),
        };
        let _turn = mine.acquire().await.expect("never closed");
        let _core = self.all.acquire().await.expect("never closed");
        tokio::task::spawn_blocking(work).await.unwrap_or(false)
    }
}

/// Forgets a peer address's turn when nobody waits for it any more, also
/// when the waiting login is dropped (its connection went away).
struct Forget<'a> {
    hashing: &'a Hashing,
    peer: Option<IpAddr>,
    mine: Arc<Semaphore>,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        let mut map = self.hashing.per_peer.lock().expect("not poisoned");
        // The map's, ours, and the `mine` of `run` still alive beside us.
        if Arc::strong_count(&self.mine) <= 3 {
            map.remove(&self.peer);
        }
    }
}
