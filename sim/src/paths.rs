//! The routing tables a correct router must reach, computed independently
//! of the router: all-pairs shortest paths over the true topology (one
//! Dijkstra from every router, `O(n · m log n)`: 1,000 routers in tens of
//! milliseconds, where Floyd–Warshall's `O(n³)` took a second), with the
//! protocol's tie-break (among neighbours on a shortest path, the one with
//! the smallest id; routers are indexed in id order, so the smallest
//! index).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// "Unreachable".
const INF: u64 = u64::MAX / 4;

/// All-pairs shortest paths of one topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedPaths {
    n: usize,
    dist: Vec<u64>,
    adj: Vec<Vec<(usize, u64)>>,
}

impl ExpectedPaths {
    /// Paths over `n` routers (indexed in id order) joined by `edges`
    /// `(i, j, cost)`.
    pub fn new(n: usize, edges: &[(usize, usize, u32)]) -> Self {
        let mut adj = vec![Vec::new(); n];
        for &(i, j, c) in edges {
            let c = u64::from(c.max(1));
            adj[i].push((j, c));
            adj[j].push((i, c));
        }
        let mut dist = vec![INF; n * n];
        let mut heap = BinaryHeap::new();
        for s in 0..n {
            let row = &mut dist[s * n..(s + 1) * n];
            row[s] = 0;
            heap.push(Reverse((0, s)));
            while let Some(Reverse((d, v))) = heap.pop() {
                if d > row[v] {
                    continue;
                }
                for &(w, c) in &adj[v] {
                    let via = d + c;
                    if via < row[w] {
                        row[w] = via;
                        heap.push(Reverse((via, w)));
                    }
                }
            }
        }
        Self { n, dist, adj }
    }

    /// Routers the paths are over.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether there are no routers.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The path cost from `i` to `j`, if reachable.
    pub fn dist(&self, i: usize, j: usize) -> Option<u64> {
        let d = self.dist[i * self.n + j];
        (d < INF).then_some(d)
    }

    /// The next hop from `i` towards `j` (`None` if unreachable or `i == j`).
    pub fn next_hop(&self, i: usize, j: usize) -> Option<usize> {
        let d = self.dist(i, j)?;
        if i == j {
            return None;
        }
        self.adj[i]
            .iter()
            .filter(|&&(w, c)| self.dist(w, j).is_some_and(|dw| dw + c == d))
            .map(|&(w, _)| w)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_paths_with_smallest_id_tie_break() {
        // 0 - 1 - 3 and 0 - 2 - 3, all cost 1; 0 - 3 direct at cost 5.
        let p = ExpectedPaths::new(5, &[(0, 1, 1), (1, 3, 1), (0, 2, 1), (2, 3, 1), (0, 3, 5)]);
        assert_eq!(p.dist(0, 3), Some(2));
        assert_eq!(p.next_hop(0, 3), Some(1));
        assert_eq!(p.next_hop(3, 0), Some(1));
        assert_eq!(p.dist(0, 4), None);
        assert_eq!(p.next_hop(2, 2), None);
    }

    /// Floyd–Warshall, the former computation, as the reference.
    fn floyd(n: usize, edges: &[(usize, usize, u32)]) -> Vec<u64> {
        let mut dist = vec![INF; n * n];
        for i in 0..n {
            dist[i * n + i] = 0;
        }
        for &(i, j, c) in edges {
            let c = u64::from(c.max(1));
            dist[i * n + j] = dist[i * n + j].min(c);
            dist[j * n + i] = dist[j * n + i].min(c);
        }
        for k in 0..n {
            for i in 0..n {
                for j in 0..n {
                    let via = dist[i * n + k].saturating_add(dist[k * n + j]);
                    if via < dist[i * n + j] {
                        dist[i * n + j] = via;
                    }
                }
            }
        }
        dist
    }

    #[test]
    fn dijkstra_agrees_with_floyd_warshall() {
        let mut rng = crate::rng::SimRng::new(11);
        for round in 0..200 {
            let n = rng.range_usize(1, 25);
            let mut edges = Vec::new();
            for _ in 0..rng.range_usize(0, 3 * n) {
                let (i, j) = (rng.index(n), rng.index(n));
                if i != j {
                    edges.push((i, j, rng.range(0, 5) as u32));
                }
            }
            let p = ExpectedPaths::new(n, &edges);
            let want = floyd(n, &edges);
            for i in 0..n {
                for j in 0..n {
                    let w = want[i * n + j];
                    assert_eq!(
                        p.dist(i, j),
                        (w < INF).then_some(w),
                        "round {round}: {i}->{j}"
                    );
                }
            }
        }
    }
}
