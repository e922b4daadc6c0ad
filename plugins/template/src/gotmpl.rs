//! The part of Go's text/template that CoreDNS templates use: text and
//! `{{ pipeline }}` actions, where a pipeline is commands joined by `|`, a
//! command is a field chain (`.Group.a`), a literal, a parenthesised
//! pipeline or a function call (`index`, `len`, `print`, `printf`,
//! `println`, `eq` …, `and`, `or`, `not`, `parseInt`), and `.Meta "key"`.
//! `{{-`/`-}}` trim white space and `{{/* */}}` comments are understood.
//!
//! Control actions (`if`, `range`, `with`, `define`, `template`, `block`,
//! `else`, `end`, `break`, `continue`) and variables (`$x`) are refused
//! when the template is compiled, so a Corefile that needs them fails at
//! start-up instead of answering wrongly.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use oxidns_server::plugin::Metadata;

/// What a template is rendered with: CoreDNS's `templateData`.
#[derive(Clone, Debug, Default)]
pub struct Data<'r> {
    pub zone: String,
    pub name: String,
    pub regex: String,
    pub matches: Vec<String>,
    pub groups: BTreeMap<String, String>,
    pub class: String,
    pub rtype: String,
    pub remote: String,
    /// The question as received: name (case kept), type and class numbers.
    pub question: (String, u16, u16),
    /// `.Meta "key"`: the request's metadata.
    pub meta: Option<&'r Metadata>,
}

/// The fields of [`Data`] a template may name.
const FIELDS: &[&str] = &[
    "Zone", "Name", "Regex", "Match", "Group", "Class", "Type", "Remote", "Question", "Meta",
];

const FUNCTIONS: &[&str] = &[
    "and", "or", "not", "len", "index", "print", "printf", "println", "eq", "ne", "lt", "le", "gt",
    "ge", "parseInt",
];

const UNSUPPORTED_KEYWORDS: &[&str] = &[
    "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
];

/// A compiled template.
#[derive(Clone, Debug)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Clone, Debug)]
enum Node {
    Text(String),
    Action(Pipeline),
}

#[derive(Clone, Debug)]
struct Pipeline {
    commands: Vec<Command>,
}

#[derive(Clone, Debug)]
struct Command {
    operands: Vec<Operand>,
}

#[derive(Clone, Debug)]
enum Operand {
    /// `.A.B`; empty for `.` itself.
    Field(Vec<String>),
    Function(String),
    Str(String),
    Int(i64),
    Bool(bool),
    Nil,
    /// `( pipeline )`, with fields after the closing parenthesis.
    Group(Box<Pipeline>, Vec<String>),
}

/// A value while a template runs.
#[derive(Clone, Debug, PartialEq)]
enum Value {
    Str(String),
    Int(i64),
    Uint(u64),
    Bool(bool),
    List(Vec<String>),
    Map(BTreeMap<String, String>),
    Question(String, u16, u16),
    Data,
    Nil,
}

