//! Splits a Corefile into tokens, as CoreDNS's Caddyfile lexer does.
//!
//! Tokens are separated by white space; `#` at the start of a token begins a
//! comment that runs to the end of the line; `"…"` quotes a token (it may span
//! lines; `\"` and `\\` are escapes inside it). Line ends are kept as
//! [`Lexeme::Newline`] so the parser can tell where a directive ends.
//! `{$NAME}` and `{%NAME%}` are replaced by the environment variable NAME
//! (empty if unset).

use std::sync::Arc;

/// One word of a Corefile, with where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub text: String,
    pub file: Arc<str>,
    pub line: u32,
    /// Written in quotes: never a brace, a comment or a keyword.
    pub quoted: bool,
}

impl Token {
    /// `file:line`, the prefix of every config error.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    /// An unquoted token with exactly this text.
    pub fn is(&self, text: &str) -> bool {
        !self.quoted && self.text == text
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lexeme {
    Word(Token),
    Newline,
}

/// Why a Corefile could not be split into tokens.
#[derive(Debug)]
pub struct LexError {
    pub line: u32,
    pub message: String,
}

pub fn lex(input: &str, file: &Arc<str>) -> Result<Vec<Lexeme>, LexError> {
    let mut out = Vec::new();
    let mut chars = input.chars().peekable();
    let mut line: u32 = 1;
    let newline = |out: &mut Vec<Lexeme>| {
        if !matches!(out.last(), None | Some(Lexeme::Newline)) {
            out.push(Lexeme::Newline);
        }
    };
    while let Some(&c) = chars.peek() {
        match c {
            '\n' => {
                chars.next();
                newline(&mut out);
                line += 1;
            }
            c if c.is_whitespace() => {
                chars.next();
            }
            '#' => {
                while chars.peek().is_some_and(|&c| c != '\n') {
                    chars.next();
                }
            }
            '"' => {
                chars.next();
                let start = line;
                let mut text = String::new();
                loop {
                    match chars.next() {
                        None => {
                            return Err(LexError {
                                line: start,
                                message: "unterminated quoted string".into(),
                            });
                        }
                        Some('"') => break,
                        Some('\\') if matches!(chars.peek(), Some('"') | Some('\\')) => {
                            text.push(chars.next().expect("peeked"));
                        }
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            text.push(c);
                        }
                    }
                }
                out.push(Lexeme::Word(Token {
                    text: expand_env(&text),
                    file: file.clone(),
                    line: start,
                    quoted: true,
                }));
            }
            _ => {
                let mut text = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() {
                        break;
                    }
                    text.push(c);
                    chars.next();
                }
                out.push(Lexeme::Word(Token {
                    text: expand_env(&text),
                    file: file.clone(),
                    line,
                    quoted: false,
                }));
            }
        }
    }
    newline(&mut out);
    Ok(out)
}

/// Replaces `{$NAME}` and `{%NAME%}` with the value of NAME.
fn expand_env(text: &str) -> String {
    if !text.contains('{') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let var = if let Some(body) = tail.strip_prefix("{$") {
            body.find('}').map(|end| (&body[..end], end + 3))
        } else if let Some(body) = tail.strip_prefix("{%") {
            body.find("%}").map(|end| (&body[..end], end + 4))
        } else {
            None
        };
        match var {
            Some((name, len)) if !name.is_empty() => {
                out.push_str(&std::env::var(name).unwrap_or_default());
                rest = &tail[len..];
            }
            _ => {
                out.push('{');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(input: &str) -> Vec<String> {
        lex(input, &Arc::from("Corefile"))
            .unwrap()
            .into_iter()
            .map(|l| match l {
                Lexeme::Word(t) => t.text,
                Lexeme::Newline => "⏎".into(),
            })
            .collect()
    }

    #[test]
    fn splits_words_lines_and_comments() {
        assert_eq!(
            words(". {\n  whoami # hi\n\n\n  log\n}\n"),
            [".", "{", "⏎", "whoami", "⏎", "log", "⏎", "}", "⏎"]
        );
    }

    #[test]
    fn hash_inside_a_word_is_not_a_comment() {
        assert_eq!(words("a#b"), ["a#b", "⏎"]);
    }

    #[test]
    fn quoted_tokens_keep_spaces_and_escapes() {
        assert_eq!(
            words(r#"x "a b" "q\"t" "s\\l""#),
            ["x", "a b", "q\"t", "s\\l", "⏎"]
        );
    }

    #[test]
    fn quoted_token_spanning_lines_keeps_its_start_line() {
        let lexemes = lex("a \"b\nc\" d\ne", &Arc::from("F")).unwrap();
        let lines: Vec<u32> = lexemes
            .iter()
            .filter_map(|l| match l {
                Lexeme::Word(t) => Some(t.line),
                Lexeme::Newline => None,
            })
            .collect();
        assert_eq!(lines, [1, 1, 2, 3]);
    }

    #[test]
    fn unterminated_quote_is_an_error_at_its_line() {
        let err = lex("a\n\"b", &Arc::from("F")).unwrap_err();
        assert_eq!(err.line, 2);
    }

    #[test]
    fn environment_variables_are_replaced() {
        // SAFETY of the test: the variable name is unique to this test.
        unsafe { std::env::set_var("OXIDNS_LEXER_TEST", "example.org") };
        assert_eq!(
            words("{$OXIDNS_LEXER_TEST}:53 {%OXIDNS_LEXER_TEST%} x{$OXIDNS_UNSET_VAR}y {literal}"),
            ["example.org:53", "example.org", "xy", "{literal}", "⏎"]
        );
    }
}
