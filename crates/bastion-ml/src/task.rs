//! What a model learns: classes (labels `0..classes`, named by the caller) or one number.

use crate::error::{MlError, MlResult};

#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Classes { y: &'a [usize], classes: usize },
    Values(&'a [f64]),
}

impl Target<'_> {
    pub fn len(&self) -> usize {
        match self {
            Self::Classes { y, .. } => y.len(),
            Self::Values(y) => y.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks labels against the rows of `x`: one per row, classes in range and at least two
    /// of them present, values finite.
    pub fn check(&self, what: &str, rows: usize) -> MlResult<()> {
        if self.len() != rows {
            return Err(MlError::invalid(format!(
                "{what}: {rows} rows but {} labels",
                self.len()
            )));
        }
        match *self {
            Self::Classes { y, classes } => {
                if let Some(i) = y.iter().position(|&c| c >= classes) {
                    return Err(MlError::invalid(format!(
                        "{what}: label {} at row {i} is not one of {classes} classes",
                        y[i]
                    )));
                }
                let mut seen = vec![false; classes];
                y.iter().for_each(|&c| seen[c] = true);
                if seen.iter().filter(|&&s| s).count() < 2 {
                    return Err(MlError::invalid(format!(
                        "{what}: the target holds a single class; there is nothing to separate"
                    )));
                }
            }
            Self::Values(y) => {
                if let Some(i) = y.iter().position(|v| !v.is_finite()) {
                    return Err(MlError::invalid(format!(
                        "{what}: the target at row {i} is {} (drop or fill it first)",
                        y[i]
                    )));
                }
            }
        }
        Ok(())
    }
}
