//! JSON text helpers: compact (order-preserving) and canonical (sorted) writers,
//! string escaping, and the event fingerprint used for idempotency.
//!
//! Invariants:
//! - `compact(v)` is byte-identical to `serde_json::to_string(v)`, but cannot fail,
//!   so callers need no `unwrap`.
//! - `canonical(v)` sorts object keys bytewise at every depth and has no
//!   whitespace; two values that are equal as JSON values (serde_json's notion:
//!   `1` and `1.0` differ) have the same canonical text, whatever their key order.
//! - `fingerprint` hashes one unambiguous encoding (a canonical JSON array), so
//!   two events fingerprint equal exactly when all six parts are equal, up to
//!   xxh3-128 collisions.
//!
//! Writers recurse on nesting depth; values parsed by serde_json are limited to
//! 128 levels by its recursion limit, which keeps the stack bounded.

use serde_json::{Map, Value};

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

fn write_value(out: &mut String, v: &Value, sorted: bool) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        // Number's Display uses the same itoa/ryu formatting as serde_json's serializer.
        Value::Number(n) => {
            use std::fmt::Write;
            // Infallible for String; formats in place instead of allocating a String.
            let _ = write!(out, "{n}");
        }
        Value::String(s) => push_json_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item, sorted);
            }
            out.push(']');
        }
        Value::Object(map) => write_map(out, map, sorted),
    }
}

fn write_map(out: &mut String, map: &Map<String, Value>, sorted: bool) {
    out.push('{');
    if sorted {
        let mut entries: Vec<(&String, &Value)> = map.iter().collect();
        // String's Ord is bytewise on UTF-8, which is what "canonical" promises.
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        write_entries(out, entries.into_iter(), sorted);
    } else {
        // Client order: no need to collect the entries first.
        write_entries(out, map.iter(), sorted);
    }
    out.push('}');
}

fn write_entries<'a>(out: &mut String, entries: impl Iterator<Item = (&'a String, &'a Value)>, sorted: bool) {
    for (i, (k, val)) in entries.enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_string(out, k);
        out.push(':');
        write_value(out, val, sorted);
    }
}

/// Compact JSON text keeping the client's key order (what we store and serve).
pub fn compact(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v, false);
    out
}

/// Compact JSON text of an object, keeping key order.
pub fn compact_map(m: &Map<String, Value>) -> String {
    let mut out = String::new();
    write_map(&mut out, m, false);
    out
}

/// Canonical JSON: keys sorted bytewise recursively, no whitespace.
pub fn canonical(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v, true);
    out
}

/// Canonical JSON of an object (same as `canonical(&Value::Object(m))` without cloning).
pub fn canonical_map(m: &Map<String, Value>) -> String {
    let mut out = String::new();
    write_map(&mut out, m, true);
    out
}

