//! Splits statement text into tokens that remember where they start.

use crate::error::{Position, SpecError};

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum TokenKind {
    /// A keyword or identifier. `text` is as written; `quoted` words keep their case and are
    /// never keywords.
    Word {
        text: String,
        quoted: bool,
    },
    /// A single-quoted string, with `''` unescaped.
    Str(String),
    /// An unsigned number as written: `12`, `1.5`, `2e3`.
    Number(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Semicolon,
    Equals,
    Arrow,
    DoubleColon,
    Concat,
    Dot,
    Minus,
    Plus,
    Star,
    Slash,
    Percent,
    Less,
    LessEquals,
    Greater,
    GreaterEquals,
    /// `<>` or `!=`.
    NotEquals,
    /// Any other character. Nothing in our grammar uses it, but the text of statements we
    /// refuse (a view's `SELECT *`) must still tokenize so that the refusal can explain itself.
    Other(char),
    Eof,
}

#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub kind: TokenKind,
    pub pos: Position,
}

impl Token {
    /// Whether this is the unquoted keyword `kw` (case-insensitive).
    pub fn is_keyword(&self, kw: &str) -> bool {
        matches!(&self.kind, TokenKind::Word { text, quoted: false } if text.eq_ignore_ascii_case(kw))
    }

    /// How the token is named in an error. String literals are never quoted back: they may
    /// hold a secret.
    pub fn describe(&self) -> String {
        match &self.kind {
            TokenKind::Word {
                text,
                quoted: false,
            } => format!("identifier \"{}\"", text.to_lowercase()),
            TokenKind::Word { text, quoted: true } => format!("identifier \"{text}\""),
            TokenKind::Str(_) => "a string literal".to_string(),
            TokenKind::Number(n) => format!("number {n}"),
            TokenKind::Eof => "end of input".to_string(),
            TokenKind::Other(c) => format!("{c:?}"),
            other => format!("\"{}\"", other.symbol()),
        }
    }

    /// The token as it would be written again, for re-assembling type names.
    pub fn text(&self) -> String {
        match &self.kind {
            TokenKind::Word { text, .. } | TokenKind::Number(text) => text.clone(),
            TokenKind::Str(s) => format!("'{}'", s.replace('\'', "''")),
            TokenKind::Other(c) => c.to_string(),
            other => other.symbol().to_string(),
        }
    }
}

impl TokenKind {
    fn symbol(&self) -> &'static str {
        match self {
            TokenKind::LParen => "(",
            TokenKind::RParen => ")",
            TokenKind::LBracket => "[",
            TokenKind::RBracket => "]",
            TokenKind::Comma => ",",
            TokenKind::Semicolon => ";",
            TokenKind::Equals => "=",
            TokenKind::Arrow => "=>",
            TokenKind::DoubleColon => "::",
            TokenKind::Concat => "||",
            TokenKind::Dot => ".",
            TokenKind::Minus => "-",
            TokenKind::Plus => "+",
            TokenKind::Star => "*",
            TokenKind::Slash => "/",
            TokenKind::Percent => "%",
            TokenKind::Less => "<",
            TokenKind::LessEquals => "<=",
            TokenKind::Greater => ">",
            TokenKind::GreaterEquals => ">=",
            TokenKind::NotEquals => "<>",
            TokenKind::Word { .. }
            | TokenKind::Str(_)
            | TokenKind::Number(_)
            | TokenKind::Other(_)
            | TokenKind::Eof => "",
        }
    }
}

struct Cursor<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: u32,
    column: u32,
}

impl Cursor<'_> {
    fn pos(&self) -> Position {
        Position {
            line: self.line,
            column: self.column,
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }

    fn peek2(&self) -> Option<char> {
        let mut ahead = self.chars.clone();
        ahead.next();
        ahead.next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }
}

