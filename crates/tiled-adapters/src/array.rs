//! Arrays: the [`ArrayAdapter`] trait, the [`ArrayData`] buffer every reader
//! returns, and the block-assembly and slicing that work for any dtype.
//!
//! Elements are opaque `itemsize`-byte cells in C order, in the byte order the
//! structure declares, so slicing is a byte gather that never interprets
//! values: big-endian, struct and string arrays slice exactly like floats.

use std::sync::Arc;

use tiled_model::{ArrayStructure, DataType, DimSelection, ResolvedSlice};

use crate::AdapterError;

/// A dense N-d array in memory: C order, `dtype`'s declared byte order.
#[derive(Clone, Debug, PartialEq)]
pub struct ArrayData {
    pub dtype: DataType,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl ArrayData {
    /// Wrap bytes, checking that their length matches shape and dtype.
    ///
    /// # Errors
    /// [`AdapterError::Internal`] on a length mismatch (a reader bug).
    pub fn new(dtype: DataType, shape: Vec<usize>, bytes: Vec<u8>) -> Result<Self, AdapterError> {
        let expected = shape.iter().product::<usize>() * dtype.itemsize();
        if bytes.len() != expected {
            return Err(AdapterError::Internal(format!(
                "array buffer has {} bytes, shape {shape:?} needs {expected}",
                bytes.len()
            )));
        }
        Ok(ArrayData {
            dtype,
            shape,
            bytes,
        })
    }

    /// Apply a slice resolved against this array's shape.
    pub fn select(&self, sel: &ResolvedSlice) -> ArrayData {
        let itemsize = self.dtype.itemsize();
        let counts: Vec<usize> = sel.dims.iter().map(DimSelection::count).collect();
        let mut out = vec![0u8; counts.iter().product::<usize>() * itemsize];
        let lists: Vec<Vec<(usize, usize)>> = sel
            .dims
            .iter()
            .map(|d| (0..d.count()).map(|k| (k, d.source(k))).collect())
            .collect();
        copy_selected(
            &self.bytes,
            &strides(&self.shape),
            &mut out,
            &strides(&counts),
            &lists,
            itemsize,
        );
        ArrayData {
            dtype: self.dtype.clone(),
            shape: sel.out_shape(),
            bytes: out,
        }
    }
}

/// What a reader of N-d arrays must do.
///
/// Implementations read only what is asked: `read_block` one chunk of the
/// structure's chunking, `read` a selection of the whole array (by default
/// assembled from the blocks it touches, so a reader that can only produce
/// blocks gets sliced reads for free).
pub trait ArrayAdapter: Send + Sync {
    /// Shape, chunking and dtype, known without reading data.
    fn structure(&self) -> &ArrayStructure;

    /// One whole block of the chunk grid.
    ///
    /// # Errors
    /// [`AdapterError::BadRequest`] for a block index outside the grid; other
    /// variants for failures of the backend.
    fn read_block(&self, block: &[usize]) -> Result<ArrayData, AdapterError>;

    /// A selection of the whole array.
    ///
    /// # Errors
    /// As [`ArrayAdapter::read_block`].
    fn read(&self, sel: &ResolvedSlice) -> Result<ArrayData, AdapterError> {
        read_via_blocks(self, sel)
    }

    /// Whether `read` of any sub-region costs about what the region holds
    /// (true for in-memory and generated arrays; false where reads are
    /// whole-chunk, as in compressed files). When true, the server streams
    /// large responses strip by strip instead of holding them whole.
    fn cheap_region_reads(&self) -> bool {
        false
    }
}

/// The box (offset, shape) a selection covers, if every dimension is a
/// single index or a step-1 range: then the selection's C-order bytes are
/// exactly the box's.
pub fn selection_box(sel: &ResolvedSlice) -> Option<(Vec<usize>, Vec<usize>)> {
    let mut offset = Vec::with_capacity(sel.dims.len());
    let mut shape = Vec::with_capacity(sel.dims.len());
    for d in &sel.dims {
        match *d {
            DimSelection::Index(i) => {
                offset.push(i);
                shape.push(1);
            }
            DimSelection::Range { start, step, len } if step == 1 || len <= 1 => {
                offset.push(if len == 0 { 0 } else { start as usize });
                shape.push(len);
            }
            DimSelection::Range { .. } => return None,
        }
    }
    Some((offset, shape))
}

/// C-order strides in elements.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Copy elements: for every combination of per-dimension (out position,
/// source position) pairs, `out[out positions] = src[source positions]`.
/// Runs that are contiguous in both along the last axis become one memcpy.
fn copy_selected(
    src: &[u8],
    src_strides: &[usize],
    out: &mut [u8],
    out_strides: &[usize],
    lists: &[Vec<(usize, usize)>],
    itemsize: usize,
) {
    let gather = Gather {
        src,
        src_strides,
        out_strides,
        lists,
        itemsize,
    };
    gather.run(0, 0, 0, out);
}

struct Gather<'a> {
    src: &'a [u8],
    src_strides: &'a [usize],
    out_strides: &'a [usize],
    lists: &'a [Vec<(usize, usize)>],
    itemsize: usize,
}

