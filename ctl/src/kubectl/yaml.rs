//! YAML as kubectl writes it (sigs.k8s.io/yaml over go-yaml v2), so `-o yaml` and `config
//! view` print the same bytes: keys in go-yaml's natural order, sequences in a mapping not
//! indented, and each string in the first style that reads back as that string —
//! double-quoted when plain text would read as another type (`"1"`, `"true"`, `"n"`,
//! timestamps), single-quoted when it holds YAML indicators (`'x: y'`, `'#tag'`), a literal
//! block for multi-line text — with long lines folded at spaces past column 80.

use std::cmp::Ordering;

use serde_json::{Map, Value};

/// go-yaml's preferred line width.
const WIDTH: usize = 80;

/// The document for `v`, ending with a newline.
pub fn to_string(v: &Value) -> String {
    let mut w = Writer::default();
    match v {
        Value::Object(m) if !m.is_empty() => w.map(m, 0),
        Value::Array(a) if !a.is_empty() => w.seq(a, 0),
        other => {
            w.inline(other, 0);
            w.newline();
        }
    }
    w.out
}

#[derive(Default)]
struct Writer {
    out: String,
    column: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

impl Writer {
    fn put(&mut self, s: &str) {
        self.out.push_str(s);
        self.column += s.chars().count();
    }

    fn newline(&mut self) {
        self.out.push('\n');
        self.column = 0;
    }

    fn indent(&mut self, n: usize) {
        self.newline();
        self.put(&" ".repeat(n));
    }

    /// A mapping at `indent` (the cursor is at the start of a line, or after `- `).
    fn map(&mut self, m: &Map<String, Value>, indent: usize) {
        let mut keys: Vec<&String> = m.keys().collect();
        keys.sort_by(|a, b| natural(a, b));
        for (i, k) in keys.into_iter().enumerate() {
            // The first key may follow `- ` or the indentation already written.
            if i > 0 || self.column != indent {
                if !self.out.ends_with('\n') && !self.out.is_empty() {
                    self.newline();
                }
                self.put(&" ".repeat(indent));
            }
            self.scalar(k, indent, true);
            self.put(":");
            self.value(&m[k], indent, true);
        }
    }

    /// A sequence at `indent`.
    fn seq(&mut self, a: &[Value], indent: usize) {
        for (i, item) in a.iter().enumerate() {
            if i > 0 || self.column != indent {
                if !self.out.ends_with('\n') {
                    self.newline();
                }
                self.put(&" ".repeat(indent));
            }
            self.put("-");
            self.value(item, indent, false);
        }
    }

