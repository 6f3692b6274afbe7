//! Giving freed memory back to the operating system after a burst.
//!
//! Ferry uses the system allocator. glibc's `malloc` keeps most of what the
//! router frees: it returns the top of a heap to the system only past a
//! threshold that grows with the largest buffers freed (up to 64 MiB), and
//! never the free pages in the middle of a heap, where the buffers of
//! connections that came and went lie among the ones still in use. After
//! 5,000 idle connections closed, 59.5 MB stayed resident; after a flood
//! of producers to a consumer that stopped reading, most of what it held.
//!
//! So once a second [`run`] asks the allocator how many bytes lie free in
//! its heaps (`mallinfo2`), and when at least [`WORTH`] more than after its
//! last release do, it releases them (`malloc_trim(0)`: the free pages of
//! every heap are handed back with `madvise(MADV_DONTNEED)`, the tops of
//! the heaps shrunk). The pages are the system's again; the addresses stay
//! the allocator's, which faults fresh zeroed pages in when it reuses them.
//! A router whose load holds steady frees and reuses the same pages and
//! releases nothing; one whose load swings by more than [`WORTH`] gives it
//! back at most once a second. What it costs: `mallinfo2` walks the free
//! lists of every heap, each under its lock, and `malloc_trim` as well,
//! with a system call per free stretch of pages; a release took about a
//! millisecond per 5 MiB given back (benches/RESULTS.md, *Memory given
//! back after bursts*).
//!
//! Elsewhere than glibc (musl, macOS), [`run`] does nothing. `mallinfo2`
//! needs glibc 2.33 or later (the container image ships the glibc the
//! binary was built against: deploy/build-image.sh).

use std::time::Duration;

use crate::shutdown::Shutdown;

/// How often the allocator is asked what it holds free.
pub const EVERY: Duration = Duration::from_secs(1);

/// Bytes that must have become free since the last release for the next
/// one: smaller swings are left to be reused.
pub const WORTH: u64 = 4 << 20;

/// Releases freed memory to the system, once a second when enough was
/// freed (see the [module docs](self)), until `shutdown`.
pub async fn run(shutdown: Shutdown) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut release = Release::default();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.triggered() => return,
            }
            release.check(glibc::free_bytes(), glibc::trim);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    drop(shutdown);
}

/// When to release: free bytes compared with those left after the last
/// release.
#[derive(Debug, Default)]
#[cfg_attr(
    not(all(target_os = "linux", target_env = "gnu")),
    allow(dead_code) // [`run`] does nothing there; the tests still run
)]
struct Release {
    /// The fewest bytes that lay free since the last release (those that
    /// were released and not reused since, at most).
    released: u64,
}

#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
impl Release {
    /// `free` bytes lie free in the allocator's heaps: calls `trim` if at
    /// least [`WORTH`] of them became free since the last release.
    fn check(&mut self, free: u64, trim: impl FnOnce()) -> bool {
        // Reused since: those pages are resident again.
        self.released = self.released.min(free);
        if free < self.released + WORTH {
            return false;
        }
        trim();
        self.released = free;
        true
    }
}

pub use ferry_proto::engine::shrink_sparse;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    use crate::metrics::process::resident_bytes;

    /// Bytes in free chunks of every heap (`mallinfo2().fordblks`): what
    /// the allocator holds without the router using it.
    pub fn free_bytes() -> u64 {
        // SAFETY: mallinfo2 only reads the allocator's state, under its
        // locks, and returns it by value.
        let info = unsafe { libc::mallinfo2() };
        info.fordblks as u64
    }

    /// Gives every heap's free pages back to the system, and says at debug
    /// level how much the resident memory fell.
    pub fn trim() {
        let before = resident_bytes();
        let started = std::time::Instant::now();
        // SAFETY: malloc_trim takes the allocator's locks itself; it frees
        // nothing in use.
        unsafe { libc::malloc_trim(0) };
        let took = started.elapsed();
        if let (Some(before), Some(after)) = (before, resident_bytes()) {
            tracing::debug!(
                "gave {:.1} MiB of freed memory back to the system in {:.1} ms \
                 (resident: {:.1} MiB, was {:.1} MiB)",
                before.saturating_sub(after) as f64 / MIB,
                took.as_secs_f64() * 1e3,
                after as f64 / MIB,
                before as f64 / MIB,
            );
        }
    }

    const MIB: f64 = (1 << 20) as f64;
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn releases_once_enough_became_free_since_the_last_release() {
        let mut r = Release::default();
        let mut trims = 0;
        let mut check = |r: &mut Release, free| r.check(free, || trims += 1);
        assert!(!check(&mut r, MIB), "1 MiB free: not worth it");
        assert!(check(&mut r, 40 * MIB), "a burst freed 40 MiB");
        assert!(!check(&mut r, 40 * MIB), "nothing new: nothing to do");
        assert!(!check(&mut r, 42 * MIB), "2 MiB more: left to be reused");
        // Half of it reused, then freed again: resident again, released again.
        assert!(!check(&mut r, 20 * MIB));
        assert!(check(&mut r, 40 * MIB));
        assert_eq!(trims, 2);
    }

    #[test]
    fn a_map_left_mostly_empty_gives_its_room_back() {
        let mut map: std::collections::HashMap<u32, u32> = (0..1000).map(|i| (i, i)).collect();
        let full = map.capacity();
        for i in 0..900 {
            map.remove(&i);
            shrink_sparse(&mut map);
        }
        assert_eq!(map.len(), 100);
        assert!(map.capacity() < full / 4, "room for {}", map.capacity());
        // A small map is left alone.
        let mut small: std::collections::HashMap<u32, u32> = (0..100).map(|i| (i, i)).collect();
        small.retain(|k, _| *k < 2);
        let room = small.capacity();
        shrink_sparse(&mut small);
        assert_eq!(small.capacity(), room);
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn what_is_freed_in_the_middle_of_a_heap_is_counted_free() {
        // 64 MiB in blocks below the allocator's mmap threshold (so they
        // come from its heaps), every other one freed: the freed ones lie
        // between blocks in use, where no heap's top can shrink over them.
        let mut blocks: Vec<Vec<u8>> = (0..8192).map(|_| vec![1u8; 8 << 10]).collect();
        let before = glibc::free_bytes();
        let kept: Vec<Vec<u8>> = blocks
            .drain(..)
            .enumerate()
            .filter_map(|(i, b)| (i % 2 == 0).then_some(b))
            .collect();
        let free = glibc::free_bytes();
        assert!(
            free >= before + 16 * MIB,
            "{free} bytes free, {before} before"
        );
        let mut r = Release::default();
        assert!(r.check(free, glibc::trim));
        drop(kept);
    }
}
