//! Geofences: polygons (with holes) read from a GeoJSON file, and the enter and
//! exit crossings of a vehicle, with a band along each border inside which the
//! state holds so GPS noise along a fence makes no events.

use serde_json::Value;
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum GeofenceError {
    #[error("reading geofences from {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("geofences are not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("geofence {feature}: {reason}")]
    Invalid { feature: String, reason: String },
}

/// Metres per degree of latitude.
const M_PER_DEG: f64 = 111_320.0;

/// One ring as (lon, lat) degrees, closed (the first point repeats at the end).
type Ring = Vec<(f64, f64)>;

/// An outer ring and its holes.
#[derive(Debug, Clone, PartialEq)]
pub struct Polygon {
    pub rings: Vec<Ring>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Geofence {
    pub id: String,
    pub name: Option<String>,
    pub polygons: Vec<Polygon>,
    /// (min lon, min lat, max lon, max lat).
    bbox: (f64, f64, f64, f64),
}

/// Inside or not, and how far from the nearest border, metres.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    pub inside: bool,
    pub border_m: f64,
}

/// Even-odd ray casting: with holes as further rings, a point in a hole crosses
/// an even number of edges and counts as outside.
fn crossings(ring: &Ring, lon: f64, lat: f64) -> usize {
    ring.windows(2)
        .filter(|e| {
            let ((x0, y0), (x1, y1)) = (e[0], e[1]);
            (y0 > lat) != (y1 > lat) && lon < x0 + (lat - y0) / (y1 - y0) * (x1 - x0)
        })
        .count()
}

impl Geofence {
    /// Where a point lies relative to this fence.
    pub fn place(&self, lat: f64, lon: f64) -> Placement {
        let cos = lat.to_radians().cos();
        let (x0, y0, x1, y1) = self.bbox;
        // Far outside the box: outside, at least that far from any border.
        let dx = ((x0 - lon).max(lon - x1).max(0.0)) * M_PER_DEG * cos;
        let dy = ((y0 - lat).max(lat - y1).max(0.0)) * M_PER_DEG;
        let box_m = dx.hypot(dy);
        if box_m > 1_000.0 {
            return Placement {
                inside: false,
                border_m: box_m,
            };
        }
        let mut inside = false;
        let mut border = f64::INFINITY;
        for poly in &self.polygons {
            let n: usize = poly.rings.iter().map(|r| crossings(r, lon, lat)).sum();
            inside |= n % 2 == 1;
            for ring in &poly.rings {
                for e in ring.windows(2) {
                    border = border.min(segment_m(e[0], e[1], lon, lat, cos));
                }
            }
        }
        Placement {
            inside,
            border_m: border,
        }
    }
}

/// Distance from (lon, lat) to the segment a-b, metres, on a local plane.
fn segment_m(a: (f64, f64), b: (f64, f64), lon: f64, lat: f64, cos: f64) -> f64 {
    let p = |q: (f64, f64)| ((q.0 - lon) * M_PER_DEG * cos, (q.1 - lat) * M_PER_DEG);
    let ((ax, ay), (bx, by)) = (p(a), p(b));
    let (dx, dy) = (bx - ax, by - ay);
    let len2 = dx * dx + dy * dy;
    let t = if len2 == 0.0 {
        0.0
    } else {
        (-(ax * dx + ay * dy) / len2).clamp(0.0, 1.0)
    };
    (ax + t * dx).hypot(ay + t * dy)
}

/// The fences a vehicle checks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GeofenceSet {
    pub fences: Vec<Geofence>,
}

fn invalid(feature: &str, reason: impl Into<String>) -> GeofenceError {
    GeofenceError::Invalid {
        feature: feature.to_string(),
        reason: reason.into(),
    }
}

fn ring(feature: &str, v: &Value) -> Result<Ring, GeofenceError> {
    let points = v
        .as_array()
        .ok_or_else(|| invalid(feature, "a ring is not an array of positions"))?;
    let mut ring = Vec::with_capacity(points.len());
    for p in points {
        let xy = p.as_array().filter(|a| a.len() >= 2);
        let (lon, lat) = match xy.map(|a| (a[0].as_f64(), a[1].as_f64())) {
            Some((Some(lon), Some(lat))) => (lon, lat),
            _ => {
                return Err(invalid(
                    feature,
                    format!("{p} is not a [lon, lat] position"),
                ))
            }
        };
        if !(-180.0..=180.0).contains(&lon) || !(-90.0..=90.0).contains(&lat) {
            return Err(invalid(
                feature,
                format!("[{lon}, {lat}] is outside [-180..180, -90..90]"),
            ));
        }
        ring.push((lon, lat));
    }
    if ring.len() < 4 {
        return Err(invalid(
            feature,
            format!("a ring needs at least 4 positions, has {}", ring.len()),
        ));
    }
    if ring.first() != ring.last() {
        return Err(invalid(
            feature,
            "a ring must end where it starts (RFC 7946 §3.1.6)",
        ));
    }
    Ok(ring)
}