impl Template {
    /// Compiles `text`; the error says what is wrong and where.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut nodes = Vec::new();
        let mut rest = text;
        let mut trim_next_text = false;
        while let Some(start) = rest.find("{{") {
            let mut before = &rest[..start];
            if trim_next_text {
                before = before.trim_start();
            }
            let mut inner = &rest[start + 2..];
            let trim_left = inner.starts_with("- ")
                || inner.starts_with("-\t")
                || inner.starts_with("-\n")
                || inner.starts_with("-\r");
            if trim_left {
                before = before.trim_end();
                inner = &inner[1..];
            }
            if !before.is_empty() {
                nodes.push(Node::Text(before.to_owned()));
            }
            let end = find_action_end(inner)?;
            let mut body = &inner[..end];
            trim_next_text = false;
            let mut after = &inner[end + 2..];
            if let Some(stripped) = body.strip_suffix('-')
                && stripped.ends_with(char::is_whitespace)
            {
                body = stripped;
                trim_next_text = true;
            }
            let body = body.trim();
            if body.starts_with("/*") {
                if !body.ends_with("*/") {
                    return Err("unclosed comment".to_owned());
                }
            } else {
                let tokens = lex(body)?;
                let mut parser = Parser {
                    tokens: &tokens,
                    pos: 0,
                };
                let pipeline = parser.pipeline()?;
                if parser.pos < tokens.len() {
                    return Err(format!("unexpected {} in action", tokens[parser.pos]));
                }
                nodes.push(Node::Action(pipeline));
            }
            if trim_next_text {
                after = after.trim_start();
                trim_next_text = false;
            }
            rest = after;
        }
        if trim_next_text {
            rest = rest.trim_start();
        }
        if !rest.is_empty() {
            nodes.push(Node::Text(rest.to_owned()));
        }
        Ok(Template { nodes })
    }

    /// Whether the template has no actions: its text is its output.
    pub fn is_static(&self) -> bool {
        self.nodes.iter().all(|n| matches!(n, Node::Text(_)))
    }

    /// Fields of the data that the template names but that do not exist.
    pub fn unknown_fields(&self) -> Vec<String> {
        let mut unknown = Vec::new();
        for node in &self.nodes {
            if let Node::Action(p) = node {
                p.unknown_fields(&mut unknown);
            }
        }
        unknown
    }

    pub fn render(&self, data: &Data) -> Result<String, String> {
        let mut out = String::new();
        for node in &self.nodes {
            match node {
                Node::Text(text) => out.push_str(text),
                Node::Action(pipeline) => {
                    let value = pipeline.eval(data)?;
                    out.push_str(&print_value(&value));
                }
            }
        }
        Ok(out)
    }
}

/// Where the action that starts `inner` ends (the index of its `}}`),
/// skipping quoted strings.
fn find_action_end(inner: &str) -> Result<usize, String> {
    let bytes = inner.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if bytes.get(i + 1) == Some(&b'}') => return Ok(i),
            _ => {}
        }
        i += 1;
    }
    Err("unclosed action".to_owned())
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    /// `.Name`, or `.` alone (empty).
    Field(String),
    Ident(String),
    Str(String),
    Number(i64),
    Pipe,
    Open,
    Close,
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Token::Field(name) => write!(f, "'.{name}'"),
            Token::Ident(name) => write!(f, "'{name}'"),
            Token::Str(s) => write!(f, "{s:?}"),
            Token::Number(n) => write!(f, "'{n}'"),
            Token::Pipe => f.write_str("'|'"),
            Token::Open => f.write_str("'('"),
            Token::Close => f.write_str("')'"),
        }
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn lex(body: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = body.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '|' => {
                tokens.push(Token::Pipe);
                i += 1;
            }
            '(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            '.' if !chars.get(i + 1).is_some_and(|c| c.is_ascii_digit()) => {
                let start = i + 1;
                i = start;
                while i < chars.len() && is_ident_char(chars[i]) {
                    i += 1;
                }
                tokens.push(Token::Field(chars[start..i].iter().collect()));
            }
            '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated quoted string".to_owned()),
                        Some('"') => break,
                        Some('\\') => {
                            let escaped = match chars.get(i + 1) {
                                Some('n') => '\n',
                                Some('t') => '\t',
                                Some('\\') => '\\',
                                Some('"') => '"',
                                Some(other) => {
                                    return Err(format!("unsupported escape '\\{other}'"));
                                }
                                None => return Err("unterminated quoted string".to_owned()),
                            };
                            s.push(escaped);
                            i += 2;
                        }
                        Some(c) => {
                            s.push(*c);
                            i += 1;
                        }
                    }
                }
                i += 1;
                tokens.push(Token::Str(s));
            }
            '`' => {
                let start = i + 1;
                let Some(len) = chars[start..].iter().position(|c| *c == '`') else {
                    return Err("unterminated raw string".to_owned());
                };
                tokens.push(Token::Str(chars[start..start + len].iter().collect()));
                i = start + len + 1;
            }
            '$' => return Err("variables ('$') are not supported".to_owned()),
            '\'' => return Err("character constants are not supported".to_owned()),
            c if c.is_ascii_digit() || c == '-' || c == '+' => {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                tokens.push(Token::Number(
                    parse_int_literal(&text)
                        .ok_or_else(|| format!("bad number syntax: {text:?}"))?,
                ));
            }
            c if is_ident_char(c) => {
                let start = i;
                while i < chars.len() && is_ident_char(chars[i]) {
                    i += 1;
                }
                tokens.push(Token::Ident(chars[start..i].iter().collect()));
            }
            ':' | '=' => return Err("variables (':=', '=') are not supported".to_owned()),
            other => return Err(format!("unexpected {other:?} in action")),
        }
    }
    Ok(tokens)
}

