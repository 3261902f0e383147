//! JSON values as clients send them: a validating parser that keeps every number's exact
//! text, and the two writers built on it — compact (what is stored and served) and
//! canonical (what idempotency fingerprints hash).
//!
//! Invariants (SPEC §2 "Values are stored exactly"):
//! - The grammar is RFC 8259's: a body that is not a JSON text is a [`ParseError::Syntax`]
//!   (lone surrogates in `\u` escapes and unescaped control characters included).
//! - A number is kept as the client's text (`Json::Number`), validated against RFC 8259
//!   §6; it is never converted through f64 or i64, whatever its magnitude or precision.
//! - Strings are decoded; `compact` re-escapes them, so escapes may be respelled
//!   (`"\u00e9"` comes back as `"é"`) but the decoded string never changes.
//! - Duplicate keys in one object are refused ([`ParseError::DuplicateKey`]): "last one
//!   wins" would store one value while the client may believe it sent the other.
//! - Nesting is bounded by `JSON_NESTING_DEPTH_MAX` (the body object is level 1); a deeper
//!   but otherwise valid text is [`ParseError::TooDeep`], an invalid one stays `Syntax`.
//!   Parsing and writing recurse at most that deep, which keeps the stack bounded.
//! - `canonical` is equal for two values exactly when they are equal as JSON values:
//!   object keys sorted bytewise, numbers by exact decimal value (`1` = `1.0` = `1e0` =
//!   `10E-1`, `-0` = `0`), strings and literals by value, arrays in order.

use crate::limits::JSON_NESTING_DEPTH_MAX;

/// A parsed JSON value that remembers each number's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Json {
    Null,
    Bool(bool),
    /// The client's number text, e.g. `-0.9574343289165503e+10` (RFC 8259 §6 grammar).
    Number(Box<str>),
    String(String),
    Array(Vec<Json>),
    Object(Object),
}

/// An object's members in the client's order; keys are unique (the parser refuses
/// duplicates).
pub type Object = Vec<(String, Json)>;

/// Why a body is not accepted. `offset` is a byte offset into the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{what} at byte {offset}")]
    Syntax { offset: usize, what: &'static str },
    #[error("duplicate key {key:?} in an object at byte {offset}")]
    DuplicateKey { offset: usize, key: String },
    #[error("JSON nesting is deeper than {limit} levels")]
    TooDeep { limit: usize },
}

impl Json {
    /// The members when this is an object.
    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Json::Object(m) => Some(m),
            _ => None,
        }
    }

    /// The value when this is a number written as a plain non-negative integer (digits
    /// only: `1.0` and `1e2` are not) that fits u64.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Json::Number(t) if t.bytes().all(|b| b.is_ascii_digit()) => t.parse().ok(),
            _ => None,
        }
    }

    /// The value when this is a number whose exact decimal value is a non-negative integer
    /// that fits u64, however it is spelled: `7`, `7.0`, `0.7e1`, `70e-1`, `-0` (SPEC §2:
    /// numbers compare by exact decimal value, and JSON Schema calls `7.0` an integer).
    /// Never rounds: `7.5`, `1e-1` and `-1` are not; huge exponents are refused without
    /// expanding them.
    pub fn as_integral_u64(&self) -> Option<u64> {
        let Json::Number(t) = self else { return None };
        let (negative, t) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, &t[..]),
        };
        let (mantissa, exponent) = match t.find(['e', 'E']) {
            Some(i) => (&t[..i], t[i + 1..].parse::<i64>().ok()?),
            None => (t, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        // The value is digits × 10^(exponent − frac.len()); drop leading zeros first.
        let digits: String = format!("{int}{frac}");
        let digits = digits.trim_start_matches('0');
        if digits.is_empty() {
            return Some(0); // 0, -0, 0.000e5: zero
        }
        if negative {
            return None;
        }
        let shift = exponent.checked_sub(frac.len() as i64)?;
        let (kept, dropped) = if shift >= 0 {
            if digits.len() as i64 + shift > 20 {
                return None; // more than u64's 20 digits
            }
            (format!("{digits}{}", "0".repeat(shift as usize)), String::new())
        } else {
            let cut = digits.len() as i64 + shift;
            if cut <= 0 {
                return None; // below 1 and not zero
            }
            (digits[..cut as usize].to_string(), digits[cut as usize..].to_string())
        };
        if !dropped.bytes().all(|b| b == b'0') {
            return None;
        }
        kept.parse().ok()
    }
}

/// Parses one JSON text (surrounding whitespace allowed) into a [`Json`].
pub fn parse(body: &[u8]) -> Result<Json, ParseError> {
    let text = std::str::from_utf8(body).map_err(|e| ParseError::Syntax { offset: e.valid_up_to(), what: "invalid UTF-8" })?;
    let mut p = Parser { text, bytes: body, pos: 0 };
    let result = p.skip_ws().and_then(|_| p.value(1)).and_then(|v| {
        p.skip_ws()?;
        if p.pos != body.len() {
            return Err(p.error("trailing characters after the JSON value"));
        }
        Ok(v)
    });
    match result {
        // Too deep for the tree, but is the text valid JSON at all? Syntax wins.
        Err(ParseError::TooDeep { limit }) => match validate_iteratively(text) {
            Err(e) => Err(e),
            Ok(()) => Err(ParseError::TooDeep { limit }),
        },
        other => other,
    }
}

/// One member of a body object as the fast path sees it ([`scan_object`]): spans of the
/// body, nothing decoded or copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawMember<'a> {
    /// The key as written, which is also its decoded value (keys with escapes are not
    /// taken by the fast path).
    pub key: &'a str,
    /// The value's text, from its first byte to its last.
    pub value: &'a str,
    /// `value` is already the compact form of the value (no whitespace between tokens,
    /// no escape in any string): `compact(&parse(value)?) == value`.
    pub compact: bool,
}

