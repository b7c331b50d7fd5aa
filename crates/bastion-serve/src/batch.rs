//! Adaptive micro-batching for one model version: requests that arrive while others are
//! waiting or being predicted are predicted together, up to `max_batch` rows, waiting at
//! most `max_wait` for company. A request that finds the model idle is predicted at once, so
//! light traffic pays no added latency and heavy traffic forms batches by itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bastion_ml::predictor::{ColumnData, Prediction, Table};
use ndarray::s;
use tokio::sync::{mpsc, oneshot};

use crate::deployment::Batching;
use crate::error::ServeError;
use crate::models::Served;
use crate::pipeline::predict;

struct Job {
    table: Table,
    reply: oneshot::Sender<Result<Prediction, ServeError>>,
}

pub struct Batcher {
    tx: mpsc::Sender<Job>,
    /// Requests handed to the batcher and not yet taken into a batch.
    pending: Arc<AtomicUsize>,
}

impl Batcher {
    pub fn start(model: Arc<Served>, config: Batching) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        let pending = Arc::new(AtomicUsize::new(0));
        tokio::spawn(run(model, config, rx, pending.clone()));
        Self { tx, pending }
    }

    pub async fn predict(&self, table: Table) -> Result<Prediction, ServeError> {
        let (reply, answer) = oneshot::channel();
        self.pending.fetch_add(1, Ordering::AcqRel);
        if self.tx.send(Job { table, reply }).await.is_err() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(ServeError::Model("the batcher stopped".into()));
        }
        answer
            .await
            .map_err(|_| ServeError::Model("the batcher dropped the request".into()))?
    }
}

async fn run(
    model: Arc<Served>,
    config: Batching,
    mut rx: mpsc::Receiver<Job>,
    pending: Arc<AtomicUsize>,
) {
    let wait = Duration::from_micros(config.max_wait_us);
    while let Some(first) = rx.recv().await {
        pending.fetch_sub(1, Ordering::AcqRel);
        let mut rows = first.table.rows();
        let mut jobs = vec![first];
        let deadline = tokio::time::Instant::now() + wait;
        while rows < config.max_batch {
            let next = match rx.try_recv() {
                Ok(j) => Some(j),
                // Nobody else is on the way: do not make this batch wait.
                Err(_) if pending.load(Ordering::Acquire) == 0 => None,
                Err(_) => tokio::time::timeout_at(deadline, rx.recv())
                    .await
                    .ok()
                    .flatten(),
            };
            let Some(j) = next else { break };
            pending.fetch_sub(1, Ordering::AcqRel);
            rows += j.table.rows();
            jobs.push(j);
        }
        metrics::histogram!("bastion_inference_batch_rows", "model" => model.name.clone())
            .record(rows as f64);
        let m = model.clone();
        let tables: Vec<Table> = jobs
            .iter_mut()
            .map(|j| std::mem::take(&mut j.table))
            .collect();
        let results = tokio::task::spawn_blocking(move || predict_all(&m, tables)).await;
        match results {
            Ok(results) => {
                for (job, r) in jobs.into_iter().zip(results) {
                    let _ = job.reply.send(r);
                }
            }
            Err(e) => {
                for job in jobs {
                    let _ = job.reply.send(Err(ServeError::Model(e.to_string())));
                }
            }
        }
    }
}

/// One prediction for all tables together, split back per table. If the batch fails (one
/// request's input the model cannot take), each table is predicted alone so that only that
/// request fails.
fn predict_all(model: &Served, tables: Vec<Table>) -> Vec<Result<Prediction, ServeError>> {
    if tables.len() == 1 {
        return tables.iter().map(|t| predict(model, t)).collect();
    }
    let sizes: Vec<usize> = tables.iter().map(Table::rows).collect();
    let joined = concat(&tables).and_then(|t| predict(model, &t).ok());
    match joined {
        Some(p) if p.rows() == sizes.iter().sum::<usize>() => {
            split(&p, &sizes).into_iter().map(Ok).collect()
        }
        _ => tables.iter().map(|t| predict(model, t)).collect(),
    }
}

/// The tables' rows one after the other; `None` if their columns differ.
fn concat(tables: &[Table]) -> Option<Table> {
    let first = tables.first()?;
    if tables.iter().any(|t| t.names != first.names) {
        return None;
    }
    let columns = (0..first.names.len())
        .map(|c| match &first.columns[c] {
            ColumnData::Numeric(_) => {
                let mut all = Vec::new();
                for t in tables {
                    let ColumnData::Numeric(v) = &t.columns[c] else {
                        return None;
                    };
                    all.extend_from_slice(v);
                }
                Some(ColumnData::Numeric(all))
            }
            ColumnData::Text(_) => {
                let mut all = Vec::new();
                for t in tables {
                    let ColumnData::Text(v) = &t.columns[c] else {
                        return None;
                    };
                    all.extend_from_slice(v);
                }
                Some(ColumnData::Text(all))
            }
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Table {
        names: first.names.clone(),
        columns,
    })
}

fn split(p: &Prediction, sizes: &[usize]) -> Vec<Prediction> {
    let mut start = 0;
    sizes
        .iter()
        .map(|&n| {
            let part = match p {
                Prediction::Classes(a) => {
                    Prediction::Classes(a.slice(s![start..start + n, ..]).to_owned())
                }
                Prediction::Values(v) => {
                    Prediction::Values(v.slice(s![start..start + n]).to_owned())
                }
            };
            start += n;
            part
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, Array2};

    fn t(x: &[f64]) -> Table {
        Table {
            names: vec!["x".into()],
            columns: vec![ColumnData::Numeric(x.iter().map(|v| Some(*v)).collect())],
        }
    }

    #[test]
    fn concat_and_split_keep_rows_in_order() {
        let all = concat(&[t(&[1.0]), t(&[2.0, 3.0])]).unwrap();
        assert_eq!(all, t(&[1.0, 2.0, 3.0]));
        let other = Table {
            names: vec!["y".into()],
            columns: vec![ColumnData::Numeric(vec![Some(1.0)])],
        };
        assert!(concat(&[t(&[1.0]), other]).is_none());
        let p = Prediction::Values(Array1::from(vec![1.0, 2.0, 3.0]));
        let parts = split(&p, &[1, 2]);
        assert_eq!(parts[1], Prediction::Values(Array1::from(vec![2.0, 3.0])));
        let c = Prediction::Classes(Array2::from_shape_fn((3, 2), |(i, j)| (i * 2 + j) as f64));
        let parts = split(&c, &[2, 1]);
        assert_eq!(
            parts[1],
            Prediction::Classes(Array2::from_shape_vec((1, 2), vec![4.0, 5.0]).unwrap())
        );
    }
}