/// An integer constant as Go writes it: decimal, 0x…, 0o…, 0b…, 0… (octal), `_` separators.
fn parse_int_literal(text: &str) -> Option<i64> {
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let digits = digits.replace('_', "");
    let lower = digits.to_ascii_lowercase();
    let (radix, body) = if let Some(hex) = lower.strip_prefix("0x") {
        (16, hex.to_owned())
    } else if let Some(oct) = lower.strip_prefix("0o") {
        (8, oct.to_owned())
    } else if let Some(bin) = lower.strip_prefix("0b") {
        (2, bin.to_owned())
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_owned())
    } else {
        (10, lower)
    };
    if body.is_empty() {
        return None;
    }
    let value = i64::from_str_radix(&body, radix).ok()?;
    Some(if negative { -value } else { value })
}

struct Parser<'t> {
    tokens: &'t [Token],
    pos: usize,
}

impl Parser<'_> {
    fn pipeline(&mut self) -> Result<Pipeline, String> {
        let mut commands = vec![self.command()?];
        while self.tokens.get(self.pos) == Some(&Token::Pipe) {
            self.pos += 1;
            commands.push(self.command()?);
        }
        Ok(Pipeline { commands })
    }

    fn command(&mut self) -> Result<Command, String> {
        let mut operands = Vec::new();
        while let Some(token) = self.tokens.get(self.pos) {
            if matches!(token, Token::Pipe | Token::Close) {
                break;
            }
            operands.push(self.operand()?);
        }
        if operands.is_empty() {
            return Err("missing value for command".to_owned());
        }
        Ok(Command { operands })
    }

    fn fields(&mut self) -> Vec<String> {
        let mut fields = Vec::new();
        while let Some(Token::Field(name)) = self.tokens.get(self.pos) {
            if name.is_empty() {
                break;
            }
            fields.push(name.clone());
            self.pos += 1;
        }
        fields
    }

    fn operand(&mut self) -> Result<Operand, String> {
        let token = self.tokens[self.pos].clone();
        self.pos += 1;
        Ok(match token {
            Token::Field(name) if name.is_empty() => Operand::Field(Vec::new()),
            Token::Field(name) => {
                let mut chain = vec![name];
                chain.extend(self.fields());
                Operand::Field(chain)
            }
            Token::Str(s) => Operand::Str(s),
            Token::Number(n) => Operand::Int(n),
            Token::Ident(word) => match word.as_str() {
                "true" => Operand::Bool(true),
                "false" => Operand::Bool(false),
                "nil" => Operand::Nil,
                w if UNSUPPORTED_KEYWORDS.contains(&w) => {
                    return Err(format!(
                        "'{w}' is not supported: only pipelines of fields, literals and functions are"
                    ));
                }
                w if FUNCTIONS.contains(&w) => Operand::Function(word),
                w if ["html", "js", "urlquery", "slice", "call"].contains(&w) => {
                    return Err(format!("function \"{w}\" is not supported"));
                }
                _ => return Err(format!("function \"{word}\" not defined")),
            },
            Token::Open => {
                let inner = self.pipeline()?;
                if self.tokens.get(self.pos) != Some(&Token::Close) {
                    return Err("unclosed left paren".to_owned());
                }
                self.pos += 1;
                Operand::Group(Box::new(inner), self.fields())
            }
            Token::Close => return Err("unexpected right paren".to_owned()),
            Token::Pipe => return Err("missing value for command".to_owned()),
        })
    }
}

impl Pipeline {
    fn unknown_fields(&self, unknown: &mut Vec<String>) {
        for command in &self.commands {
            for operand in &command.operands {
                match operand {
                    Operand::Field(chain) => {
                        if let Some(first) = chain.first()
                            && !FIELDS.contains(&first.as_str())
                        {
                            unknown.push(first.clone());
                        }
                    }
                    Operand::Group(inner, _) => inner.unknown_fields(unknown),
                    _ => {}
                }
            }
        }
    }

