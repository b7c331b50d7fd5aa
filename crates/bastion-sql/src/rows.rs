//! A result column built value by value, whose Arrow type is settled by what it holds:
//! integers stay integers until a real arrives (then all become Float64), and any text makes
//! the column text. SQLite's values carry their own types, so this is the only honest way to
//! type an expression's column.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Float64Array, Int64Array, NullArray, StringArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit};

/// One value as SQLite gives it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// What a source column was, so a column passed through unchanged keeps its Arrow type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declared {
    Boolean,
    Date,
    Timestamp,
    Other,
}

impl Declared {
    pub fn of(decltype: Option<&str>) -> Self {
        match decltype.map(str::to_ascii_uppercase).as_deref() {
            Some("BOOLEAN") => Self::Boolean,
            Some("DATE") => Self::Date,
            Some("TIMESTAMP") => Self::Timestamp,
            _ => Self::Other,
        }
    }
}

#[derive(Debug)]
enum Values {
    Null(usize),
    Int(Vec<Option<i64>>),
    Real(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
    Blob(Vec<Option<Vec<u8>>>),
}

#[derive(Debug)]
pub struct Column {
    values: Values,
    declared: Declared,
}

fn render(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Int(i) => Some(i.to_string()),
        Value::Real(r) => Some(r.to_string()),
        Value::Text(t) => Some(t.clone()),
        Value::Blob(b) => Some(String::from_utf8_lossy(b).into_owned()),
    }
}

impl Column {
    pub fn new(declared: Declared) -> Self {
        Self {
            values: Values::Null(0),
            declared,
        }
    }

    pub fn len(&self) -> usize {
        match &self.values {
            Values::Null(n) => *n,
            Values::Int(v) => v.len(),
            Values::Real(v) => v.len(),
            Values::Text(v) => v.len(),
            Values::Blob(v) => v.len(),
        }
    }

