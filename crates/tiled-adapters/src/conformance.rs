//! The conformance suite every adapter must pass, in the manner of
//! object_store's `integration.rs`: each backend's tests call these checks
//! on its own adapters, so all backends are held to one definition of
//! correct.
//!
//! The checks panic with a message naming the failing case (they are meant
//! for tests).

use tiled_model::{DimSelection, NdSlice, ResolvedSlice, SliceItem};

use crate::{AdapterError, ArrayAdapter, TableAdapter};

/// A small deterministic generator so cases are reproducible without a
/// dependency.
struct Cases(u64);

impl Cases {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: i64) -> i64 {
        if n <= 0 {
            0
        } else {
            (self.next() % n as u64) as i64
        }
    }

    /// A random slice item for a dimension of length `n`, including
    /// negative indices, negative steps and out-of-range bounds.
    fn item(&mut self, n: usize) -> SliceItem {
        let n = n as i64;
        match self.below(6) {
            0 if n > 0 => SliceItem::Index(self.below(2 * n) - n),
            1 => SliceItem::FULL,
            _ => {
                let step = [1, 1, 2, 3, -1, -2][self.below(6) as usize];
                let mut bound = || match self.below(4) {
                    0 => None,
                    _ => Some(self.below(2 * n + 3) - n - 1),
                };
                SliceItem::Range {
                    start: bound(),
                    stop: bound(),
                    step: Some(step),
                }
            }
        }
    }
}

fn region(offset: &[usize], shape: &[usize]) -> ResolvedSlice {
    ResolvedSlice {
        dims: offset
            .iter()
            .zip(shape)
            .map(|(&o, &n)| DimSelection::Range {
                start: o as i64,
                step: 1,
                len: n,
            })
            .collect(),
    }
}

/// Check an array adapter: every block has the shape its chunks say and
/// equals the same region read by `read`; random slices read directly equal
/// the same slices taken from a full read (arrays of at most `max_full`
/// elements) or assembled from blocks; bad blocks are caller errors.
///
/// Blocks are all checked when there are at most 64 of them, otherwise a
/// sample.
pub fn check_array(name: &str, adapter: &dyn ArrayAdapter, max_full: usize) {
    let st = adapter.structure().clone();
    let grid = st.block_grid();
    let nblocks: usize = grid.iter().product();
    let mut cases = Cases(0x5EED ^ nblocks as u64);
    let blocks: Vec<Vec<usize>> = if nblocks <= 64 {
        (0..nblocks)
            .map(|mut k| {
                let mut b = vec![0; grid.len()];
                for d in (0..grid.len()).rev() {
                    b[d] = k % grid[d];
                    k /= grid[d];
                }
                b
            })
            .collect()
    } else {
        (0..8)
            .map(|_| {
                grid.iter()
                    .map(|&g| cases.below(g as i64) as usize)
                    .collect()
            })
            .collect()
    };
    for b in &blocks {
        let (offset, shape) = st.block_extent(b).expect("block in grid");
        let got = adapter
            .read_block(b)
            .unwrap_or_else(|e| panic!("{name}: block {b:?}: {e}"));
        assert_eq!(got.shape, shape, "{name}: shape of block {b:?}");
        assert_eq!(got.dtype, st.data_type, "{name}: dtype of block {b:?}");
        let via_read = adapter
            .read(&region(&offset, &shape))
            .unwrap_or_else(|e| panic!("{name}: region of block {b:?}: {e}"));
        assert_eq!(got.bytes, via_read.bytes, "{name}: block {b:?} vs read()");
    }
    let full = (st.num_elements() <= max_full).then(|| {
        adapter
            .read(&ResolvedSlice::full(&st.shape))
            .unwrap_or_else(|e| panic!("{name}: full read: {e}"))
    });
    if let Some(full) = &full {
        assert_eq!(full.shape, st.shape, "{name}: full read shape");
    }
    for _ in 0..24 {
        let mut slice = NdSlice(st.shape.iter().map(|&n| cases.item(n)).collect());
        // Keep big arrays' slices small: cap each range to a window.
        if full.is_none() {
            for (item, &n) in slice.0.iter_mut().zip(&st.shape) {
                if matches!(item, SliceItem::Range { .. }) {
                    let start = cases.below(n as i64);
                    *item = SliceItem::Range {
                        start: Some(start),
                        stop: Some(start + 1 + cases.below(40)),
                        step: Some(1 + cases.below(3)),
                    };
                }
            }
        }
        let sel = slice
            .resolve(&st.shape)
            .expect("generated slices are valid");
        let got = adapter
            .read(&sel)
            .unwrap_or_else(|e| panic!("{name}: slice {slice:?}: {e}"));
        assert_eq!(
            got.shape,
            sel.out_shape(),
            "{name}: shape of slice {slice:?}"
        );
        let want = match &full {
            Some(f) => f.select(&sel),
            None => crate::read_via_blocks(adapter, &sel).expect("assembled read"),
        };
        assert_eq!(got.bytes, want.bytes, "{name}: values of slice {slice:?}");
    }
    // (A 0-d array's only block is the empty index, so nothing is past it.)
    if !grid.is_empty() {
        assert!(
            matches!(adapter.read_block(&grid), Err(AdapterError::BadRequest(_))),
            "{name}: a block past the grid must be a caller error"
        );
    }
    let too_many = vec![0; grid.len() + 1];
    assert!(
        matches!(
            adapter.read_block(&too_many),
            Err(AdapterError::BadRequest(_))
        ),
        "{name}: a block with too many indices must be a caller error"
    );
}