    /// What follows `key:` (in a mapping) or `-` (in a sequence) at `indent`.
    fn value(&mut self, v: &Value, indent: usize, in_map: bool) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                if in_map {
                    self.newline();
                    self.put(&" ".repeat(indent + 2));
                } else {
                    self.put(" ");
                }
                self.map(m, indent + 2);
            }
            Value::Array(a) if !a.is_empty() => {
                if in_map {
                    // Sequences in a mapping are not indented.
                    self.newline();
                    self.put(&" ".repeat(indent));
                    self.seq(a, indent);
                } else {
                    self.put(" ");
                    self.seq(a, indent + 2);
                }
            }
            other => {
                self.put(" ");
                self.inline(other, indent + 2);
                self.newline();
            }
        }
    }

    /// A scalar (or an empty collection) whose continuation lines go at `indent`.
    fn inline(&mut self, v: &Value, indent: usize) {
        match v {
            Value::Null => self.put("null"),
            Value::Bool(b) => self.put(if *b { "true" } else { "false" }),
            Value::Number(n) => self.put(&number(n)),
            Value::String(s) => self.scalar(s, indent, false),
            Value::Object(_) => self.put("{}"),
            Value::Array(_) => self.put("[]"),
        }
    }

    fn scalar(&mut self, s: &str, indent: usize, key: bool) {
        match style(s, key) {
            Style::Plain => self.folded(s, indent, !key, false),
            Style::Single => {
                self.put("'");
                self.folded(&s.replace('\'', "''"), indent, !key, true);
                self.put("'");
            }
            Style::Double => {
                self.put("\"");
                self.double(s, indent, !key);
                self.put("\"");
            }
            Style::Literal => self.literal(s, indent),
        }
    }

    /// Plain or single-quoted text, broken at a space once past the line width.
    fn folded(&mut self, s: &str, indent: usize, breaks: bool, quoted: bool) {
        let chars: Vec<char> = s.chars().collect();
        let mut spaces = false;
        for (i, c) in chars.iter().enumerate() {
            if *c == ' ' {
                let next_space = chars.get(i + 1) == Some(&' ');
                let inner = !quoted || (i != 0 && i + 1 != chars.len());
                if breaks && !spaces && self.column > WIDTH && !next_space && inner {
                    self.indent(indent);
                } else {
                    self.put(" ");
                }
                spaces = true;
            } else {
                self.put(&c.to_string());
                spaces = false;
            }
        }
    }

    fn double(&mut self, s: &str, indent: usize, breaks: bool) {
        let chars: Vec<char> = s.chars().collect();
        let mut spaces = false;
        for (i, c) in chars.iter().enumerate() {
            if *c == ' ' {
                if breaks && !spaces && self.column > WIDTH && i != 0 && i + 1 != chars.len() {
                    self.indent(indent);
                    if chars.get(i + 1) == Some(&' ') {
                        self.put("\\");
                    }
                } else {
                    self.put(" ");
                }
                spaces = true;
                continue;
            }
            spaces = false;
            let escaped = match c {
                '\0' => "\\0".to_string(),
                '\x07' => "\\a".into(),
                '\x08' => "\\b".into(),
                '\t' => "\\t".into(),
                '\n' => "\\n".into(),
                '\x0b' => "\\v".into(),
                '\x0c' => "\\f".into(),
                '\r' => "\\r".into(),
                '\x1b' => "\\e".into(),
                '"' => "\\\"".into(),
                '\\' => "\\\\".into(),
                '\u{85}' => "\\N".into(),
                '\u{a0}' => "\\_".into(),
                '\u{2028}' => "\\L".into(),
                '\u{2029}' => "\\P".into(),
                c if !printable(*c) => {
                    let n = *c as u32;
                    if n <= 0xff {
                        format!("\\x{n:02X}")
                    } else if n <= 0xffff {
                        format!("\\u{n:04X}")
                    } else {
                        format!("\\U{n:08X}")
                    }
                }
                c => c.to_string(),
            };
            self.put(&escaped);
        }
    }

    fn literal(&mut self, s: &str, indent: usize) {
        self.put("|");
        if s.starts_with(' ') || s.starts_with('\n') {
            self.put("2");
        }
        let chomp = if !s.ends_with('\n') {
            "-"
        } else if s == "\n" || s.ends_with("\n\n") {
            "+"
        } else {
            ""
        };
        self.put(chomp);
        self.newline();
        let body = s.strip_suffix('\n').unwrap_or(s);
        for line in body.split('\n') {
            if !line.is_empty() {
                self.put(&" ".repeat(indent));
                self.put(line);
            }
            self.newline();
        }
        // The caller ends the line after a scalar; a literal already did.
        self.out.pop();
        self.column = indent + 1;
    }
}

/// A JSON number as go-yaml prints the value sigs.k8s.io/yaml decoded it to.
fn number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    if f.fract() == 0.0 && f.abs() < 1e21 {
        return format!("{f:.0}");
    }
    let s = format!("{f}");
    if f.abs() >= 1e21 || (f != 0.0 && f.abs() < 1e-4) {
        let e = format!("{f:e}");
        // Go writes e+21 / e-05.
        if let Some((m, exp)) = e.split_once('e') {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            return format!("{m}e{sign}{digits:0>2}");
        }
    }
    s
}

