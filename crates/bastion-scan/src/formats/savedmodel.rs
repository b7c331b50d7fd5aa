//! TensorFlow SavedModel (`saved_model.pb`): every graph node and every node of every function
//! in the library is read for its op, and ops that reach files, the network or Python (by the
//! policy's `[tensorflow]` lists) are reported. Tensor contents are skipped, never held.

use std::collections::BTreeMap;
use std::io::BufRead;

use super::Found;
use super::protobuf::Pb;
use crate::finding::Severity;
use crate::policy::Policy;

/// `SavedModel` starts with `saved_model_schema_version = 1` and then a `MetaGraphDef`.
pub fn looks_like(head: &[u8]) -> bool {
    head.starts_with(&[0x08, 0x01, 0x12])
}

/// Where a listed op was first seen, and how often.
struct Seen {
    node: String,
    function: Option<String>,
    count: u64,
}

struct Walk<'a> {
    policy: &'a Policy,
    ops: BTreeMap<String, Seen>,
    nodes: u64,
}

impl Walk<'_> {
    fn meta_graph<R: BufRead>(&mut self, pb: &mut Pb<R>, end: u64) -> Result<(), String> {
        pb.fields(end, |pb, field, wire| match (field, wire) {
            (2, 2) => {
                let e = pb.message_end()?;
                self.graph(pb, e)
            }
            _ => pb.skip_value(wire),
        })
    }

    fn graph<R: BufRead>(&mut self, pb: &mut Pb<R>, end: u64) -> Result<(), String> {
        pb.fields(end, |pb, field, wire| match (field, wire) {
            (1, 2) => {
                let e = pb.message_end()?;
                self.node(pb, e, None)
            }
            (2, 2) => {
                let e = pb.message_end()?;
                self.library(pb, e)
            }
            _ => pb.skip_value(wire),
        })
    }

    fn library<R: BufRead>(&mut self, pb: &mut Pb<R>, end: u64) -> Result<(), String> {
        pb.fields(end, |pb, field, wire| match (field, wire) {
            (1, 2) => {
                let e = pb.message_end()?;
                self.function(pb, e)
            }
            _ => pb.skip_value(wire),
        })
    }

    /// `FunctionDef`: its name is in the signature (field 1), which precedes the nodes
    /// (field 3) in what TensorFlow writes; a name that comes later is not waited for.
    fn function<R: BufRead>(&mut self, pb: &mut Pb<R>, end: u64) -> Result<(), String> {
        let mut name: Option<String> = None;
        pb.fields(end, |pb, field, wire| match (field, wire) {
            (1, 2) => {
                let e = pb.message_end()?;
                pb.fields(e, |pb, f, w| match (f, w) {
                    (1, 2) => {
                        name = Some(pb.text()?);
                        Ok(())
                    }
                    _ => pb.skip_value(w),
                })
            }
            (3, 2) => {
                let e = pb.message_end()?;
                self.node(pb, e, name.clone())
            }
            _ => pb.skip_value(wire),
        })
    }

    fn node<R: BufRead>(
        &mut self,
        pb: &mut Pb<R>,
        end: u64,
        function: Option<String>,
    ) -> Result<(), String> {
        self.nodes += 1;
        let (mut name, mut op) = (String::new(), String::new());
        pb.fields(end, |pb, field, wire| match (field, wire) {
            (1, 2) => {
                name = pb.text()?;
                Ok(())
            }
            (2, 2) => {
                op = pb.text()?;
                Ok(())
            }
            _ => pb.skip_value(wire),
        })?;
        if self.policy.tensorflow_op(&op).is_some() {
            self.ops
                .entry(op)
                .or_insert(Seen {
                    node: name,
                    function,
                    count: 0,
                })
                .count += 1;
        }
        Ok(())
    }
}

fn what_it_does(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "runs Python code when the graph executes",
        Severity::High => "reads or writes files, databases or the network when the graph executes",
        _ => "touches files (as TensorFlow's own checkpoint and asset loading does)",
    }
}