/// Check a table adapter: partitions concatenate to `read`; the row count
/// and byte hints agree with the data; column projection returns exactly the
/// columns asked for, in order; bad partitions and columns are caller errors.
pub fn check_table(name: &str, adapter: &dyn TableAdapter) {
    let st = adapter.structure().clone();
    let schema = adapter.schema();
    assert_eq!(
        st.schema()
            .expect("structure carries a decodable schema")
            .as_ref(),
        schema.as_ref(),
        "{name}: structure schema"
    );
    let all = adapter
        .read(None)
        .unwrap_or_else(|e| panic!("{name}: read: {e}"));
    assert_eq!(all.len(), st.npartitions, "{name}: partitions");
    for (i, batch) in all.iter().enumerate() {
        assert_eq!(batch.schema(), schema, "{name}: schema of partition {i}");
        // A hint is optional (a CSV's rows are not known before parsing),
        // but when given it must be right.
        if let Some(rows) = adapter.partition_rows(i) {
            assert_eq!(rows, batch.num_rows(), "{name}: row hint of partition {i}");
        }
        assert!(
            adapter.partition_bytes(i, None).is_some(),
            "{name}: byte hint"
        );
    }
    let mut cols: Vec<String> = st.columns.iter().rev().take(2).cloned().collect();
    cols.dedup();
    for (i, whole) in all.iter().enumerate() {
        let part = adapter
            .read_partition(i, Some(&cols))
            .unwrap_or_else(|e| panic!("{name}: partition {i} columns {cols:?}: {e}"));
        let names: Vec<String> = part
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, cols, "{name}: projected columns");
        for (j, c) in cols.iter().enumerate() {
            let k = schema.index_of(c).expect("column exists");
            assert_eq!(part.column(j), whole.column(k), "{name}: column {c} of {i}");
        }
    }
    assert!(
        matches!(
            adapter.read_partition(st.npartitions, None),
            Err(AdapterError::BadRequest(_))
        ),
        "{name}: partition out of range must be a caller error"
    );
    assert!(
        matches!(
            adapter.read_partition(0, Some(&["no such column".to_string()])),
            Err(AdapterError::BadRequest(_))
        ),
        "{name}: unknown column must be a caller error"
    );
}