/// YAML's printable characters (what go-yaml may write unescaped).
fn printable(c: char) -> bool {
    matches!(c as u32, 0x0A | 0x20..=0x7E | 0x85 | 0xA0..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
        && c != '\u{FEFF}'
}

/// The style go-yaml v2 writes `s` in (a mapping key when `key`).
fn style(s: &str, key: bool) -> Style {
    if s.contains('\n') {
        let a = analyze(s);
        return if key || !a.block_allowed {
            Style::Double
        } else {
            Style::Literal
        };
    }
    if !resolves_to_string(s) || base60_float(s) {
        return Style::Double;
    }
    let a = analyze(s);
    if a.plain_allowed && !(s.is_empty() && key) {
        Style::Plain
    } else if a.single_allowed {
        Style::Single
    } else {
        Style::Double
    }
}

struct Analysis {
    plain_allowed: bool,
    single_allowed: bool,
    block_allowed: bool,
}

/// go-yaml's `yaml_emitter_analyze_scalar`, for the block context.
fn analyze(s: &str) -> Analysis {
    let chars: Vec<char> = s.chars().collect();
    let mut a = Analysis {
        plain_allowed: !s.is_empty(),
        single_allowed: true,
        block_allowed: true,
    };
    if s.is_empty() {
        return a;
    }
    if s.starts_with("---") || s.starts_with("...") {
        a.plain_allowed = false;
    }
    let blank = |i: usize| matches!(chars.get(i), None | Some(' ' | '\t' | '\n' | '\r'));
    let (mut special, mut line_breaks) = (false, false);
    let (mut space_break, mut break_space) = (false, false);
    let mut preceded_by_space = true;
    for (i, c) in chars.iter().enumerate() {
        let followed_by_space = blank(i + 1);
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => a.plain_allowed = false,
                '?' | ':' | '-' if followed_by_space => a.plain_allowed = false,
                _ => {}
            }
        } else {
            match c {
                ':' if followed_by_space => a.plain_allowed = false,
                '#' if preceded_by_space => a.plain_allowed = false,
                _ => {}
            }
        }
        if !printable(*c) {
            special = true;
        }
        if *c == '\n' {
            line_breaks = true;
        }
        if *c == ' ' && chars.get(i + 1) == Some(&'\n') {
            space_break = true;
        }
        if *c == '\n' && chars.get(i + 1) == Some(&' ') {
            break_space = true;
        }
        preceded_by_space = matches!(c, ' ' | '\t' | '\n' | '\r');
    }
    let leading = matches!(chars.first(), Some(' ' | '\n'));
    let trailing = matches!(chars.last(), Some(' ' | '\n'));
    if leading || trailing {
        a.plain_allowed = false;
    }
    if chars.last() == Some(&' ') {
        a.block_allowed = false;
    }
    if break_space {
        a.plain_allowed = false;
        a.single_allowed = false;
    }
    if space_break || special {
        a.plain_allowed = false;
        a.single_allowed = false;
        a.block_allowed = false;
    }
    if line_breaks {
        a.plain_allowed = false;
    }
    a
}

/// Whether go-yaml would read `s`, written plain, back as a string (not null, a boolean, a
/// number or a timestamp).
fn resolves_to_string(s: &str) -> bool {
    const SPECIAL: &[&str] = &[
        "", "~", "null", "Null", "NULL", "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO",
        "true", "True", "TRUE", "false", "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
        ".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf",
        "-.Inf", "-.INF", "<<",
    ];
    if SPECIAL.contains(&s) {
        return false;
    }
    match s.as_bytes()[0] {
        b'.' => s.parse::<f64>().is_err() || s.contains(['i', 'I', 'n', 'N']),
        b'0'..=b'9' | b'+' | b'-' => {
            if timestamp(s) {
                return false;
            }
            let plain = s.replace('_', "");
            !(go_int(&plain) || yaml_float(&plain))
        }
        _ => true,
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)` / `ParseUint` acceptance (sign, 0x/0o/0b/0 prefixes).
fn go_int(s: &str) -> bool {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (digits, radix) = if let Some(d) = unsigned
        .strip_prefix("0x")
        .or_else(|| unsigned.strip_prefix("0X"))
    {
        (d, 16)
    } else if let Some(d) = unsigned
        .strip_prefix("0o")
        .or_else(|| unsigned.strip_prefix("0O"))
    {
        (d, 8)
    } else if let Some(d) = unsigned
        .strip_prefix("0b")
        .or_else(|| unsigned.strip_prefix("0B"))
    {
        (d, 2)
    } else if unsigned.len() > 1 && unsigned.starts_with('0') {
        (&unsigned[1..], 8)
    } else {
        (unsigned, 10)
    };
    !digits.is_empty() && u64::from_str_radix(digits, radix).is_ok()
}

/// go-yaml's float syntax: `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn yaml_float(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", frac)) => digits(frac),
        Some((int, frac)) => digits(int) && (frac.is_empty() || digits(frac)),
        None => digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)));
    mantissa_ok && exponent_ok
}

