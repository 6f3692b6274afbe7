//! Reading the configuration file, the users file and the TLS material
//! again without a restart: when they change on disk (checked every
//! [`POLL`]) and on SIGHUP. What changes live: the tenants' policy
//! (`[[vhost]]`, `[router] default_vhost`), the users, the TLS profiles'
//! files. A file that no longer loads is logged and what is in use stays;
//! changes to anything else are logged as waiting for a restart.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::core::Core;
use crate::policy::Policy;
use crate::security::Security;
use crate::shutdown::Shutdown;

/// How often the files are checked for changes.
pub const POLL: Duration = Duration::from_secs(2);

/// What is reloaded, and from where.
pub struct Reloader {
    /// The TLS profiles and users.
    pub security: Arc<Security>,
    /// The core, whose policy is replaced.
    pub core: Arc<Core>,
    /// The configuration file (`None`: the embedded default, never
    /// changes) and the configuration it gave last.
    pub config: Option<(PathBuf, Config)>,
}

type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &PathBuf) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl Reloader {
    /// Runs until shutdown.
    pub async fn run(self, shutdown: Shutdown) {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(error) => {
                tracing::warn!(%error, "cannot watch SIGHUP; files are still checked every {POLL:?}");
                None
            }
        };
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let this = Arc::new(Mutex::new(Watched {
            stamp: self.config.as_ref().and_then(|(p, _)| stamp(p)),
            reloader: self,
        }));
        loop {
            let force = tokio::select! {
                _ = poll.tick() => false,
                Some(()) = async { hangup.as_mut()?.recv().await } => {
                    tracing::info!("SIGHUP received; reading the configuration, users and TLS profiles again");
                    true
                }
                () = shutdown.triggered() => return,
            };
            let this = this.clone();
            let span = tracing::Span::current();
            // File reads and certificate parsing: off the async threads.
            let _ = tokio::task::spawn_blocking(move || {
                let _router = span.enter();
                this.lock().expect("reloader lock").reload(force);
            })
            .await;
        }
    }
}

struct Watched {
    reloader: Reloader,
    stamp: Stamp,
}

impl Watched {
    fn reload(&mut self, force: bool) {
        let r = &mut self.reloader;
        r.security.reload(force);
        let Some((path, current)) = &mut r.config else {
            return;
        };
        let now = stamp(path);
        if !force && now == self.stamp {
            return;
        }
        self.stamp = now;
        let new = match Config::load(Some(path)) {
            Ok(new) => new,
            Err(error) => {
                return tracing::warn!(
                    "cannot reload the configuration, keeping the one in use: {error}"
                );
            }
        };
        if new == *current {
            return;
        }
        let policy_changed = (new.vhosts != current.vhosts
            || new.router.default_vhost != current.router.default_vhost)
            .then(|| r.core.set_policy(Policy::from_config(&new)));
        match policy_changed {
            Some(Ok(())) => tracing::info!(
                vhosts = new.vhosts.len(),
                "policy reloaded: it applies to new attaches, and links it no longer allows are detached"
            ),
            Some(Err(why)) => {
                return tracing::warn!("policy not reloaded: {why}");
            }
            None => {}
        }
        let mut rest = new.clone();
        rest.vhosts = current.vhosts.clone();
        rest.router.default_vhost = current.router.default_vhost.clone();
        if rest != *current {
            tracing::warn!(
                "the configuration file changed beyond [[vhost]] and default_vhost: those changes take effect at the next restart"
            );
        }
        current.vhosts = new.vhosts;
        current.router.default_vhost = new.router.default_vhost;
    }
}
