//! Reading a model's tensors out of a GGUF file: weight matrices stay in the file's bytes
//! (memory-mapped on native, owned where there is no mmap) in their quantised layout; norm
//! vectors and biases are read as floats.
//!
//! Types the kernels have no product for (Q2_K, Q3_K) are dequantised to f32 at load through
//! candle, which is correct but four to eight times the memory.

use crate::error::{Error, Result};
use crate::gguf::{self, Gguf};
use crate::kernels::{Matrix, MatrixError, Storage, WeightType};
use candle_core::Device;
use candle_core::quantized::ggml_file::qtensor_from_ggml;

/// The model file's metadata and tensor bytes.
pub(crate) struct Tensors<'a> {
    pub gguf: &'a Gguf,
    storage: Storage,
    architecture: &'static str,
    /// Dequantise every matrix to f32 (see `ModelOptions::exact`).
    exact: bool,
}

impl<'a> Tensors<'a> {
    /// `storage` holds the whole file `gguf` was read from.
    pub fn new(gguf: &'a Gguf, storage: Storage, exact: bool) -> Result<Self> {
        let architecture = gguf.architecture()?.name();
        if (storage.bytes().len() as u64) < gguf.file_len() {
            return Err(Error::Truncated {
                what: "model bytes".into(),
                detail: format!(
                    "{} bytes given, the header describes {}",
                    storage.bytes().len(),
                    gguf.file_len()
                ),
            });
        }
        Ok(Tensors {
            gguf,
            storage,
            architecture,
            exact,
        })
    }

    /// `{arch}.{key}` as a count.
    pub fn hparam(&self, key: &str) -> Result<Option<usize>> {
        let key = format!("{}.{key}", self.architecture);
        Ok(gguf::get_u32(self.gguf.metadata(), &key)?.map(|v| v as usize))
    }

    /// `{arch}.{key}`, which must be there.
    pub fn require(&self, key: &str) -> Result<usize> {
        self.hparam(key)?.ok_or_else(|| Error::MissingMetadata {
            key: format!("{}.{key}", self.architecture),
            hint: "the model's hyper-parameters are incomplete; convert it again with a current llama.cpp",
        })
    }

    /// `{arch}.{key}` as a float.
    pub fn hparam_f32(&self, key: &str) -> Result<Option<f32>> {
        let key = format!("{}.{key}", self.architecture);
        gguf::get_f32(self.gguf.metadata(), &key)
    }

    pub fn has(&self, name: &str) -> bool {
        self.gguf.tensor_infos().contains_key(name)
    }

    fn info(&self, name: &str) -> Result<&candle_core::quantized::gguf_file::TensorInfo> {
        self.gguf
            .tensor_infos()
            .get(name)
            .ok_or_else(|| Error::MissingTensor {
                name: name.to_string(),
                architecture: self.architecture,
            })
    }

    /// Tensor `name` as a `rows × cols` matrix (ggml's `[cols, rows]`).
    pub fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix> {
        let info = self.info(name)?;
        let dims = info.shape.dims();
        if dims != [rows, cols] {
            return Err(Error::TensorShape {
                name: name.to_string(),
                expected: format!("{rows}×{cols}"),
                found: format!("{dims:?}"),
            });
        }
        let offset = self.gguf.content().tensor_data_offset + info.offset;
        let offset = usize::try_from(offset).map_err(|_| Error::TensorShape {
            name: name.to_string(),
            expected: "an offset this machine can address".into(),
            found: offset.to_string(),
        })?;
        let shape_err = |e: MatrixError| Error::TensorShape {
            name: name.to_string(),
            expected: "whole blocks inside the file".into(),
            found: e.to_string(),
        };
        match WeightType::from_ggml(info.ggml_dtype) {
            Some(ty) if self.exact && ty != WeightType::F32 => {
                let m =
                    Matrix::new(ty, rows, cols, self.storage.clone(), offset).map_err(shape_err)?;
                let mut values = vec![0.0f32; rows * cols];
                for (r, row) in values.chunks_exact_mut(cols).enumerate() {
                    m.dequantize_row(r, row);
                }
                Matrix::from_f32(rows, cols, &values).map_err(shape_err)
            }
            Some(ty) => {
                Matrix::new(ty, rows, cols, self.storage.clone(), offset).map_err(shape_err)
            }
            None => {
                // No product for this type: dequantise once, through candle.
                let bytes =
                    rows * cols / info.ggml_dtype.block_size() * info.ggml_dtype.type_size();
                let raw = self
                    .storage
                    .bytes()
                    .get(offset..offset + bytes)
                    .ok_or_else(|| Error::TensorShape {
                        name: name.to_string(),
                        expected: format!("{bytes} bytes"),
                        found: "a tensor past the end of the file".into(),
                    })?;
                let values =
                    qtensor_from_ggml(info.ggml_dtype, raw, vec![rows, cols], &Device::Cpu)?
                        .dequantize(&Device::Cpu)?
                        .flatten_all()?
                        .to_vec1::<f32>()?;
                Matrix::from_f32(rows, cols, &values).map_err(shape_err)
            }
        }
    }

    /// The shape of a 2-D tensor as (rows, cols).
    pub fn shape2(&self, name: &str) -> Result<(usize, usize)> {
        match *self.info(name)?.shape.dims() {
            [rows, cols] => Ok((rows, cols)),
            ref dims => Err(Error::TensorShape {
                name: name.to_string(),
                expected: "a matrix".into(),
                found: format!("{dims:?}"),
            }),
        }
    }

    /// Tensor `name` as `len` floats.
    pub fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        let info = self.info(name)?;
        if info.shape.elem_count() != len {
            return Err(Error::TensorShape {
                name: name.to_string(),
                expected: format!("{len} values"),
                found: format!("{:?}", info.shape.dims()),
            });
        }
        let m = self.matrix_of_len(name, len)?;
        let mut out = vec![0.0; len];
        m.dequantize_row(0, &mut out);
        Ok(out)
    }

    pub fn optional_vector(&self, name: &str, len: usize) -> Result<Option<Vec<f32>>> {
        if self.has(name) {
            self.vector(name, len).map(Some)
        } else {
            Ok(None)
        }
    }

    fn matrix_of_len(&self, name: &str, len: usize) -> Result<Matrix> {
        let info = self.info(name)?;
        let offset = usize::try_from(self.gguf.content().tensor_data_offset + info.offset)
            .unwrap_or(usize::MAX);
        let ty = WeightType::from_ggml(info.ggml_dtype).ok_or_else(|| Error::TensorShape {
            name: name.to_string(),
            expected: "f32, f16 or a quantised type the kernels read".into(),
            found: format!("{:?}", info.ggml_dtype),
        })?;
        Matrix::new(ty, 1, len, self.storage.clone(), offset).map_err(|e| Error::TensorShape {
            name: name.to_string(),
            expected: format!("{len} values"),
            found: e.to_string(),
        })
    }
}
