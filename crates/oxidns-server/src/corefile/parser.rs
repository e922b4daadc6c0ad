//! From tokens to server blocks: snippets, `import`, keys and directives.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::ConfigError;
use super::lexer::{Lexeme, Token, lex};

/// How deep imports may nest; deeper is taken for a cycle.
const MAX_IMPORT_DEPTH: usize = 16;

/// `keys… { directives… }`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerBlock {
    /// The keys as written (`example.org:1053`, `dns://.`, `10.0.0.0/8`), split at commas.
    pub keys: Vec<Token>,
    pub directives: Vec<Directive>,
}

/// `name args… [{ lines… }]`: a directive, or a line inside a directive's block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directive {
    pub name: Token,
    pub args: Vec<Token>,
    /// The lines of the option block, if one was given.
    pub block: Vec<Directive>,
}

impl Directive {
    /// Arguments as text.
    pub fn arg_texts(&self) -> Vec<&str> {
        self.args.iter().map(|t| t.text.as_str()).collect()
    }

    /// An error about this directive's line, prefixed with its name.
    pub fn error(&self, message: impl std::fmt::Display) -> ConfigError {
        ConfigError::at(&self.name, format!("{}: {message}", self.name.text))
    }

    /// The arguments, if there are between `min` and `max` of them.
    pub fn args_between(&self, min: usize, max: usize) -> Result<&[Token], ConfigError> {
        let n = self.args.len();
        if n < min || n > max {
            let wanted = match (min, max) {
                (0, 0) => "no arguments".to_owned(),
                (min, usize::MAX) => format!("at least {min} argument(s)"),
                (min, max) if min == max => format!("{min} argument(s)"),
                (min, max) => format!("{min} to {max} arguments"),
            };
            return Err(self.error(format!("takes {wanted}, got {n}")));
        }
        Ok(&self.args)
    }

    /// Refuses an option block.
    pub fn no_block(&self) -> Result<(), ConfigError> {
        match self.block.first() {
            Some(line) => Err(ConfigError::at(
                &line.name,
                format!("{}: takes no options block", self.name.text),
            )),
            None => Ok(()),
        }
    }

    /// Refuses both arguments and an option block.
    pub fn bare(&self) -> Result<(), ConfigError> {
        self.args_between(0, 0)?;
        self.no_block()
    }

    /// The error for a line of this directive's block that names no known property.
    pub fn unknown_property(&self, line: &Directive) -> ConfigError {
        ConfigError::at(
            &line.name,
            format!("{}: unknown property '{}'", self.name.text, line.name.text),
        )
    }
}

/// Reads and parses a Corefile, following its imports.
pub fn parse_file(path: &Path) -> Result<Vec<ServerBlock>, ConfigError> {
    parse_file_with_sources(path).map(|(blocks, _)| blocks)
}

/// Like [`parse_file`], and also names every file that was read (the
/// Corefile first, then the imported files), for change detection.
pub fn parse_file_with_sources(
    path: &Path,
) -> Result<(Vec<ServerBlock>, Vec<PathBuf>), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(path.display().to_string(), 0, format!("cannot read: {e}"))
    })?;
    let mut expander = Expander::default();
    let blocks = expander.parse(&text, &path.display().to_string())?;
    let mut sources = vec![path.to_owned()];
    sources.append(&mut expander.imported);
    Ok((blocks, sources))
}

/// Parses Corefile text; `file` names it in errors and anchors relative imports.
pub fn parse_str(text: &str, file: &str) -> Result<Vec<ServerBlock>, ConfigError> {
    Expander::default().parse(text, file)
}

#[derive(Default)]
struct Expander {
    snippets: HashMap<String, Vec<Lexeme>>,
    /// Files read through `import`.
    imported: Vec<PathBuf>,
}

impl Expander {
    fn parse(&mut self, text: &str, file: &str) -> Result<Vec<ServerBlock>, ConfigError> {
        let lexemes = self.lex_file(text, file)?;
        let lexemes = self.expand(lexemes, 0, true)?;
        Blocks {
            lexemes: &lexemes,
            pos: 0,
        }
        .parse(file)
    }

