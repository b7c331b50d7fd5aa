//! What a model's answers may reveal. Full class probabilities let a caller train a faithful
//! copy (model extraction) and tell training members from non-members (membership
//! inference); a model's owner can limit them with the registered model's tag
//! `bastion.output_policy`: `full` (the default), `label` (the label only), `top_k=N` (the N
//! largest probabilities per row, the others 0) or `round=D` (probabilities and predictions
//! rounded to D decimals). A tag Bastion cannot read refuses the model rather than serving
//! more than its owner meant.

use std::str::FromStr;

use crate::tensor::{Tensor, Values};

pub const OUTPUT_POLICY_TAG: &str = "bastion.output_policy";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputPolicy {
    #[default]
    Full,
    Label,
    TopK(usize),
    Round(u32),
}

impl FromStr for OutputPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{OUTPUT_POLICY_TAG} is '{s}': use full, label, top_k=N (N ≥ 1) or round=D (D ≤ 15)"
            )
        };
        match s.trim() {
            "full" => Ok(Self::Full),
            "label" => Ok(Self::Label),
            other => match other.split_once('=') {
                Some(("top_k", n)) => n
                    .parse()
                    .ok()
                    .filter(|&n| n >= 1)
                    .map(Self::TopK)
                    .ok_or_else(bad),
                Some(("round", d)) => d
                    .parse()
                    .ok()
                    .filter(|&d| d <= 15)
                    .map(Self::Round)
                    .ok_or_else(bad),
                _ => Err(bad()),
            },
        }
    }
}

impl OutputPolicy {
    /// Whether an output of this name is served at all.
    pub fn serves(&self, output: &str) -> bool {
        !(matches!(self, Self::Label) && output == "probabilities")
    }

    /// The outputs as the policy lets them out.
    pub fn apply(&self, outputs: Vec<Tensor>) -> Vec<Tensor> {
        outputs
            .into_iter()
            .filter(|t| self.serves(&t.name))
            .map(|mut t| {
                match (self, &mut t.values) {
                    (Self::TopK(k), Values::Float(v)) if t.name == "probabilities" => {
                        let width = t.shape.get(1).copied().unwrap_or(1).max(1);
                        for row in v.chunks_mut(width) {
                            keep_top(row, *k);
                        }
                    }
                    (Self::Round(d), Values::Float(v)) => {
                        let scale = 10f64.powi(*d as i32);
                        v.iter_mut().for_each(|x| *x = (*x * scale).round() / scale);
                    }
                    _ => {}
                }
                t
            })
            .collect()
    }
}

/// Zeroes all but the `k` largest values of a row (the first on ties).
fn keep_top(row: &mut [f64], k: usize) {
    if k >= row.len() {
        return;
    }
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    for &i in &order[k..] {
        row[i] = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Datatype;

    fn outputs() -> Vec<Tensor> {
        vec![
            Tensor {
                name: "label".into(),
                datatype: Datatype::Bytes,
                shape: vec![2],
                values: Values::Bytes(vec![b"b".to_vec(), b"a".to_vec()]),
            },
            Tensor {
                name: "probabilities".into(),
                datatype: Datatype::Fp64,
                shape: vec![2, 3],
                values: Values::Float(vec![0.2, 0.5, 0.3, 0.6, 0.25, 0.15]),
            },
        ]
    }

    fn probs(t: &[Tensor]) -> Vec<f64> {
        match t
            .iter()
            .find(|t| t.name == "probabilities")
            .map(|t| &t.values)
        {
            Some(Values::Float(v)) => v.clone(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn policies_parse_and_refuse_what_they_cannot_read() {
        assert_eq!("full".parse(), Ok(OutputPolicy::Full));
        assert_eq!("label".parse(), Ok(OutputPolicy::Label));
        assert_eq!("top_k=2".parse(), Ok(OutputPolicy::TopK(2)));
        assert_eq!("round=1".parse(), Ok(OutputPolicy::Round(1)));
        for bad in ["", "top_k=0", "top_k=x", "round=99", "labels", "round"] {
            let e = bad.parse::<OutputPolicy>().err().unwrap_or_default();
            assert!(e.contains("use full, label"), "{bad}: {e}");
        }
    }

    #[test]
    fn each_policy_limits_the_outputs() {
        assert_eq!(
            probs(&OutputPolicy::Full.apply(outputs())),
            vec![0.2, 0.5, 0.3, 0.6, 0.25, 0.15]
        );
        let label = OutputPolicy::Label.apply(outputs());
        assert_eq!(label.len(), 1);
        assert_eq!(label[0].name, "label");
        assert_eq!(
            probs(&OutputPolicy::TopK(1).apply(outputs())),
            vec![0.0, 0.5, 0.0, 0.6, 0.0, 0.0]
        );
        assert_eq!(
            probs(&OutputPolicy::TopK(2).apply(outputs())),
            vec![0.0, 0.5, 0.3, 0.6, 0.25, 0.0]
        );
        assert_eq!(
            probs(&OutputPolicy::Round(0).apply(outputs())),
            vec![0.0, 1.0, 0.0, 1.0, 0.0, 0.0]
        );
    }
}
