//! Message expiry (AMQP 1.0 §3.2.1 ttl, §3.2.4 absolute-expiry-time).

use super::*;

pub(super) enum Expiry {
    Never,
    At(Instant),
    Expired,
}

/// When a message expires: `ttl` counts from its arrival here (AMQP 1.0
/// §3.2.1), `absolute-expiry-time` is wall-clock (§3.2.4); the earlier wins.
pub(super) fn expiry(now: Instant, ttl: Option<u32>, absolute_ms: Option<i64>) -> Expiry {
    let mut at = ttl.map(|ms| now + Duration::from_millis(ms.into()));
    if let Some(abs) = absolute_ms.filter(|ms| *ms > 0) {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        if abs <= now_ms {
            return Expiry::Expired;
        }
        let abs_at = now + Duration::from_millis((abs - now_ms) as u64);
        at = Some(at.map_or(abs_at, |t| t.min(abs_at)));
    }
    match at {
        Some(t) if t <= now => Expiry::Expired,
        Some(t) => Expiry::At(t),
        None => Expiry::Never,
    }
}

pub(super) fn expired_outcome() -> DeliveryState {
    DeliveryState::Rejected(Rejected {
        error: Some(Error::new(
            EXPIRED,
            "the message's time to live passed before it could be delivered",
        )),
    })
}