/// Tokenizes `text`; the last token is always `Eof`. Positions are 1-based lines and
/// character columns.
pub(crate) fn tokenize(text: &str) -> Result<Vec<Token>, SpecError> {
    let mut cur = Cursor {
        chars: text.chars().peekable(),
        line: 1,
        column: 1,
    };
    let mut tokens = Vec::new();
    loop {
        let pos = cur.pos();
        let Some(c) = cur.peek() else {
            tokens.push(Token {
                kind: TokenKind::Eof,
                pos,
            });
            return Ok(tokens);
        };
        let kind = match c {
            c if c.is_whitespace() => {
                cur.bump();
                continue;
            }
            '-' if cur.peek2() == Some('-') => {
                while cur.peek().is_some_and(|c| c != '\n') {
                    cur.bump();
                }
                continue;
            }
            '/' if cur.peek2() == Some('*') => {
                cur.bump();
                cur.bump();
                loop {
                    match cur.bump() {
                        Some('*') if cur.peek() == Some('/') => {
                            cur.bump();
                            break;
                        }
                        Some(_) => {}
                        None => return Err(SpecError::new("unterminated /* comment").at(pos)),
                    }
                }
                continue;
            }
            '\'' => {
                cur.bump();
                TokenKind::Str(
                    quoted(&mut cur, '\'')
                        .ok_or_else(|| SpecError::new("unterminated quoted string").at(pos))?,
                )
            }
            '"' => {
                cur.bump();
                let text = quoted(&mut cur, '"')
                    .ok_or_else(|| SpecError::new("unterminated quoted identifier").at(pos))?;
                if text.is_empty() {
                    return Err(SpecError::new("zero-length delimited identifier").at(pos));
                }
                TokenKind::Word { text, quoted: true }
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut text = String::new();
                while let Some(c) = cur
                    .peek()
                    .filter(|c| c.is_alphanumeric() || *c == '_' || *c == '$')
                {
                    text.push(c);
                    cur.bump();
                }
                TokenKind::Word {
                    text,
                    quoted: false,
                }
            }
            c if c.is_ascii_digit() => TokenKind::Number(number(&mut cur)),
            _ => {
                cur.bump();
                match (c, cur.peek()) {
                    ('(', _) => TokenKind::LParen,
                    (')', _) => TokenKind::RParen,
                    ('[', _) => TokenKind::LBracket,
                    (']', _) => TokenKind::RBracket,
                    (',', _) => TokenKind::Comma,
                    (';', _) => TokenKind::Semicolon,
                    ('.', _) => TokenKind::Dot,
                    ('-', _) => TokenKind::Minus,
                    ('+', _) => TokenKind::Plus,
                    ('*', _) => TokenKind::Star,
                    ('/', _) => TokenKind::Slash,
                    ('%', _) => TokenKind::Percent,
                    ('<', Some('>')) | ('!', Some('=')) => {
                        cur.bump();
                        TokenKind::NotEquals
                    }
                    ('<', Some('=')) => {
                        cur.bump();
                        TokenKind::LessEquals
                    }
                    ('<', _) => TokenKind::Less,
                    ('>', Some('=')) => {
                        cur.bump();
                        TokenKind::GreaterEquals
                    }
                    ('>', _) => TokenKind::Greater,
                    ('=', Some('>')) => {
                        cur.bump();
                        TokenKind::Arrow
                    }
                    ('=', _) => TokenKind::Equals,
                    (':', Some(':')) => {
                        cur.bump();
                        TokenKind::DoubleColon
                    }
                    ('|', Some('|')) => {
                        cur.bump();
                        TokenKind::Concat
                    }
                    _ => TokenKind::Other(c),
                }
            }
        };
        tokens.push(Token { kind, pos });
    }
}