/// Identity of an event's content for idempotency: xxh3-128 over the canonical
/// JSON array `[type, payload, actor, source|null, metadata, refs]`. A JSON array
/// of self-delimiting JSON texts is unambiguous, so distinct tuples never share
/// an encoding. Callers pass `{}` for omitted metadata/refs and `None` for an
/// omitted source, which makes omission and the explicit default equivalent.
pub fn fingerprint(
    event_type: &str,
    payload: &Value,
    actor: &str,
    source: Option<&str>,
    metadata: &Map<String, Value>,
    refs: &Map<String, Value>,
) -> u128 {
    let mut out = String::with_capacity(128);
    out.push('[');
    push_json_string(&mut out, event_type);
    out.push(',');
    write_value(&mut out, payload, true);
    out.push(',');
    push_json_string(&mut out, actor);
    out.push(',');
    match source {
        Some(s) => push_json_string(&mut out, s),
        None => out.push_str("null"),
    }
    out.push(',');
    write_map(&mut out, metadata, true);
    out.push(',');
    write_map(&mut out, refs, true);
    out.push(']');
    xxhash_rust::xxh3::xxh3_128(out.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn fp(t: &str, p: Value, a: &str, s: Option<&str>, m: Value, r: Value) -> u128 {
        fingerprint(t, &p, a, s, &obj(m), &obj(r))
    }

    #[test]
    fn canonical_sorts_keys_recursively_without_whitespace() {
        let v: Value = serde_json::from_str(r#"{ "b": 1, "a": { "z": [ {"y":2,"x":1} ], "c": null }, "A": true }"#).expect("json");
        assert_eq!(canonical(&v), r#"{"A":true,"a":{"c":null,"z":[{"x":1,"y":2}]},"b":1}"#);
    }

    #[test]
    fn canonical_sorts_by_bytes_not_by_unicode_collation() {
        let v = json!({"é": 1, "z": 2, "Z": 3});
        assert_eq!(canonical(&v), r#"{"Z":3,"z":2,"é":1}"#);
    }

    #[test]
    fn canonical_ignores_key_order() {
        let a: Value = serde_json::from_str(r#"{"x":1,"y":{"p":1,"q":2}}"#).expect("json");
        let b: Value = serde_json::from_str(r#"{"y":{"q":2,"p":1},"x":1}"#).expect("json");
        assert_eq!(canonical(&a), canonical(&b));
    }

    #[test]
    fn compact_matches_serde_json_output_and_keeps_order() {
        let text = r#"{"z":1,"a":[1.5,-2,1e300,"q\"\\\n\t\u0001\u007f é"],"m":{"k":null,"b":false}}"#;
        let v: Value = serde_json::from_str(text).expect("json");
        assert_eq!(compact(&v), serde_json::to_string(&v).expect("serialize"));
        assert!(compact(&v).starts_with("{\"z\":1"));
    }

    #[test]
    fn string_escaping_matches_serde_json_for_every_control_character() {
        let s: String = (0u8..0x80).map(char::from).collect();
        let mut out = String::new();
        push_json_string(&mut out, &s);
        assert_eq!(out, serde_json::to_string(&s).expect("serialize"));
    }

    #[test]
    fn fingerprint_ignores_key_order_everywhere() {
        let a = fp("t", json!({"a":1,"b":{"c":2,"d":3}}), "u", Some("s"), json!({"m":1,"n":2}), json!({"to_seq":1,"step":2}));
        let b = fp(
            "t",
            serde_json::from_str(r#"{"b":{"d":3,"c":2},"a":1}"#).expect("json"),
            "u",
            Some("s"),
            serde_json::from_str(r#"{"n":2,"m":1}"#).expect("json"),
            serde_json::from_str(r#"{"step":2,"to_seq":1}"#).expect("json"),
        );
        assert_eq!(a, b);
    }

    #[test]
    fn fingerprint_changes_when_any_field_changes() {
        let base = || (json!({"a":1}), json!({"m":1}), json!({"r":1}));
        let (p, m, r) = base();
        let reference = fp("t", p, "u", Some("s"), m, r);
        let variants = [
            fp("t2", base().0, "u", Some("s"), base().1, base().2),
            fp("t", json!({"a":2}), "u", Some("s"), base().1, base().2),
            fp("t", base().0, "u2", Some("s"), base().1, base().2),
            fp("t", base().0, "u", Some("s2"), base().1, base().2),
            fp("t", base().0, "u", None, base().1, base().2),
            fp("t", base().0, "u", Some("s"), json!({"m":2}), base().2),
            fp("t", base().0, "u", Some("s"), base().1, json!({"r":2})),
            fp("t", base().0, "u", Some("s"), json!({}), base().2),
        ];
        for (i, v) in variants.iter().enumerate() {
            assert_ne!(*v, reference, "variant {i} collided");
        }
    }

    #[test]
    fn fingerprint_does_not_confuse_field_boundaries() {
        // Moving characters between adjacent string fields must change the hash.
        let a = fp("ab", json!({}), "c", None, json!({}), json!({}));
        let b = fp("a", json!({}), "bc", None, json!({}), json!({}));
        assert_ne!(a, b);
        // A literal "null" source differs from an absent source.
        let c = fp("t", json!({}), "u", Some("null"), json!({}), json!({}));
        let d = fp("t", json!({}), "u", None, json!({}), json!({}));
        assert_ne!(c, d);
    }
}
