//! What an inference event recorded (`features`: `{column: [values]}`; `outputs`: `{labels
//! | values, confidence, probabilities}`), decoded straight from JSON text or bytes into
//! cells, without building a JSON tree per event first: that tree was the monitor's largest
//! cost. Decoding is lenient, as for any telemetry written by older and newer servers
//! alike: a part of the wrong shape is ignored, never an error.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::observation::Cell;

/// The kept rows, column by column; columns whose values are not a list are left out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordedFeatures(pub BTreeMap<String, Vec<Cell>>);

/// The model's answers as recorded.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct RecordedOutputs {
    labels: Cells,
    values: Cells,
    confidence: Numbers,
    probabilities: NumberRows,
}

impl RecordedOutputs {
    /// Labels (classifiers) or else values (regressors).
    pub fn predictions(&mut self) -> Vec<Cell> {
        self.labels
            .0
            .take()
            .or_else(|| self.values.0.take())
            .unwrap_or_default()
    }

    pub fn confidence(&mut self) -> Vec<f64> {
        std::mem::take(&mut self.confidence.0)
    }

    pub fn probabilities(&mut self) -> Vec<Vec<f64>> {
        std::mem::take(&mut self.probabilities.0)
    }

    /// Lenient: text that is not JSON, or not an object, records nothing.
    pub fn parse(json: &str) -> Self {
        serde_json::from_str(json).unwrap_or_default()
    }
}

impl RecordedFeatures {
    /// Lenient: text that is not JSON, or not an object, records nothing.
    pub fn parse(json: &str) -> Self {
        serde_json::from_str(json).unwrap_or_default()
    }
}

/// Scalars and containers a lenient visitor does not want: they read as `Default`.
macro_rules! ignore_others {
    () => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Self::Value::default())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Self::Value::default())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Self::Value::default())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Self::Value::default())
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(Self::Value::default())
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Self::Value::default())
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Self::Value::default())
        }
    };
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

impl<'de> Deserialize<'de> for RecordedFeatures {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RecordedFeatures;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("recorded features")
            }
            ignore_others!();
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                drain_seq(seq)?;
                Ok(RecordedFeatures::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(name) = map.next_key::<String>()? {
                    if let Cells(Some(values)) = map.next_value()? {
                        out.insert(name, values);
                    }
                }
                Ok(RecordedFeatures(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A list of cells, or `None` when the value is not a list.
#[derive(Debug, Clone, Default, PartialEq)]
struct Cells(Option<Vec<Cell>>);

impl<'de> Deserialize<'de> for Cells {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Cells;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of values")
            }
            ignore_others!();
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(1));
                while let Some(c) = seq.next_element()? {
                    out.push(c);
                }
                Ok(Cells(Some(out)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                drain_map(map)?;
                Ok(Cells(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// The numbers of a list (others left out); empty when the value is not a list.
#[derive(Debug, Clone, Default, PartialEq)]
struct Numbers(Vec<f64>);

/// A number, or `None` for anything else.
struct MaybeNumber(Option<f64>);

impl<'de> Deserialize<'de> for MaybeNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(MaybeNumber(match Cell::deserialize(d)? {
            Cell::Number(v) => Some(v),
            _ => None,
        }))
    }
}

impl<'de> Deserialize<'de> for Numbers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Numbers;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of numbers")
            }
            ignore_others!();
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(2));
                while let Some(MaybeNumber(n)) = seq.next_element()? {
                    out.extend(n);
                }
                Ok(Numbers(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                drain_map(map)?;
                Ok(Numbers::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// Rows of numbers; a row that is not a list is empty.
#[derive(Debug, Clone, Default, PartialEq)]
struct NumberRows(Vec<Vec<f64>>);

impl<'de> Deserialize<'de> for NumberRows {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NumberRows;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("rows of numbers")
            }
            ignore_others!();
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(1));
                while let Some(Numbers(row)) = seq.next_element()? {
                    out.push(row);
                }
                Ok(NumberRows(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                drain_map(map)?;
                Ok(NumberRows::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// Cells as JSON: numbers and strings as they are, booleans as text (they are categories),
/// null and anything nested as missing. The same shapes `Cell`'s `Serialize` writes, so a
/// saved window reads back as it was.
impl<'de> Deserialize<'de> for Cell {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Cell;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value")
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Cell, E> {
                Ok(Cell::Text(b.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Cell, E> {
                Ok(Cell::Number(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Cell, E> {
                Ok(Cell::Number(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Cell, E> {
                Ok(Cell::Number(v))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Cell, E> {
                Ok(Cell::Text(s.to_owned()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Cell, E> {
                Ok(Cell::Text(s))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Cell, E> {
                Ok(Cell::Missing)
            }
            fn visit_none<E: de::Error>(self) -> Result<Cell, E> {
                Ok(Cell::Missing)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Cell, A::Error> {
                drain_seq(seq)?;
                Ok(Cell::Missing)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Cell, A::Error> {
                drain_map(map)?;
                Ok(Cell::Missing)
            }
        }
        d.deserialize_any(V)
    }
}

/// `Cell` serializes untagged: a number, a string, or null.
impl Serialize for Cell {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Cell::Number(v) => s.serialize_f64(*v),
            Cell::Text(t) => s.serialize_str(t),
            Cell::Missing => s.serialize_unit(),
        }
    }
}
