//! A read-only YAML tree with byte spans, and the byte-level edits made on the original text:
//! replace one scalar, insert one `key: value` line into a block mapping, remove one line-owned
//! entry. Built on saphyr-parser's event stream.
//!
//! It deliberately never serializes: every edit is a splice over the original bytes, so whatever
//! the edit does not own (comments, quoting, indentation, `---`, CRLF, flow style, non-ASCII text)
//! survives untouched. It does not resolve anchors through aliases or apply merge keys (`<<`):
//! an alias is reported as such and never edited through.

use std::borrow::Cow;
use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// Scalar style as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    /// `|` or `>`: never edited (a block scalar is not where an image tag or a weight lives).
    Block,
}

#[derive(Debug, Clone)]
pub enum Value {
    Scalar {
        text: String,
        style: Style,
        tagged: bool,
    },
    /// Entries in file order. `flow` is true for `{...}`.
    Map {
        entries: Vec<(Node, Node)>,
        flow: bool,
    },
    Seq {
        items: Vec<Node>,
        flow: bool,
    },
    Alias,
}

/// A node with its byte span in the original text. For block containers `start` is the first
/// child's start and `end` the last child's end (comments after the last child are not owned).
#[derive(Debug, Clone)]
pub struct Node {
    pub value: Value,
    pub start: usize,
    pub end: usize,
    /// 1-based line of `start`.
    pub line: usize,
    /// Whether the node sits inside a flow collection (`[...]` / `{...}`), where `,[]{}` end a
    /// plain scalar.
    pub in_flow: bool,
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The value of `key` in a mapping (the first, if a broken file repeats a key).
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, v)| v)
    }

    pub fn entry(&self, key: &str) -> Option<&(Node, Node)> {
        match &self.value {
            Value::Map { entries, .. } => entries.iter().find(|(k, _)| k.as_str() == Some(key)),
            _ => None,
        }
    }

    /// Follows a dotted path of mapping keys.
    pub fn path(&self, keys: &[&str]) -> Option<&Node> {
        keys.iter().try_fold(self, |n, k| n.get(k))
    }

    pub fn items(&self) -> &[Node] {
        match &self.value {
            Value::Seq { items, .. } => items,
            _ => &[],
        }
    }

    pub fn is_map(&self) -> bool {
        matches!(self.value, Value::Map { .. })
    }
}

/// One document of a (possibly multi-document) file.
#[derive(Debug, Clone)]
pub struct Doc {
    /// 0-based position in the file.
    pub index: usize,
    pub root: Node,
}

impl Doc {
    pub fn kind(&self) -> Option<&str> {
        self.root.get("kind").and_then(Node::as_str)
    }

    pub fn name(&self) -> Option<&str> {
        self.root.path(&["metadata", "name"]).and_then(Node::as_str)
    }

    /// "Deployment/frontend (document 2)", for messages.
    pub fn describe(&self) -> String {
        match (self.kind(), self.name()) {
            (Some(k), Some(n)) => format!("{k}/{n} (document {})", self.index + 1),
            (Some(k), None) => format!("{k} (document {})", self.index + 1),
            _ => format!("document {}", self.index + 1),
        }
    }
}

/// Why text is not YAML, with a 1-based position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// Parses every document of `text` into trees with byte spans.
pub fn parse(text: &str) -> Result<Vec<Doc>, SyntaxError> {
    // saphyr reads a byte-order mark as part of the first key; parse after it and shift spans.
    let bom = if text.starts_with('\u{FEFF}') {
        '\u{FEFF}'.len_utf8()
    } else {
        0
    };
    let offsets = ByteOffsets::new(&text[bom..], bom);
    let mut parser = Parser::new_from_str(&text[bom..]);
    let mut builder = Builder {
        text,
        offsets: &offsets,
        stack: Vec::new(),
        docs: Vec::new(),
        flow_depth: 0,
        duplicate: None,
    };
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| SyntaxError {
            line: e.marker().line(),
            col: e.marker().col() + 1,
            message: e.info().to_string(),
        })?;
        builder.event(event, span);
    }
    match builder.duplicate {
        Some(duplicate) => Err(duplicate),
        None => Ok(builder.docs),
    }
}