/// The fast path of body parsing (issue #13, "JSON once"): checks `body` by the same
/// grammar and limits as [`parse`] without building a [`Json`] tree, and returns the
/// members of the body object as spans. `None` whenever it is not sure: anything
/// [`parse`] refuses (syntax, repeated keys, depth), a body that is not an object, or a key
/// with an escape anywhere in it. A caller then parses with [`parse`], which gives the
/// exact error; so this never decides an error, only skips work for the common body.
/// Property-tested against [`parse`] (module `properties`).
pub fn scan_object(body: &[u8]) -> Option<Vec<RawMember<'_>>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut scan = Scan { text, bytes: body, pos: 0, compact: true, keys: Vec::new() };
    scan.ws();
    if scan.peek()? != b'{' {
        return None;
    }
    scan.pos += 1;
    let mut members: Vec<RawMember<'_>> = Vec::with_capacity(8);
    scan.ws();
    if scan.peek()? == b'}' {
        scan.pos += 1;
    } else {
        loop {
            scan.ws();
            let key = scan.key()?;
            if members.len() < DUPLICATE_LINEAR_SCAN_MEMBERS_MAX && members.iter().any(|m| m.key == key) {
                return None;
            }
            scan.ws();
            scan.expect(b':')?;
            scan.ws();
            let start = scan.pos;
            scan.compact = true;
            scan.value(2)?;
            members.push(RawMember { key, value: &text[start..scan.pos], compact: scan.compact });
            scan.ws();
            match scan.peek()? {
                b',' => scan.pos += 1,
                b'}' => {
                    scan.pos += 1;
                    break;
                }
                _ => return None,
            }
        }
        if members.len() > DUPLICATE_LINEAR_SCAN_MEMBERS_MAX && repeated(members.iter().map(|m| m.key)).is_some() {
            return None;
        }
    }
    scan.ws();
    (scan.pos == body.len()).then_some(members)
}

/// The validating scanner behind [`scan_object`]: the grammar of [`Parser`], answering
/// only "valid, and is it compact?" (`None` = not sure; see there).
struct Scan<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// Cleared by whitespace between tokens or an escape in a string.
    compact: bool,
    /// The keys of the objects being scanned, innermost last (repeats are looked for
    /// among the keys of the innermost object only).
    keys: Vec<&'a str>,
}

impl<'a> Scan<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn ws(&mut self) {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
        if self.pos != start {
            self.compact = false;
        }
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| self.pos += 1)
    }

    /// A string's contents as written (between the quotes).
    fn string(&mut self) -> Option<&'a str> {
        let (end, _) = scan_string(self.text, self.pos, false).ok()?;
        let inner = &self.text[self.pos + 1..end - 1];
        self.pos = end;
        if inner.contains('\\') {
            self.compact = false;
        }
        Some(inner)
    }

    /// An object key without escapes.
    fn key(&mut self) -> Option<&'a str> {
        if self.peek()? != b'"' {
            return None;
        }
        let key = self.string()?;
        (!key.contains('\\')).then_some(key)
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'{' if depth <= JSON_NESTING_DEPTH_MAX => self.object(depth),
            b'[' if depth <= JSON_NESTING_DEPTH_MAX => self.array(depth),
            b'"' => self.string().map(drop),
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            b'-' | b'0'..=b'9' => {
                self.pos = scan_number(self.bytes, self.pos).ok()?;
                Some(())
            }
            _ => None,
        }
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        self.bytes[self.pos..].starts_with(word.as_bytes()).then(|| self.pos += word.len())
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        self.pos += 1; // '['
        self.ws();
        if self.peek()? == b']' {
            self.pos += 1;
            return Some(());
        }
        loop {
            self.ws();
            self.value(depth + 1)?;
            self.ws();
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn object(&mut self, depth: usize) -> Option<()> {
        self.pos += 1; // '{'
        let first = self.keys.len();
        self.ws();
        if self.peek()? == b'}' {
            self.pos += 1;
            return Some(());
        }
        loop {
            self.ws();
            let key = self.key()?;
            let siblings = &self.keys[first..];
            if siblings.len() < DUPLICATE_LINEAR_SCAN_MEMBERS_MAX && siblings.contains(&key) {
                return None;
            }
            self.keys.push(key);
            self.ws();
            self.expect(b':')?;
            self.ws();
            self.value(depth + 1)?;
            self.ws();
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    let wide = self.keys.len() - first > DUPLICATE_LINEAR_SCAN_MEMBERS_MAX;
                    let repeat = wide && repeated(self.keys[first..].iter().copied()).is_some();
                    self.keys.truncate(first);
                    return (!repeat).then_some(());
                }
                _ => return None,
            }
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn error(&self, what: &'static str) -> ParseError {
        ParseError::Syntax { offset: self.pos, what }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) -> Result<(), ParseError> {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
        Ok(())
    }

    fn expect(&mut self, b: u8, what: &'static str) -> Result<(), ParseError> {
        if self.peek() != Some(b) {
            return Err(self.error(what));
        }
        self.pos += 1;
        Ok(())
    }

    /// A value at nesting level `depth` (containers count; the outermost value is 1).
    fn value(&mut self, depth: usize) -> Result<Json, ParseError> {
        match self.peek() {
            None => Err(self.error("unexpected end of input")),
            Some(b'{') => {
                check_depth(depth)?;
                self.object(depth)
            }
            Some(b'[') => {
                check_depth(depth)?;
                self.array(depth)
            }
            Some(b'"') => Ok(Json::String(self.string()?)),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'n') => self.literal("null", Json::Null),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.pos;
                self.pos = scan_number(self.bytes, self.pos)?;
                Ok(Json::Number(self.text[start..self.pos].into()))
            }
            Some(_) => Err(self.error("expected a JSON value")),
        }
    }

    fn literal(&mut self, word: &'static str, v: Json) -> Result<Json, ParseError> {
        if !self.bytes[self.pos..].starts_with(word.as_bytes()) {
            return Err(self.error("invalid literal"));
        }
        self.pos += word.len();
        Ok(v)
    }

    fn array(&mut self, depth: usize) -> Result<Json, ParseError> {
        self.pos += 1; // '['
        let mut items = Vec::new();
        self.skip_ws()?;
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Json::Array(items));
        }
        loop {
            self.skip_ws()?;
            items.push(self.value(depth + 1)?);
            self.skip_ws()?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Json::Array(items));
                }
                _ => return Err(self.error("expected ',' or ']' in an array")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, ParseError> {
        let start = self.pos;
        self.pos += 1; // '{'
        let mut members: Object = Vec::new();
        self.skip_ws()?;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Json::Object(members));
        }
        loop {
            self.skip_ws()?;
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a string key in an object"));
            }
            let key_offset = self.pos;
            let key = self.string()?;
            if members.len() < DUPLICATE_LINEAR_SCAN_MEMBERS_MAX && members.iter().any(|(k, _)| *k == key) {
                return Err(ParseError::DuplicateKey { offset: key_offset, key });
            }
            self.skip_ws()?;
            self.expect(b':', "expected ':' after an object key")?;
            self.skip_ws()?;
            let v = self.value(depth + 1)?;
            members.push((key, v));
            self.skip_ws()?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    if members.len() > DUPLICATE_LINEAR_SCAN_MEMBERS_MAX {
                        if let Some(key) = repeated(members.iter().map(|(k, _)| k.as_str())) {
                            return Err(ParseError::DuplicateKey { offset: start, key: key.to_string() });
                        }
                    }
                    self.pos += 1;
                    return Ok(Json::Object(members));
                }
                _ => return Err(self.error("expected ',' or '}' in an object")),
            }
        }
    }

    /// A string literal starting at `"`, decoded.
    fn string(&mut self) -> Result<String, ParseError> {
        let (end, decoded) = scan_string(self.text, self.pos, true)?;
        self.pos = end;
        Ok(decoded.unwrap_or_default())
    }
}

