//! FORMAT TEXT and FORMAT BYTES read back: the single column's Postgres text form (the
//! inverse of `text.rs`, composite values included), or its bytes.

use outflow_dataflow::relation::values::parse_uuid;
use outflow_dataflow::relation::{Datum, RelationDesc, Row, RowPacker, Time};

use super::Problem;
use super::{date, fields, float, in_column, integer, interval, numeric, text_value, timestamp};
use crate::columns::{Field, Kind, Slot};
use crate::error::DecodeError;

/// The row of `desc`, a single column, whose Postgres text form `bytes` holds.
pub fn row_from_text(desc: &RelationDesc, bytes: &[u8]) -> Result<Row, DecodeError> {
    let field = single_column(desc, "TEXT")?;
    let text = std::str::from_utf8(bytes)
        .map_err(|e| in_column(&field, format!("the message is not UTF-8 ({e})")))?;
    let mut packer = RowPacker::new();
    push_text(&mut packer, &field.slot, text).map_err(|p| in_column(&field, p))?;
    Ok(packer.finish())
}

/// The row of `desc`, a single `bytea` or text column, whose bytes (or UTF-8) `bytes` are.
pub fn row_from_bytes(desc: &RelationDesc, bytes: &[u8]) -> Result<Row, DecodeError> {
    let field = single_column(desc, "BYTES")?;
    let mut packer = RowPacker::new();
    match &field.slot.kind {
        Kind::Bytes => packer.push(Datum::Bytes(bytes)),
        Kind::Text | Kind::Char { .. } => {
            let text = std::str::from_utf8(bytes)
                .map_err(|e| in_column(&field, format!("the message is not UTF-8 ({e})")))?;
            let text = text_value(text, &field.slot.typ).map_err(|p| in_column(&field, p))?;
            packer.push(Datum::String(text));
        }
        _ => {
            return Err(in_column(
                &field,
                "FORMAT BYTES holds only bytea and text columns".to_string(),
            ))
        }
    }
    Ok(packer.finish())
}

fn single_column(desc: &RelationDesc, format: &str) -> Result<Field, DecodeError> {
    let mut fields = fields(desc);
    if fields.len() != 1 {
        return Err(DecodeError::Message(format!(
            "FORMAT {format} needs exactly one column, the relation has {}",
            fields.len()
        )));
    }
    Ok(fields.remove(0))
}

/// Pushes the datum of type `slot` whose text form is `text` (never NULL: the encoders write
/// no text for a NULL column).
fn push_text(packer: &mut RowPacker, slot: &Slot, text: &str) -> Result<(), Problem> {
    let datum = match &slot.kind {
        Kind::Bool => match text {
            "t" | "true" => Datum::True,
            "f" | "false" => Datum::False,
            _ => return Err(format!("expected a boolean t or f, found {text}")),
        },
        Kind::Int16 => Datum::Int16(integer(text, "a smallint")?),
        Kind::Int32 => Datum::Int32(integer(text, "an integer")?),
        Kind::Int64 => Datum::Int64(integer(text, "a bigint")?),
        Kind::UInt16 => Datum::UInt16(integer(text, "a uint2")?),
        Kind::UInt32 => Datum::UInt32(integer(text, "a uint4")?),
        Kind::UInt64 => Datum::UInt64(integer(text, "a uint8")?),
        Kind::Float32 => Datum::Float32(float(text, &slot.typ)?),
        Kind::Float64 => Datum::Float64(float(text, &slot.typ)?),
        Kind::Numeric { .. } => Datum::Numeric(numeric(text, &slot.typ)?),
        Kind::Text | Kind::Char { .. } => Datum::String(text_value(text, &slot.typ)?),
        Kind::Jsonb => Datum::Jsonb(text),
        Kind::Bytes => {
            let bytes = bytea_hex(text)?;
            packer.push(Datum::Bytes(&bytes));
            return Ok(());
        }
        Kind::Uuid => {
            Datum::Uuid(parse_uuid(text).ok_or_else(|| format!("expected a uuid, found {text}"))?)
        }
        Kind::Date => Datum::Date(date(text)?),
        Kind::Time => Datum::Time(
            Time::parse(text).ok_or_else(|| format!("expected a time HH:MM:SS, found {text}"))?,
        ),
        Kind::Timestamp { .. } => Datum::Timestamp(timestamp(text)?),
        Kind::TimestampTz { .. } => Datum::TimestampTz(timestamp(text)?),
        Kind::Interval => Datum::Interval(interval(text)?),
        Kind::List(element) => {
            let items = Composite::new(text, Quoting::List).elements()?;
            return push_elements(
                packer,
                items.iter().map(|item| (element.as_ref(), item)),
                |i| format!("element {i}"),
            );
        }
        Kind::Map(value) => {
            let entries = Composite::new(text, Quoting::Map).entries()?;
            let mut rows: Vec<(&str, Row)> = Vec::with_capacity(entries.len());
            for (key, item) in &entries {
                let mut one = RowPacker::new();
                push_element(&mut one, value, item).map_err(|e| format!("entry \"{key}\": {e}"))?;
                rows.push((key, one.finish()));
            }
            packer.push_map(rows.iter().map(|(k, row)| (*k, row.unpack_first())));
            return Ok(());
        }
        Kind::Record(fields) => {
            let items = Composite::new(text, Quoting::Record).elements()?;
            if items.len() != fields.len() {
                return Err(format!(
                    "the record {text} has {} fields, its type {}",
                    items.len(),
                    fields.len()
                ));
            }
            return push_elements(
                packer,
                fields.iter().map(|f| &f.slot).zip(items.iter()),
                |i| format!("field \"{}\"", fields[i].name),
            );
        }
    };
    packer.push(datum);
    Ok(())
}