    pub fn push(&mut self, v: Value) {
        let n = self.len();
        // Widen first (so the value fits), then append.
        let widened = match (&mut self.values, &v) {
            (_, Value::Null) => None,
            (Values::Null(_), Value::Int(_)) => Some(Values::Int(vec![None; n])),
            (Values::Null(_), Value::Real(_)) => Some(Values::Real(vec![None; n])),
            (Values::Null(_), Value::Text(_)) => Some(Values::Text(vec![None; n])),
            (Values::Null(_), Value::Blob(_)) => Some(Values::Blob(vec![None; n])),
            (Values::Int(ints), Value::Real(_)) => Some(Values::Real(
                ints.iter().map(|i| i.map(|i| i as f64)).collect(),
            )),
            (Values::Int(ints), Value::Text(_) | Value::Blob(_)) => Some(Values::Text(
                ints.iter().map(|i| i.map(|i| i.to_string())).collect(),
            )),
            (Values::Real(reals), Value::Text(_) | Value::Blob(_)) => Some(Values::Text(
                reals.iter().map(|r| r.map(|r| r.to_string())).collect(),
            )),
            (Values::Blob(blobs), Value::Int(_) | Value::Real(_) | Value::Text(_)) => {
                Some(Values::Text(
                    blobs
                        .iter()
                        .map(|b| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()))
                        .collect(),
                ))
            }
            _ => None,
        };
        if let Some(w) = widened {
            self.values = w;
        }
        match (&mut self.values, v) {
            (Values::Null(n), _) => *n += 1,
            (Values::Int(out), Value::Int(i)) => out.push(Some(i)),
            (Values::Int(out), _) => out.push(None),
            (Values::Real(out), Value::Int(i)) => out.push(Some(i as f64)),
            (Values::Real(out), Value::Real(r)) => out.push(Some(r)),
            (Values::Real(out), _) => out.push(None),
            (Values::Text(out), v) => out.push(render(&v)),
            (Values::Blob(out), Value::Blob(b)) => out.push(Some(b)),
            (Values::Blob(out), _) => out.push(None),
        }
    }

    /// The column as Arrow: booleans, dates and timestamps of a source column come back as
    /// such when every value still reads as one; otherwise the type its values settled on.
    pub fn finish(self) -> ArrayRef {
        let plain: ArrayRef = match self.values {
            Values::Null(n) => Arc::new(NullArray::new(n)),
            Values::Int(v) => Arc::new(Int64Array::from(v)),
            Values::Real(v) => Arc::new(Float64Array::from(v)),
            Values::Text(v) => Arc::new(StringArray::from(v)),
            Values::Blob(v) => Arc::new(BinaryArray::from_iter(v)),
        };
        let target = match (self.declared, plain.data_type()) {
            (Declared::Boolean, DataType::Int64) => {
                let ints = plain.as_any().downcast_ref::<Int64Array>();
                if let Some(ints) = ints
                    && ints.iter().all(|v| matches!(v, None | Some(0 | 1)))
                {
                    return Arc::new(BooleanArray::from_iter(
                        ints.iter().map(|v| v.map(|i| i == 1)),
                    ));
                }
                None
            }
            (Declared::Date, DataType::Utf8) => Some(DataType::Date32),
            (Declared::Timestamp, DataType::Utf8) => {
                Some(DataType::Timestamp(TimeUnit::Microsecond, None))
            }
            _ => None,
        };
        match target {
            Some(t) => {
                // Strict: a value that does not parse keeps the column as text.
                let opts = arrow::compute::CastOptions {
                    safe: false,
                    ..Default::default()
                };
                arrow::compute::cast_with_options(&plain, &t, &opts).unwrap_or(plain)
            }
            None if matches!(plain.data_type(), DataType::Null) => {
                cast(&plain, &DataType::Utf8).unwrap_or(plain)
            }
            None => plain,
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, Int64Type};

    use super::*;

    fn column(declared: Declared, values: Vec<Value>) -> ArrayRef {
        let mut c = Column::new(declared);
        for v in values {
            c.push(v);
        }
        c.finish()
    }

    #[test]
    fn integers_widen_to_reals_then_to_text() {
        let a = column(
            Declared::Other,
            vec![Value::Null, Value::Int(2), Value::Int(3)],
        );
        assert_eq!(a.data_type(), &DataType::Int64);
        assert!(a.is_null(0));
        assert_eq!(a.as_primitive::<Int64Type>().value(2), 3);

        let a = column(
            Declared::Other,
            vec![Value::Int(2), Value::Null, Value::Real(0.5)],
        );
        assert_eq!(a.data_type(), &DataType::Float64);
        assert_eq!(a.as_primitive::<Float64Type>().value(0), 2.0);
        assert!(a.is_null(1));

        let a = column(
            Declared::Other,
            vec![Value::Int(2), Value::Real(0.5), Value::Text("x".into())],
        );
        let t = a.as_string::<i32>();
        assert_eq!((t.value(0), t.value(1), t.value(2)), ("2", "0.5", "x"));
    }

    #[test]
    fn declared_types_come_back_when_the_values_still_fit() {
        let a = column(
            Declared::Boolean,
            vec![Value::Int(1), Value::Null, Value::Int(0)],
        );
        assert_eq!(a.data_type(), &DataType::Boolean);
        let a = column(Declared::Boolean, vec![Value::Int(1), Value::Int(7)]);
        assert_eq!(a.data_type(), &DataType::Int64);
        let a = column(Declared::Date, vec![Value::Text("2024-02-29".into())]);
        assert_eq!(a.data_type(), &DataType::Date32);
        let a = column(Declared::Date, vec![Value::Text("not a date".into())]);
        assert_eq!(a.data_type(), &DataType::Utf8);
        let a = column(
            Declared::Timestamp,
            vec![Value::Text("2024-02-29T10:11:12.5".into())],
        );
        assert_eq!(
            a.data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, None)
        );
        let a = column(Declared::Other, vec![Value::Null, Value::Null]);
        assert_eq!((a.data_type(), a.null_count()), (&DataType::Utf8, 2));
    }
}
