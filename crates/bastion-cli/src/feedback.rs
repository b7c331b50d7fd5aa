//! `bastion feedback import FILE --model M`: true labels that came back after the answers,
//! from a CSV (`request_id,label[,row]`) or JSON Lines file (`{request_id, label | labels,
//! row?}`), sent in batches to this home's store or through a server.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bastion_store::meta::{FeedbackItem, FeedbackReceipt, MAX_FEEDBACK_ITEMS};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::data::Where;

#[derive(Debug, Subcommand)]
pub enum FeedbackCommand {
    /// Send true labels for answered requests (matched by their x-request-id).
    Import {
        /// CSV with a header (`request_id`, `label`, optionally `row`) or JSON Lines
        /// (`.jsonl`/`.ndjson`: `{"request_id", "label"}` or `{"request_id", "labels": [...]}`).
        file: PathBuf,
        /// The registered model that answered the requests.
        #[arg(long)]
        model: String,
        #[command(flatten)]
        at: Where,
    },
}

/// Unmatched request ids printed, at most (the count is always given).
const SHOWN_UNMATCHED: usize = 100;

pub async fn feedback(home: &Path, c: FeedbackCommand) -> Result<()> {
    let FeedbackCommand::Import { file, model, at } = c;
    let items = read(&file)?;
    let bar = indicatif::ProgressBar::new(items.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("labels {bar:30} {pos}/{len} requests {per_sec}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut total = FeedbackReceipt::default();
    let remote = crate::deploy::remote(&at)?;
    let local = match remote {
        Some(_) => None,
        None => Some(crate::data::Home::open(home, &at.registry).await?),
    };
    for (n, chunk) in items.chunks(MAX_FEEDBACK_ITEMS).enumerate() {
        let got: FeedbackReceipt = match (&remote, &local) {
            (Some(r), _) => {
                let body = json!({
                    "model": model,
                    "feedback": chunk.iter().map(|i| json!({"request_id": i.request_id, "labels": i.labels})).collect::<Vec<_>>(),
                });
                serde_json::from_value(r.post_feedback(&body).await?)
                    .context("reading the server's receipt")?
            }
            (None, Some(h)) => h.meta.record_feedback(&model, chunk, &h.actor).await?,
            (None, None) => bail!("neither a server nor a home to send the labels to"),
        };
        total.stored += got.stored;
        total.duplicates += got.duplicates;
        total.unmatched.extend(got.unmatched);
        bar.inc(chunk.len() as u64);
        tracing::debug!(batch = n, "labels sent");
    }
    bar.finish_and_clear();
    let unmatched = total.unmatched.len();
    total.unmatched.truncate(SHOWN_UNMATCHED);
    crate::print_json(&json!({
        "requests": items.len(),
        "stored": total.stored,
        "duplicates": total.duplicates,
        "unmatched": unmatched,
        "unmatched_request_ids": total.unmatched,
    }))
}

/// One labelled row as the file gives it, with the line it came from.
struct Row {
    line: usize,
    request_id: String,
    row: Option<usize>,
    labels: Vec<Value>,
}

fn read(path: &Path) -> Result<Vec<FeedbackItem>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the labels {}", path.display()))?;
    let jsonl = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("jsonl" | "ndjson")
    );
    let rows = if jsonl {
        jsonl_rows(&text)
    } else {
        csv_rows(&text)
    }
    .with_context(|| format!("in {}", path.display()))?;
    group(rows).with_context(|| format!("in {}", path.display()))
}

/// A CSV cell as a label: a finite number where it reads as one (regression targets,
/// numeric classes), else the text.
fn label_of(cell: &str) -> Value {
    match cell.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => json!(v),
        _ => json!(cell),
    }
}

fn csv_rows(text: &str) -> Result<Vec<Row>> {
    let mut r = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let header = r.headers().context("reading the CSV header")?.clone();
    let col = |name: &str| header.iter().position(|h| h.trim() == name);
    let (Some(id), Some(label)) = (col("request_id"), col("label")) else {
        bail!(
            "the CSV header needs `request_id` and `label` columns (and optionally `row`), not {:?}",
            header.iter().collect::<Vec<_>>()
        );
    };
    let row = col("row");
    let mut out = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let line = i + 2;
        let rec = rec.with_context(|| format!("line {line}"))?;
        let cell = |c: usize| rec.get(c).unwrap_or("");
        let row = match row.map(cell) {
            None | Some("") => None,
            Some(v) => Some(
                v.trim()
                    .parse::<usize>()
                    .with_context(|| format!("line {line}: row '{v}' is not a row number"))?,
            ),
        };
        out.push(Row {
            line,
            request_id: cell(id).to_owned(),
            row,
            labels: vec![label_of(cell(label))],
        });
    }
    Ok(out)
}