impl Gather<'_> {
    fn run(&self, dim: usize, src_off: usize, out_off: usize, out: &mut [u8]) {
        let w = self.itemsize;
        if dim == self.lists.len() {
            let (s, o) = (src_off * w, out_off * w);
            out[o..o + w].copy_from_slice(&self.src[s..s + w]);
            return;
        }
        let (ss, os) = (self.src_strides[dim], self.out_strides[dim]);
        let list = &self.lists[dim];
        if dim + 1 < self.lists.len() {
            for &(k, p) in list {
                self.run(dim + 1, src_off + p * ss, out_off + k * os, out);
            }
            return;
        }
        // Last axis: coalesce runs contiguous in both source and output.
        let mut i = 0;
        while i < list.len() {
            let (k0, p0) = list[i];
            let mut j = i + 1;
            if ss == 1 && os == 1 {
                while j < list.len() && list[j].0 == k0 + (j - i) && list[j].1 == p0 + (j - i) {
                    j += 1;
                }
            }
            let n = (j - i) * w;
            let s = (src_off + p0 * ss) * w;
            let o = (out_off + k0 * os) * w;
            out[o..o + n].copy_from_slice(&self.src[s..s + n]);
            i = j;
        }
    }
}

/// The positions one block contributes along one axis: the block index and
/// its (output position, position within the block) pairs.
type BlockRun = (usize, Vec<(usize, usize)>);

/// Read a selection by reading each block it touches and gathering from it.
///
/// # Errors
/// Whatever `read_block` returns.
pub fn read_via_blocks<A: ArrayAdapter + ?Sized>(
    adapter: &A,
    sel: &ResolvedSlice,
) -> Result<ArrayData, AdapterError> {
    let st = adapter.structure();
    let itemsize = st.data_type.itemsize();
    let counts: Vec<usize> = sel.dims.iter().map(DimSelection::count).collect();
    let mut out = vec![0u8; counts.iter().product::<usize>() * itemsize];
    // For each axis: the blocks touched, each with its (out position,
    // position within the block) pairs.
    let mut per_dim: Vec<Vec<BlockRun>> = Vec::with_capacity(sel.dims.len());
    for (axis, d) in sel.dims.iter().enumerate() {
        let bounds: Vec<usize> = std::iter::once(0)
            .chain(st.chunks[axis].iter().scan(0, |acc, &c| {
                *acc += c;
                Some(*acc)
            }))
            .collect();
        let mut groups: Vec<BlockRun> = Vec::new();
        for k in 0..d.count() {
            let p = d.source(k);
            // Block b holds [bounds[b], bounds[b+1]).
            let b = bounds.partition_point(|&x| x <= p).saturating_sub(1);
            let local = (k, p - bounds[b]);
            match groups.last_mut() {
                Some((gb, list)) if *gb == b => list.push(local),
                _ => groups.push((b, vec![local])),
            }
        }
        per_dim.push(groups);
    }
    let out_strides = strides(&counts);
    if per_dim.iter().any(Vec::is_empty) {
        return ArrayData::new(st.data_type.clone(), sel.out_shape(), out);
    }
    // Walk the cartesian product of touched blocks.
    let mut idx = vec![0usize; per_dim.len()];
    loop {
        let block: Vec<usize> = idx.iter().zip(&per_dim).map(|(&i, g)| g[i].0).collect();
        let data = adapter.read_block(&block)?;
        let lists: Vec<Vec<(usize, usize)>> = idx
            .iter()
            .zip(&per_dim)
            .map(|(&i, g)| g[i].1.clone())
            .collect();
        copy_selected(
            &data.bytes,
            &strides(&data.shape),
            &mut out,
            &out_strides,
            &lists,
            itemsize,
        );
        // Advance the odometer.
        let mut axis = per_dim.len();
        loop {
            if axis == 0 {
                return ArrayData::new(st.data_type.clone(), sel.out_shape(), out);
            }
            axis -= 1;
            idx[axis] += 1;
            if idx[axis] < per_dim[axis].len() {
                break;
            }
            idx[axis] = 0;
        }
    }
}

