//! N-dimensional slices with Python's semantics.
//!
//! The wire form is the `slice=` query parameter: a comma-separated list
//! whose items are integers (`3`, `-1`) or `start:stop:step` with any part
//! omitted (`:10:1`, `9:-11:-1`, `24::-1`). [`NdSlice::parse`] reads it;
//! [`NdSlice::resolve`] applies it to a shape exactly as NumPy would
//! (`slice.indices` clamping, negative indices and steps, integers dropping
//! their dimension, missing trailing dimensions meaning "all").

use crate::ModelError;

/// One item of a slice, before it meets a shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SliceItem {
    /// A single index: selects one position and drops the dimension.
    Index(i64),
    /// `start:stop:step`, any part optional.
    Range {
        start: Option<i64>,
        stop: Option<i64>,
        step: Option<i64>,
    },
}

impl SliceItem {
    /// `:` — the whole dimension.
    pub const FULL: SliceItem = SliceItem::Range {
        start: None,
        stop: None,
        step: None,
    };
}

/// A parsed `slice=` parameter. Empty means "everything".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NdSlice(pub Vec<SliceItem>);

/// What one dimension of a resolved slice selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DimSelection {
    /// One position; the dimension is dropped from the result.
    Index(usize),
    /// `len` positions `start, start + step, ...` (step may be negative).
    Range { start: i64, step: i64, len: usize },
}

impl DimSelection {
    /// The source position of output position `k` (only for ranges; an index
    /// selection ignores `k`).
    #[inline]
    pub fn source(&self, k: usize) -> usize {
        match *self {
            DimSelection::Index(i) => i,
            DimSelection::Range { start, step, .. } => (start + step * k as i64) as usize,
        }
    }

    /// How many positions this dimension selects.
    pub fn count(&self) -> usize {
        match *self {
            DimSelection::Index(_) => 1,
            DimSelection::Range { len, .. } => len,
        }
    }

    /// The whole of a dimension of length `n`.
    pub fn full(n: usize) -> Self {
        DimSelection::Range {
            start: 0,
            step: 1,
            len: n,
        }
    }
}

/// A slice applied to a concrete shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedSlice {
    /// One selection per dimension of the source.
    pub dims: Vec<DimSelection>,
}

impl ResolvedSlice {
    /// Select everything of `shape`.
    pub fn full(shape: &[usize]) -> Self {
        ResolvedSlice {
            dims: shape.iter().map(|&n| DimSelection::full(n)).collect(),
        }
    }

    /// Shape of the result: ranges keep their dimension, indices drop it.
    pub fn out_shape(&self) -> Vec<usize> {
        self.dims
            .iter()
            .filter_map(|d| match d {
                DimSelection::Index(_) => None,
                DimSelection::Range { len, .. } => Some(*len),
            })
            .collect()
    }

    /// Number of elements selected.
    pub fn num_elements(&self) -> usize {
        self.dims.iter().map(DimSelection::count).product()
    }
}

impl NdSlice {
    /// Parse the wire form. An empty string is the full selection.
    ///
    /// # Errors
    /// [`ModelError::InvalidSlice`] for anything outside the grammar
    /// (including `...`, which upstream also refuses).
    pub fn parse(text: &str) -> Result<NdSlice, ModelError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(NdSlice::default());
        }
        let bad = |why: &str| ModelError::InvalidSlice(format!("{text:?}: {why}"));
        let mut items = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            if part.is_empty() {
                return Err(bad("empty item"));
            }
            if !part.contains(':') {
                items.push(SliceItem::Index(
                    parse_int(part).ok_or_else(|| bad("not an integer"))?,
                ));
                continue;
            }
            let pieces: Vec<&str> = part.split(':').collect();
            if pieces.len() > 3 {
                return Err(bad("too many ':'"));
            }
            let num = |i: usize| -> Result<Option<i64>, ModelError> {
                match pieces.get(i).map(|p| p.trim()) {
                    None | Some("") => Ok(None),
                    Some(p) => parse_int(p).map(Some).ok_or_else(|| bad("not an integer")),
                }
            };
            let step = num(2)?;
            if step == Some(0) {
                return Err(bad("slice step cannot be zero"));
            }
            items.push(SliceItem::Range {
                start: num(0)?,
                stop: num(1)?,
                step,
            });
        }
        Ok(NdSlice(items))
    }

    /// Whether this selects everything (no items).
    pub fn is_full(&self) -> bool {
        self.0.is_empty()
    }

    /// Apply to `shape` with NumPy's rules.
    ///
    /// # Errors
    /// [`ModelError::InvalidSlice`] if there are more items than dimensions or
    /// an integer index is out of bounds.
    pub fn resolve(&self, shape: &[usize]) -> Result<ResolvedSlice, ModelError> {
        if self.0.len() > shape.len() {
            return Err(ModelError::InvalidSlice(format!(
                "too many indices: the array has {} dimension(s) but the slice has {}",
                shape.len(),
                self.0.len()
            )));
        }
        let mut dims = Vec::with_capacity(shape.len());
        for (axis, &n) in shape.iter().enumerate() {
            let item = self.0.get(axis).copied().unwrap_or(SliceItem::FULL);
            dims.push(resolve_item(item, n, axis)?);
        }
        Ok(ResolvedSlice { dims })
    }
}

