//! References between steps: `${step.output}` anywhere in a string parameter. A string that
//! is exactly one reference takes the output's value (a number stays a number); otherwise
//! the output is spliced in as text.

use serde_json::{Map, Value};

/// A reference found in a value: the step and output it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    pub step: String,
    pub output: String,
}

/// Every `${a.b}` in `s`, or an error naming the malformed one.
pub fn find(s: &str) -> Result<Vec<Ref>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("'{s}': a reference '${{' is not closed by '}}'"))?;
        let inner = &after[..end];
        let (step, output) = inner.split_once('.').ok_or_else(|| {
            format!("'${{{inner}}}' must name a step and one of its outputs: ${{step.output}}")
        })?;
        let ok = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if !ok(step) || !ok(output) {
            return Err(format!(
                "'${{{inner}}}' is not a reference: names are letters, digits, '_' and '-'"
            ));
        }
        out.push(Ref {
            step: step.to_owned(),
            output: output.to_owned(),
        });
        rest = &after[end + 1..];
    }
    Ok(out)
}

/// Every reference in a JSON value (strings inside arrays and objects too).
pub fn find_in(v: &Value) -> Result<Vec<Ref>, String> {
    let mut out = Vec::new();
    match v {
        Value::String(s) => out.extend(find(s)?),
        Value::Array(items) => {
            for i in items {
                out.extend(find_in(i)?);
            }
        }
        Value::Object(map) => {
            for i in map.values() {
                out.extend(find_in(i)?);
            }
        }
        _ => {}
    }
    Ok(out)
}

/// `v` with every reference replaced by the named output. `outputs(step, name)` gives the
/// value, or `None` when the step has no such output.
pub fn resolve(v: &Value, outputs: &dyn Fn(&str, &str) -> Option<Value>) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => {
            let refs = find(s)?;
            let lookup = |r: &Ref| {
                outputs(&r.step, &r.output)
                    .ok_or_else(|| format!("step '{}' has no output '{}'", r.step, r.output))
            };
            match refs.as_slice() {
                [] => v.clone(),
                [r] if *s == format!("${{{}.{}}}", r.step, r.output) => lookup(r)?,
                _ => {
                    let mut text = s.clone();
                    for r in &refs {
                        let value = lookup(r)?;
                        let shown = match &value {
                            Value::String(t) => t.clone(),
                            other => other.to_string(),
                        };
                        text = text.replacen(&format!("${{{}.{}}}", r.step, r.output), &shown, 1);
                    }
                    Value::String(text)
                }
            }
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| resolve(i, outputs))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, i) in map {
                out.insert(k.clone(), resolve(i, outputs)?);
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_and_resolves() {
        assert_eq!(find("x ${a.b} y ${c-1.d_2}").map(|r| r.len()), Ok(2));
        assert!(find("${a}").is_err());
        assert!(find("${a.b").is_err());
        assert!(find("${a/../b.c}").is_err());
        let outputs = |s: &str, o: &str| match (s, o) {
            ("ingest", "dataset") => Some(json!("bc@v1")),
            ("train", "rows") => Some(json!(5)),
            _ => None,
        };
        let v = json!({"data": "${ingest.dataset}", "n": "${train.rows}", "t": "rows=${train.rows} of ${ingest.dataset}", "l": ["${ingest.dataset}"]});
        assert_eq!(
            resolve(&v, &outputs),
            Ok(json!({"data": "bc@v1", "n": 5, "t": "rows=5 of bc@v1", "l": ["bc@v1"]}))
        );
        assert_eq!(
            resolve(&json!("${train.model}"), &outputs),
            Err("step 'train' has no output 'model'".into())
        );
    }
}