fn check_depth(depth: usize) -> Result<(), ParseError> {
    if depth > JSON_NESTING_DEPTH_MAX {
        return Err(ParseError::TooDeep { limit: JSON_NESTING_DEPTH_MAX });
    }
    Ok(())
}

/// Objects up to this many members are checked for a repeated key as each member is
/// read (a linear scan); wider ones once more when they close (sort, then compare
/// neighbours), so a wide object costs O(n log n), not O(n²).
const DUPLICATE_LINEAR_SCAN_MEMBERS_MAX: usize = 16;

/// A key that occurs twice among `keys` (sort, then compare neighbours: O(n log n)); used
/// on wide objects once they are complete, by the parser and the fast-path scanner.
fn repeated<'a>(keys: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut keys: Vec<&str> = keys.collect();
    keys.sort_unstable();
    keys.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
}

/// Scans an RFC 8259 §6 number starting at `pos`; returns the offset just past it.
fn scan_number(b: &[u8], mut pos: usize) -> Result<usize, ParseError> {
    let err = |offset, what| ParseError::Syntax { offset, what };
    let digits = |b: &[u8], mut p: usize| {
        let start = p;
        while b.get(p).is_some_and(u8::is_ascii_digit) {
            p += 1;
        }
        (p, p - start)
    };
    if b.get(pos) == Some(&b'-') {
        pos += 1;
    }
    match b.get(pos) {
        Some(b'0') => pos += 1,
        Some(b'1'..=b'9') => pos = digits(b, pos).0,
        _ => return Err(err(pos, "invalid number")),
    }
    if b.get(pos) == Some(&b'.') {
        let (p, n) = digits(b, pos + 1);
        if n == 0 {
            return Err(err(p, "invalid number: digits expected after '.'"));
        }
        pos = p;
    }
    if matches!(b.get(pos), Some(b'e' | b'E')) {
        pos += 1;
        if matches!(b.get(pos), Some(b'+' | b'-')) {
            pos += 1;
        }
        let (p, n) = digits(b, pos);
        if n == 0 {
            return Err(err(p, "invalid number: digits expected in the exponent"));
        }
        pos = p;
    }
    Ok(pos)
}

fn hex4(b: &[u8], pos: usize) -> Result<u32, ParseError> {
    let quad = b.get(pos..pos + 4).ok_or(ParseError::Syntax { offset: pos, what: "truncated \\u escape" })?;
    let mut v = 0u32;
    for &c in quad {
        let d = (c as char).to_digit(16).ok_or(ParseError::Syntax { offset: pos, what: "invalid \\u escape" })?;
        v = v * 16 + d;
    }
    Ok(v)
}

/// Scans a string literal whose opening quote is at `pos`; returns the offset past the
/// closing quote and, when `decode`, the decoded text.
fn scan_string(text: &str, pos: usize, decode: bool) -> Result<(usize, Option<String>), ParseError> {
    let b = text.as_bytes();
    let mut out = if decode { Some(String::new()) } else { None };
    let mut i = pos + 1;
    let mut run = i; // start of the current unescaped run
    loop {
        match b.get(i) {
            None => return Err(ParseError::Syntax { offset: i, what: "unterminated string" }),
            Some(b'"') => {
                if let Some(o) = out.as_mut() {
                    o.push_str(&text[run..i]);
                }
                return Ok((i + 1, out));
            }
            Some(c) if *c < 0x20 => return Err(ParseError::Syntax { offset: i, what: "control character in a string" }),
            Some(b'\\') => {
                if let Some(o) = out.as_mut() {
                    o.push_str(&text[run..i]);
                }
                let esc = b.get(i + 1).copied();
                let mut next = i + 2;
                let c = match esc {
                    Some(b'"') => '"',
                    Some(b'\\') => '\\',
                    Some(b'/') => '/',
                    Some(b'b') => '\u{08}',
                    Some(b'f') => '\u{0C}',
                    Some(b'n') => '\n',
                    Some(b'r') => '\r',
                    Some(b't') => '\t',
                    Some(b'u') => {
                        let hi = hex4(b, i + 2)?;
                        next = i + 6;
                        let code = if (0xD800..0xDC00).contains(&hi) {
                            // A high surrogate must be followed by an escaped low one.
                            if b.get(next) != Some(&b'\\') || b.get(next + 1) != Some(&b'u') {
                                return Err(ParseError::Syntax { offset: i, what: "lone surrogate in a \\u escape" });
                            }
                            let lo = hex4(b, next + 2)?;
                            if !(0xDC00..0xE000).contains(&lo) {
                                return Err(ParseError::Syntax { offset: i, what: "lone surrogate in a \\u escape" });
                            }
                            next += 6;
                            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                        } else if (0xDC00..0xE000).contains(&hi) {
                            return Err(ParseError::Syntax { offset: i, what: "lone surrogate in a \\u escape" });
                        } else {
                            hi
                        };
                        // Surrogates were excluded above, so this is a valid scalar value.
                        char::from_u32(code).ok_or(ParseError::Syntax { offset: i, what: "invalid \\u escape" })?
                    }
                    _ => return Err(ParseError::Syntax { offset: i, what: "invalid escape" }),
                };
                if let Some(o) = out.as_mut() {
                    o.push(c);
                }
                i = next;
                run = i;
            }
            Some(_) => i += 1,
        }
    }
}