/// `\x` and hex digits, Postgres's default `bytea_output`.
fn bytea_hex(text: &str) -> Result<Vec<u8>, Problem> {
    let wrong = || format!("expected \\x and hex digits, found {text}");
    let hex = text.strip_prefix("\\x").ok_or_else(wrong)?;
    if hex.len() % 2 != 0 {
        return Err(wrong());
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(wrong)
        })
        .collect()
}

/// An element of a list, map or record as written: NULL, or the text of its value.
enum Element {
    Null,
    Text(String),
}

fn push_elements<'e>(
    packer: &mut RowPacker,
    items: impl Iterator<Item = (&'e Slot, &'e Element)>,
    name: impl Fn(usize) -> String,
) -> Result<(), Problem> {
    let mut result = Ok(());
    packer.push_list_with(|p| {
        for (i, (slot, item)) in items.enumerate() {
            if let Err(e) = push_element(p, slot, item) {
                if result.is_ok() {
                    result = Err(format!("{}: {e}", name(i)));
                }
                p.push(Datum::Null);
            }
        }
    });
    result
}

fn push_element(packer: &mut RowPacker, slot: &Slot, element: &Element) -> Result<(), Problem> {
    match element {
        Element::Null if slot.nullable => {
            packer.push(Datum::Null);
            Ok(())
        }
        Element::Null => Err("null in a NOT NULL field".to_string()),
        Element::Text(text) => push_text(packer, slot, text),
    }
}

/// The quoting rules of the three composite text forms (see `text.rs`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quoting {
    /// `{a,"b c",NULL,{1,2}}`: backslash escapes in quotes, nested lists and maps bare.
    List,
    /// `{k=>v,"a b"=>NULL}`: as lists.
    Map,
    /// `(a,"b ""c""",)`: quotes doubled in quotes, nothing at all for NULL.
    Record,
}

/// A reader of one composite value's text.
struct Composite<'a> {
    text: &'a str,
    at: usize,
    quoting: Quoting,
}

impl<'a> Composite<'a> {
    fn new(text: &'a str, quoting: Quoting) -> Composite<'a> {
        Composite {
            text,
            at: 0,
            quoting,
        }
    }

    fn wrong(&self, what: &str) -> Problem {
        format!("{what} at byte {} of {}", self.at, self.text)
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn expect(&mut self, byte: u8) -> Result<(), Problem> {
        if self.peek() != Some(byte) {
            return Err(self.wrong(&format!("expected '{}'", byte as char)));
        }
        self.at += 1;
        Ok(())
    }

    fn delimiters(&self) -> (u8, u8) {
        match self.quoting {
            Quoting::List | Quoting::Map => (b'{', b'}'),
            Quoting::Record => (b'(', b')'),
        }
    }

    /// The elements of a list or record.
    fn elements(mut self) -> Result<Vec<Element>, Problem> {
        let (open, close) = self.delimiters();
        self.expect(open)?;
        let mut items = Vec::new();
        // `{}` is the empty list; `()` is a record of one NULL field.
        if self.quoting != Quoting::Record && self.peek() == Some(close) {
            self.at += 1;
            return self.finish(items);
        }
        loop {
            items.push(self.element()?);
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b) if b == close => {
                    self.at += 1;
                    return self.finish(items);
                }
                _ => return Err(self.wrong("expected ',' or the end")),
            }
        }
    }