/// Whether `text` is YAML, without building a tree (the check after an edit).
pub fn check(text: &str) -> Result<(), SyntaxError> {
    let bom = if text.starts_with('\u{FEFF}') {
        '\u{FEFF}'.len_utf8()
    } else {
        0
    };
    let mut parser = Parser::new_from_str(&text[bom..]);
    while let Some(next) = parser.next_event() {
        next.map_err(|e| SyntaxError {
            line: e.marker().line(),
            col: e.marker().col() + 1,
            message: e.info().to_string(),
        })?;
    }
    Ok(())
}

/// saphyr marks count characters; edits need byte offsets. ASCII text needs no table.
struct ByteOffsets {
    table: Option<Vec<usize>>,
    len: usize,
    /// Bytes before the parsed text (a byte-order mark).
    base: usize,
}

impl ByteOffsets {
    fn new(text: &str, base: usize) -> Self {
        let table = (!text.is_ascii()).then(|| {
            let mut t: Vec<usize> = text.char_indices().map(|(b, _)| b).collect();
            t.push(text.len());
            t
        });
        ByteOffsets {
            table,
            len: text.len(),
            base,
        }
    }

    fn byte(&self, char_index: usize) -> usize {
        self.base
            + match &self.table {
                None => char_index.min(self.len),
                Some(t) => t[char_index.min(t.len() - 1)],
            }
    }
}

enum Frame {
    Map {
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
        /// Scalar keys seen so far, with their line.
        keys: HashMap<String, usize>,
        flow: bool,
        start: usize,
        line: usize,
        in_flow: bool,
    },
    Seq {
        items: Vec<Node>,
        flow: bool,
        start: usize,
        line: usize,
        in_flow: bool,
    },
}

struct Builder<'a> {
    text: &'a str,
    offsets: &'a ByteOffsets,
    stack: Vec<Frame>,
    docs: Vec<Doc>,
    flow_depth: usize,
    /// The first repeated key of a mapping: the file is refused.
    duplicate: Option<SyntaxError>,
}

impl Builder<'_> {
    fn event(&mut self, event: Event<'_>, span: Span) {
        let start = self.offsets.byte(span.start.index());
        let end = self.offsets.byte(span.end.index());
        let line = span.start.line();
        let in_flow = self.flow_depth > 0;
        match event {
            Event::Scalar(text, style, _anchor, tag) => {
                let style = match style {
                    ScalarStyle::Plain => Style::Plain,
                    ScalarStyle::SingleQuoted => Style::SingleQuoted,
                    ScalarStyle::DoubleQuoted => Style::DoubleQuoted,
                    ScalarStyle::Literal | ScalarStyle::Folded => Style::Block,
                };
                // saphyr's end mark of a quoted scalar can run past the closing quote (over
                // trailing blanks and a comment), so find the closing quote ourselves.
                let end = match style {
                    Style::SingleQuoted | Style::DoubleQuoted => {
                        closing_quote(self.text, start).unwrap_or(end)
                    }
                    _ => end,
                };
                let node = Node {
                    value: Value::Scalar {
                        text: Cow::into_owned(text),
                        style,
                        tagged: tag.is_some(),
                    },
                    start,
                    end,
                    line,
                    in_flow,
                };
                self.push(node);
            }
            Event::Alias(_) => self.push(Node {
                value: Value::Alias,
                start,
                end,
                line,
                in_flow,
            }),
            Event::MappingStart(..) => {
                let flow = self.text[start..].starts_with('{');
                if flow {
                    self.flow_depth += 1;
                }
                self.stack.push(Frame::Map {
                    entries: Vec::new(),
                    pending_key: None,
                    keys: HashMap::new(),
                    flow,
                    start,
                    line,
                    in_flow,
                });
            }
            Event::SequenceStart(..) => {
                let flow = self.text[start..].starts_with('[');
                if flow {
                    self.flow_depth += 1;
                }
                self.stack.push(Frame::Seq {
                    items: Vec::new(),
                    flow,
                    start,
                    line,
                    in_flow,
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let Some(frame) = self.stack.pop() else {
                    return;
                };
                let node = match frame {
                    Frame::Map {
                        entries,
                        flow,
                        start,
                        line,
                        in_flow,
                        ..
                    } => {
                        let last = entries.last().map(|(_, v)| v.end).unwrap_or(start);
                        Node {
                            value: Value::Map { entries, flow },
                            start,
                            end: if flow { end } else { last },
                            line,
                            in_flow,
                        }
                    }
                    Frame::Seq {
                        items,
                        flow,
                        start,
                        line,
                        in_flow,
                    } => {
                        let last = items.last().map(|v| v.end).unwrap_or(start);
                        Node {
                            value: Value::Seq { items, flow },
                            start,
                            end: if flow { end } else { last },
                            line,
                            in_flow,
                        }
                    }
                };
                if matches!(
                    node.value,
                    Value::Map { flow: true, .. } | Value::Seq { flow: true, .. }
                ) {
                    self.flow_depth -= 1;
                }
                self.push(node);
            }
            Event::DocumentStart(_)
            | Event::DocumentEnd
            | Event::StreamStart
            | Event::StreamEnd
            | Event::Nothing => {}
        }
    }

    fn push(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => {
                let index = self.docs.len();
                self.docs.push(Doc { index, root: node });
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                pending_key,
                keys,
                ..
            }) => match pending_key.take() {
                None => {
                    // YAML requires a mapping's keys to be unique, and readers disagree on which
                    // of two wins (Kubernetes keeps the last): an edit of either could be the
                    // one that does not take effect.
                    if let Some(text) = node.as_str()
                        && let Some(first) = keys.insert(text.to_string(), node.line)
                        && self.duplicate.is_none()
                    {
                        self.duplicate = Some(SyntaxError {
                            line: node.line,
                            col: 1,
                            message: format!(
                                "duplicate mapping key {text:?} (first on line {first}); readers \
                                 disagree on which one counts, so neither is edited: remove one"
                            ),
                        });
                    }
                    *pending_key = Some(node);
                }
                Some(key) => entries.push((key, node)),
            },
        }
    }
}

