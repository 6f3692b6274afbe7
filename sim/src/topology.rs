//! Mesh topologies: routers and the links between them, and generators for
//! the usual shapes. A link's first router dials the second (it has the
//! `[[connector]]`), the second accepts on its inter-router listener.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use crate::rng::SimRng;

/// One inter-router link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSpec {
    /// The router that dials.
    pub a: String,
    /// The router that accepts.
    pub b: String,
    /// The link cost (at least 1).
    pub cost: u32,
}

/// Routers and links.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topology {
    /// Router ids.
    pub routers: Vec<String>,
    /// Links between them.
    pub links: Vec<LinkSpec>,
}

/// The shapes the generators make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// R0 – R1 – … – Rn-1.
    Line,
    /// A line closed into a ring.
    Ring,
    /// Every router linked to every other.
    Full,
    /// A near-square grid, row by row.
    Grid,
    /// A random spanning tree plus random extra links.
    Random,
}

impl Shape {
    /// Every shape, for random choice.
    pub const ALL: [Shape; 5] = [
        Shape::Line,
        Shape::Ring,
        Shape::Full,
        Shape::Grid,
        Shape::Random,
    ];
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Shape::Line => "line",
            Shape::Ring => "ring",
            Shape::Full => "full",
            Shape::Grid => "grid",
            Shape::Random => "random",
        })
    }
}

impl FromStr for Shape {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Shape::ALL
            .into_iter()
            .find(|shape| shape.to_string().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown topology {s:?}: line, ring, full, grid or random"))
    }
}

/// The id of the `i`-th router of a generated topology of `n` (zero-padded
/// so that id order is index order).
pub fn router_name(i: usize, n: usize) -> String {
    let width = n.saturating_sub(1).to_string().len();
    format!("R{i:0width$}")
}

impl Topology {
    /// A topology of routers with these ids and no links yet.
    pub fn with_routers<S: Into<String>>(routers: impl IntoIterator<Item = S>) -> Self {
        Self {
            routers: routers.into_iter().map(Into::into).collect(),
            links: Vec::new(),
        }
    }

    /// Adds a link.
    pub fn link(mut self, a: &str, b: &str, cost: u32) -> Self {
        self.links.push(LinkSpec {
            a: a.into(),
            b: b.into(),
            cost: cost.max(1),
        });
        self
    }

    /// A generated topology of `n` routers with unit costs (`Random` draws
    /// from `rng`; the other shapes do not use it).
    pub fn generate(shape: Shape, n: usize, rng: &mut SimRng) -> Self {
        let names: Vec<String> = (0..n).map(|i| router_name(i, n)).collect();
        let mut edges: BTreeSet<(usize, usize)> = BTreeSet::new();
        match shape {
            Shape::Line => edges.extend((1..n).map(|i| (i - 1, i))),
            Shape::Ring => {
                edges.extend((1..n).map(|i| (i - 1, i)));
                if n > 2 {
                    edges.insert((0, n - 1));
                }
            }
            Shape::Full => {
                for i in 0..n {
                    edges.extend((i + 1..n).map(|j| (i, j)));
                }
            }
            Shape::Grid => {
                let w = (n as f64).sqrt().ceil().max(1.0) as usize;
                for i in 0..n {
                    if (i + 1) % w != 0 && i + 1 < n {
                        edges.insert((i, i + 1));
                    }
                    if i + w < n {
                        edges.insert((i, i + w));
                    }
                }
            }
            Shape::Random => {
                // A random spanning tree (each router joins an earlier
                // one), then about n/2 extra links.
                for i in 1..n {
                    edges.insert((rng.index(i), i));
                }
                for _ in 0..n / 2 {
                    let (i, j) = (rng.index(n), rng.index(n));
                    if i != j {
                        edges.insert((i.min(j), i.max(j)));
                    }
                }
            }
        }
        Self {
            links: edges
                .into_iter()
                .map(|(i, j)| LinkSpec {
                    a: names[i].clone(),
                    b: names[j].clone(),
                    cost: 1,
                })
                .collect(),
            routers: names,
        }
    }

    /// Gives every link a random cost in `1..=max`.
    pub fn with_random_costs(mut self, max: u32, rng: &mut SimRng) -> Self {
        for l in &mut self.links {
            l.cost = rng.range(1, u64::from(max.max(1))) as u32;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::ExpectedPaths;

    fn connected(t: &Topology) -> bool {
        let edges: Vec<(usize, usize, u32)> = t
            .links
            .iter()
            .map(|l| {
                let p = |x: &str| t.routers.iter().position(|r| r == x).unwrap();
                (p(&l.a), p(&l.b), l.cost)
            })
            .collect();
        let e = ExpectedPaths::new(t.routers.len(), &edges);
        (0..t.routers.len()).all(|j| e.dist(0, j).is_some())
    }

    #[test]
    fn every_shape_is_connected() {
        let mut rng = SimRng::new(3);
        for shape in Shape::ALL {
            for n in 1..12 {
                let t = Topology::generate(shape, n, &mut rng);
                assert_eq!(t.routers.len(), n);
                assert!(connected(&t), "{shape} {n}: {t:?}");
            }
        }
        assert_eq!(Topology::generate(Shape::Full, 5, &mut rng).links.len(), 10);
        assert_eq!(Topology::generate(Shape::Ring, 5, &mut rng).links.len(), 5);
        assert_eq!(Topology::generate(Shape::Grid, 9, &mut rng).links.len(), 12);
        assert_eq!("Grid".parse::<Shape>(), Ok(Shape::Grid));
        assert_eq!(router_name(3, 50), "R03");
    }
}
