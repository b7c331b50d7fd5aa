//! A static, symbolic pickle machine: it runs every opcode of protocols 0–5 on symbolic values
//! (never importing or calling anything), with the stack, the mark stack and the memo emulated
//! exactly, and records every global the real unpickler would import and every call it would
//! make, with byte offsets. Stacked pickles (one after another in a file) are all read. A
//! pickle that breaks off keeps everything found before the break.

pub mod analyze;
mod input;
mod value;

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::BufRead;
use std::rc::{Rc, Weak};

pub use input::{Input, KEEP_BYTES, MAX_LINE};
pub use value::{GlobalRef, Items, Obj, Value};

/// Stack plus mark-stack depth allowed.
pub const MAX_STACK: usize = 1_000_000;
/// Memo entries allowed.
pub const MAX_MEMO: usize = 1_000_000;
/// Values kept inside containers, over the whole pickle.
pub const MAX_KEPT: u64 = 5_000_000;
/// Distinct events (imports, calls…) recorded; a pickle with more is refused as hostile,
/// never half-examined.
pub const MAX_EVENTS: usize = 100_000;
/// Pickles read from one stream.
pub const MAX_PICKLES: u32 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickleError {
    #[error("the pickle ends at byte {offset} before its STOP opcode")]
    Truncated { offset: u64 },
    #[error("malformed pickle at byte {offset}: {message}")]
    Malformed { offset: u64, message: String },
    #[error("the pickle exceeds the scanner's limit on {what} at byte {offset}")]
    Limit { offset: u64, what: &'static str },
    #[error("read error at byte {offset}: {message}")]
    Io { offset: u64, message: String },
}

impl PickleError {
    pub fn offset(&self) -> u64 {
        match self {
            Self::Truncated { offset }
            | Self::Malformed { offset, .. }
            | Self::Limit { offset, .. }
            | Self::Io { offset, .. } => *offset,
        }
    }
}

/// Something the real unpickler would do that matters for safety.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// GLOBAL, STACK_GLOBAL or INST imports `module.name`.
    Import(Rc<GlobalRef>),
    /// REDUCE, NEWOBJ, NEWOBJ_EX, OBJ or INST calls an imported global.
    Call {
        global: Rc<GlobalRef>,
        offset: u64,
        opcode: &'static str,
    },
    /// A call whose callable was not imported by name but computed (e.g. returned by another
    /// call, or an extension code).
    ComputedCall {
        callable: String,
        offset: u64,
        opcode: &'static str,
    },
    /// STACK_GLOBAL whose module or name is not a plain string on the stack.
    ComputedImport { offset: u64, what: String },
    /// BUILD sets state on an imported global itself (a class or function), not on an
    /// instance: attribute tampering.
    BuildOnGlobal { global: Rc<GlobalRef>, offset: u64 },
    /// EXT1/EXT2/EXT4: a callable from the extension registry.
    Extension { code: u32, offset: u64 },
}

/// Everything read from one stream of stacked pickles.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Each distinct event once, in the order first seen (the offset is the first one's).
    pub events: Vec<Event>,
    seen: std::collections::HashSet<String>,
    /// Pickles read to their STOP.
    pub pickles: u32,
    /// The highest protocol announced by PROTO.
    pub protocol: Option<u8>,
    pub persistent_ids: u64,
    /// Set when the first pickle, or one that had imported something, broke off.
    pub error: Option<PickleError>,
    /// Bytes after the last pickle that are not a pickle (e.g. legacy PyTorch storages).
    pub trailing_bytes: u64,
}

impl Event {
    /// What makes two events the same for reporting.
    fn key(&self) -> String {
        match self {
            Event::Import(g) => format!("i {} {}", g.module, g.name),
            Event::Call { global, .. } => format!("c {} {}", global.module, global.name),
            Event::ComputedCall { callable, .. } => format!("cc {callable}"),
            Event::ComputedImport { what, .. } => format!("ci {what}"),
            Event::BuildOnGlobal { global, .. } => format!("b {} {}", global.module, global.name),
            Event::Extension { code, .. } => format!("e {code}"),
        }
    }
}