fn parse_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn resolve_item(item: SliceItem, n: usize, axis: usize) -> Result<DimSelection, ModelError> {
    let len = n as i64;
    match item {
        SliceItem::Index(i) => {
            let j = if i < 0 { i + len } else { i };
            if j < 0 || j >= len {
                return Err(ModelError::InvalidSlice(format!(
                    "index {i} is out of bounds for axis {axis} with size {n}"
                )));
            }
            Ok(DimSelection::Index(j as usize))
        }
        SliceItem::Range { start, stop, step } => {
            // Python's slice.indices(), step by step.
            let step = step.unwrap_or(1);
            let (lower, upper) = if step < 0 { (-1, len - 1) } else { (0, len) };
            let clamp = |v: Option<i64>, default: i64| -> i64 {
                match v {
                    None => default,
                    Some(v) if v < 0 => (v + len).max(lower),
                    Some(v) => v.min(upper),
                }
            };
            let start = clamp(start, if step < 0 { upper } else { lower });
            let stop = clamp(stop, if step < 0 { lower } else { upper });
            let count = if step > 0 {
                if stop > start {
                    (stop - start - 1) / step + 1
                } else {
                    0
                }
            } else if start > stop {
                (start - stop - 1) / step.checked_neg().unwrap_or(i64::MAX) + 1
            } else {
                0
            };
            Ok(DimSelection::Range {
                start,
                step,
                len: count as usize,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions(sel: &DimSelection) -> Vec<usize> {
        (0..sel.count()).map(|k| sel.source(k)).collect()
    }

    fn py(text: &str, n: usize) -> Vec<usize> {
        let r = NdSlice::parse(text).unwrap().resolve(&[n]).unwrap();
        positions(&r.dims[0])
    }

    #[test]
    fn python_slice_semantics() {
        assert_eq!(py("9:-11:-1", 10), (0..10).rev().collect::<Vec<_>>());
        assert_eq!(py(":10:1", 10), (0..10).collect::<Vec<_>>());
        assert_eq!(py("7:10:1", 10), vec![7, 8, 9]);
        assert_eq!(py("-3:", 10), vec![7, 8, 9]);
        assert_eq!(py("8:2:-2", 10), vec![8, 6, 4]);
        assert_eq!(py("24::-1", 30), (0..=24).rev().collect::<Vec<_>>());
        assert_eq!(py("::-1", 3), vec![2, 1, 0]);
        assert_eq!(py("5:5", 10), Vec::<usize>::new());
        assert_eq!(py("5:2", 10), Vec::<usize>::new());
        assert_eq!(py("-100:100", 4), vec![0, 1, 2, 3]);
        assert_eq!(py("::3", 10), vec![0, 3, 6, 9]);
        assert_eq!(py("", 3), vec![0, 1, 2]);
        assert_eq!(py("-1", 10), vec![9]);
    }

    #[test]
    fn indices_drop_dimensions() {
        let r = NdSlice::parse("1:3:1,2").unwrap().resolve(&[3, 4]).unwrap();
        assert_eq!(r.out_shape(), vec![2]);
        let r = NdSlice::parse("1").unwrap().resolve(&[3, 4, 5]).unwrap();
        assert_eq!(r.out_shape(), vec![4, 5]);
        assert_eq!(r.num_elements(), 20);
    }

    #[test]
    fn errors() {
        for bad in ["...", "a:b", "1:2:0", "1,,2", "1:2:3:4", "--1", "1.5"] {
            assert!(NdSlice::parse(bad).is_err(), "{bad}");
        }
        assert!(NdSlice::parse("10").unwrap().resolve(&[10]).is_err());
        assert!(NdSlice::parse("-11").unwrap().resolve(&[10]).is_err());
        assert!(NdSlice::parse("1,2").unwrap().resolve(&[10]).is_err());
    }
}