/// Byte offset just after the quote that closes the quoted scalar starting at `start`.
fn closing_quote(text: &str, start: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let quote = *bytes.get(start)?;
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote == b'"' => i += 2,
            b'\'' if quote == b'\'' && bytes.get(i + 1) == Some(&b'\'') => i += 2,
            b if b == quote => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// What a scalar must keep meaning after the edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string (image, tag, name): a plain scalar must not read as a number, bool or null.
    Str,
    /// An integer (weight, replicas).
    Int,
}

/// Why a scalar could not be replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScalarProblem {
    NotAScalar(&'static str),
    BlockScalar,
    /// The bytes at the span are not the value the parser reported (multi-line scalars,
    /// escapes we do not decode): editing there could corrupt the file.
    SpanMismatch {
        found: String,
    },
    /// The new value, written plain, would be read as another type (or is not valid plain text).
    WouldChangeType {
        reads_as: &'static str,
    },
    /// The new value cannot be written in the original quoting style (e.g. a line break).
    Unrepresentable,
}

/// One byte-range replacement on the original text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Splice {
    pub start: usize,
    pub end: usize,
    pub with: String,
}

/// Builds the splice that sets scalar `node` to `new`, keeping its quoting style. With
/// `quote_ambiguous`, a plain scalar whose new value would change type is written double-quoted
/// instead of refused.
pub fn replace_scalar(
    text: &str,
    node: &Node,
    new: &str,
    kind: Kind,
    quote_ambiguous: bool,
) -> Result<Splice, ScalarProblem> {
    let (value, style, tagged) = match &node.value {
        Value::Scalar {
            text,
            style,
            tagged,
        } => (text, *style, *tagged),
        Value::Alias => return Err(ScalarProblem::NotAScalar("an alias")),
        Value::Map { .. } => return Err(ScalarProblem::NotAScalar("a mapping")),
        Value::Seq { .. } => return Err(ScalarProblem::NotAScalar("a sequence")),
    };
    if style == Style::Block {
        return Err(ScalarProblem::BlockScalar);
    }
    let found = &text[node.start..node.end];
    if decode(found, style).as_deref() != Some(value.as_str()) {
        return Err(ScalarProblem::SpanMismatch {
            found: found.to_string(),
        });
    }
    let with = match style {
        Style::Plain => {
            let problem = match kind {
                Kind::Str if !tagged => reads_as(new),
                Kind::Str | Kind::Int => None,
            }
            .or_else(|| (!plain_safe(new, node.in_flow)).then_some("text that needs quotes"));
            match problem {
                None => new.to_string(),
                Some(_) if quote_ambiguous => {
                    double_quote(new).ok_or(ScalarProblem::Unrepresentable)?
                }
                Some(reads_as) => return Err(ScalarProblem::WouldChangeType { reads_as }),
            }
        }
        Style::SingleQuoted => {
            if new.chars().any(char::is_control) {
                return Err(ScalarProblem::Unrepresentable);
            }
            format!("'{}'", new.replace('\'', "''"))
        }
        Style::DoubleQuoted => double_quote(new).ok_or(ScalarProblem::Unrepresentable)?,
        Style::Block => unreachable!("refused above"),
    };
    Ok(Splice {
        start: node.start,
        end: node.end,
        with,
    })
}