/// Checks the JSON grammar without building anything and without recursion (an explicit
/// stack, bounded by the body's length): used only to tell a too-deep valid text from an
/// invalid one.
fn validate_iteratively(text: &str) -> Result<(), ParseError> {
    let b = text.as_bytes();
    let mut stack: Vec<u8> = Vec::new(); // b'[' or b'{'
    let mut pos = 0;
    let ws = |pos: &mut usize| {
        while matches!(b.get(*pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            *pos += 1;
        }
    };
    let err = |offset, what| ParseError::Syntax { offset, what };
    // An object member's `"key" :`, starting at the key; returns where its value starts.
    let member_key = |mut pos: usize| -> Result<usize, ParseError> {
        if b.get(pos) != Some(&b'"') {
            return Err(err(pos, "expected a string key in an object"));
        }
        pos = scan_string(text, pos, false)?.0;
        ws(&mut pos);
        if b.get(pos) != Some(&b':') {
            return Err(err(pos, "expected ':' after an object key"));
        }
        Ok(pos + 1)
    };
    'value: loop {
        ws(&mut pos);
        // A value.
        match b.get(pos) {
            Some(b'[') => {
                stack.push(b'[');
                pos += 1;
                ws(&mut pos);
                if b.get(pos) == Some(&b']') {
                    stack.pop();
                    pos += 1;
                } else {
                    continue 'value;
                }
            }
            Some(b'{') => {
                stack.push(b'{');
                pos += 1;
                ws(&mut pos);
                if b.get(pos) == Some(&b'}') {
                    stack.pop();
                    pos += 1;
                } else {
                    pos = member_key(pos)?;
                    continue 'value;
                }
            }
            Some(b'"') => pos = scan_string(text, pos, false)?.0,
            Some(b'-' | b'0'..=b'9') => pos = scan_number(b, pos)?,
            Some(_) => {
                let word = ["true", "false", "null"].into_iter().find(|w| b[pos..].starts_with(w.as_bytes()));
                pos += word.ok_or(err(pos, "expected a JSON value"))?.len();
            }
            None => return Err(err(pos, "unexpected end of input")),
        }
        // After a value: close containers or move to the next element.
        loop {
            ws(&mut pos);
            let Some(&open) = stack.last() else {
                return if pos == b.len() { Ok(()) } else { Err(err(pos, "trailing characters after the JSON value")) };
            };
            match (open, b.get(pos)) {
                (b'[', Some(b']')) | (b'{', Some(b'}')) => {
                    stack.pop();
                    pos += 1;
                }
                (b'[', Some(b',')) => {
                    pos += 1;
                    continue 'value;
                }
                (b'{', Some(b',')) => {
                    pos += 1;
                    ws(&mut pos);
                    pos = member_key(pos)?;
                    continue 'value;
                }
                _ => return Err(err(pos, "expected ',' or a closing bracket")),
            }
        }
    }
}

// ---- writers -------------------------------------------------------------------------

/// Writes `s` as a JSON string literal, escaping exactly as serde_json does
/// (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, other C0 controls as `\u00XX`).
pub fn push_json_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let short = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            '\u{08}' => "\\b",
            '\u{0C}' => "\\f",
            c if (c as u32) < 0x20 => "",
            _ => continue,
        };
        // `start` and `i` are both char boundaries (char_indices / after an ASCII char).
        out.push_str(&s[start..i]);
        if short.is_empty() {
            let b = c as u32 as usize;
            out.push_str("\\u00");
            out.push(HEX[b >> 4] as char);
            out.push(HEX[b & 0xF] as char);
        } else {
            out.push_str(short);
        }
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// The two spellings of a value: compact (stored and served: the client's key order,
/// numbers exactly as sent) and canonical (hashed for idempotency: keys sorted bytewise,
/// numbers by [`canonical_number`]). Both drop whitespace and re-escape strings the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Compact,
    Canonical,
}

fn write(out: &mut String, v: &Json, form: Form) {
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(true) => out.push_str("true"),
        Json::Bool(false) => out.push_str("false"),
        Json::Number(text) => match form {
            Form::Compact => out.push_str(text),
            Form::Canonical => canonical_number(out, text),
        },
        Json::String(s) => push_json_string(out, s),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(out, item, form);
            }
            out.push(']');
        }
        Json::Object(members) => write_object(out, members, form),
    }
}

fn write_object(out: &mut String, members: &Object, form: Form) {
    match form {
        // Client order: no need to collect the members first.
        Form::Compact => write_members(out, members.iter(), form),
        Form::Canonical => {
            let mut sorted: Vec<&(String, Json)> = members.iter().collect();
            // String's Ord is bytewise on UTF-8, which is what "canonical" promises; keys
            // are unique, so the order is total.
            sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            write_members(out, sorted.into_iter(), form)
        }
    }
}

fn write_members<'a>(out: &mut String, members: impl Iterator<Item = &'a (String, Json)>, form: Form) {
    out.push('{');
    for (i, (k, v)) in members.enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_string(out, k);
        out.push(':');
        write(out, v, form);
    }
    out.push('}');
}

/// Compact JSON: no whitespace, the client's key order, numbers exactly as sent.
pub fn write_compact(out: &mut String, v: &Json) {
    write(out, v, Form::Compact)
}

/// Compact JSON text of a value (what is stored and served).
pub fn compact(v: &Json) -> String {
    let mut out = String::new();
    write(&mut out, v, Form::Compact);
    out
}

/// Compact JSON text of an object.
pub fn compact_object(members: &Object) -> String {
    let mut out = String::new();
    write_object(&mut out, members, Form::Compact);
    out
}

/// Canonical JSON: keys sorted bytewise at every depth, no whitespace, every number in
/// the canonical spelling of [`canonical_number`]. Equal exactly for equal JSON values.
pub fn canonical(v: &Json) -> String {
    let mut out = String::new();
    write(&mut out, v, Form::Canonical);
    out
}

/// Writes the canonical spelling of a valid JSON number text: `0` for any zero, else
/// `[-]D[.DDD]eX` in scientific notation with no leading or trailing zero in the digits
/// and the exponent in plain decimal — one spelling per decimal value, computed exactly
/// (the exponent may be any length: big exponents are added digit by digit).
pub fn canonical_number(out: &mut String, text: &str) {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, "0"),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    // value = 0.DIGITS... as digits d1 d2 ... dn × 10^(exp - frac.len())
    let all = int.bytes().chain(frac.bytes());
    let leading = all.clone().take_while(|&c| c == b'0').count();
    let total = int.len() + frac.len();
    if leading == total {
        out.push('0');
        return;
    }
    let digits: Vec<u8> = all.skip(leading).collect();
    let trailing = digits.iter().rev().take_while(|&&c| c == b'0').count();
    let significant = &digits[..digits.len() - trailing];
    // value = D × 10^(exp - frac.len()) with D = d1 d2 … dn (n = digits.len(), trailing
    // zeros included) = d1.d2…dn × 10^(exp - frac.len() + n - 1); trailing zeros only
    // leave the mantissa. shift may be negative.
    let shift = digits.len() as i64 - 1 - frac.len() as i64;
    if negative {
        out.push('-');
    }
    out.push(significant[0] as char);
    if significant.len() > 1 {
        out.push('.');
        // ASCII digits.
        out.push_str(std::str::from_utf8(&significant[1..]).unwrap_or_default());
    }
    out.push('e');
    add_to_decimal(out, exponent, shift);
}