/// go-yaml's timestamps: `2006-1-2`, `2006-1-2T15:4:5[.frac](Z|±07:00)` (also `t`), and
/// `2006-1-2 15:4:5[.frac]`.
fn timestamp(s: &str) -> bool {
    let num = |t: &str, max: u32| {
        (1..=2).contains(&t.len())
            && t.bytes().all(|b| b.is_ascii_digit())
            && t.parse::<u32>().is_ok_and(|n| n <= max)
    };
    let date = |d: &str| {
        let parts: Vec<&str> = d.split('-').collect();
        parts.len() == 3
            && parts[0].len() == 4
            && parts[0].bytes().all(|b| b.is_ascii_digit())
            && num(parts[1], 12)
            && parts[1] != "0"
            && num(parts[2], 31)
            && parts[2] != "0"
    };
    let time = |t: &str| {
        let (hms, frac) = t.split_once('.').unwrap_or((t, ""));
        let parts: Vec<&str> = hms.split(':').collect();
        parts.len() == 3
            && num(parts[0], 23)
            && num(parts[1], 59)
            && num(parts[2], 59)
            && frac.bytes().all(|b| b.is_ascii_digit())
            && (frac.is_empty() || t.contains('.'))
    };
    if date(s) {
        return true;
    }
    if let Some((d, t)) = s.split_once(' ') {
        return date(d) && time(t);
    }
    let Some(i) = s.find(['T', 't']) else {
        return false;
    };
    let (d, rest) = (&s[..i], &s[i + 1..]);
    let (t, zone_ok) = if let Some(t) = rest.strip_suffix('Z') {
        (t, true)
    } else if rest.len() > 6 {
        let (t, z) = rest.split_at(rest.len() - 6);
        let zb = z.as_bytes();
        let ok =
            matches!(zb[0], b'+' | b'-') && num(&z[1..3], 23) && zb[3] == b':' && num(&z[4..6], 59);
        (t, ok)
    } else {
        (rest, false)
    };
    date(d) && zone_ok && time(t)
}

/// go-yaml's sexagesimal floats (`1:20`, `-1:20:30.5`), which it quotes.
fn base60_float(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (body, frac) = s.split_once('.').unwrap_or((s, ""));
    if !frac.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
        return false;
    }
    let mut parts = body.split(':');
    let Some(first) = parts.next() else {
        return false;
    };
    let first_ok = first.bytes().next().is_some_and(|b| b.is_ascii_digit())
        && first.bytes().all(|b| b.is_ascii_digit() || b == b'_');
    let rest: Vec<&str> = parts.collect();
    first_ok
        && !rest.is_empty()
        && rest.iter().all(|p| {
            let b = p.as_bytes();
            match b.len() {
                1 => b[0].is_ascii_digit(),
                2 => (b'0'..=b'5').contains(&b[0]) && b[1].is_ascii_digit(),
                _ => false,
            }
        })
}