/// Reads a single-line scalar back from its source bytes, or None when it is something this
/// module does not decode (multi-line, rare escapes), which makes the caller refuse to edit.
fn decode(src: &str, style: Style) -> Option<String> {
    if src.contains(['\n', '\r']) {
        return None;
    }
    match style {
        Style::Plain => Some(src.to_string()),
        Style::SingleQuoted => {
            let inner = src.strip_prefix('\'')?.strip_suffix('\'')?;
            Some(inner.replace("''", "'"))
        }
        Style::DoubleQuoted => {
            let inner = src.strip_prefix('"')?.strip_suffix('"')?;
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c != '\\' {
                    out.push(c);
                    continue;
                }
                out.push(match chars.next()? {
                    '\\' => '\\',
                    '"' => '"',
                    '/' => '/',
                    'n' => '\n',
                    't' => '\t',
                    '0' => '\0',
                    _ => return None,
                });
            }
            Some(out)
        }
        Style::Block => None,
    }
}

fn double_quote(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => return None,
            c => out.push(c),
        }
    }
    out.push('"');
    Some(out)
}

/// What a plain scalar would be read as by a YAML 1.1 reader (Kubernetes' sigs.k8s.io/yaml and
/// Helm read 1.1: `yes`/`on` are booleans, `010` is octal), or None for a string. Deliberately
/// wider than YAML 1.2 so the file means the same to every tool that reads it.
pub fn reads_as(s: &str) -> Option<&'static str> {
    const NULLS: &[&str] = &["", "~", "null", "Null", "NULL"];
    const BOOLS: &[&str] = &[
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false",
        "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
    ];
    if NULLS.contains(&s) {
        return Some("null");
    }
    if BOOLS.contains(&s) {
        return Some("a boolean");
    }
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    let lower = body.to_ascii_lowercase();
    if [".inf", ".nan"].contains(&lower.as_str()) || s.eq_ignore_ascii_case(".nan") {
        return Some("a float");
    }
    if let Some(rest) = lower
        .strip_prefix("0x")
        .or_else(|| lower.strip_prefix("0o"))
        .or_else(|| lower.strip_prefix("0b"))
        && !rest.is_empty()
        && rest.chars().all(|c| c.is_ascii_hexdigit() || c == '_')
    {
        return Some("an integer");
    }
    if !body.is_empty() && body.chars().all(|c| c.is_ascii_digit() || c == '_') {
        return Some("an integer");
    }
    // Sexagesimal (YAML 1.1): 1:20, 190:20:30.
    if body.contains(':')
        && body
            .split(':')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    {
        return Some("a number (base 60)");
    }
    if is_float(body) {
        return Some("a float");
    }
    None
}

fn is_float(s: &str) -> bool {
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let digits = |p: &str| p.chars().all(|c| c.is_ascii_digit() || c == '_');
    let mantissa_ok = match mantissa.split_once('.') {
        Some((a, b)) => digits(a) && digits(b) && !(a.is_empty() && b.is_empty()),
        None => !mantissa.is_empty() && digits(mantissa) && exponent.is_some(),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && e.chars().all(|c| c.is_ascii_digit())
    });
    mantissa_ok && exponent_ok
}

/// Whether `s` can be written as a plain scalar and read back as the same text.
pub fn plain_safe(s: &str, in_flow: bool) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if s.starts_with(char::is_whitespace) || s.ends_with(char::is_whitespace) {
        return false;
    }
    if "#&*!|>'\"%@`{}[],".contains(first) {
        return false;
    }
    if "-?:".contains(first) && s[1..].chars().next().is_none_or(|c| c == ' ') {
        return false;
    }
    if s.contains(": ") || s.contains(" #") || s.ends_with(':') {
        return false;
    }
    if s.chars().any(|c| c.is_control()) {
        return false;
    }
    !(in_flow && s.contains([',', '[', ']', '{', '}']))
}

/// The line ending the file already uses (CRLF if its first line ends so).
pub fn line_ending(text: &str) -> &'static str {
    match text.find('\n') {
        Some(i) if i > 0 && text.as_bytes()[i - 1] == b'\r' => "\r\n",
        _ => "\n",
    }
}