fn polygon(feature: &str, v: &Value) -> Result<Polygon, GeofenceError> {
    let rings = v
        .as_array()
        .filter(|r| !r.is_empty())
        .ok_or_else(|| invalid(feature, "a polygon needs at least its outer ring"))?;
    Ok(Polygon {
        rings: rings
            .iter()
            .map(|r| ring(feature, r))
            .collect::<Result<_, _>>()?,
    })
}

fn geometry(feature: &str, g: &Value) -> Result<Vec<Polygon>, GeofenceError> {
    let coords = g.get("coordinates");
    match g.get("type").and_then(Value::as_str) {
        Some("Polygon") => Ok(vec![polygon(feature, coords.unwrap_or(&Value::Null))?]),
        Some("MultiPolygon") => coords
            .and_then(Value::as_array)
            .ok_or_else(|| invalid(feature, "MultiPolygon without coordinates"))?
            .iter()
            .map(|p| polygon(feature, p))
            .collect(),
        other => Err(invalid(
            feature,
            format!(
                "geometry type {} is not a Polygon or MultiPolygon",
                other.unwrap_or("(missing)")
            ),
        )),
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl GeofenceSet {
    /// Read a GeoJSON FeatureCollection (or one Feature) of Polygon and
    /// MultiPolygon features. A feature's id is its `id`, else `properties.id`,
    /// else its position in the file; `properties.name` names it.
    pub fn parse(json: &str) -> Result<Self, GeofenceError> {
        let doc: Value = serde_json::from_str(json)?;
        let features: Vec<&Value> = match doc.get("type").and_then(Value::as_str) {
            Some("FeatureCollection") => doc
                .get("features")
                .and_then(Value::as_array)
                .ok_or_else(|| invalid("(collection)", "no features array"))?
                .iter()
                .collect(),
            Some("Feature") => vec![&doc],
            other => {
                return Err(invalid(
                    "(document)",
                    format!(
                        "expected a FeatureCollection or a Feature, found {}",
                        other.unwrap_or("no type")
                    ),
                ))
            }
        };
        let mut fences = Vec::with_capacity(features.len());
        for (i, f) in features.iter().enumerate() {
            let props = f.get("properties");
            let id = text(f.get("id"))
                .or_else(|| text(props.and_then(|p| p.get("id"))))
                .unwrap_or_else(|| i.to_string());
            let name = text(props.and_then(|p| p.get("name")));
            let g = f
                .get("geometry")
                .filter(|g| !g.is_null())
                .ok_or_else(|| invalid(&id, "a feature without a geometry"))?;
            let polygons = geometry(&id, g)?;
            let mut bbox = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
            for (lon, lat) in polygons.iter().flat_map(|p| p.rings[0].iter()) {
                bbox = (
                    bbox.0.min(*lon),
                    bbox.1.min(*lat),
                    bbox.2.max(*lon),
                    bbox.3.max(*lat),
                );
            }
            if fences.iter().any(|g: &Geofence| g.id == id) {
                return Err(invalid(&id, "two features share this id"));
            }
            fences.push(Geofence {
                id,
                name,
                polygons,
                bbox,
            });
        }
        Ok(Self { fences })
    }

    pub fn load(path: &Path) -> Result<Self, GeofenceError> {
        let text = std::fs::read_to_string(path).map_err(|source| GeofenceError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }
}

/// A crossing, reported when the vehicle is clearly on the other side.
#[derive(Debug, Clone, PartialEq)]
pub struct Crossing {
    pub entered: bool,
    pub id: String,
    pub name: Option<String>,
    /// For an exit, how long the vehicle was inside (when the entry was seen).
    pub inside_ms: Option<u64>,
}

/// Per-vehicle state: which fences it is in.
pub struct GeofenceTracker {
    set: GeofenceSet,
    hysteresis_m: f64,
    /// Per fence: unknown until the first fix, then inside or not and since when
    /// (None when it was inside from the first fix).
    state: Vec<Option<(bool, Option<u64>)>>,
}

impl GeofenceTracker {
    pub fn new(set: GeofenceSet, hysteresis_m: f64) -> Self {
        let state = vec![None; set.fences.len()];
        Self {
            set,
            hysteresis_m,
            state,
        }
    }

    /// A trusted fix at `t`. A vehicle first seen inside a fence makes no enter
    /// event: it did not cross while we watched.
    pub fn fix(&mut self, t: u64, lat: f64, lon: f64, out: &mut Vec<Crossing>) {
        for (fence, state) in self.set.fences.iter().zip(self.state.iter_mut()) {
            let p = fence.place(lat, lon);
            let clear = p.border_m >= self.hysteresis_m;
            match *state {
                None => *state = Some((p.inside, None)),
                Some((false, _)) if p.inside && clear => {
                    *state = Some((true, Some(t)));
                    out.push(Crossing {
                        entered: true,
                        id: fence.id.clone(),
                        name: fence.name.clone(),
                        inside_ms: None,
                    });
                }
                Some((true, since)) if !p.inside && clear => {
                    *state = Some((false, Some(t)));
                    out.push(Crossing {
                        entered: false,
                        id: fence.id.clone(),
                        name: fence.name.clone(),
                        inside_ms: since.map(|s| t.saturating_sub(s)),
                    });
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1 km square yard around (51.9, 4.4) with a 200 m square hole (a
    /// neighbour's plot) in its middle, and a second fence far away.
    const YARD: &str = r#"{"type":"FeatureCollection","features":[
      {"type":"Feature","id":"yard-7","properties":{"name":"Waalhaven yard"},
       "geometry":{"type":"Polygon","coordinates":[
         [[4.3927,51.8955],[4.4073,51.8955],[4.4073,51.9045],[4.3927,51.9045],[4.3927,51.8955]],
         [[4.3985,51.8991],[4.4015,51.8991],[4.4015,51.9009],[4.3985,51.9009],[4.3985,51.8991]]]}},
      {"type":"Feature","properties":{"id":42},
       "geometry":{"type":"MultiPolygon","coordinates":[[
         [[5.0,52.0],[5.01,52.0],[5.01,52.01],[5.0,52.01],[5.0,52.0]]]]}}]}"#;

    #[test]
    fn point_in_polygon_respects_holes_and_multipolygons() {
        let set = GeofenceSet::parse(YARD).expect("valid");
        assert_eq!(set.fences[0].id, "yard-7");
        assert_eq!(set.fences[0].name.as_deref(), Some("Waalhaven yard"));
        assert_eq!(set.fences[1].id, "42");
        let yard = &set.fences[0];
        assert!(yard.place(51.897, 4.395).inside);
        assert!(!yard.place(51.9, 4.4).inside, "in the hole");
        assert!(!yard.place(51.91, 4.4).inside);
        assert!(set.fences[1].place(52.005, 5.005).inside);
        // 100 m north of the north edge: about 100 m from the border.
        let p = yard.place(51.9045 + 100.0 / M_PER_DEG, 4.40);
        assert!(!p.inside && (p.border_m - 100.0).abs() < 1.0, "{p:?}");
    }

    #[test]
    fn noise_along_the_border_makes_no_events_but_a_real_crossing_does() {
        let set = GeofenceSet::parse(YARD).expect("valid");
        let mut tr = GeofenceTracker::new(set, 15.0);
        let mut out = Vec::new();
        let edge = 51.9045;
        let north = |m: f64| edge + m / M_PER_DEG;
        tr.fix(0, north(60.0), 4.40, &mut out);
        // Parked on the fence line, wandering ±10 m across it.
        for i in 0..100u64 {
            let m = if i % 2 == 0 { 10.0 } else { -10.0 };
            tr.fix(1_000 + i * 1000, north(m), 4.40, &mut out);
        }
        assert!(out.is_empty(), "{out:?}");
        tr.fix(200_000, north(-40.0), 4.40, &mut out);
        tr.fix(260_000, north(-40.0), 4.40, &mut out);
        tr.fix(300_000, north(40.0), 4.40, &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out[0].entered && out[0].id == "yard-7");
        assert!(!out[1].entered);
        assert_eq!(out[1].inside_ms, Some(100_000));
    }

    #[test]
    fn bad_files_get_clear_errors() {
        let open_ring = r#"{"type":"Feature","id":"a","geometry":{"type":"Polygon",
            "coordinates":[[[0,0],[1,0],[1,1],[0,1]]]}}"#;
        let err = GeofenceSet::parse(open_ring).unwrap_err().to_string();
        assert!(
            err.contains("geofence a") && err.contains("end where it starts"),
            "{err}"
        );
        let point = r#"{"type":"Feature","geometry":{"type":"Point","coordinates":[0,0]}}"#;
        let err = GeofenceSet::parse(point).unwrap_err().to_string();
        assert!(err.contains("Point"), "{err}");
        let swapped = r#"{"type":"Feature","geometry":{"type":"Polygon",
            "coordinates":[[[51,200],[52,200],[52,201],[51,200]]]}}"#;
        assert!(GeofenceSet::parse(swapped)
            .unwrap_err()
            .to_string()
            .contains("outside"));
        assert!(matches!(
            GeofenceSet::parse("{"),
            Err(GeofenceError::Json(_))
        ));
        assert!(matches!(
            GeofenceSet::load(Path::new("/nonexistent/fences.geojson")),
            Err(GeofenceError::Read { .. })
        ));
    }
}