    fn lex_file(&self, text: &str, file: &str) -> Result<Vec<Lexeme>, ConfigError> {
        let file: Arc<str> = Arc::from(file);
        lex(text, &file).map_err(|e| ConfigError::new(file.as_ref(), e.line, e.message))
    }

    /// Takes out snippet definitions and replaces `import` lines by what they name.
    fn expand(
        &mut self,
        input: Vec<Lexeme>,
        depth: usize,
        top_level: bool,
    ) -> Result<Vec<Lexeme>, ConfigError> {
        let mut out = Vec::with_capacity(input.len());
        let mut braces = 0usize;
        let mut pos = 0;
        while pos < input.len() {
            let line_start = pos == 0 || input[pos - 1] == Lexeme::Newline;
            let Lexeme::Word(word) = &input[pos] else {
                out.push(Lexeme::Newline);
                pos += 1;
                continue;
            };
            if line_start
                && top_level
                && braces == 0
                && is_snippet_name(word)
                && let Some(Lexeme::Word(open)) = input.get(pos + 1)
                && open.is("{")
            {
                pos = self.define_snippet(&input, pos)?;
                continue;
            }
            if line_start && word.is("import") {
                let mut args = Vec::new();
                pos += 1;
                while let Some(Lexeme::Word(arg)) = input.get(pos) {
                    args.push(arg.clone());
                    pos += 1;
                }
                let imported = self.import(word, &args, depth, top_level && braces == 0)?;
                out.extend(imported);
                if out.last() != Some(&Lexeme::Newline) {
                    out.push(Lexeme::Newline);
                }
                continue;
            }
            if word.is("{") {
                braces += 1;
            } else if word.is("}") {
                braces = braces.saturating_sub(1);
            }
            out.push(input[pos].clone());
            pos += 1;
        }
        Ok(out)
    }

    /// Stores `(name) { … }` starting at `pos`; returns the position after it.
    fn define_snippet(&mut self, input: &[Lexeme], pos: usize) -> Result<usize, ConfigError> {
        let Lexeme::Word(name_token) = &input[pos] else {
            unreachable!("called on a word")
        };
        let name = name_token.text[1..name_token.text.len() - 1].to_owned();
        let mut depth = 0usize;
        let mut end = pos + 1;
        loop {
            match input.get(end) {
                None => {
                    return Err(ConfigError::at(
                        name_token,
                        format!("snippet '{name}' has no closing '}}'"),
                    ));
                }
                Some(Lexeme::Word(t)) if t.is("{") => depth += 1,
                Some(Lexeme::Word(t)) if t.is("}") => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            end += 1;
        }
        if self.snippets.contains_key(&name) {
            return Err(ConfigError::at(
                name_token,
                format!("snippet '{name}' is defined twice"),
            ));
        }
        self.snippets.insert(name, input[pos + 2..end].to_vec());
        Ok(end + 1)
    }

    fn import(
        &mut self,
        import: &Token,
        args: &[Token],
        depth: usize,
        top_level: bool,
    ) -> Result<Vec<Lexeme>, ConfigError> {
        let Some(target) = args.first() else {
            return Err(ConfigError::at(
                import,
                "import needs a snippet name or a file",
            ));
        };
        if depth >= MAX_IMPORT_DEPTH {
            return Err(ConfigError::at(
                import,
                format!(
                    "imports nest deeper than {MAX_IMPORT_DEPTH} levels: is there an import cycle?"
                ),
            ));
        }
        if let Some(snippet) = self.snippets.get(&target.text) {
            let body = substitute_args(snippet, &args[1..]);
            return self.expand(body, depth + 1, top_level);
        }
        let mut out = Vec::new();
        for path in import_paths(import, &target.text)? {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                ConfigError::at(target, format!("cannot import {}: {e}", path.display()))
            })?;
            let lexemes = self.lex_file(&text, &path.display().to_string())?;
            out.extend(self.expand(lexemes, depth + 1, top_level)?);
            self.imported.push(path);
        }
        Ok(out)
    }
}