    /// The entries of a map, keys and values.
    fn entries(mut self) -> Result<Vec<(String, Element)>, Problem> {
        self.expect(b'{')?;
        let mut entries = Vec::new();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return self.finish(entries);
        }
        loop {
            let key = match self.element()? {
                Element::Text(key) => key,
                Element::Null => return Err(self.wrong("a map key cannot be NULL")),
            };
            self.expect(b'=')?;
            self.expect(b'>')?;
            entries.push((key, self.element()?));
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return self.finish(entries);
                }
                _ => return Err(self.wrong("expected ',' or '}'")),
            }
        }
    }

    fn finish<T>(&self, value: T) -> Result<T, Problem> {
        if self.at != self.text.len() {
            return Err(self.wrong("unexpected text after the end"));
        }
        Ok(value)
    }

    /// One element: quoted, a nested list or map written bare, or unquoted text up to the
    /// next delimiter.
    fn element(&mut self) -> Result<Element, Problem> {
        let bytes = self.text.as_bytes();
        match self.peek() {
            Some(b'"') => {
                self.at += 1;
                let mut out = Vec::new();
                loop {
                    match bytes.get(self.at) {
                        None => return Err(self.wrong("unterminated quotes")),
                        Some(b'"')
                            if self.quoting == Quoting::Record
                                && bytes.get(self.at + 1) == Some(&b'"') =>
                        {
                            out.push(b'"');
                            self.at += 2;
                        }
                        Some(b'"') => {
                            self.at += 1;
                            break;
                        }
                        Some(b'\\') => {
                            let escaped = *bytes
                                .get(self.at + 1)
                                .ok_or_else(|| self.wrong("a backslash at the end"))?;
                            out.push(escaped);
                            self.at += 2;
                        }
                        Some(b) => {
                            out.push(*b);
                            self.at += 1;
                        }
                    }
                }
                let text = String::from_utf8(out)
                    .map_err(|_| self.wrong("quoted text that is not UTF-8"))?;
                Ok(Element::Text(text))
            }
            Some(b'{') if self.quoting != Quoting::Record => {
                let start = self.at;
                self.skip_braces()?;
                Ok(Element::Text(self.text[start..self.at].to_string()))
            }
            _ => {
                let (_, close) = self.delimiters();
                let stops: &[u8] = match self.quoting {
                    Quoting::Map => &[b',', b'}', b'='],
                    _ => &[b',', close],
                };
                let start = self.at;
                while let Some(b) = self.peek() {
                    // `=` ends a key only as the start of `=>`.
                    let is_arrow = b == b'=' && bytes.get(self.at + 1) == Some(&b'>');
                    if stops.contains(&b) && (b != b'=' || is_arrow) {
                        break;
                    }
                    self.at += 1;
                }
                let token = &self.text[start..self.at];
                Ok(match self.quoting {
                    Quoting::Record if token.is_empty() => Element::Null,
                    Quoting::List | Quoting::Map if token.eq_ignore_ascii_case("NULL") => {
                        Element::Null
                    }
                    _ => Element::Text(token.to_string()),
                })
            }
        }
    }

    /// Moves past a bare `{...}`, quotes inside it included.
    fn skip_braces(&mut self) -> Result<(), Problem> {
        let bytes = self.text.as_bytes();
        let mut depth = 0usize;
        let mut quoted = false;
        while let Some(&b) = bytes.get(self.at) {
            self.at += 1;
            match b {
                b'\\' if quoted => self.at += 1,
                b'"' => quoted = !quoted,
                b'{' if !quoted => depth += 1,
                b'}' if !quoted => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                _ => {}
            }
        }
        Err(self.wrong("unterminated braces"))
    }
}