/// An array held whole in memory.
pub struct MemoryArray {
    structure: ArrayStructure,
    data: ArrayData,
}

impl MemoryArray {
    /// Serve `data` with the given chunking.
    ///
    /// # Errors
    /// [`AdapterError::Internal`] if the chunks do not tile the data's shape.
    pub fn new(data: ArrayData, chunks: Vec<Vec<usize>>) -> Result<Self, AdapterError> {
        let structure = ArrayStructure::new(data.dtype.clone(), data.shape.clone(), chunks)
            .map_err(|e| AdapterError::Internal(e.to_string()))?;
        Ok(MemoryArray { structure, data })
    }

    /// Set dimension names.
    pub fn with_dims(mut self, dims: Vec<String>) -> Self {
        self.structure.dims = Some(dims);
        self
    }
}

impl ArrayAdapter for MemoryArray {
    fn structure(&self) -> &ArrayStructure {
        &self.structure
    }

    fn read_block(&self, block: &[usize]) -> Result<ArrayData, AdapterError> {
        let (offset, shape) = self.structure.block_extent(block)?;
        let sel = ResolvedSlice {
            dims: offset
                .iter()
                .zip(&shape)
                .map(|(&o, &n)| DimSelection::Range {
                    start: o as i64,
                    step: 1,
                    len: n,
                })
                .collect(),
        };
        Ok(self.data.select(&sel))
    }

    fn read(&self, sel: &ResolvedSlice) -> Result<ArrayData, AdapterError> {
        Ok(self.data.select(sel))
    }

    fn cheap_region_reads(&self) -> bool {
        true
    }
}

/// Produces the bytes of the region starting at `offset` with `shape`.
pub type BlockGenerator = dyn Fn(&[usize], &[usize]) -> Vec<u8> + Send + Sync;

/// An array computed block by block on demand and never held whole: the
/// demo's 10000×10000 image costs nothing until a block is read.
pub struct GeneratedArray {
    structure: ArrayStructure,
    generate: Arc<BlockGenerator>,
}

impl GeneratedArray {
    /// `generate(offset, shape)` must return exactly the C-order bytes of that
    /// region.
    pub fn new(structure: ArrayStructure, generate: Arc<BlockGenerator>) -> Self {
        GeneratedArray {
            structure,
            generate,
        }
    }

    /// Set dimension names.
    pub fn with_dims(mut self, dims: Vec<String>) -> Self {
        self.structure.dims = Some(dims);
        self
    }
}

impl ArrayAdapter for GeneratedArray {
    fn structure(&self) -> &ArrayStructure {
        &self.structure
    }

    fn read_block(&self, block: &[usize]) -> Result<ArrayData, AdapterError> {
        let (offset, shape) = self.structure.block_extent(block)?;
        let bytes = (self.generate)(&offset, &shape);
        ArrayData::new(self.structure.data_type.clone(), shape, bytes)
    }

    /// Boxes are generated directly (any region costs what it holds);
    /// strided selections go through the blocks.
    fn read(&self, sel: &ResolvedSlice) -> Result<ArrayData, AdapterError> {
        match selection_box(sel) {
            Some((offset, shape)) => {
                let bytes = if shape.contains(&0) {
                    Vec::new()
                } else {
                    (self.generate)(&offset, &shape)
                };
                ArrayData::new(self.structure.data_type.clone(), sel.out_shape(), bytes)
            }
            None => read_via_blocks(self, sel),
        }
    }