/// Reads up to the closing `delim` (already past the opening one); a doubled delimiter
/// stands for itself. `None` if the input ends first.
fn quoted(cur: &mut Cursor<'_>, delim: char) -> Option<String> {
    let mut out = String::new();
    loop {
        let c = cur.bump()?;
        if c == delim {
            if cur.peek() == Some(delim) {
                cur.bump();
                out.push(delim);
            } else {
                return Some(out);
            }
        } else {
            out.push(c);
        }
    }
}

fn number(cur: &mut Cursor<'_>) -> String {
    let mut text = String::new();
    let digits = |cur: &mut Cursor<'_>, text: &mut String| {
        while let Some(c) = cur.peek().filter(char::is_ascii_digit) {
            text.push(c);
            cur.bump();
        }
    };
    digits(cur, &mut text);
    if cur.peek() == Some('.') && cur.peek2().is_some_and(|c| c.is_ascii_digit()) {
        text.push('.');
        cur.bump();
        digits(cur, &mut text);
    }
    if matches!(cur.peek(), Some('e' | 'E')) {
        let mut ahead = cur.chars.clone();
        ahead.next();
        let sign = ahead.peek().copied().filter(|c| *c == '+' || *c == '-');
        if sign.is_some() {
            ahead.next();
        }
        if ahead.peek().is_some_and(|c| c.is_ascii_digit()) {
            text.push('e');
            cur.bump();
            if let Some(s) = sign {
                text.push(s);
                cur.bump();
            }
            digits(cur, &mut text);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<TokenKind> {
        tokenize(text)
            .unwrap()
            .into_iter()
            .map(|t| t.kind)
            .collect()
    }

    #[test]
    fn words_strings_numbers_and_symbols() {
        let word = |t: &str, quoted| TokenKind::Word {
            text: t.to_string(),
            quoted,
        };
        assert_eq!(
            kinds("CREATE \"My Table\" 'it''s' 1.5e3 => :: || = ; -- done\n/* more */ x"),
            vec![
                word("CREATE", false),
                word("My Table", true),
                TokenKind::Str("it's".into()),
                TokenKind::Number("1.5e3".into()),
                TokenKind::Arrow,
                TokenKind::DoubleColon,
                TokenKind::Concat,
                TokenKind::Equals,
                TokenKind::Semicolon,
                word("x", false),
                TokenKind::Eof,
            ]
        );
        assert_eq!(
            kinds("t.c"),
            vec![
                word("t", false),
                TokenKind::Dot,
                word("c", false),
                TokenKind::Eof
            ]
        );
        assert_eq!(
            kinds("-1"),
            vec![
                TokenKind::Minus,
                TokenKind::Number("1".into()),
                TokenKind::Eof
            ]
        );
    }

    #[test]
    fn positions_count_lines_and_characters() {
        let tokens = tokenize("a\n  'multi\nline' é b").unwrap();
        let at: Vec<(u32, u32)> = tokens.iter().map(|t| (t.pos.line, t.pos.column)).collect();
        assert_eq!(at, vec![(1, 1), (2, 3), (3, 7), (3, 9), (3, 10)]);
    }

    #[test]
    fn bad_input_is_an_error_with_a_position() {
        let err = tokenize("x 'open").unwrap_err();
        assert_eq!(
            (err.message.as_str(), err.position),
            (
                "unterminated quoted string",
                Some(Position { line: 1, column: 3 })
            )
        );
        assert_eq!(kinds("count(*)")[2], TokenKind::Star);
        assert_eq!(kinds("a ? b")[1], TokenKind::Other('?'));
        assert_eq!(
            kinds("+ * / % < <= > >= <> !=")[..10],
            [
                TokenKind::Plus,
                TokenKind::Star,
                TokenKind::Slash,
                TokenKind::Percent,
                TokenKind::Less,
                TokenKind::LessEquals,
                TokenKind::Greater,
                TokenKind::GreaterEquals,
                TokenKind::NotEquals,
                TokenKind::NotEquals,
            ]
        );
        assert!(tokenize("\"\"").is_err());
        assert!(tokenize("/* never closed").is_err());
    }
}
