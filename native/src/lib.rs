//! Native kernels of atoguard's engine, a drop-in for the Python reference.
//!
//! * [`HalfSpaceForest`]: the flat Half-Space Trees forest of
//!   `detectors/models/anomaly.py` (`_Forest`): scoring walk, learning (one path per tree, masses
//!   counted as River counts them), pivot of the masses after a window. Scores are the same
//!   floating-point operations in the same order as the Python code, so equal to the bit.
//! * [`scale`]: `_Group.scale`, the min-max scaling of a vector.
//! * [`MidasCells`]: the edge-at-a-time state of MIDAS-R (`detectors/burst/midas.py`,
//!   `MidasR.score_one` and `_Cells`): hashing, lazy decay, chi-squared score, `log1p`.
//!
//! The Python code stays the reference; `tests/test_native.py` compares the two output for output.

use pyo3::exceptions::{PyIndexError, PyValueError};
use pyo3::prelude::*;

// ---------------------------------------------------------------------------------------------
// Half-Space Trees
// ---------------------------------------------------------------------------------------------

/// River's Half-Space Trees as flat arrays (see `_Forest` in detectors/models/anomaly.py).
#[pyclass(module = "atoguard_native")]
struct HalfSpaceForest {
    feature: Vec<isize>,
    threshold: Vec<f64>,
    left: Vec<usize>,
    right: Vec<usize>,
    depth: Vec<u32>,
    roots: Vec<usize>,
    r_mass: Vec<i64>,
    l_mass: Vec<i64>,
    stop_feature: Vec<isize>,
    stop_score: Vec<f64>,
    height: usize,
    n_features: usize,
    #[pyo3(get)]
    counter: i64,
    #[pyo3(get)]
    first_window: bool,
    window: i64,
    limit: f64,
    max_score: f64,
}

impl HalfSpaceForest {
    /// Where River's scoring walk stops, and the tree's score there, for every node.
    fn prepare(&mut self) {
        let n = self.r_mass.len();
        self.stop_feature.clone_from(&self.feature);
        self.stop_score.clear();
        self.stop_score.resize(n, 0.0);
        let mut prefix = vec![0i64; n];
        for j in 0..n {
            let r = self.r_mass[j];
            let here = prefix[j] + r * (1i64 << self.depth[j]);
            if self.feature[j] < 0 || (r as f64) < self.limit {
                self.stop_feature[j] = -1;
                self.stop_score[j] = here as f64;
            } else {
                prefix[self.left[j]] = here;
                prefix[self.right[j]] = here;
            }
        }
    }

    fn check(&self, s: &[f64]) -> PyResult<()> {
        if s.len() < self.n_features {
            return Err(PyIndexError::new_err(format!(
                "the vector has {} values, the trees read {}",
                s.len(),
                self.n_features
            )));
        }
        Ok(())
    }
}