    fn cheap_region_reads(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiled_model::NdSlice;

    fn iota(shape: &[usize]) -> ArrayData {
        let n: usize = shape.iter().product();
        let bytes = (0..n as i64).flat_map(|v| v.to_le_bytes()).collect();
        ArrayData::new(
            DataType::from_numpy_str("<i8").unwrap(),
            shape.to_vec(),
            bytes,
        )
        .unwrap()
    }

    fn values(a: &ArrayData) -> Vec<i64> {
        a.bytes
            .chunks(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    /// A generated twin of `iota` with uneven chunks, read through blocks.
    fn generated(shape: &[usize], chunks: Vec<Vec<usize>>) -> GeneratedArray {
        let full = iota(shape);
        let st = ArrayStructure::new(full.dtype.clone(), shape.to_vec(), chunks).unwrap();
        let shape_owned = shape.to_vec();
        GeneratedArray::new(
            st,
            Arc::new(move |offset: &[usize], bshape: &[usize]| {
                let sel = ResolvedSlice {
                    dims: offset
                        .iter()
                        .zip(bshape)
                        .map(|(&o, &n)| DimSelection::Range {
                            start: o as i64,
                            step: 1,
                            len: n,
                        })
                        .collect(),
                };
                let _ = &shape_owned;
                full.select(&sel).bytes
            }),
        )
    }

    #[test]
    fn block_assembly_equals_direct_selection() {
        let shape = [7, 5, 4];
        let direct = MemoryArray::new(
            iota(&shape),
            ArrayStructure::regular_chunks(&shape, &[7, 5, 4]),
        )
        .unwrap();
        let gen_arr = generated(&shape, vec![vec![3, 3, 1], vec![2, 3], vec![1, 1, 2]]);
        for text in [
            "",
            "1:6:2",
            "::-1,::-2",
            "6:-8:-1,1,0:4:3",
            "2,3,1",
            "5:5",
            "-3:,-1:0:-1,-2",
            "0:7:1,0:5:1,0:4:1",
        ] {
            let sel = NdSlice::parse(text).unwrap().resolve(&shape).unwrap();
            let a = direct.read(&sel).unwrap();
            let b = gen_arr.read(&sel).unwrap();
            assert_eq!(a.shape, sel.out_shape(), "{text}");
            assert_eq!(values(&a), values(&b), "{text}");
        }
        // Spot-check values against the index arithmetic.
        let sel = NdSlice::parse("6:-8:-1,1,0:4:3")
            .unwrap()
            .resolve(&shape)
            .unwrap();
        let got = values(&gen_arr.read(&sel).unwrap());
        let want: Vec<i64> = (0..7)
            .rev()
            .flat_map(|i| [0, 3].map(move |k| i * 20 + 4 + k))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn in_memory_and_generated_arrays_conform() {
        let shape = [7, 5, 4];
        let direct = MemoryArray::new(
            iota(&shape),
            ArrayStructure::regular_chunks(&shape, &[3, 5, 3]),
        )
        .unwrap();
        crate::conformance::check_array("memory", &direct, usize::MAX);
        let gen_arr = generated(&shape, vec![vec![3, 3, 1], vec![2, 3], vec![1, 1, 2]]);
        crate::conformance::check_array("generated", &gen_arr, usize::MAX);
        crate::conformance::check_array("generated, no full read", &gen_arr, 0);
    }

    #[test]
    fn zero_dimensional() {
        let a = MemoryArray::new(
            ArrayData::new(
                DataType::from_numpy_str("<i8").unwrap(),
                vec![],
                42i64.to_le_bytes().to_vec(),
            )
            .unwrap(),
            vec![],
        )
        .unwrap();
        let sel = NdSlice::default().resolve(&[]).unwrap();
        assert_eq!(values(&a.read(&sel).unwrap()), vec![42]);
        assert_eq!(values(&a.read_block(&[]).unwrap()), vec![42]);
        assert_eq!(values(&read_via_blocks(&a, &sel).unwrap()), vec![42]);
    }

    #[test]
    fn bad_block_is_a_caller_error() {
        let g = generated(&[4], vec![vec![2, 2]]);
        assert!(matches!(
            g.read_block(&[2]),
            Err(AdapterError::BadRequest(_))
        ));
        assert!(matches!(
            g.read_block(&[0, 0]),
            Err(AdapterError::BadRequest(_))
        ));
    }
}
