//! A synthesized road network around a real city centre: a slightly rotated street
//! grid with arterials, a ring road and highway legs out to distribution centres.
//! No map data is available offline, so the shape is generated from a seed; the
//! same seed always gives the same network.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Metres per degree of latitude (and of longitude at the equator).
const M_PER_DEG: f64 = 111_320.0;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct City {
    pub name: &'static str,
    pub lat: f64,
    pub lon: f64,
}

pub const ROTTERDAM: City = City {
    name: "Rotterdam",
    lat: 51.9225,
    lon: 4.4792,
};
pub const LYON: City = City {
    name: "Lyon",
    lat: 45.7640,
    lon: 4.8357,
};
pub const DENVER: City = City {
    name: "Denver",
    lat: 39.7392,
    lon: -104.9903,
};

pub const CITIES: &[City] = &[ROTTERDAM, LYON, DENVER];

impl City {
    /// Metres east and north of the centre to degrees (a local tangent plane; exact
    /// enough over the tens of kilometres a city network spans).
    pub fn to_lat_lon(&self, x: f64, y: f64) -> (f64, f64) {
        let lat = self.lat + y / M_PER_DEG;
        let lon = self.lon + x / (M_PER_DEG * self.lat.to_radians().cos());
        (lat, lon)
    }

