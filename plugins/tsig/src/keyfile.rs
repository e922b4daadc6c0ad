//! BIND key files (`named.conf` syntax, as `tsig-keygen` writes them), for
//! `secrets FILE`:
//!
//! ```text
//! key "name." {
//!     algorithm hmac-sha256;
//!     secret "base64…";
//! };
//! ```
//!
//! Any number of keys; `#`, `//` and `/* */` comments; the algorithm
//! defaults to hmac-sha256 as in CoreDNS. Errors name `file:line`.

use oxidns_server::ConfigError;
use oxidns_server::proto::name_from_str;
use oxidns_server::proto::tsig::{Algorithm, Key};

/// A word or quoted string, or one of `{`, `}`, `;`, with its line.
#[derive(Debug, PartialEq, Eq)]
struct Word {
    text: String,
    line: u32,
}

fn words(text: &str, file: &str) -> Result<Vec<Word>, ConfigError> {
    let mut out = Vec::new();
    let mut line = 1u32;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            c if c.is_whitespace() => {}
            '#' => while chars.next_if(|c| *c != '\n').is_some() {},
            '/' if chars.peek() == Some(&'/') => while chars.next_if(|c| *c != '\n').is_some() {},
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let start = line;
                let mut previous = ' ';
                loop {
                    match chars.next() {
                        Some('/') if previous == '*' => break,
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            previous = c;
                        }
                        None => return Err(ConfigError::new(file, start, "unterminated comment")),
                    }
                }
            }
            '{' | '}' | ';' => out.push(Word {
                text: c.to_string(),
                line,
            }),
            '"' => {
                let start = line;
                let mut word = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\n') => {
                            return Err(ConfigError::new(file, start, "unterminated string"));
                        }
                        Some(c) => word.push(c),
                        None => return Err(ConfigError::new(file, start, "unterminated string")),
                    }
                }
                out.push(Word { text: word, line });
            }
            c => {
                let mut word = c.to_string();
                while let Some(c) =
                    chars.next_if(|c| !c.is_whitespace() && !matches!(c, '{' | '}' | ';' | '"'))
                {
                    word.push(c);
                }
                out.push(Word { text: word, line });
            }
        }
    }
    Ok(out)
}

/// Every key in a key file's text.
pub fn parse(text: &str, file: &str) -> Result<Vec<Key>, ConfigError> {
    let words = words(text, file)?;
    let last_line = words.last().map_or(1, |w| w.line);
    let mut at = 0;
    let mut next = |expected: &str| -> Result<&Word, ConfigError> {
        let word = words.get(at).ok_or_else(|| {
            ConfigError::new(
                file,
                last_line,
                format!("expected {expected}, found the end of the file"),
            )
        })?;
        at += 1;
        Ok(word)
    };
    let mut keys = Vec::new();
    while let Ok(keyword) = next("") {
        if keyword.text != "key" {
            return Err(ConfigError::new(
                file,
                keyword.line,
                format!("expected 'key', found '{}'", keyword.text),
            ));
        }
        let name_word = next("a key name")?;
        let name = name_from_str(&name_word.text)
            .map_err(|e| ConfigError::new(file, name_word.line, e))?;
        let (name_line, open) = (name_word.line, next("'{'")?);
        if open.text != "{" {
            return Err(ConfigError::new(
                file,
                open.line,
                format!("expected '{{', found '{}'", open.text),
            ));
        }
        let mut algorithm = Algorithm::HmacSha256;
        let mut secret = None;
        loop {
            let option = next("'}'")?;
            match option.text.as_str() {
                "}" => break,
                "algorithm" => {
                    let value = next("an algorithm")?;
                    algorithm = Algorithm::from_name(&value.text)
                        .map_err(|e| ConfigError::new(file, value.line, e))?;
                }
                "secret" => {
                    let value = next("a secret")?;
                    secret = Some((value.text.clone(), value.line));
                }
                other => {
                    return Err(ConfigError::new(
                        file,
                        option.line,
                        format!("unknown key option '{other}' (algorithm, secret)"),
                    ));
                }
            }
            let end = next("';'")?;
            if end.text != ";" {
                return Err(ConfigError::new(
                    file,
                    end.line,
                    format!("expected ';', found '{}'", end.text),
                ));
            }
        }
        let end = next("';'")?;
        if end.text != ";" {
            return Err(ConfigError::new(
                file,
                end.line,
                format!("expected ';', found '{}'", end.text),
            ));
        }
        let Some((secret, secret_line)) = secret else {
            return Err(ConfigError::new(
                file,
                name_line,
                format!("key '{}' has no secret", name_word.text),
            ));
        };
        keys.push(
            Key::from_base64(&name, algorithm, &secret)
                .map_err(|e| ConfigError::new(file, secret_line, e))?,
        );
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_tsig_keygen_writes() {
        let text = "key \"xfr.example.\" {\n\talgorithm hmac-sha512;\n\tsecret \"c2VjcmV0\";\n};\n\
                    # another\nkey other { secret \"c2VjcmV0\"; }; // the default algorithm\n";
        let keys = parse(text, "keys.conf").unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].name().to_string(), "xfr.example");
        assert_eq!(keys[0].algorithm(), Algorithm::HmacSha512);
        assert_eq!(keys[1].algorithm(), Algorithm::HmacSha256);
    }

    #[test]
    fn md5_is_refused_at_its_line() {
        let text = "key k {\n algorithm hmac-md5;\n secret \"c2VjcmV0\";\n};\n";
        let error = parse(text, "keys.conf").unwrap_err().to_string();
        assert!(error.starts_with("keys.conf:2: "), "{error}");
        assert!(error.contains("not supported"), "{error}");
    }

    #[test]
    fn errors_name_the_line() {
        let missing = parse("key k {\n algorithm hmac-sha1;\n};\n", "f").unwrap_err();
        assert_eq!(missing.to_string(), "f:1: key 'k' has no secret");
        let bad = parse("key k {\n secret \"!!\";\n};", "f").unwrap_err();
        assert!(bad.to_string().starts_with("f:2: "), "{bad}");
        let unknown = parse("key k {\n\n colour blue;\n};", "f").unwrap_err();
        assert!(
            unknown.to_string().starts_with("f:3: unknown key option"),
            "{unknown}"
        );
        let unclosed = parse("key k {\n secret \"c2VjcmV0\";\n", "f").unwrap_err();
        assert!(
            unclosed.to_string().contains("end of the file"),
            "{unclosed}"
        );
    }
}