fn is_snippet_name(token: &Token) -> bool {
    !token.quoted
        && token.text.len() > 2
        && token.text.starts_with('(')
        && token.text.ends_with(')')
}

/// Replaces `{args[N]}` in a snippet's tokens with the import's arguments.
fn substitute_args(body: &[Lexeme], args: &[Token]) -> Vec<Lexeme> {
    body.iter()
        .map(|lexeme| match lexeme {
            Lexeme::Word(token) if token.text.contains("{args[") => {
                let mut token = token.clone();
                for (index, arg) in args.iter().enumerate() {
                    token.text = token.text.replace(&format!("{{args[{index}]}}"), &arg.text);
                }
                Lexeme::Word(token)
            }
            other => other.clone(),
        })
        .collect()
}

/// The files an `import` names, relative to the importing file's folder.
fn import_paths(import: &Token, pattern: &str) -> Result<Vec<PathBuf>, ConfigError> {
    let base = Path::new(import.file.as_ref())
        .parent()
        .unwrap_or(Path::new("."));
    let full = if Path::new(pattern).is_absolute() {
        PathBuf::from(pattern)
    } else {
        base.join(pattern)
    };
    let is_glob = pattern.contains(['*', '?', '[']);
    if !is_glob {
        if !full.exists() {
            return Err(ConfigError::at(
                import,
                format!("import: no snippet or file named '{pattern}'"),
            ));
        }
        return Ok(vec![full]);
    }
    let matches = glob::glob(&full.to_string_lossy())
        .map_err(|e| ConfigError::at(import, format!("import: bad pattern '{pattern}': {e}")))?;
    let mut paths: Vec<PathBuf> = matches.filter_map(Result::ok).collect();
    paths.sort();
    if paths.is_empty() {
        tracing::warn!("no files match import pattern {pattern}");
    }
    Ok(paths)
}

struct Blocks<'a> {
    lexemes: &'a [Lexeme],
    pos: usize,
}