/// Writes `text + delta`, where `text` is a JSON exponent (`[+-]?DIGITS`, any length) and
/// `delta` is small; exact at any length.
fn add_to_decimal(out: &mut String, text: &str, delta: i64) {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let digits = digits.trim_start_matches('0');
    // Fast path: fits i128 comfortably.
    if digits.len() <= 30 {
        let magnitude: i128 = if digits.is_empty() { 0 } else { digits.parse().unwrap_or(0) };
        let value = if negative { -magnitude } else { magnitude } + delta as i128;
        out.push_str(&value.to_string());
        return;
    }
    // Slow path: |E| has more than 30 digits and |delta| < 2^63 < 10^19, so the sign of
    // the result is the sign of E and only the magnitude changes: |E| ± |delta|.
    let grows = negative == (delta < 0);
    let mut mag: Vec<u8> = digits.bytes().rev().map(|c| c - b'0').collect(); // little-endian
    let mut carry = delta.unsigned_abs() as u128;
    let mut i = 0;
    if grows {
        while carry > 0 {
            if i == mag.len() {
                mag.push(0);
            }
            let sum = mag[i] as u128 + carry % 10;
            mag[i] = (sum % 10) as u8;
            carry = carry / 10 + sum / 10;
            i += 1;
        }
    } else {
        let mut borrow = 0i128;
        while carry > 0 || borrow > 0 {
            let sub = (carry % 10) as i128 + borrow;
            let d = mag[i] as i128 - sub;
            borrow = if d < 0 { 1 } else { 0 };
            mag[i] = (d + 10 * borrow) as u8;
            carry /= 10;
            i += 1;
        }
    }
    while mag.len() > 1 && mag.last() == Some(&0) {
        mag.pop();
    }
    if negative {
        out.push('-');
    }
    out.extend(mag.iter().rev().map(|d| (b'0' + d) as char));
}

/// Identity of an event's content for idempotency (SPEC §3): xxh3-128 over the canonical
/// JSON array `[type, payload, actor, source|null, metadata, refs]`. A JSON array of
/// self-delimiting JSON texts is unambiguous, so distinct tuples never share an encoding.
/// Callers pass `{}` for omitted metadata/refs and `None` for an omitted source, which
/// makes omission and the explicit default equivalent.
///
/// The JSON arguments are the compact texts validation produced (valid JSON objects by
/// construction); they are parsed again here, so only appends with an idempotency key
/// pay for a tree. Should one ever fail to parse, its text is hashed as a string instead
/// (deterministic on every replica; no panic on the request path).
pub fn fingerprint(event_type: &str, payload_json: &str, actor: &str, source: Option<&str>, metadata_json: &str, refs_json: &str) -> u128 {
    let tree = |text: &str| parse(text.as_bytes()).unwrap_or_else(|_| Json::String(text.to_string()));
    fingerprint_of(event_type, &tree(payload_json), actor, source, &tree(metadata_json), &tree(refs_json))
}