#[pymethods]
impl HalfSpaceForest {
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (feature, threshold, left, right, depth, roots, r_mass, l_mass, counter, first_window, window, limit, max_score, height))]
    fn new(
        feature: Vec<isize>,
        threshold: Vec<f64>,
        left: Vec<isize>,
        right: Vec<isize>,
        depth: Vec<u32>,
        roots: Vec<usize>,
        r_mass: Vec<i64>,
        l_mass: Vec<i64>,
        counter: i64,
        first_window: bool,
        window: i64,
        limit: f64,
        max_score: f64,
        height: usize,
    ) -> PyResult<Self> {
        let n = feature.len();
        if [threshold.len(), left.len(), right.len(), depth.len(), r_mass.len(), l_mass.len()]
            .iter()
            .any(|&m| m != n)
        {
            return Err(PyValueError::new_err("the node arrays differ in length"));
        }
        if depth.iter().any(|&d| d >= 62) || height >= 62 {
            return Err(PyValueError::new_err("trees deeper than 61 levels are not supported"));
        }
        let node = |x: isize, j: usize, d: u32| -> PyResult<usize> {
            if (d as usize) >= height {
                return Ok(0); // a leaf: never followed
            }
            if x <= j as isize || x as usize >= n {
                return Err(PyValueError::new_err(format!("node {j}: bad child {x}")));
            }
            Ok(x as usize)
        };
        let mut l = Vec::with_capacity(n);
        let mut r = Vec::with_capacity(n);
        for j in 0..n {
            l.push(node(left[j], j, depth[j])?);
            r.push(node(right[j], j, depth[j])?);
        }
        if roots.iter().any(|&x| x >= n) {
            return Err(PyValueError::new_err("a root is out of range"));
        }
        let n_features = feature.iter().map(|&f| f + 1).max().unwrap_or(0).max(0) as usize;
        let mut forest = HalfSpaceForest {
            stop_feature: Vec::new(),
            stop_score: Vec::new(),
            feature,
            threshold,
            left: l,
            right: r,
            depth,
            roots,
            r_mass,
            l_mass,
            height,
            n_features,
            counter,
            first_window,
            window,
            limit,
            max_score,
        };
        forest.prepare();
        Ok(forest)
    }

    /// River's `HalfSpaceTrees.score_one` on the scaled vector `s`.
    fn score(&self, s: Vec<f64>) -> PyResult<f64> {
        self.check(&s)?;
        let mut total = 0.0f64;
        for &root in &self.roots {
            let mut j = root;
            let mut k = self.stop_feature[j];
            while k >= 0 {
                j = if s[k as usize] < self.threshold[j] { self.left[j] } else { self.right[j] };
                k = self.stop_feature[j];
            }
            total += self.stop_score[j];
        }
        Ok(1.0 - total / self.max_score)
    }

    /// River's `HalfSpaceTrees.learn_one` on `s`; true when the masses pivoted.
    fn learn(&mut self, s: Vec<f64>) -> PyResult<bool> {
        self.check(&s)?;
        for &root in &self.roots {
            let mut at = root;
            self.l_mass[at] += 1;
            for _ in 0..self.height {
                at = if s[self.feature[at] as usize] < self.threshold[at] {
                    self.left[at]
                } else {
                    self.right[at]
                };
                self.l_mass[at] += 1;
            }
        }
        self.counter += 1;
        if self.counter == self.window {
            let n = self.l_mass.len();
            self.r_mass = std::mem::replace(&mut self.l_mass, vec![0; n]);
            self.first_window = false;
            self.counter = 0;
            self.prepare();
            return Ok(true);
        }
        Ok(false)
    }

    /// `(r_mass, l_mass)`, node by node.
    fn masses(&self) -> (Vec<i64>, Vec<i64>) {
        (self.r_mass.clone(), self.l_mass.clone())
    }
}