impl Blocks<'_> {
    fn parse(mut self, file: &str) -> Result<Vec<ServerBlock>, ConfigError> {
        let mut blocks = Vec::new();
        loop {
            self.skip_newlines();
            let Some(first) = self.word() else { break };
            let first = first.clone();
            let keys = self.keys()?;
            let directives = if self.word().is_some_and(|t| t.is("{")) {
                self.pos += 1;
                self.lines(Some(&first))?
            } else if blocks.is_empty() {
                // One server block may be written without braces: the rest of the file is its body.
                let directives = self.lines(None)?;
                if self.pos < self.lexemes.len() {
                    return Err(ConfigError::at(
                        self.word().expect("stopped at a word"),
                        "unexpected '}'",
                    ));
                }
                directives
            } else {
                return Err(ConfigError::at(
                    &first,
                    "expected '{' after the server block keys",
                ));
            };
            blocks.push(ServerBlock { keys, directives });
        }
        if blocks.is_empty() {
            return Err(ConfigError::new(file, 1, "no server blocks"));
        }
        Ok(blocks)
    }

    fn word(&self) -> Option<&Token> {
        match self.lexemes.get(self.pos) {
            Some(Lexeme::Word(t)) => Some(t),
            _ => None,
        }
    }

    fn skip_newlines(&mut self) {
        while self.lexemes.get(self.pos) == Some(&Lexeme::Newline) {
            self.pos += 1;
        }
    }

    /// Keys up to `{` or the end of the line; a line ending in a comma continues.
    fn keys(&mut self) -> Result<Vec<Token>, ConfigError> {
        let mut keys = Vec::new();
        loop {
            match self.lexemes.get(self.pos) {
                Some(Lexeme::Word(t)) if t.is("{") => break,
                Some(Lexeme::Word(t)) if t.is("}") => {
                    return Err(ConfigError::at(t, "unexpected '}'"));
                }
                Some(Lexeme::Word(t)) => {
                    for piece in t.text.split(',').filter(|p| !p.is_empty()) {
                        keys.push(Token {
                            text: piece.to_owned(),
                            ..t.clone()
                        });
                    }
                    self.pos += 1;
                }
                Some(Lexeme::Newline) => {
                    let continued = matches!(
                        self.lexemes.get(self.pos - 1),
                        Some(Lexeme::Word(t)) if t.text.ends_with(',')
                    );
                    if !continued {
                        break;
                    }
                    self.skip_newlines();
                }
                None => break,
            }
        }
        Ok(keys)
    }

    /// Directive lines until the `}` that closes `opener` (or the end of input when `None`).
    fn lines(&mut self, opener: Option<&Token>) -> Result<Vec<Directive>, ConfigError> {
        let mut lines = Vec::new();
        loop {
            self.skip_newlines();
            let Some(word) = self.word().cloned() else {
                return match opener {
                    Some(open) => Err(ConfigError::at(open, "block is not closed: missing '}'")),
                    None => Ok(lines),
                };
            };
            if word.is("}") {
                if opener.is_some() {
                    self.pos += 1;
                    return Ok(lines);
                }
                return Ok(lines);
            }
            if word.is("{") {
                return Err(ConfigError::at(&word, "unexpected '{'"));
            }
            self.pos += 1;
            let mut args = Vec::new();
            let mut block = Vec::new();
            while let Some(arg) = self.word().cloned() {
                if arg.is("}") {
                    break;
                }
                self.pos += 1;
                if arg.is("{") {
                    block = self.lines(Some(&word))?;
                    break;
                }
                args.push(arg);
            }
            lines.push(Directive {
                name: word,
                args,
                block,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(blocks: &[ServerBlock]) -> String {
        fn line(d: &Directive, out: &mut String) {
            out.push_str(&d.name.text);
            for a in &d.args {
                out.push(' ');
                out.push_str(&a.text);
            }
            if !d.block.is_empty() {
                out.push_str(" {");
                for inner in &d.block {
                    out.push(' ');
                    line(inner, out);
                    out.push(';');
                }
                out.push_str(" }");
            }
        }
        let mut out = String::new();
        for b in blocks {
            let keys: Vec<&str> = b.keys.iter().map(|k| k.text.as_str()).collect();
            out.push_str(&keys.join(" "));
            out.push_str(" [");
            for d in &b.directives {
                line(d, &mut out);
                out.push_str("; ");
            }
            out.push_str("] ");
        }
        out.trim_end().to_owned()
    }

    fn parse(text: &str) -> Result<String, String> {
        parse_str(text, "Corefile")
            .map(|b| shape(&b))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn grammar_table() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            (". {\n whoami\n}", Ok(". [whoami; ]")),
            (
                "example.org example.net:1053 {\n log\n}",
                Ok("example.org example.net:1053 [log; ]"),
            ),
            ("a.org, b.org {\n}", Ok("a.org b.org []")),
            ("a.org,b.org {\n}", Ok("a.org b.org []")),
            ("a.org,\n  b.org {\n}", Ok("a.org b.org []")),
            (
                ". {\n forward . 1.2.3.4 {\n  max_fails 3\n  policy random\n }\n cache\n}",
                Ok(". [forward . 1.2.3.4 { max_fails 3; policy random; }; cache; ]"),
            ),
            (
                "example.org\nwhoami\nlog",
                Ok("example.org [whoami; log; ]"),
            ),
            (". { whoami }", Ok(". [whoami; ]")),
            (
                "# only a comment\n. {\n  # inside\n  whoami # trailing\n}\n",
                Ok(". [whoami; ]"),
            ),
            (
                ". {\n template IN A { answer \"{{ .Name }} 60 IN A 1.2.3.4\" }\n}",
                Ok(". [template IN A { answer {{ .Name }} 60 IN A 1.2.3.4; }; ]"),
            ),
            (
                ". {\n whoami\n",
                Err("Corefile:1: block is not closed: missing '}'"),
            ),
            (". {\n whoami\n}\n}", Err("Corefile:4: unexpected '}'")),
            (". {\n { \n}", Err("Corefile:2: unexpected '{'")),
            ("", Err("Corefile:1: no server blocks")),
            (
                "a.org {\n}\nb.org\nwhoami",
                Err("Corefile:3: expected '{' after the server block keys"),
            ),
            (
                ". {\n log \"unterminated\n}",
                Err("Corefile:2: unterminated quoted string"),
            ),
        ];
        for (input, expected) in cases {
            let got = parse(input);
            let expected = expected.map(str::to_owned).map_err(str::to_owned);
            assert_eq!(got, expected, "input: {input:?}");
        }
    }

    #[test]
    fn snippets_are_imported_with_arguments() {
        let text = "(common) {\n  log\n  errors\n}\n(fwd) {\n forward . {args[0]} {args[1]}\n}\n. {\n import common\n import fwd 1.1.1.1 9.9.9.9\n whoami\n}";
        assert_eq!(
            parse(text).unwrap(),
            ". [log; errors; forward . 1.1.1.1 9.9.9.9; whoami; ]"
        );
    }

    #[test]
    fn a_snippet_imported_twice_gives_two_lines() {
        assert_eq!(
            parse("(s) {\n log\n}\n. {\n import s\n import s\n}").unwrap(),
            ". [log; log; ]"
        );
    }

    #[test]
    fn imported_snippet_tokens_keep_their_lines() {
        let blocks = parse_str("(s) {\n  log\n}\n. {\n import s\n}", "C").unwrap();
        assert_eq!(blocks[0].directives[0].name.line, 2);
    }

    #[test]
    fn snippet_defined_twice_is_an_error() {
        assert_eq!(
            parse("(s) {\n}\n(s) {\n}\n. {\n}").unwrap_err(),
            "Corefile:3: snippet 's' is defined twice"
        );
    }

    #[test]
    fn files_and_globs_are_imported_relative_to_the_importer() {
        let dir = std::env::temp_dir().join(format!("oxidns-import-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("conf.d")).unwrap();
        std::fs::write(dir.join("conf.d/a.conf"), "a.org {\n whoami\n}\n").unwrap();
        std::fs::write(dir.join("conf.d/b.conf"), "b.org {\n log\n}\n").unwrap();
        std::fs::write(dir.join("plugins.inc"), "errors\n").unwrap();
        std::fs::write(
            dir.join("Corefile"),
            "import conf.d/*.conf\n. {\n import plugins.inc\n}\n",
        )
        .unwrap();
        let blocks = parse_file(&dir.join("Corefile")).unwrap();
        assert_eq!(
            shape(&blocks),
            "a.org [whoami; ] b.org [log; ] . [errors; ]"
        );
        assert!(blocks[0].keys[0].file.ends_with("a.conf"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_import_is_an_error_and_empty_glob_is_not() {
        assert_eq!(
            parse(". {\n import nothing-here.conf\n}").unwrap_err(),
            "Corefile:2: import: no snippet or file named 'nothing-here.conf'"
        );
        assert_eq!(
            parse("import /nonexistent-dir/*.conf\n. {\n}").unwrap(),
            ". []"
        );
    }

    #[test]
    fn import_cycle_is_bounded() {
        let dir = std::env::temp_dir().join(format!("oxidns-cycle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("Corefile"), ". {\n import loop.inc\n}\n").unwrap();
        std::fs::write(dir.join("loop.inc"), "import loop.inc\n").unwrap();
        let err = parse_file(&dir.join("Corefile")).unwrap_err();
        assert!(err.message.contains("import cycle"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn recursive_snippet_is_bounded() {
        let err = parse("(s) {\n import s\n}\n. {\n import s\n}").unwrap_err();
        assert!(err.contains("import cycle"), "{err}");
    }
}