/// Byte offset of the start of the line holding `pos`.
pub fn line_start(text: &str, pos: usize) -> usize {
    text[..pos].rfind('\n').map_or(0, |i| i + 1)
}

/// Byte offset just after the line ending of the line holding `pos` (or the end of the text).
pub fn after_line(text: &str, pos: usize) -> usize {
    // A block scalar's span ends at the start of the next line: that line is not its own.
    if pos > 0 && text.as_bytes()[pos - 1] == b'\n' {
        return pos;
    }
    text[pos..].find('\n').map_or(text.len(), |i| pos + i + 1)
}

/// 0-based column of `pos` in characters.
pub fn column(text: &str, pos: usize) -> usize {
    text[line_start(text, pos)..pos].chars().count()
}

/// Builds the splice that adds `key: value` as the last entry of the block mapping `map`, at the
/// indentation of its existing keys. Refuses flow mappings and empty ones (no indentation to copy).
pub fn insert_entry(text: &str, map: &Node, key: &str, value: &str) -> Option<Splice> {
    let Value::Map {
        entries,
        flow: false,
    } = &map.value
    else {
        return None;
    };
    let (first_key, _) = entries.first()?;
    let (last_key, last_value) = entries.last()?;
    let indent = " ".repeat(column(text, first_key.start));
    let eol = line_ending(text);
    // An empty value (`key:` and nothing) has an empty span that may sit on a later line.
    let owner = if last_value.start == last_value.end {
        last_key
    } else {
        last_value
    };
    let at = after_line(text, owner.end);
    let needs_eol = at == text.len() && !text.ends_with('\n');
    let mut with = String::new();
    if needs_eol {
        with.push_str(eol);
    }
    with.push_str(&format!("{indent}{key}: {value}"));
    if !needs_eol {
        with.push_str(eol);
    }
    Some(Splice {
        start: at,
        end: at,
        with,
    })
}

/// Builds the splice that removes the entry `(key, value)` when it owns its lines: the key is the
/// first thing on its line and the value is a scalar that ends on its own line.
pub fn remove_entry(text: &str, key: &Node, value: &Node) -> Option<Splice> {
    let start = line_start(text, key.start);
    if !text[start..key.start].chars().all(|c| c == ' ') {
        return None;
    }
    if !matches!(value.value, Value::Scalar { .. }) {
        return None;
    }
    Some(Splice {
        start,
        end: after_line(text, value.end),
        with: String::new(),
    })
}