    fn eval(&self, data: &Data) -> Result<Value, String> {
        let mut value = None;
        for command in &self.commands {
            value = Some(command.eval(data, value)?);
        }
        Ok(value.unwrap_or(Value::Nil))
    }
}

impl Command {
    /// Runs the command; `piped` is the previous command's result, passed as the last argument.
    fn eval(&self, data: &Data, piped: Option<Value>) -> Result<Value, String> {
        let (first, rest) = self
            .operands
            .split_first()
            .expect("commands are never empty");
        let args = || -> Result<Vec<Value>, String> {
            let mut args = rest
                .iter()
                .map(|o| o.eval(data))
                .collect::<Result<Vec<_>, _>>()?;
            args.extend(piped.clone());
            Ok(args)
        };
        match first {
            Operand::Function(name) => call(name, args()?),
            Operand::Field(chain) if chain.len() == 1 && chain[0] == "Meta" => {
                let args = args()?;
                match args.as_slice() {
                    [Value::Str(key)] => Ok(Value::Str(
                        data.meta
                            .and_then(|meta| meta.get(key))
                            .unwrap_or_default()
                            .to_owned(),
                    )),
                    [_] => Err("wrong type for value; expected string".to_owned()),
                    _ => Err(format!(
                        "wrong number of args for Meta: want 1 got {}",
                        args.len()
                    )),
                }
            }
            operand => {
                if !rest.is_empty() || piped.is_some() {
                    return Err(format!("can't give argument to non-function {operand}"));
                }
                operand.eval(data)
            }
        }
    }
}

impl std::fmt::Display for Operand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Operand::Field(chain) if chain.is_empty() => f.write_str("."),
            Operand::Field(chain) => write!(f, ".{}", chain.join(".")),
            Operand::Function(name) => f.write_str(name),
            Operand::Str(s) => write!(f, "{s:?}"),
            Operand::Int(n) => write!(f, "{n}"),
            Operand::Bool(b) => write!(f, "{b}"),
            Operand::Nil => f.write_str("nil"),
            Operand::Group(..) => f.write_str("(…)"),
        }
    }
}

impl Operand {
    fn eval(&self, data: &Data) -> Result<Value, String> {
        match self {
            Operand::Field(chain) => field_chain(Value::Data, chain, data),
            Operand::Function(name) => call(name, Vec::new()),
            Operand::Str(s) => Ok(Value::Str(s.clone())),
            Operand::Int(n) => Ok(Value::Int(*n)),
            Operand::Bool(b) => Ok(Value::Bool(*b)),
            Operand::Nil => Err("nil is not a command".to_owned()),
            Operand::Group(inner, chain) => field_chain(inner.eval(data)?, chain, data),
        }
    }
}

fn field_chain(mut value: Value, chain: &[String], data: &Data) -> Result<Value, String> {
    for field in chain {
        value = match (value, field.as_str()) {
            (Value::Data, "Zone") => Value::Str(data.zone.clone()),
            (Value::Data, "Name") => Value::Str(data.name.clone()),
            (Value::Data, "Regex") => Value::Str(data.regex.clone()),
            (Value::Data, "Match") => Value::List(data.matches.clone()),
            (Value::Data, "Group") => Value::Map(data.groups.clone()),
            (Value::Data, "Class") => Value::Str(data.class.clone()),
            (Value::Data, "Type") => Value::Str(data.rtype.clone()),
            (Value::Data, "Remote") => Value::Str(data.remote.clone()),
            (Value::Data, "Question") => {
                let (name, qtype, qclass) = data.question.clone();
                Value::Question(name, qtype, qclass)
            }
            (Value::Data, "Meta") => {
                return Err("wrong number of args for Meta: want 1 got 0".to_owned());
            }
            (Value::Question(name, _, _), "Name") => Value::Str(name),
            (Value::Question(_, qtype, _), "Qtype") => Value::Uint(u64::from(qtype)),
            (Value::Question(_, _, qclass), "Qclass") => Value::Uint(u64::from(qclass)),
            (Value::Map(map), key) => Value::Str(map.get(key).cloned().unwrap_or_default()),
            (value, field) => {
                return Err(format!(
                    "can't evaluate field {field} in type {}",
                    type_name(&value)
                ));
            }
        };
    }
    Ok(value)
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Str(_) => "string",
        Value::Int(_) => "int",
        Value::Uint(_) => "uint64",
        Value::Bool(_) => "bool",
        Value::List(_) => "[]string",
        Value::Map(_) => "map[string]string",
        Value::Question(..) => "*dns.Question",
        Value::Data => "*template.templateData",
        Value::Nil => "nil",
    }
}