/// go-yaml's key order: letter by letter, runs of digits by value, letters after other
/// characters.
fn natural(a: &str, b: &str) -> Ordering {
    let (ar, br): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    for i in 0..ar.len().min(br.len()) {
        if ar[i] == br[i] {
            continue;
        }
        let (al, bl) = (ar[i].is_alphabetic(), br[i].is_alphabetic());
        if al && bl {
            return ar[i].cmp(&br[i]);
        }
        if al || bl {
            return if bl {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
        let (mut an, mut bn) = (0i64, 0i64);
        if ar[i] == '0' || br[i] == '0' {
            let mut j = i;
            while j > 0 && ar[j - 1].is_ascii_digit() {
                j -= 1;
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && ar[ai].is_ascii_digit() {
            an = an
                .saturating_mul(10)
                .saturating_add(i64::from(ar[ai] as u8 - b'0'));
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && br[bi].is_ascii_digit() {
            bn = bn
                .saturating_mul(10)
                .saturating_add(i64::from(br[bi] as u8 - b'0'));
            bi += 1;
        }
        if an != bn {
            return an.cmp(&bn);
        }
        if ai != bi {
            return ai.cmp(&bi);
        }
        return ar[i].cmp(&br[i]);
    }
    ar.len().cmp(&br.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_take_go_yaml_styles() {
        let doc = json!({"data": {
            "a": "1", "b": "two words", "c": "x: y", "d": "true", "e": "line1\nline2",
            "f": " lead", "g": "", "h": "#hash", "i": "0x10", "j": "1e3", "k": "it's",
            "l": "say \"hi\"", "m": "2024-01-01", "n": "~", "o": "null", "p": "a: b: c",
            "q": "- item", "r": "*star", "s": "{x}", "t": "trailing\n",
        }});
        let want = r#"data:
  a: "1"
  b: two words
  c: 'x: y'
  d: "true"
  e: |-
    line1
    line2
  f: ' lead'
  g: ""
  h: '#hash'
  i: "0x10"
  j: "1e3"
  k: it's
  l: say "hi"
  m: "2024-01-01"
  "n": "~"
  o: "null"
  p: 'a: b: c'
  q: '- item'
  r: '*star'
  s: '{x}'
  t: |
    trailing
"#;
        assert_eq!(to_string(&doc), want);
    }

    #[test]
    fn collections_and_folding() {
        let doc = json!({
            "metadata": {"creationTimestamp": "2026-11-22T08:38:52Z", "labels": {"app": "web"}, "resourceVersion": "9"},
            "spec": {"containers": [{"name": "a", "args": ["-c", "x"], "ports": []}], "empty": {}},
            "status": {"message": "the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)"},
            "list": [[1, 2], {}],
        });
        let want = r#"list:
- - 1
  - 2
- {}
metadata:
  creationTimestamp: "2026-11-22T08:38:52Z"
  labels:
    app: web
  resourceVersion: "9"
spec:
  containers:
  - args:
    - -c
    - x
    name: a
    ports: []
  empty: {}
status:
  message: the HPA was able to successfully calculate a replica count from cpu resource
    utilization (percentage of request)
"#;
        assert_eq!(to_string(&doc), want);
    }

    #[test]
    fn key_order_is_natural() {
        let mut keys = vec!["a10", "a9", "a_b", "aB", "b", "A"];
        keys.sort_by(|a, b| natural(a, b));
        assert_eq!(keys, ["A", "a_b", "a9", "a10", "aB", "b"]);
    }

    #[test]
    fn type_lookalikes_are_quoted() {
        for s in [
            "1",
            "-5",
            "+5",
            "0x1F",
            "0o17",
            "017",
            "08",
            "1.5",
            ".5",
            "1e3",
            "1_000",
            "12:30",
            "2024-1-2",
            "2024-01-02T03:04:05Z",
            "2024-01-02 03:04:05",
            "yes",
            "Off",
            "~",
            ".inf",
        ] {
            assert_eq!(style(s, false), Style::Double, "{s}");
        }
        for s in [
            "1.2.3",
            "v1",
            "1a",
            "2024-13-01x",
            "-x",
            "a-b",
            "10.244.0.0/16",
            "0.5Gi",
        ] {
            assert_eq!(style(s, false), Style::Plain, "{s}");
        }
    }
}