/// Applies non-overlapping splices (any order) to `text`.
pub fn splice_all(text: &str, mut splices: Vec<Splice>) -> String {
    splices.sort_by_key(|s| (s.start, s.end));
    let mut out = String::with_capacity(text.len() + 64);
    let mut at = 0;
    for s in splices {
        debug_assert!(s.start >= at, "overlapping splices");
        out.push_str(&text[at..s.start]);
        out.push_str(&s.with);
        at = s.end;
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_key_is_refused_naming_both_lines() {
        let rows = [
            (
                "block",
                "a: 1\nb: 2\na: 3\n",
                Some((3, "\"a\" (first on line 1)")),
            ),
            (
                "nested",
                "x:\n  image: a\n  name: n\n  image: b\n",
                Some((4, "\"image\"")),
            ),
            ("flow", "{a: 1, a: 2}\n", Some((1, "\"a\""))),
            ("same key, other maps", "- a: 1\n- a: 2\n", None),
            ("same key, other documents", "a: 1\n---\na: 2\n", None),
        ];
        for (name, text, want) in rows {
            match (parse(text), want) {
                (Ok(_), None) => {}
                (Err(e), Some((line, needle))) => {
                    assert_eq!(e.line, line, "row {name:?}: {e:?}");
                    assert!(e.message.contains(needle), "row {name:?}: {e:?}");
                }
                (got, want) => panic!("row {name:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn spans_are_bytes_even_after_non_ascii_and_crlf() {
        let text = "a: héllo # ç\r\nb: 'x''y'\r\nc: \"q\\\"z\"\r\n";
        let docs = parse(text).unwrap();
        let root = &docs[0].root;
        let b = root.get("b").unwrap();
        assert_eq!(&text[b.start..b.end], "'x''y'");
        let c = root.get("c").unwrap();
        assert_eq!(&text[c.start..c.end], "\"q\\\"z\"");
        assert_eq!(c.line, 3);
        let text = "a: \"v1\"   # c\nb: 'it''s'  # 'x'\n";
        let root = &parse(text).unwrap()[0].root;
        let a = root.get("a").unwrap();
        assert_eq!(&text[a.start..a.end], "\"v1\"");
        let b = root.get("b").unwrap();
        assert_eq!(&text[b.start..b.end], "'it''s'");
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_key() {
        let text = "\u{FEFF}kind: Pod\nimage: 'a' # c\n";
        let docs = parse(text).unwrap();
        assert_eq!(docs[0].kind(), Some("Pod"));
        let image = docs[0].root.get("image").unwrap();
        assert_eq!(&text[image.start..image.end], "'a'");
    }

    #[test]
    fn replace_keeps_quoting_style() {
        let text = "a: 'v1'\nb: \"v1\"\nc: v1\n";
        let root = &parse(text).unwrap()[0].root;
        for (k, want) in [("a", "'v2'"), ("b", "\"v2\""), ("c", "v2")] {
            let s = replace_scalar(text, root.get(k).unwrap(), "v2", Kind::Str, false).unwrap();
            assert_eq!(s.with, want);
        }
    }

    #[test]
    fn plain_values_that_change_type_are_refused_or_quoted() {
        let text = "tag: v1\n";
        let node = parse(text).unwrap()[0].root.get("tag").unwrap().clone();
        for v in [
            "1.20", "yes", "on", "010", "1e3", "null", "~", "0x1F", "1:20", ".inf",
        ] {
            assert!(
                matches!(
                    replace_scalar(text, &node, v, Kind::Str, false),
                    Err(ScalarProblem::WouldChangeType { .. })
                ),
                "{v} should be refused"
            );
            let quoted = replace_scalar(text, &node, v, Kind::Str, true).unwrap();
            assert_eq!(quoted.with, format!("\"{v}\""));
        }
        for v in ["v1.20", "1.20.3", "latest", "sha-abc123", "1.2-rc1", "e5"] {
            assert_eq!(reads_as(v), None, "{v}");
        }
    }

    #[test]
    fn block_scalars_and_aliases_are_not_edited() {
        let text = "a: &x v1\nb: *x\nc: |\n  v1\n";
        let root = &parse(text).unwrap()[0].root;
        assert_eq!(
            replace_scalar(text, root.get("b").unwrap(), "v2", Kind::Str, false),
            Err(ScalarProblem::NotAScalar("an alias"))
        );
        assert_eq!(
            replace_scalar(text, root.get("c").unwrap(), "v2", Kind::Str, false),
            Err(ScalarProblem::BlockScalar)
        );
    }

    #[test]
    fn multi_line_plain_scalars_are_refused_not_corrupted() {
        let text = "a: one\n  two\n";
        let root = &parse(text).unwrap()[0].root;
        assert!(matches!(
            replace_scalar(text, root.get("a").unwrap(), "v2", Kind::Str, false),
            Err(ScalarProblem::SpanMismatch { .. })
        ));
    }

    #[test]
    fn insert_entry_copies_indentation_and_line_ending() {
        let text = "images:\r\n- name: app # the app\r\n  newName: x\r\nother: 1\r\n";
        let root = &parse(text).unwrap()[0].root;
        let entry = &root.get("images").unwrap().items()[0];
        let s = insert_entry(text, entry, "newTag", "v2").unwrap();
        assert_eq!(
            splice_all(text, vec![s]),
            "images:\r\n- name: app # the app\r\n  newName: x\r\n  newTag: v2\r\nother: 1\r\n"
        );
    }

    #[test]
    fn insert_entry_after_an_empty_value() {
        let text = "spec:\n  a: 1\n  b:\n\nnext: 2\n";
        let root = &parse(text).unwrap()[0].root;
        let s = insert_entry(text, root.get("spec").unwrap(), "c", "3").unwrap();
        assert_eq!(
            splice_all(text, vec![s]),
            "spec:\n  a: 1\n  b:\n  c: 3\n\nnext: 2\n"
        );
    }

    #[test]
    fn insert_entry_at_end_of_file_without_newline() {
        let text = "spec:\n  a: 1";
        let root = &parse(text).unwrap()[0].root;
        let s = insert_entry(text, root.get("spec").unwrap(), "b", "2").unwrap();
        assert_eq!(splice_all(text, vec![s]), "spec:\n  a: 1\n  b: 2");
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.line >= 1, "{e:?}");
    }
}