    pub fn from_lat_lon(&self, lat: f64, lon: f64) -> (f64, f64) {
        let y = (lat - self.lat) * M_PER_DEG;
        let x = (lon - self.lon) * M_PER_DEG * self.lat.to_radians().cos();
        (x, y)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoadClass {
    Local,
    Arterial,
    Ring,
    Highway,
}

impl RoadClass {
    /// The posted limit in m/s.
    pub fn limit_mps(self) -> f64 {
        let kmh = match self {
            RoadClass::Local => 30.0,
            RoadClass::Arterial => 50.0,
            RoadClass::Ring => 70.0,
            RoadClass::Highway => 100.0,
        };
        kmh / 3.6
    }

    fn rank(self) -> u8 {
        match self {
            RoadClass::Local => 0,
            RoadClass::Arterial => 1,
            RoadClass::Ring => 2,
            RoadClass::Highway => 3,
        }
    }
}

/// What a driver meets at a junction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    None,
    /// Traffic lights: sometimes red.
    Signal,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Node {
    /// Metres east of the city centre.
    pub x: f64,
    /// Metres north of the city centre.
    pub y: f64,
    pub control: Control,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Edge {
    pub to: usize,
    pub class: RoadClass,
    pub length_m: f64,
}

#[derive(Debug, Clone)]
pub struct RoadNetwork {
    pub city: City,
    pub nodes: Vec<Node>,
    adj: Vec<Vec<Edge>>,
    /// Depots and distribution centres, where vehicles start and end their shifts.
    pub depots: Vec<usize>,
    /// Customer stops.
    pub stops: Vec<usize>,
}

const GRID: usize = 22;
const SPACING_M: f64 = 320.0;
const ARTERIAL_EVERY: usize = 5;

impl RoadNetwork {
    /// The network for a city; the same city and seed always give the same network.
    pub fn generate(city: City, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut net = RoadNetwork {
            city,
            nodes: Vec::new(),
            adj: Vec::new(),
            depots: Vec::new(),
            stops: Vec::new(),
        };
        let rot = rng.gen_range(-0.25f64..0.25);
        let (sr, cr) = rot.sin_cos();
        let half = (GRID as f64 - 1.0) * SPACING_M / 2.0;
        let is_major = |i: usize| i == 0 || i == GRID - 1 || i % ARTERIAL_EVERY == 0;
        let is_ring = |i: usize| i == 0 || i == GRID - 1;
        for r in 0..GRID {
            for c in 0..GRID {
                let jitter = if is_major(r) || is_major(c) {
                    8.0
                } else {
                    35.0
                };
                let gx = c as f64 * SPACING_M - half + rng.gen_range(-jitter..jitter);
                let gy = r as f64 * SPACING_M - half + rng.gen_range(-jitter..jitter);
                let control = if is_major(r) && is_major(c) {
                    Control::Signal
                } else {
                    Control::None
                };
                net.add_node(gx * cr - gy * sr, gx * sr + gy * cr, control);
            }
        }
        let id = |r: usize, c: usize| r * GRID + c;
        for r in 0..GRID {
            for c in 0..GRID {
                if c + 1 < GRID {
                    let class = if is_ring(r) {
                        RoadClass::Ring
                    } else if is_major(r) {
                        RoadClass::Arterial
                    } else {
                        RoadClass::Local
                    };
                    net.maybe_link(&mut rng, id(r, c), id(r, c + 1), class);
                }
                if r + 1 < GRID {
                    let class = if is_ring(c) {
                        RoadClass::Ring
                    } else if is_major(c) {
                        RoadClass::Arterial
                    } else {
                        RoadClass::Local
                    };
                    net.maybe_link(&mut rng, id(r, c), id(r + 1, c), class);
                }
            }
        }
        // Two highway legs from opposite ring corners out to distribution centres.
        for (corner, dir) in [
            (id(GRID - 1, GRID - 1), (0.8f64, 0.6f64)),
            (id(0, 0), (-0.7, -0.7)),
        ] {
            let start = net.nodes[corner];
            let len = rng.gen_range(7_000.0..11_000.0);
            let steps = (len / 450.0) as usize;
            let bend = rng.gen_range(300.0..900.0);
            let mut prev = corner;
            for k in 1..=steps {
                let t = k as f64 / steps as f64;
                let along = t * len;
                let off = bend * (t * std::f64::consts::PI).sin();
                let x = start.x + dir.0 * along - dir.1 * off;
                let y = start.y + dir.1 * along + dir.0 * off;
                let n = net.add_node(x, y, Control::None);
                net.link(prev, n, RoadClass::Highway);
                prev = n;
            }
            let end = net.nodes[prev];
            let dc = net.add_node(end.x + 180.0, end.y - 120.0, Control::None);
            net.link(prev, dc, RoadClass::Local);
            net.depots.push(dc);
        }
        // An in-town depot just inside the west ring road.
        net.depots.push(id(GRID / 2, 1));
        for r in 1..GRID - 1 {
            for c in 1..GRID - 1 {
                if !is_major(r) && !is_major(c) && rng.gen_bool(0.18) {
                    net.stops.push(id(r, c));
                }
            }
        }
        net
    }

    fn add_node(&mut self, x: f64, y: f64, control: Control) -> usize {
        self.nodes.push(Node { x, y, control });
        self.adj.push(Vec::new());
        self.nodes.len() - 1
    }

    fn link(&mut self, a: usize, b: usize, class: RoadClass) {
        let length_m = self.distance(a, b);
        self.adj[a].push(Edge {
            to: b,
            class,
            length_m,
        });
        self.adj[b].push(Edge {
            to: a,
            class,
            length_m,
        });
    }

    /// Links two grid nodes, except for a few local streets (dead ends, pedestrian
    /// zones) so that the grid does not look drawn with a ruler.
    fn maybe_link(&mut self, rng: &mut StdRng, a: usize, b: usize, class: RoadClass) {
        if class == RoadClass::Local && rng.gen_bool(0.1) {
            return;
        }
        self.link(a, b, class);
    }

    pub fn edges(&self, node: usize) -> &[Edge] {
        &self.adj[node]
    }

    pub fn distance(&self, a: usize, b: usize) -> f64 {
        let (na, nb) = (self.nodes[a], self.nodes[b]);
        (na.x - nb.x).hypot(na.y - nb.y)
    }

    pub fn edge(&self, a: usize, b: usize) -> Option<&Edge> {
        self.adj[a].iter().find(|e| e.to == b)
    }

    /// The most important road class that meets at a node.
    pub fn major_class_at(&self, node: usize) -> RoadClass {
        self.adj[node]
            .iter()
            .map(|e| e.class)
            .max_by_key(|c| c.rank())
            .unwrap_or(RoadClass::Local)
    }

    /// The quickest path by posted limits, as a list of nodes from `from` to `to`.
    pub fn route(&self, from: usize, to: usize) -> Option<Vec<usize>> {
        #[derive(PartialEq)]
        struct Item(f64, usize);
        impl Eq for Item {}
        impl PartialOrd for Item {
            fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
                Some(self.cmp(o))
            }
        }
        impl Ord for Item {
            fn cmp(&self, o: &Self) -> Ordering {
                o.0.total_cmp(&self.0)
            }
        }
        let n = self.nodes.len();
        let mut best = vec![f64::INFINITY; n];
        let mut prev = vec![usize::MAX; n];
        let mut heap = BinaryHeap::new();
        best[from] = 0.0;
        heap.push(Item(0.0, from));
        while let Some(Item(t, u)) = heap.pop() {
            if u == to {
                break;
            }
            if t > best[u] {
                continue;
            }
            for e in &self.adj[u] {
                // A junction costs time too, which favours fewer, bigger roads.
                let cost = t + e.length_m / e.class.limit_mps() + 4.0;
                if cost < best[e.to] {
                    best[e.to] = cost;
                    prev[e.to] = u;
                    heap.push(Item(cost, e.to));
                }
            }
        }
        if !best[to].is_finite() {
            return None;
        }
        let mut path = vec![to];
        let mut at = to;
        while at != from {
            at = prev[at];
            path.push(at);
        }
        path.reverse();
        Some(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_depot_reaches_every_stop() {
        let net = RoadNetwork::generate(ROTTERDAM, 7);
        assert_eq!(net.depots.len(), 3);
        assert!(net.stops.len() > 30, "{} stops", net.stops.len());
        for &d in &net.depots {
            for &s in net.stops.iter().step_by(7) {
                let path = net.route(d, s).expect("connected");
                assert_eq!(path.first(), Some(&d));
                assert_eq!(path.last(), Some(&s));
                for w in path.windows(2) {
                    assert!(net.edge(w[0], w[1]).is_some());
                }
            }
        }
    }

    #[test]
    fn network_stays_near_its_city() {
        let net = RoadNetwork::generate(LYON, 1);
        for n in &net.nodes {
            let (lat, lon) = net.city.to_lat_lon(n.x, n.y);
            assert!((lat - LYON.lat).abs() < 0.2 && (lon - LYON.lon).abs() < 0.3);
        }
        let (x, y) = LYON.from_lat_lon(45.77, 4.84);
        let (lat, lon) = LYON.to_lat_lon(x, y);
        assert!((lat - 45.77).abs() < 1e-9 && (lon - 4.84).abs() < 1e-9);
    }
}