/// `_Group.scale`: `(v - lo) / span`, 0.0 where the span is zero.
#[pyfunction]
fn scale(v: Vec<f64>, lo: Vec<f64>, span: Vec<f64>) -> Vec<f64> {
    v.iter()
        .zip(lo.iter())
        .zip(span.iter())
        .map(|((&x, &a), &d)| if d != 0.0 { (x - a) / d } else { 0.0 })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// MIDAS-R, edge at a time
// ---------------------------------------------------------------------------------------------

const EDGE_MULTIPLIER: i64 = 104_729;

fn wrap32(x: i64) -> i64 {
    x as i32 as i64
}

/// `math.frexp`: `(m, e)` with `x = m * 2**e`, `0.5 <= |m| < 1` (`(x, 0)` for 0, inf, nan).
fn frexp(x: f64) -> (f64, i32) {
    if x == 0.0 || !x.is_finite() {
        return (x, 0);
    }
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    if exp == 0 {
        // subnormal: scale up by 2**54 first
        let (m, e) = frexp(x * f64::from_bits((1023u64 + 54) << 52));
        return (m, e - 54);
    }
    let m = f64::from_bits((bits & !(0x7ffu64 << 52)) | (1022u64 << 52));
    (m, exp - 1022)
}

/// `v * 2**-m` for results that stay normal (exact, as `math.ldexp`).
fn ldexp_down(mut v: f64, mut m: i64) -> f64 {
    while m > 0 {
        let step = m.min(1022);
        v *= f64::from_bits(((1023 - step) as u64) << 52);
        m -= step;
    }
    v
}

/// The sketches of `MidasR.score_one`, decayed lazily (the `_Cells` of midas.py).
#[pyclass(module = "atoguard_native")]
struct MidasCells {
    rows: usize,
    buckets: i64,
    params: Vec<(i64, i64)>, // kind-major: kind * rows + row
    base: Vec<f64>,
    hits: Vec<i64>,
    total: Vec<i64>,
    when: Vec<u64>,
    epoch: u64,
    factor: f64,
    shift: Option<i64>,
}

impl MidasCells {
    /// `v` multiplied `k` times by `factor`, each product rounded (`_Cells.decay`).
    fn decay(&self, mut v: f64, k: u64) -> f64 {
        let factor = self.factor;
        let shift = match self.shift {
            Some(s) if v != 0.0 && factor != 0.0 => s,
            _ => {
                for _ in 0..k {
                    v *= factor;
                    if v == 0.0 {
                        break;
                    }
                }
                return v;
            }
        };
        if shift == 0 {
            return v;
        }
        let exponent = frexp(v).1 as i64;
        let exact = ((exponent + 1021).div_euclid(shift)).max(0) as u64;
        if k <= exact {
            return ldexp_down(v, shift * k as i64);
        }
        v = ldexp_down(v, shift * exact as i64);
        for _ in 0..(k - exact) {
            v *= factor;
            if v == 0.0 {
                break;
            }
        }
        v
    }

    fn cell(&self, kind: usize, row: usize, key: i64) -> usize {
        let (p1, p2) = self.params[kind * self.rows + row];
        let b = wrap32(key * p1 + p2).rem_euclid(self.buckets);
        ((kind * self.rows + row) as i64 * self.buckets + b) as usize
    }
}

#[pymethods]
impl MidasCells {
    /// `params`: the `(3, rows, 2)` hash parameters, flattened; `base`, `hits`, `total`: the
    /// `3 * rows * buckets` cells.
    #[new]
    fn new(
        params: Vec<i64>,
        rows: usize,
        buckets: i64,
        factor: f64,
        base: Vec<f64>,
        hits: Vec<i64>,
        total: Vec<i64>,
    ) -> PyResult<Self> {
        let ncell = 3 * rows * buckets as usize;
        if params.len() != 3 * rows * 2 || base.len() != ncell || hits.len() != ncell || total.len() != ncell {
            return Err(PyValueError::new_err("MidasCells: arrays of the wrong length"));
        }
        if !(0.0..=1.0).contains(&factor) || buckets < 1 || rows < 1 {
            return Err(PyValueError::new_err("MidasCells: bad rows, buckets or factor"));
        }
        let (m, e) = frexp(factor);
        let shift = if m == 0.5 && e <= 1 { Some(1 - e as i64) } else { None };
        Ok(MidasCells {
            rows,
            buckets,
            params: params.chunks(2).map(|p| (p[0], p[1])).collect(),
            when: vec![0; ncell],
            base,
            hits,
            total,
            epoch: 0,
            factor,
            shift,
        })
    }

    /// Learn one edge and return its score (`MidasR.score_one` after its checks). `src` and
    /// `dst` are the node ids' low 32 bits; `new_tick`: the tick changed since the last edge.
    fn score_one(&mut self, src: u32, dst: u32, tick: i64, new_tick: bool) -> f64 {
        if new_tick {
            self.epoch += 1;
        }
        let epoch = self.epoch;
        let t = tick as f64;
        let s32 = src as i32 as i64;
        let d32 = dst as i32 as i64;
        let edge_key = wrap32(s32 + EDGE_MULTIPLIER * d32);
        let mut top = 0.0f64;
        for kind in 0..3 {
            let key = [edge_key, s32, d32][kind];
            let mut a_min = f64::NAN;
            let mut s_min = 0i64;
            for row in 0..self.rows {
                let c = self.cell(kind, row, key);
                if self.when[c] != epoch {
                    let v = self.base[c] + self.hits[c] as f64;
                    self.base[c] = self.decay(v, epoch - self.when[c]);
                    self.hits[c] = 0;
                    self.when[c] = epoch;
                }
                self.hits[c] += 1;
                self.total[c] += 1;
                let a = self.base[c] + self.hits[c] as f64;
                if row == 0 || a < a_min {
                    a_min = a;
                }
                if row == 0 || self.total[c] < s_min {
                    s_min = self.total[c];
                }
            }
            let s_f = s_min as f64;
            let x2 = if s_f == 0.0 || t == 1.0 {
                0.0
            } else {
                let d = (a_min - s_f / t) * t;
                d * d / (s_f * (t - 1.0))
            };
            if kind == 0 || x2 > top {
                top = x2;
            }
        }
        top.ln_1p()
    }

    /// Every decay owed applied; `(base, hits, total)` as lists (`_Cells.store`).
    fn store(&mut self) -> (Vec<f64>, Vec<i64>, Vec<i64>) {
        let epoch = self.epoch;
        for c in 0..self.base.len() {
            if self.when[c] != epoch {
                let v = self.base[c] + self.hits[c] as f64;
                self.base[c] = self.decay(v, epoch - self.when[c]);
                self.hits[c] = 0;
                self.when[c] = epoch;
            }
        }
        (self.base.clone(), self.hits.clone(), self.total.clone())
    }
}

#[pymodule]
fn atoguard_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<HalfSpaceForest>()?;
    m.add_class::<MidasCells>()?;
    m.add_function(wrap_pyfunction!(scale, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