impl Outcome {
    fn record(&mut self, e: Event, at: u64) -> Result<(), PickleError> {
        let key = e.key();
        if self.seen.contains(&key) {
            return Ok(());
        }
        if self.events.len() >= MAX_EVENTS {
            return Err(PickleError::Limit {
                offset: at,
                what: "distinct imports and calls",
            });
        }
        self.seen.insert(key);
        self.events.push(e);
        Ok(())
    }
}

/// Whether `b` can start a pickle (an opcode of any protocol).
pub fn is_opcode(b: u8) -> bool {
    matches!(
        b,
        b'(' | b'.'
            | b'0'
            | b'1'
            | b'2'
            | b'F'
            | b'I'
            | b'J'
            | b'K'
            | b'L'
            | b'M'
            | b'N'
            | b'P'
            | b'Q'
            | b'R'
            | b'S'
            | b'T'
            | b'U'
            | b'V'
            | b'X'
            | b'a'
            | b'b'
            | b'c'
            | b'd'
            | b'}'
            | b'e'
            | b'g'
            | b'h'
            | b'i'
            | b'j'
            | b'l'
            | b']'
            | b'o'
            | b'p'
            | b'q'
            | b'r'
            | b's'
            | b't'
            | b')'
            | b'u'
            | b'G'
            | b'B'
            | b'C'
            | 0x80..=0x98
    )
}

/// Reads every pickle in `input`, one after another, until the stream ends or what follows
/// is not a pickle.
pub fn scan<R: BufRead>(input: R) -> Outcome {
    let mut input = Input::new(input);
    let mut out = Outcome::default();
    loop {
        let start = input.offset();
        let before = out.events.len();
        let result = Machine::new(&mut out).run(&mut input);
        match result {
            Ok(()) => out.pickles += 1,
            Err(e) => {
                let found_something = out.events.len() > before;
                if out.pickles == 0
                    || found_something
                    || !matches!(
                        e,
                        PickleError::Malformed { .. } | PickleError::Truncated { .. }
                    )
                {
                    out.error = Some(e);
                } else {
                    // Data after the last pickle that does not parse and imports nothing:
                    // e.g. the raw storages that legacy `torch.save` appends.
                    out.trailing_bytes = input.offset() - start;
                    if let Ok(rest) = count_rest(&mut input) {
                        out.trailing_bytes += rest;
                    }
                }
                return out;
            }
        }
        match input.peek() {
            Ok(Some(b)) if is_opcode(b) && out.pickles < MAX_PICKLES => continue,
            Ok(Some(_)) => {
                out.trailing_bytes = count_rest(&mut input).unwrap_or(0);
                return out;
            }
            Ok(None) => return out,
            Err(e) => {
                out.error = Some(e);
                return out;
            }
        }
    }
}

fn count_rest<R: BufRead>(input: &mut Input<R>) -> Result<u64, PickleError> {
    input.skip_to_end()
}

/// `Machine::mutable` is not pruned below this many entries.
const MIN_PRUNE: usize = 1024;

struct Machine<'o> {
    stack: Vec<Obj>,
    marks: Vec<Vec<Obj>>,
    /// Items held in the stacks saved by `marks`.
    below_marks: usize,
    memo: HashMap<u64, Obj>,
    kept: u64,
    /// Every list, dict, set and call result made: APPENDS, SETITEMS and BUILD can make them
    /// contain themselves, and reference cycles would leak when the machine is done.
    mutable: Vec<Weak<Value>>,
    /// When `mutable` is next pruned of values already freed (a dead `Weak` still pins its
    /// allocation, and a hostile pickle can make and drop millions of lists).
    prune_at: usize,
    out: &'o mut Outcome,
}

impl Drop for Machine<'_> {
    fn drop(&mut self) {
        for weak in self.mutable.drain(..) {
            if let Some(v) = weak.upgrade() {
                drop(v.take_mutable_children());
            }
        }
    }
}

fn malformed(offset: u64, message: impl Into<String>) -> PickleError {
    PickleError::Malformed {
        offset,
        message: message.into(),
    }
}