fn jsonl_rows(text: &str) -> Result<Vec<Row>> {
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let line = i + 1;
        if l.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(l).with_context(|| format!("line {line}"))?;
        let request_id = v["request_id"]
            .as_str()
            .with_context(|| format!("line {line}: no \"request_id\" string"))?
            .to_owned();
        let labels = match (v.get("label"), v.get("labels")) {
            (Some(l), None) => vec![l.clone()],
            (None, Some(Value::Array(ls))) => ls.clone(),
            _ => bail!("line {line}: give either \"label\" or \"labels\" (a list)"),
        };
        let row = match v.get("row") {
            None => None,
            Some(r) => Some(
                r.as_u64()
                    .and_then(|r| usize::try_from(r).ok())
                    .with_context(|| format!("line {line}: \"row\" is not a row number"))?,
            ),
        };
        out.push(Row {
            line,
            request_id,
            row,
            labels,
        });
    }
    Ok(out)
}

/// One item per request, its rows in order: given row numbers must run from 0 without
/// gaps or repeats; without them, rows count up in the order the file lists them.
fn group(rows: Vec<Row>) -> Result<Vec<FeedbackItem>> {
    let mut order: Vec<String> = Vec::new();
    let mut by_id: BTreeMap<String, Vec<(usize, usize, Value)>> = BTreeMap::new();
    for r in rows {
        let entry = by_id.entry(r.request_id.clone()).or_insert_with(|| {
            order.push(r.request_id.clone());
            Vec::new()
        });
        for (k, label) in r.labels.into_iter().enumerate() {
            let row = r.row.map_or(entry.len(), |base| base.saturating_add(k));
            entry.push((row, r.line, label));
        }
    }
    let mut out = Vec::with_capacity(order.len());
    for id in order {
        let mut rows = by_id.remove(&id).unwrap_or_default();
        rows.sort_by_key(|(row, line, _)| (*row, *line));
        for (i, (row, line, _)) in rows.iter().enumerate() {
            if *row != i {
                bail!(
                    "line {line}: request '{id}' row {row}: rows of a request must run 0, 1, 2… without gaps or repeats"
                );
            }
        }
        out.push(FeedbackItem {
            request_id: id,
            labels: rows.into_iter().map(|(_, _, l)| l).collect(),
        });
    }
    if out.is_empty() {
        bail!("no labels in the file");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_jsonl_group_by_request() {
        let rows = csv_rows("request_id,label,row\nr1,yes,1\nr2,3.5,\nr1,no,0\n").unwrap();
        let items = group(rows).unwrap();
        assert_eq!(items[0].request_id, "r1");
        assert_eq!(items[0].labels, vec![json!("no"), json!("yes")]);
        assert_eq!(items[1].labels, vec![json!(3.5)]);
        let rows = jsonl_rows(
            "{\"request_id\": \"a\", \"labels\": [1, 0]}\n\n{\"request_id\": \"b\", \"label\": \"x\"}\n",
        )
        .unwrap();
        let items = group(rows).unwrap();
        assert_eq!(items[0].labels, vec![json!(1), json!(0)]);
        assert_eq!(items[1].labels, vec![json!("x")]);
    }

    #[test]
    fn mistakes_name_their_line() {
        let e = csv_rows("id,label\nr1,yes\n").err().unwrap().to_string();
        assert!(e.contains("`request_id` and `label`"), "{e}");
        let e = csv_rows("request_id,label,row\nr1,yes,x\n")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("line 2: row 'x'"), "{e}");
        let e = group(csv_rows("request_id,label,row\nr1,yes,0\nr1,no,2\n").unwrap())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("line 3: request 'r1' row 2"), "{e}");
        let e = jsonl_rows("{\"request_id\": \"a\"}\n")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("line 1: give either"), "{e}");
        let huge = format!(
            "{{\"request_id\": \"a\", \"row\": {}, \"labels\": [1, 2]}}\n",
            usize::MAX
        );
        let e = group(jsonl_rows(&huge).unwrap()).err().unwrap().to_string();
        assert!(e.contains("without gaps"), "{e}");
        let e = jsonl_rows("{nope\n").err().unwrap().to_string();
        assert!(e.contains("line 1"), "{e}");
        assert!(group(Vec::new()).is_err());
    }
}