fn fingerprint_of(event_type: &str, payload: &Json, actor: &str, source: Option<&str>, metadata: &Json, refs: &Json) -> u128 {
    let mut out = String::with_capacity(128);
    out.push('[');
    push_json_string(&mut out, event_type);
    out.push(',');
    write(&mut out, payload, Form::Canonical);
    out.push(',');
    push_json_string(&mut out, actor);
    out.push(',');
    match source {
        Some(s) => push_json_string(&mut out, s),
        None => out.push_str("null"),
    }
    out.push(',');
    write(&mut out, metadata, Form::Canonical);
    out.push(',');
    write(&mut out, refs, Form::Canonical);
    out.push(']');
    xxhash_rust::xxh3::xxh3_128(out.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Json {
        parse(text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn canon_num(text: &str) -> String {
        let mut out = String::new();
        canonical_number(&mut out, text);
        out
    }

    fn obj(text: &str) -> Object {
        match p(text) {
            Json::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn fp(t: &str, payload: &str, a: &str, s: Option<&str>, m: &str, r: &str) -> u128 {
        fingerprint(t, &compact(&p(payload)), a, s, &compact_object(&obj(m)), &compact_object(&obj(r)))
    }

    #[test]
    fn scan_object_leaves_every_doubtful_body_to_the_parser() {
        let spans = scan_object(br#" {"a":{"b":[1,"x",null]}, "c" : "d\n"} "#).expect("a plain body");
        assert_eq!((spans[0].key, spans[0].value, spans[0].compact), ("a", r#"{"b":[1,"x",null]}"#, true));
        assert_eq!((spans[1].key, spans[1].value, spans[1].compact), ("c", r#""d\n""#, false), "an escape is not compact");
        assert!(!scan_object(br#"{"a":{ "b":1}}"#).expect("valid")[0].compact, "inner whitespace");
        let wide_repeat = format!("{{\"o\":{{{}\"k0\":0}}}}", (0..20).map(|i| format!("\"k{i}\":{i},")).collect::<String>());
        for refused in [
            &br#"{"a":1,"a":2}"#[..],
            br#"{"o":{"a":1,"a":2}}"#,
            wide_repeat.as_bytes(),
            br#"{"k\u0041":1}"#,
            br#"{"a":1}x"#,
            br#"[1]"#,
            br#"{"a":01}"#,
            br#"{"a":"\ud800"}"#,
            b"{\"a\":\"\xff\"}",
            b"",
        ] {
            assert_eq!(scan_object(refused), None, "{}", String::from_utf8_lossy(refused));
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(JSON_NESTING_DEPTH_MAX), "]".repeat(JSON_NESTING_DEPTH_MAX));
        assert_eq!(scan_object(deep.as_bytes()), None, "deeper than the limit");
        assert!(parse(deep.as_bytes()).is_err());
    }

    #[test]
    fn numbers_keep_their_exact_text() {
        for n in [
            "0.9574343289165503",
            "123456789012345678901234567890",
            "18446744073709551617",
            "-0",
            "1E+400",
            "1e-400",
            "0.10",
            "-12.5e-0003",
            "100000000000000000000000000000000000000000000000000000000000001",
        ] {
            let text = format!(r#"{{"x":{n}}}"#);
            assert_eq!(compact(&p(&text)), text);
        }
    }

    #[test]
    fn compact_removes_whitespace_and_keeps_key_order() {
        let v = p(" { \"z\" : 1 ,\n\"a\" : [ true , null , \"s\" ] , \"m\" : { } } ");
        assert_eq!(compact(&v), r#"{"z":1,"a":[true,null,"s"],"m":{}}"#);
    }

    #[test]
    fn strings_decode_and_reescape_to_the_same_value() {
        let v = p(r#"["\u00e9\/\b\f\n\r\t\"\\\u0001\ud83d\ude00 é"]"#);
        assert_eq!(v, Json::Array(vec![Json::String("é/\u{8}\u{c}\n\r\t\"\\\u{1}😀 é".into())]));
        assert_eq!(compact(&v), "[\"é/\\b\\f\\n\\r\\t\\\"\\\\\\u0001😀 é\"]");
    }

    #[test]
    fn string_escaping_matches_serde_json_for_every_control_character() {
        let s: String = (0u8..0x80).map(char::from).collect();
        let mut out = String::new();
        push_json_string(&mut out, &s);
        assert_eq!(out, serde_json::to_string(&s).expect("serialize"));
    }

    #[test]
    fn invalid_texts_are_syntax_errors() {
        for bad in [
            "",
            " ",
            "{",
            "}",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{a:1}",
            "01",
            "1.",
            ".5",
            "1e",
            "1e+",
            "-",
            "+1",
            "0x10",
            "NaN",
            "Infinity",
            "tru",
            "nul",
            "\"abc",
            "\"a\\x\"",
            "\"\\u12\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
            "\"a\tb\"",
            "[1] 2",
            "{\"a\":1}}",
            "[[]",
            "\u{feff}{}",
        ] {
            assert!(matches!(parse(bad.as_bytes()), Err(ParseError::Syntax { .. })), "{bad:?} accepted: {:?}", parse(bad.as_bytes()));
        }
        assert!(matches!(parse(b"\"\xff\""), Err(ParseError::Syntax { what: "invalid UTF-8", .. })));
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth_after_decoding() {
        for bad in [r#"{"a":1,"a":2}"#, r#"{"x":{"k":1,"\u006b":2}}"#, r#"[{"a":1,"b":2,"a":1}]"#] {
            assert!(matches!(parse(bad.as_bytes()), Err(ParseError::DuplicateKey { .. })), "{bad}");
        }
        let wide: Vec<String> = (0..100).map(|i| format!("\"k{i}\":{i}")).collect();
        let ok = format!("{{{}}}", wide.join(","));
        assert!(parse(ok.as_bytes()).is_ok());
        let dup = format!("{{{},\"k57\":0}}", wide.join(","));
        assert!(matches!(parse(dup.as_bytes()), Err(ParseError::DuplicateKey { key, .. }) if key == "k57"));
    }

    #[test]
    fn nesting_is_bounded_and_too_deep_valid_text_is_told_apart_from_invalid() {
        let max = JSON_NESTING_DEPTH_MAX;
        let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(parse(nest(max).as_bytes()).is_ok());
        assert_eq!(parse(nest(max + 1).as_bytes()), Err(ParseError::TooDeep { limit: max }));
        assert_eq!(parse(nest(100_000).as_bytes()), Err(ParseError::TooDeep { limit: max }));
        let deep_objects = format!("{}1{}", "{\"a\":".repeat(max + 5), "}".repeat(max + 5));
        assert_eq!(parse(deep_objects.as_bytes()), Err(ParseError::TooDeep { limit: max }));
        // Deep *and* invalid: a syntax error, found without recursion.
        let broken = "[".repeat(100_000);
        assert!(matches!(parse(broken.as_bytes()), Err(ParseError::Syntax { .. })));
        let broken = format!("{}1,]{}", "[".repeat(max + 2), "]".repeat(max + 1));
        assert!(matches!(parse(broken.as_bytes()), Err(ParseError::Syntax { .. })));
    }

    #[test]
    fn the_iterative_validator_agrees_with_the_parser() {
        for text in [
            "{}",
            "[]",
            "1",
            "\"s\"",
            "true",
            " null ",
            r#"{"a":[1,{"b":[]},"c"],"d":{}}"#,
            "[1,]",
            "{\"a\":}",
            "{,}",
            "[,1]",
            "{\"a\" 1}",
            "[1 2]",
            "{\"a\":1 \"b\":2}",
            "[]]",
            "{}{}",
            "[\"\\ud800\"]",
        ] {
            let tree = parse(text.as_bytes()).map(|_| ());
            assert_eq!(tree.is_ok(), validate_iteratively(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn canonical_numbers_are_equal_exactly_for_equal_decimal_values() {
        let same = [
            vec!["1", "1.0", "1e0", "10E-1", "0.1e1", "1.000e+0", "100e-2", "0.00001e5"],
            vec!["0", "-0", "0.0", "0e10", "-0.000e-7"],
            vec!["18446744073709551616", "1.8446744073709551616e19"],
            vec!["-1.5", "-15e-1", "-0.15E1"],
            vec!["1e400", "10e399", "0.1e401"],
        ];
        for group in &same {
            let first = canon_num(group[0]);
            for n in group {
                assert_eq!(canon_num(n), first, "{n} vs {}", group[0]);
            }
        }
        let distinct = ["1", "-1", "2", "1.1", "10", "0.1", "18446744073709551616", "18446744073709551617", "1e400", "1e-400", "0"];
        let canon: std::collections::HashSet<String> = distinct.iter().map(|n| canon_num(n)).collect();
        assert_eq!(canon.len(), distinct.len());
        assert_eq!(canon_num("0.9574343289165503"), "9.574343289165503e-1");
        assert_eq!(canon_num("123456789012345678901234567890"), "1.2345678901234567890123456789e29");
    }

    #[test]
    fn canonical_exponents_are_exact_at_any_length() {
        let huge = format!("1e{}", "9".repeat(40));
        assert_eq!(canon_num(&huge), format!("1e{}", "9".repeat(40)));
        // 10e(99..9) = 1e(100..0)
        assert_eq!(canon_num(&format!("10e{}", "9".repeat(40))), format!("1e1{}", "0".repeat(40)));
        // 0.01e-(10^40) = 1e-(10^40 + 2)
        assert_eq!(canon_num(&format!("0.01e-1{}", "0".repeat(40))), format!("1e-1{}2", "0".repeat(39)));
        // 1000e-(10^40) = 1e-(10^40 - 3)
        assert_eq!(canon_num(&format!("1000e-1{}", "0".repeat(40))), format!("1e-{}7", "9".repeat(39)));
        assert_eq!(canon_num("1e-000000000000000000000000000000000000000000000000000001"), "1e-1");
    }

    #[test]
    fn canonical_sorts_keys_bytewise_at_every_depth() {
        let v = p(r#"{ "b": 1, "a": { "z": [ {"y":2,"x":1} ], "c": null }, "A": true, "é": 0, "Z": 3 }"#);
        assert_eq!(canonical(&v), r#"{"A":true,"Z":3e0,"a":{"c":null,"z":[{"x":1e0,"y":2e0}]},"b":1e0,"é":0}"#);
    }

    #[test]
    fn fingerprint_ignores_key_order_and_number_spelling() {
        let a = fp("t", r#"{"a":1,"b":{"c":2.50,"d":[3]}}"#, "u", Some("s"), r#"{"m":1,"n":2}"#, r#"{"to_seq":1,"step":2}"#);
        let b = fp("t", r#"{"b":{"d":[30e-1],"c":25e-1},"a":1.0}"#, "u", Some("s"), r#"{"n":2,"m":1}"#, r#"{"step":2,"to_seq":1}"#);
        assert_eq!(a, b);
    }

    #[test]
    fn fingerprint_changes_when_any_field_changes() {
        let reference = fp("t", r#"{"a":1}"#, "u", Some("s"), r#"{"m":1}"#, r#"{"r":1}"#);
        let variants = [
            fp("t2", r#"{"a":1}"#, "u", Some("s"), r#"{"m":1}"#, r#"{"r":1}"#),
            fp("t", r#"{"a":2}"#, "u", Some("s"), r#"{"m":1}"#, r#"{"r":1}"#),
            fp("t", r#"{"a":"1"}"#, "u", Some("s"), r#"{"m":1}"#, r#"{"r":1}"#),
            fp("t", r#"{"a":1.0000000000000000000001}"#, "u", Some("s"), r#"{"m":1}"#, r#"{"r":1}"#),
            fp("t", r#"{"a":1}"#, "u2", Some("s"), r#"{"m":1}"#, r#"{"r":1}"#),
            fp("t", r#"{"a":1}"#, "u", Some("s2"), r#"{"m":1}"#, r#"{"r":1}"#),
            fp("t", r#"{"a":1}"#, "u", None, r#"{"m":1}"#, r#"{"r":1}"#),
            fp("t", r#"{"a":1}"#, "u", Some("s"), r#"{"m":2}"#, r#"{"r":1}"#),
            fp("t", r#"{"a":1}"#, "u", Some("s"), r#"{"m":1}"#, r#"{"r":2}"#),
            fp("t", r#"{"a":1}"#, "u", Some("s"), "{}", r#"{"r":1}"#),
        ];
        for (i, v) in variants.iter().enumerate() {
            assert_ne!(*v, reference, "variant {i} collided");
        }
    }

    #[test]
    fn fingerprint_does_not_confuse_field_boundaries() {
        assert_ne!(fp("ab", "{}", "c", None, "{}", "{}"), fp("a", "{}", "bc", None, "{}", "{}"));
        // A literal "null" source differs from an absent source.
        assert_ne!(fp("t", "{}", "u", Some("null"), "{}", "{}"), fp("t", "{}", "u", None, "{}", "{}"));
    }

    #[test]
    fn as_u64_accepts_only_plain_integers_that_fit() {
        assert_eq!(p("7").as_u64(), Some(7));
        assert_eq!(p("18446744073709551615").as_u64(), Some(u64::MAX));
        for n in ["18446744073709551616", "-1", "1.0", "1e2", "\"1\""] {
            assert_eq!(p(n).as_u64(), None, "{n}");
        }
    }
}

#[cfg(test)]
mod properties {
    //! Property tests: arbitrary documents (numbers of any magnitude and precision, deep
    //! and wide objects, escapes, non-ASCII) survive parse → compact exactly, and the
    //! canonical form is invariant under key order and number spelling but not under a
    //! change of value.
    use proptest::prelude::*;

    use super::*;

    /// A number text of the RFC 8259 grammar, sometimes far outside the f64 range.
    fn number_text() -> impl Strategy<Value = String> {
        (any::<bool>(), "(0|[1-9][0-9]{0,40})", proptest::option::of("[0-9]{1,30}"), proptest::option::of("[eE][+-]?[0-9]{1,4}")).prop_map(
            |(neg, int, frac, exp)| {
                format!(
                    "{}{int}{}{}",
                    if neg { "-" } else { "" },
                    frac.map(|f| format!(".{f}")).unwrap_or_default(),
                    exp.unwrap_or_default()
                )
            },
        )
    }

    pub(super) fn json_value() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::Bool),
            number_text().prop_map(|n| Json::Number(n.into())),
            any::<String>().prop_map(Json::String),
            "[a-z\u{e9}\u{1F600}\"\\\\/\n]{0,8}".prop_map(Json::String),
        ];
        leaf.prop_recursive(8, 96, 12, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..12).prop_map(Json::Array),
                prop::collection::vec((any::<String>(), inner), 0..12).prop_map(|members| {
                    let mut seen = std::collections::HashSet::new();
                    Json::Object(members.into_iter().filter(|(k, _)| seen.insert(k.clone())).collect())
                }),
            ]
        })
    }

    /// Writes `v` as a client might: random whitespace and, per string, either plain
    /// text or every non-ASCII character as `\u` escapes (surrogate pairs included).
    fn ws(out: &mut String, noise: &mut impl Iterator<Item = u8>) {
        let n = noise.next().unwrap_or(0);
        out.push_str(["", " ", "\n", "\t ", "\r\n  "][(n % 5) as usize]);
    }

    fn spell(out: &mut String, v: &Json, noise: &mut impl Iterator<Item = u8>) {
        match v {
            Json::String(s) => {
                ws(out, noise);
                if noise.next().unwrap_or(0).is_multiple_of(2) {
                    push_json_string(out, s);
                } else {
                    out.push('"');
                    for c in s.chars() {
                        match c {
                            '"' => out.push_str("\\\""),
                            '\\' => out.push_str("\\\\"),
                            c if (c as u32) < 0x20 || !c.is_ascii() => {
                                let mut units = [0u16; 2];
                                for u in c.encode_utf16(&mut units) {
                                    out.push_str(&format!("\\u{:04X}", u));
                                }
                            }
                            c => out.push(c),
                        }
                    }
                    out.push('"');
                }
            }
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    spell(out, item, noise);
                }
                ws(out, noise);
                out.push(']');
            }
            Json::Object(members) => {
                out.push('{');
                for (i, (k, item)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    spell(out, &Json::String(k.clone()), noise);
                    out.push(':');
                    spell(out, item, noise);
                }
                ws(out, noise);
                out.push('}');
            }
            scalar => {
                ws(out, noise);
                write_compact(out, scalar);
            }
        }
    }

    /// The same value spelled differently: object members reversed, every number
    /// rewritten with the decimal point moved (`12.5` → `0.125e2`).
    fn respelled(v: &Json) -> Json {
        match v {
            Json::Number(t) => {
                let (neg, rest) = t.strip_prefix('-').map_or((false, &t[..]), |r| (true, r));
                let (mant, exp) = rest.split_once(['e', 'E']).unwrap_or((rest, "0"));
                let exp: i64 = exp.parse().unwrap_or(0);
                let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
                let digits = format!("{int}{frac}");
                let e = exp - frac.len() as i64 + digits.len() as i64;
                Json::Number(format!("{}0.{digits}000E{e:+}", if neg { "-" } else { "" }).into())
            }
            Json::Array(items) => Json::Array(items.iter().map(respelled).collect()),
            Json::Object(m) => Json::Object(m.iter().rev().map(|(k, x)| (k.clone(), respelled(x))).collect()),
            other => other.clone(),
        }
    }

    /// A different value: the first leaf found changes (numbers by one unit in a new last
    /// place, strings by a character, literals flip), or an empty container gains a null.
    fn changed(v: &Json) -> Json {
        match v {
            Json::Null => Json::Bool(false),
            Json::Bool(b) => Json::Bool(!b),
            Json::Number(t) => {
                let (mant, exp) = t.split_once(['e', 'E']).map_or((&t[..], String::new()), |(m, e)| (m, format!("e{e}")));
                let sep = if mant.contains('.') { "" } else { "." };
                Json::Number(format!("{mant}{sep}0000000000000000000000001{exp}").into())
            }
            Json::String(s) => Json::String(format!("{s}x")),
            Json::Array(items) if items.is_empty() => Json::Array(vec![Json::Null]),
            Json::Array(items) => {
                let mut items = items.clone();
                items[0] = changed(&items[0]);
                Json::Array(items)
            }
            Json::Object(m) if m.is_empty() => Json::Object(vec![("k".into(), Json::Null)]),
            Json::Object(m) => {
                let mut m = m.clone();
                m[0].1 = changed(&m[0].1);
                Json::Object(m)
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_document_survives_parse_and_compact_exactly(v in json_value(), noise in prop::collection::vec(any::<u8>(), 64)) {
            let mut text = String::new();
            spell(&mut text, &v, &mut noise.iter().copied().cycle());
            let parsed = parse(text.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
            prop_assert_eq!(&parsed, &v);
            let stored = compact(&parsed);
            prop_assert_eq!(parse(stored.as_bytes()).ok(), Some(v.clone()));
            prop_assert_eq!(stored, compact(&v));
        }

        /// The fast path agrees with the parser: every body it takes, the parser takes
        /// with the same members, and a span it calls compact is the compact text; any
        /// body the parser refuses (here: cut short anywhere), it refuses too.
        #[test]
        fn scan_object_agrees_with_parse(
            members in prop::collection::vec(("[a-z\u{e9}]{0,6}", json_value()), 0..6),
            noise in prop::collection::vec(any::<u8>(), 64),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut seen = std::collections::HashSet::new();
            let body = Json::Object(members.into_iter().filter(|(k, _)| seen.insert(k.clone())).collect());
            let mut text = String::new();
            spell(&mut text, &body, &mut noise.iter().copied().cycle());
            let parsed = parse(text.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
            match scan_object(text.as_bytes()) {
                Some(spans) => {
                    let Json::Object(m) = &parsed else { return Err(TestCaseError::fail("not an object")) };
                    prop_assert_eq!(spans.len(), m.len());
                    for (span, (key, value)) in spans.iter().zip(m) {
                        prop_assert_eq!(span.key, key.as_str());
                        prop_assert_eq!(&parse(span.value.as_bytes()).ok(), &Some(value.clone()));
                        if span.compact {
                            let written = compact(value);
                            prop_assert_eq!(span.value, written.as_str());
                        }
                    }
                }
                // Only a key written with an escape may send a valid body to the parser.
                None => prop_assert!(text.contains('\\'), "valid body without escapes not scanned: {text}"),
            }
            let cut = &text.as_bytes()[..cut.index(text.len().max(1))];
            if parse(cut).is_err() {
                prop_assert_eq!(scan_object(cut), None);
            }
        }

        #[test]
        fn canonical_ignores_key_order_and_number_spelling(v in json_value()) {
            prop_assert_eq!(canonical(&respelled(&v)), canonical(&v));
        }

        #[test]
        fn canonical_changes_with_any_value_change(v in json_value()) {
            prop_assert_ne!(canonical(&changed(&v)), canonical(&v));
        }
    }
}

#[cfg(test)]
mod integral_tests {
    use super::Json;

    #[test]
    fn integral_values_are_recognised_in_any_spelling_and_never_rounded() {
        let v = |t: &str| Json::Number(t.into()).as_integral_u64();
        for (t, want) in [("7", 7), ("7.0", 7), ("0.7e1", 7), ("70e-1", 7), ("7E0", 7), ("-0", 0), ("0.000e5", 0), ("1e19", 10u64.pow(19))]
        {
            assert_eq!(v(t), Some(want), "{t}");
        }
        assert_eq!(v("18446744073709551615.000"), Some(u64::MAX));
        for t in ["7.5", "1e-1", "-1", "-7.0", "1e20", "18446744073709551616", "1e1000000", "1e-1000000", "0.5e0"] {
            assert_eq!(v(t), None, "{t}");
        }
    }
}
