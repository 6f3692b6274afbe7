//! Counting client connections per vhost and per user, for the vhosts'
//! connection limits. Counts outlive policy reloads (they are keyed by
//! vhost name); an [`Admission`] gives its place back when dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::VhostLimits;

/// Connections open per vhost, and per user in it.
#[derive(Debug, Default)]
pub struct Admissions {
    open: Mutex<HashMap<String, Counts>>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    /// By user (`None`: unauthenticated clients, counted as one user).
    per_user: HashMap<Option<String>, usize>,
}

/// A client connection counted against its vhost; dropping it gives the
/// place back.
#[derive(Debug)]
pub struct Admission {
    admissions: Arc<Admissions>,
    vhost: String,
    user: Option<String>,
}

impl Admissions {
    /// Counts a connection of `user` to `vhost`, if `limits` allow.
    ///
    /// # Errors
    ///
    /// Which limit it would exceed, in the client's words.
    pub fn admit(
        self: &Arc<Self>,
        vhost: &str,
        user: Option<&str>,
        limits: &VhostLimits,
    ) -> Result<Admission, String> {
        let mut open = self.open.lock().expect("admissions lock");
        let counts = open.entry(vhost.to_string()).or_default();
        if let Some(max) = limits.max_connections
            && counts.total >= max
        {
            return Err(format!("vhost {vhost} has its {max} connections"));
        }
        let mine = counts
            .per_user
            .get(&user.map(str::to_string))
            .copied()
            .unwrap_or(0);
        if let Some(max) = limits.max_connections_per_user
            && mine >= max
        {
            return Err(format!(
                "at most {max} connections per user to vhost {vhost}"
            ));
        }
        counts.total += 1;
        *counts.per_user.entry(user.map(str::to_string)).or_default() += 1;
        Ok(Admission {
            admissions: self.clone(),
            vhost: vhost.to_string(),
            user: user.map(str::to_string),
        })
    }

    /// Connections open to `vhost` on this router.
    pub fn count(&self, vhost: &str) -> usize {
        self.open
            .lock()
            .expect("admissions lock")
            .get(vhost)
            .map_or(0, |c| c.total)
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut open = self.admissions.open.lock().expect("admissions lock");
        if let Some(counts) = open.get_mut(&self.vhost) {
            counts.total -= 1;
            if let Some(n) = counts.per_user.get_mut(&self.user) {
                *n -= 1;
                if *n == 0 {
                    counts.per_user.remove(&self.user);
                }
            }
            if counts.total == 0 {
                open.remove(&self.vhost);
            }
        }
    }
}
