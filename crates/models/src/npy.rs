//! A streaming `.npy` writer for float32 arrays: rows are appended as they are produced and the
//! header (whose shape is only known at the end) is rewritten in place when the file is closed.
//! The file is written under a unique temporary name, synced, and renamed with the directory
//! synced when finished ([`masp_model_registry::atomic`]), so a `.npy` that exists is complete,
//! after a power loss too (masp-run's journal relies on that).

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Header bytes reserved up front: the shape is rewritten in place at the end, so it must fit
/// from the start. 256 bytes hold a shape of 8 axes of 20 digits each; a shape that does not
/// fit (a model's output shape is input like any other) is refused at [`NpyWriter::create`],
/// never cut short.
pub const HEADER_LEN: usize = 256;

/// The most row values a writer accepts: 2^28 (1 GiB of `f32` per row). A row is one window's
/// output, held in memory by ONNX Runtime already; the bound keeps the product of a model's
/// declared axes from overflowing.
pub const MAX_ROW_VALUES: usize = 1 << 28;

/// Appends rows of a fixed shape to a `.npy` file (little-endian float32, C order).
#[derive(Debug)]
pub struct NpyWriter {
    path: PathBuf,
    /// Where the rows go until [`NpyWriter::finish`]; unique to this writer.
    temporary: PathBuf,
    /// `None` once [`NpyWriter::finish`] has taken it.
    out: Option<BufWriter<File>>,
    /// The temporary file is renamed into place: nothing is left to remove on drop.
    persisted: bool,
    row_shape: Vec<usize>,
    n_rows: usize,
}

impl NpyWriter {
    /// Create `path`; every row will have `row_shape`.
    ///
    /// # Errors
    /// `InvalidInput` for a row shape whose values overflow [`MAX_ROW_VALUES`] or whose final
    /// header (with a row count up to `usize::MAX`) would not fit [`HEADER_LEN`]; I/O errors
    /// creating the file.
    pub fn create(path: &Path, row_shape: &[usize]) -> std::io::Result<Self> {
        let invalid =
            |reason: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, reason);
        row_values(row_shape)
            .filter(|&n| n <= MAX_ROW_VALUES)
            .ok_or_else(|| {
                invalid(format!(
                    "rows shaped {row_shape:?} are over the limit of {MAX_ROW_VALUES} values"
                ))
            })?;
        header(usize::MAX, row_shape).ok_or_else(|| {
            invalid(format!(
                "a shape of {} axes {row_shape:?} does not fit the {HEADER_LEN}-byte .npy header",
                row_shape.len() + 1
            ))
        })?;
        let temporary = masp_model_registry::atomic::temporary_path(path);
        // `create_new`: the name is this writer's alone.
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&temporary)?;
        let mut out = BufWriter::new(file);
        out.write_all(&header(0, row_shape).unwrap_or_default())?;
        Ok(Self {
            path: path.to_path_buf(),
            temporary,
            out: Some(out),
            persisted: false,
            row_shape: row_shape.to_vec(),
            n_rows: 0,
        })
    }

    /// The shape every row must have.
    pub fn row_shape(&self) -> &[usize] {
        &self.row_shape
    }

    /// Append one row.
    ///
    /// # Errors
    /// `InvalidInput` when `values` has the wrong length; I/O errors.
    pub fn push_row(&mut self, values: &[f32]) -> std::io::Result<()> {
        // Checked at `create`: the product fits.
        let expected = row_values(&self.row_shape).unwrap_or(usize::MAX);
        if values.len() != expected {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("row of {} values, expected {expected}", values.len()),
            ));
        }
        let out = self.open_out()?;
        for v in values {
            out.write_all(&v.to_le_bytes())?;
        }
        self.n_rows += 1;
        Ok(())
    }

    /// Write the final header and flush; returns the path and the full shape.
    ///
    /// # Errors
    /// I/O errors.
    pub fn finish(mut self) -> std::io::Result<(PathBuf, Vec<usize>)> {
        let mut out = self
            .out
            .take()
            .ok_or_else(|| std::io::Error::other("the .npy writer is finished"))?;
        out.flush()?;
        let mut file = out.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(0))?;
        // Fits: `create` checked the header with the largest row count.
        file.write_all(&header(self.n_rows, &self.row_shape).unwrap_or_default())?;
        file.sync_all()?;
        masp_model_registry::atomic::persist(&self.temporary, &self.path)?;
        self.persisted = true;
        let mut shape = vec![self.n_rows];
        shape.extend_from_slice(&self.row_shape);
        Ok((self.path.clone(), shape))
    }

    fn open_out(&mut self) -> std::io::Result<&mut BufWriter<File>> {
        self.out
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the .npy writer is finished"))
    }
}