/// As Go's fmt.Sprint prints one value.
fn print_value(value: &Value) -> String {
    match value {
        Value::Str(s) => s.clone(),
        Value::Int(n) => n.to_string(),
        Value::Uint(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::List(items) => format!("[{}]", items.join(" ")),
        Value::Map(map) => {
            let items: Vec<String> = map.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            format!("map[{}]", items.join(" "))
        }
        Value::Question(name, qtype, qclass) => format!(
            ";{name}\t{}\t {}",
            oxidns_server::proto::Class::from_int(*qclass),
            oxidns_server::proto::Rtype::from_int(*qtype)
        ),
        Value::Data => "{…}".to_owned(),
        Value::Nil => "<no value>".to_owned(),
    }
}

fn truth(value: &Value) -> bool {
    match value {
        Value::Str(s) => !s.is_empty(),
        Value::Int(n) => *n != 0,
        Value::Uint(n) => *n != 0,
        Value::Bool(b) => *b,
        Value::List(items) => !items.is_empty(),
        Value::Map(map) => !map.is_empty(),
        Value::Question(..) | Value::Data => true,
        Value::Nil => false,
    }
}

fn as_int(value: &Value) -> Option<i128> {
    match value {
        Value::Int(n) => Some(i128::from(*n)),
        Value::Uint(n) => Some(i128::from(*n)),
        _ => None,
    }
}

fn call(name: &str, args: Vec<Value>) -> Result<Value, String> {
    let arity = |want: usize| {
        if args.len() == want {
            Ok(())
        } else {
            Err(format!(
                "wrong number of args for {name}: want {want} got {}",
                args.len()
            ))
        }
    };
    let at_least = |want: usize| {
        if args.len() >= want {
            Ok(())
        } else {
            Err(format!(
                "wrong number of args for {name}: want at least {want} got {}",
                args.len()
            ))
        }
    };
    match name {
        "and" => {
            at_least(1)?;
            Ok(args
                .iter()
                .find(|v| !truth(v))
                .unwrap_or_else(|| args.last().expect("at least one"))
                .clone())
        }
        "or" => {
            at_least(1)?;
            Ok(args
                .iter()
                .find(|v| truth(v))
                .unwrap_or_else(|| args.last().expect("at least one"))
                .clone())
        }
        "not" => {
            arity(1)?;
            Ok(Value::Bool(!truth(&args[0])))
        }
        "len" => {
            arity(1)?;
            let len = match &args[0] {
                Value::Str(s) => s.len(),
                Value::List(items) => items.len(),
                Value::Map(map) => map.len(),
                other => {
                    return Err(format!(
                        "error calling len: len of type {}",
                        type_name(other)
                    ));
                }
            };
            Ok(Value::Int(len as i64))
        }
        "index" => {
            at_least(1)?;
            let mut value = args[0].clone();
            for index in &args[1..] {
                value = match (&value, index) {
                    (Value::List(items), index) => {
                        let Some(i) = as_int(index) else {
                            return Err(format!(
                                "error calling index: cannot index slice/array with type {}",
                                type_name(index)
                            ));
                        };
                        let item = usize::try_from(i).ok().and_then(|i| items.get(i));
                        match item {
                            Some(item) => Value::Str(item.clone()),
                            None => {
                                return Err(format!(
                                    "error calling index: index out of range: {i}"
                                ));
                            }
                        }
                    }
                    (Value::Map(map), Value::Str(key)) => {
                        Value::Str(map.get(key).cloned().unwrap_or_default())
                    }
                    (Value::Map(_), other) => {
                        return Err(format!(
                            "error calling index: value has type {}; should be string",
                            type_name(other)
                        ));
                    }
                    (other, _) => {
                        return Err(format!(
                            "error calling index: can't index item of type {}",
                            type_name(other)
                        ));
                    }
                };
            }
            Ok(value)
        }
        "print" => {
            let mut out = String::new();
            for (i, value) in args.iter().enumerate() {
                let is_str = |v: &Value| matches!(v, Value::Str(_));
                if i > 0 && !is_str(value) && !is_str(&args[i - 1]) {
                    out.push(' ');
                }
                out.push_str(&print_value(value));
            }
            Ok(Value::Str(out))
        }
        "println" => {
            let items: Vec<String> = args.iter().map(print_value).collect();
            Ok(Value::Str(format!("{}\n", items.join(" "))))
        }
        "printf" => {
            at_least(1)?;
            let Value::Str(format) = &args[0] else {
                return Err(format!(
                    "wrong type for value; expected string; got {}",
                    type_name(&args[0])
                ));
            };
            Ok(Value::Str(sprintf(format, &args[1..])))
        }
        "eq" => {
            at_least(2)?;
            let mut equal = false;
            for other in &args[1..] {
                equal |= compare(&args[0], other)? == std::cmp::Ordering::Equal;
            }
            Ok(Value::Bool(equal))
        }
        "ne" | "lt" | "le" | "gt" | "ge" => {
            arity(2)?;
            let order = compare(&args[0], &args[1])?;
            use std::cmp::Ordering::*;
            Ok(Value::Bool(match name {
                "ne" => order != Equal,
                "lt" => order == Less,
                "le" => order != Greater,
                "gt" => order == Greater,
                _ => order != Less,
            }))
        }
        "parseInt" => {
            arity(3)?;
            let Value::Str(text) = &args[0] else {
                return Err(format!(
                    "wrong type for value; expected string; got {}",
                    type_name(&args[0])
                ));
            };
            let (Some(base), Some(bits)) = (as_int(&args[1]), as_int(&args[2])) else {
                return Err("wrong type for value; expected int".to_owned());
            };
            parse_uint(text, base, bits).map(Value::Uint)
        }
        _ => Err(format!("function \"{name}\" not defined")),
    }
}

fn compare(a: &Value, b: &Value) -> Result<std::cmp::Ordering, String> {
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => Ok(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Ok(x.cmp(y)),
        _ => match (as_int(a), as_int(b)) {
            (Some(x), Some(y)) => Ok(x.cmp(&y)),
            _ => Err(format!(
                "error calling comparison: incompatible types for comparison: {} and {}",
                type_name(a),
                type_name(b)
            )),
        },
    }
}

/// Go's strconv.ParseUint.
fn parse_uint(text: &str, base: i128, bits: i128) -> Result<u64, String> {
    let fail =
        |why: &str| format!("error calling parseInt: strconv.ParseUint: parsing {text:?}: {why}");
    let bits = if bits == 0 { 64 } else { bits };
    if !(1..=64).contains(&bits) {
        return Err(format!(
            "error calling parseInt: strconv.ParseUint: parsing {text:?}: invalid bit size {bits}"
        ));
    }
    let (radix, digits) = match base {
        0 => {
            let lower = text.to_ascii_lowercase();
            if let Some(rest) = lower.strip_prefix("0x") {
                (16, rest.to_owned())
            } else if let Some(rest) = lower.strip_prefix("0o") {
                (8, rest.to_owned())
            } else if let Some(rest) = lower.strip_prefix("0b") {
                (2, rest.to_owned())
            } else if lower.len() > 1 && lower.starts_with('0') {
                (8, lower[1..].to_owned())
            } else {
                (10, lower)
            }
        }
        2..=36 => (base as u32, text.to_owned()),
        _ => {
            return Err(format!(
                "error calling parseInt: strconv.ParseUint: parsing {text:?}: invalid base {base}"
            ));
        }
    };
    let digits = if base == 0 {
        digits.replace('_', "")
    } else {
        digits
    };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return Err(fail("invalid syntax"));
    }
    let value = match u64::from_str_radix(&digits, radix) {
        Ok(v) => v,
        Err(e) if *e.kind() == std::num::IntErrorKind::PosOverflow => {
            return Err(fail("value out of range"));
        }
        Err(_) => return Err(fail("invalid syntax")),
    };
    if bits < 64 && value >> bits != 0 {
        return Err(fail("value out of range"));
    }
    Ok(value)
}

