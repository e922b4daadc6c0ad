//! The Corefile: CoreDNS's configuration grammar (a dialect of Caddyfile v1).
//!
//! This module knows only grammar: server blocks, their keys, directives with
//! arguments and option blocks, snippets and `import`. What a directive means
//! is for its plugin to say ([`crate::plugin`]); what a key means is in [`key`].

pub mod key;
mod lexer;
mod parser;

pub use lexer::Token;
pub use parser::{Directive, ServerBlock, parse_file, parse_file_with_sources, parse_str};

use std::fmt;

/// A configuration problem, shown as `file:line: reason`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: u32,
    pub message: String,
}

impl ConfigError {
    pub fn new(file: impl Into<String>, line: u32, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.into(),
            line,
            message: message.into(),
        }
    }

    /// An error about this token.
    pub fn at(token: &Token, message: impl Into<String>) -> Self {
        ConfigError::new(token.file.as_ref(), token.line, message)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

impl std::error::Error for ConfigError {}