fn obj(v: Value) -> Obj {
    Rc::new(v)
}

fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl<'o> Machine<'o> {
    fn new(out: &'o mut Outcome) -> Self {
        Self {
            stack: Vec::new(),
            marks: Vec::new(),
            below_marks: 0,
            memo: HashMap::new(),
            kept: 0,
            mutable: Vec::new(),
            prune_at: MIN_PRUNE,
            out,
        }
    }

    fn push(&mut self, v: Obj, at: u64) -> Result<(), PickleError> {
        if self.depth() >= MAX_STACK {
            return Err(PickleError::Limit {
                offset: at,
                what: "stack depth",
            });
        }
        // Fresh (held only here): remember it once if it can take part in a cycle.
        if Rc::strong_count(&v) == 1 && v.is_mutable() {
            if self.mutable.len() >= self.prune_at {
                self.mutable.retain(|w| w.strong_count() > 0);
                self.prune_at = (self.mutable.len() * 2).max(MIN_PRUNE);
            }
            self.mutable.push(Rc::downgrade(&v));
        }
        self.stack.push(v);
        Ok(())
    }

    fn depth(&self) -> usize {
        self.stack.len() + self.below_marks + self.marks.len()
    }

    fn pop(&mut self, at: u64) -> Result<Obj, PickleError> {
        self.stack
            .pop()
            .ok_or_else(|| malformed(at, "pops from an empty stack"))
    }

    fn top(&self, at: u64) -> Result<&Obj, PickleError> {
        self.stack
            .last()
            .ok_or_else(|| malformed(at, "needs a value on an empty stack"))
    }

    /// The items pushed since the last MARK, which is removed.
    fn pop_mark(&mut self, at: u64) -> Result<Vec<Obj>, PickleError> {
        let below = self
            .marks
            .pop()
            .ok_or_else(|| malformed(at, "no MARK to pop to"))?;
        self.below_marks -= below.len();
        Ok(std::mem::replace(&mut self.stack, below))
    }

    fn keep(&mut self, n: u64, at: u64) -> Result<(), PickleError> {
        self.kept += n;
        if self.kept > MAX_KEPT {
            return Err(PickleError::Limit {
                offset: at,
                what: "values kept",
            });
        }
        Ok(())
    }

    fn memo_put(&mut self, key: u64, at: u64) -> Result<(), PickleError> {
        let v = self.top(at)?.clone();
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&key) {
            return Err(PickleError::Limit {
                offset: at,
                what: "memo size",
            });
        }
        self.memo.insert(key, v);
        Ok(())
    }

    fn memo_get(&mut self, key: u64, at: u64) -> Result<(), PickleError> {
        let v = self
            .memo
            .get(&key)
            .cloned()
            .ok_or_else(|| malformed(at, format!("memo key {key} was never stored")))?;
        self.push(v, at)
    }

    fn import(
        &mut self,
        module: String,
        name: String,
        at: u64,
        opcode: &'static str,
    ) -> Result<Obj, PickleError> {
        let g = Rc::new(GlobalRef {
            module,
            name,
            offset: at,
            opcode,
        });
        self.out.record(Event::Import(g.clone()), at)?;
        Ok(obj(Value::Global(g)))
    }

    fn call(
        &mut self,
        callable: Obj,
        args: Obj,
        at: u64,
        opcode: &'static str,
    ) -> Result<Obj, PickleError> {
        let event = match &*callable {
            Value::Global(g) => Event::Call {
                global: g.clone(),
                offset: at,
                opcode,
            },
            other => Event::ComputedCall {
                callable: other.describe(),
                offset: at,
                opcode,
            },
        };
        self.out.record(event, at)?;
        Ok(obj(Value::Called {
            callable,
            args,
            offset: at,
            state: RefCell::new(None),
        }))
    }

    fn add_items(&mut self, target: &Obj, items: Vec<Obj>, at: u64) -> Result<(), PickleError> {
        let n = items.len() as u64;
        match &**target {
            Value::List(l) | Value::Set(l) => {
                self.keep(n.min(value::KEEP_ITEMS as u64), at)?;
                let mut l = l.borrow_mut();
                for i in items {
                    l.push(i);
                }
                Ok(())
            }
            // APPENDS on an object calls its `append`/`extend`: only instances have one.
            Value::Called { .. } | Value::Persistent { .. } => Ok(()),
            other => Err(malformed(
                at,
                format!("appends items to {}", other.describe()),
            )),
        }
    }

    fn set_items(&mut self, target: &Obj, pairs: Vec<Obj>, at: u64) -> Result<(), PickleError> {
        if !pairs.len().is_multiple_of(2) {
            return Err(malformed(at, "SETITEMS with an odd number of values"));
        }
        match &**target {
            Value::Dict(d) => {
                self.keep((pairs.len() as u64).min(value::KEEP_ITEMS as u64), at)?;
                let mut d = d.borrow_mut();
                for v in pairs {
                    d.push(v);
                }
                Ok(())
            }
            // `obj[key] = value` on an instance calls its __setitem__.
            Value::Called { .. } | Value::Persistent { .. } => Ok(()),
            other => Err(malformed(at, format!("sets items on {}", other.describe()))),
        }
    }

    fn int_line(line: &[u8], at: u64) -> Result<Value, PickleError> {
        let t = text_of(line);
        let t = t.trim().trim_end_matches('L');
        match t {
            "00" => return Ok(Value::Bool(false)),
            "01" => return Ok(Value::Bool(true)),
            _ => {}
        }
        if t.is_empty()
            || !t
                .trim_start_matches(['-', '+'])
                .bytes()
                .all(|b| b.is_ascii_digit())
        {
            return Err(malformed(at, format!("'{t}' is not an integer")));
        }
        Ok(t.parse::<i64>()
            .map(Value::Int)
            .unwrap_or(Value::BigInt(t.len() as u64)))
    }

    fn string_value(blob: input::Blob) -> Value {
        Value::Str {
            text: text_of(&blob.kept),
            len: blob.len,
        }
    }

    fn run<R: BufRead>(&mut self, input: &mut Input<R>) -> Result<(), PickleError> {
        loop {
            let at = input.offset();
            let op = input.byte()?;
            match op {
                // PROTO, FRAME
                0x80 => {
                    let p = input.byte()?;
                    if p > 5 {
                        return Err(malformed(at, format!("unsupported pickle protocol {p}")));
                    }
                    self.out.protocol = Some(self.out.protocol.map_or(p, |q| q.max(p)));
                }
                0x95 => {
                    input.array::<8>()?;
                }
                b'.' => return Ok(()),
                b'(' => {
                    if self.depth() >= MAX_STACK {
                        return Err(PickleError::Limit {
                            offset: at,
                            what: "stack depth",
                        });
                    }
                    let current = std::mem::take(&mut self.stack);
                    self.below_marks += current.len();
                    self.marks.push(current);
                }
                b'0' => {
                    // POP: drops the top item, or a MARK if the stack above it is empty.
                    if self.stack.is_empty() {
                        self.pop_mark(at)?;
                    } else {
                        self.pop(at)?;
                    }
                }
                b'1' => {
                    self.pop_mark(at)?;
                }
                b'2' => {
                    let v = self.top(at)?.clone();
                    self.push(v, at)?;
                }
                // Numbers.
                b'I' | b'L' => {
                    let line = input.line()?;
                    let v = Self::int_line(&line, at)?;
                    self.push(obj(v), at)?;
                }
                b'J' => {
                    let v = i32::from_le_bytes(input.array::<4>()?);
                    self.push(obj(Value::Int(v.into())), at)?;
                }
                b'K' => {
                    let v = input.byte()?;
                    self.push(obj(Value::Int(v.into())), at)?;
                }
                b'M' => {
                    let v = u16::from_le_bytes(input.array::<2>()?);
                    self.push(obj(Value::Int(v.into())), at)?;
                }
                0x8a => {
                    let n = input.byte()?;
                    let blob = input.blob(n.into())?;
                    let v = if n <= 8 {
                        let mut b = [0u8; 8];
                        b[..blob.kept.len()].copy_from_slice(&blob.kept);
                        if blob.kept.last().is_some_and(|x| x & 0x80 != 0) {
                            for x in &mut b[blob.kept.len()..] {
                                *x = 0xff;
                            }
                        }
                        Value::Int(i64::from_le_bytes(b))
                    } else {
                        Value::BigInt(n.into())
                    };
                    self.push(obj(v), at)?;
                }
                0x8b => {
                    let n = i32::from_le_bytes(input.array::<4>()?);
                    let n = u64::try_from(n)
                        .map_err(|_| malformed(at, "LONG4 with a negative length"))?;
                    input.skip(n)?;
                    self.push(obj(Value::BigInt(n)), at)?;
                }
                b'F' => {
                    let line = input.line()?;
                    let v = text_of(&line)
                        .trim()
                        .parse::<f64>()
                        .map_err(|_| malformed(at, "FLOAT is not a number"))?;
                    self.push(obj(Value::Float(v)), at)?;
                }
                b'G' => {
                    let v = f64::from_be_bytes(input.array::<8>()?);
                    self.push(obj(Value::Float(v)), at)?;
                }
                b'N' => self.push(obj(Value::None), at)?,
                0x88 => self.push(obj(Value::Bool(true)), at)?,
                0x89 => self.push(obj(Value::Bool(false)), at)?,
                // Strings and bytes.
                b'S' => {
                    let line = input.line()?;
                    let t = text_of(&line);
                    let t = t.trim_end();
                    let quoted = t.len() >= 2
                        && ((t.starts_with('\'') && t.ends_with('\''))
                            || (t.starts_with('"') && t.ends_with('"')));
                    if !quoted {
                        return Err(malformed(at, "STRING argument is not quoted"));
                    }
                    let inner = unescape(&t[1..t.len() - 1]);
                    let len = inner.len() as u64;
                    self.push(obj(Value::Str { text: inner, len }), at)?;
                }
                b'V' => {
                    let line = input.line()?;
                    let inner = unescape(&text_of(&line));
                    let len = inner.len() as u64;
                    self.push(obj(Value::Str { text: inner, len }), at)?;
                }
                b'T' | b'X' => {
                    let n = u32::from_le_bytes(input.array::<4>()?);
                    let blob = input.blob(n.into())?;
                    self.push(obj(Self::string_value(blob)), at)?;
                }
                b'U' | 0x8c => {
                    let n = input.byte()?;
                    let blob = input.blob(n.into())?;
                    self.push(obj(Self::string_value(blob)), at)?;
                }
                0x8d => {
                    let n = u64::from_le_bytes(input.array::<8>()?);
                    let blob = input.blob(n)?;
                    self.push(obj(Self::string_value(blob)), at)?;
                }
                b'B' => {
                    let n = u32::from_le_bytes(input.array::<4>()?);
                    input.skip(n.into())?;
                    self.push(obj(Value::Bytes { len: n.into() }), at)?;
                }
                b'C' => {
                    let n = input.byte()?;
                    input.skip(n.into())?;
                    self.push(obj(Value::Bytes { len: n.into() }), at)?;
                }
                0x8e | 0x96 => {
                    let n = u64::from_le_bytes(input.array::<8>()?);
                    input.skip(n)?;
                    self.push(obj(Value::Bytes { len: n }), at)?;
                }
                0x97 => self.push(obj(Value::Buffer), at)?,
                // READONLY_BUFFER marks the top buffer read-only: nothing to model.
                0x98 => {
                    self.top(at)?;
                }
                // Containers.
                b')' => self.push(obj(Value::Tuple(Vec::new())), at)?,
                b']' => self.push(obj(Value::List(RefCell::default())), at)?,
                b'}' => self.push(obj(Value::Dict(RefCell::default())), at)?,
                0x8f => self.push(obj(Value::Set(RefCell::default())), at)?,
                b't' => {
                    let items = self.pop_mark(at)?;
                    self.keep((items.len() as u64).min(value::KEEP_ITEMS as u64), at)?;
                    let items = items.into_iter().take(value::KEEP_ITEMS).collect();
                    self.push(obj(Value::Tuple(items)), at)?;
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n {
                        return Err(malformed(
                            at,
                            format!("TUPLE{n} with fewer than {n} values"),
                        ));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.keep(n as u64, at)?;
                    self.push(obj(Value::Tuple(items)), at)?;
                }
                b'l' => {
                    let items = self.pop_mark(at)?;
                    let list = obj(Value::List(RefCell::default()));
                    self.add_items(&list, items, at)?;
                    self.push(list, at)?;
                }
                b'd' => {
                    let items = self.pop_mark(at)?;
                    let dict = obj(Value::Dict(RefCell::default()));
                    self.set_items(&dict, items, at)?;
                    self.push(dict, at)?;
                }
                0x91 => {
                    let items = self.pop_mark(at)?;
                    self.keep((items.len() as u64).min(value::KEEP_ITEMS as u64), at)?;
                    let items = items.into_iter().take(value::KEEP_ITEMS).collect();
                    self.push(obj(Value::FrozenSet(items)), at)?;
                }
                b'a' => {
                    let v = self.pop(at)?;
                    let target = self.top(at)?.clone();
                    self.add_items(&target, vec![v], at)?;
                }
                b'e' | 0x90 => {
                    let items = self.pop_mark(at)?;
                    let target = self.top(at)?.clone();
                    self.add_items(&target, items, at)?;
                }
                b's' => {
                    let v = self.pop(at)?;
                    let k = self.pop(at)?;
                    let target = self.top(at)?.clone();
                    self.set_items(&target, vec![k, v], at)?;
                }
                b'u' => {
                    let items = self.pop_mark(at)?;
                    let target = self.top(at)?.clone();
                    self.set_items(&target, items, at)?;
                }
                // Memo.
                b'p' => {
                    let line = input.line()?;
                    let key = text_of(&line)
                        .trim()
                        .parse::<u64>()
                        .map_err(|_| malformed(at, "PUT with a non-numeric key"))?;
                    self.memo_put(key, at)?;
                }
                b'q' => {
                    let key = input.byte()?;
                    self.memo_put(key.into(), at)?;
                }
                b'r' => {
                    let key = u32::from_le_bytes(input.array::<4>()?);
                    self.memo_put(key.into(), at)?;
                }
                0x94 => {
                    let key = self.memo.len() as u64;
                    self.memo_put(key, at)?;
                }
                b'g' => {
                    let line = input.line()?;
                    let key = text_of(&line)
                        .trim()
                        .parse::<u64>()
                        .map_err(|_| malformed(at, "GET with a non-numeric key"))?;
                    self.memo_get(key, at)?;
                }
                b'h' => {
                    let key = input.byte()?;
                    self.memo_get(key.into(), at)?;
                }
                b'j' => {
                    let key = u32::from_le_bytes(input.array::<4>()?);
                    self.memo_get(key.into(), at)?;
                }
                // Imports and calls: the point of all this.
                b'c' => {
                    let module = text_of(&input.line()?);
                    let name = text_of(&input.line()?);
                    let g = self.import(module, name, at, "GLOBAL")?;
                    self.push(g, at)?;
                }
                0x93 => {
                    let name = self.pop(at)?;
                    let module = self.pop(at)?;
                    match (module.text(), name.text()) {
                        (Some(m), Some(n)) => {
                            let g = self.import(m.to_owned(), n.to_owned(), at, "STACK_GLOBAL")?;
                            self.push(g, at)?;
                        }
                        _ => {
                            self.out.record(
                                Event::ComputedImport {
                                    offset: at,
                                    what: format!(
                                        "module {} and name {}",
                                        module.describe(),
                                        name.describe()
                                    ),
                                },
                                at,
                            )?;
                            let g = self.import(
                                module.text().unwrap_or("<computed>").to_owned(),
                                name.text().unwrap_or("<computed>").to_owned(),
                                at,
                                "STACK_GLOBAL",
                            )?;
                            self.push(g, at)?;
                        }
                    }
                }
                b'i' => {
                    let module = text_of(&input.line()?);
                    let name = text_of(&input.line()?);
                    let args = obj(Value::Tuple(self.pop_mark(at)?));
                    let g = self.import(module, name, at, "INST")?;
                    let r = self.call(g, args, at, "INST")?;
                    self.push(r, at)?;
                }
                b'o' => {
                    let mut items = self.pop_mark(at)?;
                    if items.is_empty() {
                        return Err(malformed(at, "OBJ without a class"));
                    }
                    let cls = items.remove(0);
                    let r = self.call(cls, obj(Value::Tuple(items)), at, "OBJ")?;
                    self.push(r, at)?;
                }
                b'R' => {
                    let args = self.pop(at)?;
                    let callable = self.pop(at)?;
                    let r = self.call(callable, args, at, "REDUCE")?;
                    self.push(r, at)?;
                }
                0x81 => {
                    let args = self.pop(at)?;
                    let cls = self.pop(at)?;
                    let r = self.call(cls, args, at, "NEWOBJ")?;
                    self.push(r, at)?;
                }
                0x92 => {
                    let _kwargs = self.pop(at)?;
                    let args = self.pop(at)?;
                    let cls = self.pop(at)?;
                    let r = self.call(cls, args, at, "NEWOBJ_EX")?;
                    self.push(r, at)?;
                }
                b'b' => {
                    let state = self.pop(at)?;
                    let target = self.top(at)?.clone();
                    match &*target {
                        Value::Global(g) => self.out.record(
                            Event::BuildOnGlobal {
                                global: g.clone(),
                                offset: at,
                            },
                            at,
                        )?,
                        Value::Called {
                            callable, state: s, ..
                        } => {
                            *s.borrow_mut() = Some(state.clone());
                            if is_joblib_wrapper(callable) {
                                self.joblib_array(&state, input, at)?;
                            }
                        }
                        _ => {}
                    }
                }
                0x82 => {
                    let code = input.byte()?;
                    self.extension(code.into(), at)?;
                }
                0x83 => {
                    let code = u16::from_le_bytes(input.array::<2>()?);
                    self.extension(code.into(), at)?;
                }
                0x84 => {
                    let code = i32::from_le_bytes(input.array::<4>()?);
                    self.extension(code as u32, at)?;
                }
                b'P' => {
                    let line = input.line()?;
                    let len = line.len() as u64;
                    let pid = obj(Value::Str {
                        text: text_of(&line),
                        len,
                    });
                    self.out.persistent_ids += 1;
                    self.push(obj(Value::Persistent { pid }), at)?;
                }
                b'Q' => {
                    let pid = self.pop(at)?;
                    self.out.persistent_ids += 1;
                    self.push(obj(Value::Persistent { pid }), at)?;
                }
                other => {
                    return Err(malformed(at, format!("unknown opcode 0x{other:02x}")));
                }
            }
        }
    }

    /// joblib writes each array's bytes into the pickle stream right after its wrapper's
    /// BUILD (its unpickler reads them there): skip them as it would, or, for object arrays,
    /// scan the nested pickle it wrote instead.
    fn joblib_array<R: BufRead>(
        &mut self,
        state: &Obj,
        input: &mut Input<R>,
        at: u64,
    ) -> Result<(), PickleError> {
        let unknown = |what: &str| malformed(at, format!("a joblib array with {what}"));
        let dtype = dict_get(state, "dtype").ok_or_else(|| unknown("no dtype"))?;
        let code = match &*dtype {
            Value::Called { args, .. } => match &**args {
                Value::Tuple(items) => items.first().and_then(|v| v.text().map(str::to_owned)),
                _ => None,
            },
            _ => None,
        }
        .ok_or_else(|| unknown("an unreadable dtype"))?;
        let code = code.trim_start_matches(['<', '>', '|', '=']);
        if code.starts_with('O') {
            let mut nested = Machine::new(&mut *self.out);
            return nested.run(input);
        }
        let shape = dict_get(state, "shape").ok_or_else(|| unknown("no shape"))?;
        let Value::Tuple(dims) = &*shape else {
            return Err(unknown("a shape that is not a tuple"));
        };
        let mut count: u64 = 1;
        for d in dims {
            let Value::Int(n) = **d else {
                return Err(unknown("a non-integer dimension"));
            };
            count = u64::try_from(n)
                .ok()
                .and_then(|n| count.checked_mul(n))
                .ok_or_else(|| unknown("an impossible shape"))?;
        }
        let mut chars = code.chars();
        let kind = chars.next();
        if !kind.is_some_and(|k| "biufcmMSUVa?".contains(k)) {
            return Err(unknown("an unknown dtype"));
        }
        let width: u64 = chars
            .as_str()
            .parse()
            .map_err(|_| unknown("an unknown dtype"))?;
        let itemsize = if kind == Some('U') {
            width
                .checked_mul(4)
                .ok_or_else(|| unknown("an impossible dtype"))?
        } else {
            width
        };
        let size = count
            .checked_mul(itemsize)
            .ok_or_else(|| unknown("an impossible size"))?;
        if dict_get(state, "numpy_array_alignment_bytes")
            .is_some_and(|v| matches!(*v, Value::Int(_)))
        {
            let padding = input.byte()?;
            input.skip(padding.into())?;
        }
        input.skip(size)
    }

    fn extension(&mut self, code: u32, at: u64) -> Result<(), PickleError> {
        self.out.record(Event::Extension { code, offset: at }, at)?;
        self.push(obj(Value::Extension { code, offset: at }), at)
    }
}