/// Go's fmt.Sprintf for the verbs templates use: %s %v %d %x %X %o %b %q %t %%,
/// with the flags `-`, `0`, `+` and a width and precision.
fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    let mut next_arg = 0;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut left, mut zero, mut plus) = (false, false, false);
        while let Some(&flag) = chars.peek() {
            match flag {
                '-' => left = true,
                '0' => zero = true,
                '+' => plus = true,
                ' ' | '#' => {}
                _ => break,
            }
            chars.next();
        }
        let mut width = String::new();
        while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            chars.next();
        }
        let mut precision = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                p.push(d);
                chars.next();
            }
            precision = Some(p.parse::<usize>().unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next_arg) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        next_arg += 1;
        let body = match (verb, arg) {
            ('d', v) if as_int(v).is_some() => {
                let n = as_int(v).expect("checked");
                if plus && n >= 0 {
                    format!("+{n}")
                } else {
                    n.to_string()
                }
            }
            ('x', v) if as_int(v).is_some() => format!("{:x}", as_int(v).expect("checked")),
            ('X', v) if as_int(v).is_some() => format!("{:X}", as_int(v).expect("checked")),
            ('o', v) if as_int(v).is_some() => format!("{:o}", as_int(v).expect("checked")),
            ('b', v) if as_int(v).is_some() => format!("{:b}", as_int(v).expect("checked")),
            ('x', Value::Str(s)) => s.bytes().map(|b| format!("{b:02x}")).collect(),
            ('X', Value::Str(s)) => s.bytes().map(|b| format!("{b:02X}")).collect(),
            ('q', Value::Str(s)) => format!("{s:?}"),
            ('t', Value::Bool(b)) => b.to_string(),
            ('s' | 'v', v) => {
                let mut s = print_value(v);
                if let Some(p) = precision {
                    s = s.chars().take(p).collect();
                }
                s
            }
            (verb, v) => format!("%!{verb}({}={})", type_name(v), print_value(v)),
        };
        let width: usize = width.parse().unwrap_or(0);
        let len = body.chars().count();
        if len >= width {
            out.push_str(&body);
        } else if left {
            out.push_str(&body);
            out.push_str(&" ".repeat(width - len));
        } else if zero && as_int(arg).is_some() {
            let (sign, digits) = match body.strip_prefix(['-', '+']) {
                Some(digits) => (&body[..1], digits),
                None => ("", body.as_str()),
            };
            out.push_str(sign);
            out.push_str(&"0".repeat(width - len));
            out.push_str(digits);
        } else {
            out.push_str(&" ".repeat(width - len));
            out.push_str(&body);
        }
    }
    if next_arg < args.len() {
        let extra: Vec<String> = args[next_arg..]
            .iter()
            .map(|v| format!("{}={}", type_name(v), print_value(v)))
            .collect();
        let _ = write!(out, "%!(EXTRA {})", extra.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Data<'static> {
        let mut groups = BTreeMap::new();
        groups.insert("0".to_owned(), "ip-10-1-2-3.example.".to_owned());
        groups.insert("1".to_owned(), "1".to_owned());
        groups.insert("b".to_owned(), "1".to_owned());
        groups.insert("hex".to_owned(), "7b".to_owned());
        Data {
            zone: "example.".to_owned(),
            name: "ip-10-1-2-3.example.".to_owned(),
            matches: vec!["ip-10-1-2-3.example.".to_owned(), "1".to_owned()],
            groups,
            class: "IN".to_owned(),
            rtype: "A".to_owned(),
            remote: "192.0.2.1".to_owned(),
            question: ("IP-10-1-2-3.example.".to_owned(), 1, 1),
            meta: Some(metadata()),
            ..Data::default()
        }
    }

    fn metadata() -> &'static Metadata {
        static META: std::sync::OnceLock<Metadata> = std::sync::OnceLock::new();
        META.get_or_init(|| {
            let mut meta = Metadata::default();
            meta.set("kubernetes/client-namespace", "default");
            meta
        })
    }

    fn render(text: &str) -> Result<String, String> {
        Template::parse(text)?.render(&data())
    }

    #[test]
    fn fields_of_the_data_are_printed() {
        assert_eq!(
            render("{{ .Name }} {{.Zone}} {{ .Class }} {{ .Type }} {{ .Remote }}").unwrap(),
            "ip-10-1-2-3.example. example. IN A 192.0.2.1"
        );
    }

    #[test]
    fn groups_are_reached_by_field_or_index() {
        assert_eq!(
            render(
                "{{ .Group.b }} {{ index .Group \"b\" }} {{ index .Match 1 }} {{ .Group.none }}|"
            )
            .unwrap(),
            "1 1 1 |"
        );
    }

    #[test]
    fn index_out_of_range_is_an_execution_error() {
        assert_eq!(
            render("{{ index .Match 2 }}").unwrap_err(),
            "error calling index: index out of range: 2"
        );
    }

    #[test]
    fn parse_int_reads_the_given_base_and_checks_the_bit_size() {
        assert_eq!(render("{{ parseInt .Group.hex 16 8 }}").unwrap(), "123");
        assert_eq!(
            render("{{ parseInt \"1ff\" 16 8 }}").unwrap_err(),
            "error calling parseInt: strconv.ParseUint: parsing \"1ff\": value out of range"
        );
        assert_eq!(
            render("{{ parseInt \"zz\" 16 8 }}").unwrap_err(),
            "error calling parseInt: strconv.ParseUint: parsing \"zz\": invalid syntax"
        );
    }

    #[test]
    fn pipes_pass_the_value_as_last_argument() {
        assert_eq!(render("{{ .Group.hex | printf \"%s!\" }}").unwrap(), "7b!");
        assert_eq!(render("{{ .Match | len }}").unwrap(), "2");
        assert_eq!(
            render("{{ (parseInt .Group.hex 16 8) | printf \"%03d\" }}").unwrap(),
            "123"
        );
    }

    #[test]
    fn printf_pads_numbers_and_strings() {
        assert_eq!(
            render("{{ printf \"%05d|%-4s|%x|%q\" 42 \"ab\" 255 \"x\" }}").unwrap(),
            "00042|ab  |ff|\"x\""
        );
    }

    #[test]
    fn print_spaces_operands_that_are_not_strings() {
        assert_eq!(render("{{ print 1 2 \"a\" \"b\" }}").unwrap(), "1 2ab");
    }

    #[test]
    fn comparisons_and_logic_give_booleans() {
        assert_eq!(
            render("{{ eq .Type \"A\" \"AAAA\" }} {{ lt 1 2 }} {{ not true }} {{ or \"\" \"x\" }}")
                .unwrap(),
            "true true false x"
        );
    }

    #[test]
    fn meta_reads_request_metadata() {
        assert_eq!(
            render("{{ .Meta \"kubernetes/client-namespace\" }}-{{ .Meta \"none\" }}").unwrap(),
            "default-"
        );
    }

    #[test]
    fn question_fields_are_available() {
        assert_eq!(
            render("{{ .Question.Name }} {{ .Question.Qtype }}").unwrap(),
            "IP-10-1-2-3.example. 1"
        );
    }

    #[test]
    fn trim_markers_and_comments_are_understood() {
        assert_eq!(
            render("a  {{- /* note */ -}}  b {{- .Type }}").unwrap(),
            "abA"
        );
    }

    #[test]
    fn control_actions_and_variables_are_refused_at_compile_time() {
        for (text, error) in [
            (
                "{{ range .Match }}x{{ end }}",
                "'range' is not supported: only pipelines of fields, literals and functions are",
            ),
            (
                "{{ if .Name }}x{{ end }}",
                "'if' is not supported: only pipelines of fields, literals and functions are",
            ),
            ("{{ $x := .Name }}", "variables ('$') are not supported"),
            ("{{ upper .Name }}", "function \"upper\" not defined"),
            ("{{ .Name ", "unclosed action"),
        ] {
            assert_eq!(Template::parse(text).unwrap_err(), error, "{text}");
        }
    }

    #[test]
    fn unknown_fields_fail_when_run_and_are_listed() {
        let template = Template::parse("{{ .Grup.d }}").unwrap();
        assert_eq!(template.unknown_fields(), ["Grup"]);
        assert_eq!(
            template.render(&data()).unwrap_err(),
            "can't evaluate field Grup in type *template.templateData"
        );
    }

    #[test]
    fn field_on_a_string_is_an_error() {
        assert_eq!(
            render("{{ .Name.x }}").unwrap_err(),
            "can't evaluate field x in type string"
        );
    }
}