impl Drop for NpyWriter {
    /// A writer dropped before [`NpyWriter::finish`] succeeded (its task failed) removes its
    /// temporary file: each writer's name is unique, so nobody else would reuse or remove it
    /// before the run directory's next cleanup.
    fn drop(&mut self) {
        if !self.persisted {
            let _ = std::fs::remove_file(&self.temporary);
        }
    }
}

/// The number of values in a row shaped `row_shape`, `None` on overflow.
fn row_values(row_shape: &[usize]) -> Option<usize> {
    row_shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// A version 1.0 header padded with spaces to exactly [`HEADER_LEN`] bytes, `None` when the
/// shape does not fit.
fn header(n_rows: usize, row_shape: &[usize]) -> Option<Vec<u8>> {
    let mut dims = vec![n_rows.to_string()];
    dims.extend(row_shape.iter().map(usize::to_string));
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    let body_len = HEADER_LEN - 10;
    out.extend_from_slice(&(body_len as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    if out.len() >= HEADER_LEN {
        return None;
    }
    out.resize(HEADER_LEN - 1, b' ');
    out.push(b'\n');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temporaries(dir: &Path) -> Vec<std::ffi::OsString> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| {
                n.to_string_lossy()
                    .ends_with(masp_model_registry::atomic::TEMP_SUFFIX)
            })
            .collect()
    }

    #[test]
    fn an_unfinished_writer_leaves_nothing_and_two_writers_do_not_share_a_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        let mut a = NpyWriter::create(&path, &[2]).unwrap();
        let mut b = NpyWriter::create(&path, &[2]).unwrap();
        assert_eq!(temporaries(dir.path()).len(), 2);
        a.push_row(&[1.0, 1.0]).unwrap();
        b.push_row(&[2.0, 2.0]).unwrap();
        b.push_row(&[2.0, 2.0]).unwrap();
        // `a`'s task failed: dropping it removes its temporary, `b`'s stays and finishes.
        drop(a);
        assert_eq!(temporaries(dir.path()).len(), 1);
        let (_, shape) = b.finish().unwrap();
        assert_eq!(shape, vec![2, 2]);
        assert!(temporaries(dir.path()).is_empty());
        assert_eq!(std::fs::read(&path).unwrap().len(), HEADER_LEN + 4 * 4);
        // Finishing into a directory that went away fails and still leaves nothing.
        let gone = dir.path().join("gone");
        std::fs::create_dir(&gone).unwrap();
        let w = NpyWriter::create(&gone.join("y.npy"), &[1]).unwrap();
        std::fs::remove_dir_all(&gone).unwrap();
        assert!(w.finish().is_err());
    }

    #[test]
    fn header_is_aligned_and_shape_is_final() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        let mut w = NpyWriter::create(&path, &[2, 3]).unwrap();
        w.push_row(&[1.0; 6]).unwrap();
        w.push_row(&[2.0; 6]).unwrap();
        assert!(w.push_row(&[0.0; 5]).is_err());
        let (_, shape) = w.finish().unwrap();
        assert_eq!(shape, vec![2, 2, 3]);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), HEADER_LEN + 12 * 4);
        let text = String::from_utf8_lossy(&bytes[10..HEADER_LEN]);
        assert!(text.contains("'shape': (2, 2, 3)"), "{text}");
        assert_eq!(HEADER_LEN % 64, 0);
        assert_eq!(&bytes[HEADER_LEN..HEADER_LEN + 4], &1.0f32.to_le_bytes());
    }

    #[test]
    fn shapes_that_overflow_or_do_not_fit_the_header_are_refused_at_create() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        let refused: [&[usize]; 5] = [
            &[usize::MAX, 2],
            &[1 << 20, 1 << 20],
            &[MAX_ROW_VALUES + 1],
            &[1; 100],
            &[
                0,
                usize::MAX,
                usize::MAX,
                usize::MAX,
                usize::MAX,
                usize::MAX,
                usize::MAX,
                usize::MAX,
                usize::MAX,
                usize::MAX,
                usize::MAX,
            ],
        ];
        for shape in refused {
            let err = NpyWriter::create(&path, shape).unwrap_err();
            assert_eq!(
                err.kind(),
                std::io::ErrorKind::InvalidInput,
                "{shape:?}: {err}"
            );
        }
        // Eight axes of 20 digits (a row count and seven) still fit, and so do empty rows.
        let wide = [0usize, 1, 1, 1, 1, 1, 1, 1, 1, 1];
        NpyWriter::create(&path, &wide).unwrap().finish().unwrap();
        assert_eq!(
            header(usize::MAX, &[usize::MAX; 7]).map(|h| h.len()),
            Some(HEADER_LEN)
        );
    }
}