pub fn scan<R: BufRead>(r: R, policy: &Policy, location: &str) -> Found {
    let mut found = Found::default();
    let mut pb = Pb::new(r);
    let mut walk = Walk {
        policy,
        ops: BTreeMap::new(),
        nodes: 0,
    };
    let result = (|| -> Result<(), String> {
        while !pb.at_end()? {
            let tag = pb.varint()?;
            match (tag >> 3, tag & 7) {
                (2, 2) => {
                    let e = pb.message_end()?;
                    walk.meta_graph(&mut pb, e)?;
                }
                (_, w) => pb.skip_value(w)?,
            }
        }
        Ok(())
    })();
    for (op, seen) in std::mem::take(&mut walk.ops) {
        let Some(severity) = policy.tensorflow_op(&op) else {
            continue;
        };
        let place = match &seen.function {
            Some(f) => format!("node '{}' in function '{f}'", seen.node),
            None => format!("node '{}'", seen.node),
        };
        let times = if seen.count > 1 {
            format!(" ({} nodes)", seen.count)
        } else {
            String::new()
        };
        found.finding(
            severity,
            "tensorflow.op",
            format!(
                "the TensorFlow op '{op}' at {place}{times} {}",
                what_it_does(severity)
            ),
            location,
            Some(op),
        );
    }
    if let Err(e) = result {
        found.error(
            location,
            format!("malformed SavedModel at byte {}: {e}", pb.offset),
        );
    } else if walk.nodes == 0 {
        found.error(location, "a SavedModel without any graph node");
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, body: &[u8]) -> Vec<u8> {
        let mut out = vec![((n << 3) | 2) as u8];
        let mut len = body.len() as u64;
        loop {
            let b = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
        out.extend_from_slice(body);
        out
    }

    fn node(name: &str, op: &str) -> Vec<u8> {
        [field(1, name.as_bytes()), field(2, op.as_bytes())].concat()
    }

    fn saved_model(graph_nodes: &[(&str, &str)], functions: &[(&str, &[(&str, &str)])]) -> Vec<u8> {
        let mut graph = Vec::new();
        for (n, op) in graph_nodes {
            graph.extend(field(1, &node(n, op)));
        }
        let mut library = Vec::new();
        for (fname, nodes) in functions {
            let mut f = field(1, &field(1, fname.as_bytes()));
            for (n, op) in *nodes {
                f.extend(field(3, &node(n, op)));
            }
            library.extend(field(1, &f));
        }
        graph.extend(field(2, &library));
        [vec![0x08, 0x01], field(2, &field(2, &graph))].concat()
    }

    #[test]
    fn ops_in_graphs_and_functions_are_reported_once_each() {
        let bytes = saved_model(
            &[("x", "Placeholder"), ("save/SaveV2", "SaveV2")],
            &[(
                "__inference_serve_12",
                &[
                    ("a", "ReadFile"),
                    ("b", "MatMul"),
                    ("c", "ReadFile"),
                    ("d", "PyFunc"),
                ],
            )],
        );
        assert!(looks_like(&bytes));
        let found = scan(bytes.as_slice(), &Policy::builtin(), "saved_model.pb");
        assert!(found.errors.is_empty(), "{:?}", found.errors);
        let got: Vec<(&str, Severity)> = found
            .findings
            .iter()
            .map(|f| (f.subject.as_deref().unwrap_or(""), f.severity))
            .collect();
        assert_eq!(
            got,
            [
                ("PyFunc", Severity::Critical),
                ("ReadFile", Severity::High),
                ("SaveV2", Severity::Info)
            ]
        );
        assert!(
            found.findings[1]
                .message
                .contains("node 'a' in function '__inference_serve_12' (2 nodes)"),
            "{}",
            found.findings[1].message
        );
    }

    #[test]
    fn truncated_and_empty_models_are_errors() {
        let bytes = saved_model(&[("r", "ReadFile")], &[]);
        for cut in 3..bytes.len() {
            let found = scan(&bytes[..cut], &Policy::builtin(), "m");
            assert!(!found.errors.is_empty(), "cut at {cut}");
        }
        let found = scan(&[0x08u8, 0x01][..], &Policy::builtin(), "m");
        assert_eq!(found.errors.len(), 1);
    }
}
