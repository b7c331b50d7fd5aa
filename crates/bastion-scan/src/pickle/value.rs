//! The symbolic values the pickle machine pushes: data stays data (bounded), and anything a
//! real unpickler would import or call stays a description of that import or call.

use std::cell::RefCell;
use std::rc::Rc;

pub type Obj = Rc<Value>;

/// Items kept per container; the rest are counted, not stored.
pub const KEEP_ITEMS: usize = 256;

#[derive(Debug)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer wider than 64 bits (LONG1/LONG4/LONG): only its byte length.
    BigInt(u64),
    Float(f64),
    /// Text, cut to the kept prefix when long (`len` is the full byte length).
    Str {
        text: String,
        len: u64,
    },
    Bytes {
        len: u64,
    },
    Tuple(Vec<Obj>),
    List(RefCell<Items>),
    Dict(RefCell<Items>),
    Set(RefCell<Items>),
    FrozenSet(Vec<Obj>),
    /// What GLOBAL, STACK_GLOBAL or INST imports.
    Global(Rc<GlobalRef>),
    /// What REDUCE, NEWOBJ, NEWOBJ_EX, OBJ or INST returns: the result of calling `callable`.
    Called {
        callable: Obj,
        args: Obj,
        offset: u64,
        /// Set by BUILD.
        state: RefCell<Option<Obj>>,
    },
    /// A persistent id resolved by the loader (PyTorch storages).
    Persistent {
        pid: Obj,
    },
    /// An extension-registry code (EXT1/2/4): a callable registered at load time.
    Extension {
        code: u32,
        offset: u64,
    },
    /// An out-of-band buffer (protocol 5).
    Buffer,
}

/// Nested values are dropped with a work list, not recursion: a hostile pickle can nest a
/// million levels deep in a few megabytes.
impl Drop for Value {
    fn drop(&mut self) {
        let mut work = Vec::new();
        self.take_children(&mut work);
        while let Some(child) = work.pop() {
            if let Ok(mut v) = Rc::try_unwrap(child) {
                v.take_children(&mut work);
            }
        }
    }
}

impl Value {
    /// Whether the machine can change it after it is made (and so make it part of a cycle).
    pub fn is_mutable(&self) -> bool {
        matches!(
            self,
            Value::List(_) | Value::Dict(_) | Value::Set(_) | Value::Called { .. }
        )
    }

    /// Empties what can be changed after creation, breaking any cycle through it.
    pub fn take_mutable_children(&self) -> Vec<Obj> {
        match self {
            Value::List(items) | Value::Dict(items) | Value::Set(items) => items
                .try_borrow_mut()
                .map(|mut i| std::mem::take(&mut i.kept))
                .unwrap_or_default(),
            Value::Called { state, .. } => state
                .try_borrow_mut()
                .map(|mut s| s.take().into_iter().collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    fn take_children(&mut self, work: &mut Vec<Obj>) {
        match self {
            Value::Tuple(items) | Value::FrozenSet(items) => work.append(items),
            Value::List(items) | Value::Dict(items) | Value::Set(items) => {
                work.append(&mut items.get_mut().kept)
            }
            Value::Called {
                callable,
                args,
                state,
                ..
            } => {
                work.push(std::mem::replace(callable, Rc::new(Value::None)));
                work.push(std::mem::replace(args, Rc::new(Value::None)));
                work.extend(state.get_mut().take());
            }
            Value::Persistent { pid } => work.push(std::mem::replace(pid, Rc::new(Value::None))),
            _ => {}
        }
    }
}

#[derive(Debug, Default)]
pub struct Items {
    pub kept: Vec<Obj>,
    pub count: u64,
}

impl Items {
    pub fn push(&mut self, v: Obj) {
        self.count += 1;
        if self.kept.len() < KEEP_ITEMS {
            self.kept.push(v);
        }
    }
}

/// An import, with where the pickle asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalRef {
    pub module: String,
    pub name: String,
    pub offset: u64,
    /// GLOBAL, STACK_GLOBAL or INST.
    pub opcode: &'static str,
}

impl GlobalRef {
    pub fn dotted(&self) -> String {
        format!("{}.{}", self.module, self.name)
    }
}

impl Value {
    pub fn text(&self) -> Option<&str> {
        match self {
            Value::Str { text, len } if *len == text.len() as u64 => Some(text),
            _ => None,
        }
    }

    /// A short description for messages (a chain of calls is cut after a few links).
    pub fn describe(&self) -> String {
        self.describe_within(3)
    }

    fn describe_within(&self, links: u32) -> String {
        match self {
            Value::Global(g) => g.dotted(),
            Value::Called { .. } if links == 0 => "the result of a chain of calls".into(),
            Value::Called { callable, .. } => {
                format!(
                    "the result of calling {}",
                    callable.describe_within(links - 1)
                )
            }
            Value::Str { .. } => "a string".into(),
            Value::Persistent { .. } => "a persistent object".into(),
            Value::Extension { code, .. } => format!("extension code {code}"),
            Value::Tuple(_) => "a tuple".into(),
            Value::List(_) => "a list".into(),
            Value::Dict(_) => "a dict".into(),
            _ => "a data value".into(),
        }
    }
}