fn is_joblib_wrapper(callable: &Obj) -> bool {
    matches!(&**callable, Value::Global(g)
        if g.name == "NumpyArrayWrapper"
            && (g.module == "joblib.numpy_pickle" || g.module == "sklearn.externals.joblib.numpy_pickle"))
}

/// The value under a string key of a dict built by the pickle.
fn dict_get(dict: &Obj, key: &str) -> Option<Obj> {
    let Value::Dict(items) = &**dict else {
        return None;
    };
    let items = items.borrow();
    items
        .kept
        .chunks_exact(2)
        .find(|kv| kv[0].text() == Some(key))
        .map(|kv| kv[1].clone())
}

/// Python's `raw-unicode-escape`/string-escape decoding, enough to recover names.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some('\'') => out.push('\''),
            Some('"') => out.push('"'),
            Some('x') => {
                let h: String = chars.by_ref().take(2).collect();
                match u8::from_str_radix(&h, 16) {
                    Ok(b) => out.push(char::from(b)),
                    Err(_) => out.push_str(&h),
                }
            }
            Some('u') => {
                let h: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&h, 16).ok().and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => out.push_str(&h),
                }
            }
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A list appended to itself, and a call result whose BUILD state holds itself: both are
    /// freed when the machine is done (the fuzzer found the leak).
    #[test]
    fn self_referencing_values_are_freed() {
        // ]  q\x00  h\x00  a   (list, memo 0, get 0, append) -> [ [...] ]
        // c builtins\nobject\n ) R q\x01 h\x01 b  (object(), memo 1, BUILD with itself)
        let pickle: &[u8] = b"\x80\x02]q\x00h\x00a0cbuiltins\nobject\n)Rq\x01h\x01b.";
        let mut out = Outcome::default();
        let mut input = Input::new(pickle);
        let mut m = Machine::new(&mut out);
        m.run(&mut input).unwrap();
        let made: Vec<Weak<Value>> = m.mutable.clone();
        assert_eq!(made.len(), 2);
        assert!(made.iter().all(|w| w.upgrade().is_some()));
        drop(m);
        assert!(made.iter().all(|w| w.upgrade().is_none()));
    }

    /// Lists made and dropped at once (`]0` repeated) are not remembered: memory stays bounded
    /// by what is alive, not by what the pickle ever made.
    #[test]
    fn freed_values_are_not_remembered() {
        let mut pickle = b"\x80\x02".to_vec();
        for _ in 0..200_000 {
            pickle.extend_from_slice(b"]0");
        }
        pickle.extend_from_slice(b"N.");
        let mut out = Outcome::default();
        let mut input = Input::new(pickle.as_slice());
        let mut m = Machine::new(&mut out);
        m.run(&mut input).unwrap();
        assert!(m.mutable.len() <= MIN_PRUNE, "{}", m.mutable.len());
    }
}
