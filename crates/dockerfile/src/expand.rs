//! Docker's word expansion: quotes, the escape character and `$` substitutions, as the
//! Dockerfile reference describes them for ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL,
//! USER, VOLUME and WORKDIR.
//!
//! Supported forms: `$name`, `${name}`, `${name:-word}`, `${name-word}`, `${name:+word}`,
//! `${name+word}`, `${name:?word}`, `${name?word}`, and the pattern forms of recent
//! Dockerfile syntax: `${name#pat}`, `${name##pat}`, `${name%pat}`, `${name%%pat}`,
//! `${name/pat/repl}`, `${name//pat/repl}`. Single quotes keep everything literal;
//! inside double quotes the escape character only escapes `"`, `$` and itself; outside
//! quotes it makes the next character literal. RUN, CMD and ENTRYPOINT are not expanded
//! here: their shell does it.

use std::collections::BTreeSet;

/// Why a word could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,
    #[error("missing '}}' in variable substitution")]
    MissingBrace,
    #[error("bad substitution: {0}")]
    BadSubstitution(String),
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(char),
    #[error("{name}: {message}")]
    Required { name: String, message: String },
}

/// The result of expanding text: the value(s) and every variable name the text referred to
/// (set or not), which the build cache keys on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expanded<T> {
    pub value: T,
    pub used: BTreeSet<String>,
}

/// A word expander with a given escape character (`\` by default, `` ` `` through the
/// `escape` directive).
#[derive(Debug, Clone, Copy)]
pub struct Lexer {
    escape: char,
}

impl Default for Lexer {
    fn default() -> Self {
        Lexer { escape: '\\' }
    }
}

impl Lexer {
    pub fn new(escape: char) -> Self {
        Lexer { escape }
    }

    /// Expands `text` into one word; whitespace is kept as written.
    pub fn word(
        &self,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Expanded<String>, ExpandError> {
        let mut state = State::new(self.escape, text, env);
        let mut out = Out::single();
        state.process(&[], &mut out)?;
        Ok(Expanded {
            value: out.into_single(),
            used: state.used,
        })
    }

    /// Expands `text` into words split on unquoted whitespace (including whitespace that an
    /// unquoted substitution produced).
    pub fn words(
        &self,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Expanded<Vec<String>>, ExpandError> {
        let mut state = State::new(self.escape, text, env);
        let mut out = Out::words();
        state.process(&[], &mut out)?;
        Ok(Expanded {
            value: out.into_words(),
            used: state.used,
        })
    }

    /// Expands only `$` substitutions (and the escape character before `$`), leaving quotes
    /// alone: what Docker does to the content of an unquoted `COPY <<EOF` heredoc.
    pub fn heredoc(
        &self,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Expanded<String>, ExpandError> {
        let mut state = State::new(self.escape, text, env);
        let mut out = String::new();
        while let Some(ch) = state.next() {
            if ch == self.escape && state.peek() == Some('$') {
                state.next();
                out.push('$');
            } else if ch == '$' {
                out.push_str(&state.dollar()?);
            } else {
                out.push(ch);
            }
        }
        Ok(Expanded {
            value: out,
            used: state.used,
        })
    }
}

/// Collects output characters; in words mode unquoted whitespace separates words.
struct Out {
    split: bool,
    words: Vec<String>,
    current: String,
    in_word: bool,
}

impl Out {
    fn single() -> Self {
        Out {
            split: false,
            words: Vec::new(),
            current: String::new(),
            in_word: false,
        }
    }

    fn words() -> Self {
        Out {
            split: true,
            ..Out::single()
        }
    }

    /// A character that came from quotes or an escape: never splits.
    fn raw(&mut self, ch: char) {
        self.current.push(ch);
        self.in_word = true;
    }

    /// A character outside quotes.
    fn unquoted(&mut self, ch: char) {
        if self.split && ch.is_whitespace() {
            if self.in_word {
                self.words.push(std::mem::take(&mut self.current));
                self.in_word = false;
            }
        } else {
            self.raw(ch);
        }
    }

    fn into_single(self) -> String {
        self.current
    }

    fn into_words(mut self) -> Vec<String> {
        if self.in_word {
            self.words.push(self.current);
        }
        self.words
    }
}

struct State<'a> {
    escape: char,
    chars: Vec<char>,
    pos: usize,
    env: &'a dyn Fn(&str) -> Option<String>,
    used: BTreeSet<String>,
}

fn is_special_param(ch: char) -> bool {
    matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!')
}

impl<'a> State<'a> {
    fn new(escape: char, text: &str, env: &'a dyn Fn(&str) -> Option<String>) -> Self {
        State {
            escape,
            chars: text.chars().collect(),
            pos: 0,
            env,
            used: BTreeSet::new(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek()?;
        self.pos += 1;
        Some(ch)
    }

    fn lookup(&mut self, name: &str) -> Option<String> {
        self.used.insert(name.to_string());
        (self.env)(name)
    }

    /// Processes until one of `stops` (unquoted, unescaped) or the end; returns the stop
    /// character found.
    fn process(&mut self, stops: &[char], out: &mut Out) -> Result<Option<char>, ExpandError> {
        while let Some(ch) = self.next() {
            if stops.contains(&ch) {
                return Ok(Some(ch));
            }
            if ch == '\'' {
                self.single_quoted(out)?;
            } else if ch == '"' {
                self.double_quoted(out)?;
            } else if ch == self.escape {
                // An escape at the very end is dropped, as Docker does.
                if let Some(next) = self.next() {
                    out.raw(next);
                }
            } else if ch == '$' {
                for c in self.dollar()?.chars() {
                    out.unquoted(c);
                }
            } else {
                out.unquoted(ch);
            }
        }
        Ok(None)
    }

    fn single_quoted(&mut self, out: &mut Out) -> Result<(), ExpandError> {
        out.in_word = true;
        loop {
            match self.next() {
                None => return Err(ExpandError::UnterminatedSingleQuote),
                Some('\'') => return Ok(()),
                Some(c) => out.raw(c),
            }
        }
    }

    fn double_quoted(&mut self, out: &mut Out) -> Result<(), ExpandError> {
        out.in_word = true;
        loop {
            match self.next() {
                None => return Err(ExpandError::UnterminatedDoubleQuote),
                Some('"') => return Ok(()),
                Some('$') => {
                    for c in self.dollar()?.chars() {
                        out.raw(c);
                    }
                }
                Some(c) if c == self.escape => match self.peek() {
                    Some(n) if n == '"' || n == '$' || n == self.escape => {
                        self.next();
                        out.raw(n);
                    }
                    _ => out.raw(c),
                },
                Some(c) => out.raw(c),
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        if let Some(ch) = self.peek() {
            if ch.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if is_special_param(ch) {
                self.next();
                return ch.to_string();
            }
        }
        while let Some(ch) = self.peek() {
            if ch.is_alphanumeric() || ch == '_' {
                self.next();
                name.push(ch);
            } else {
                break;
            }
        }
        name
    }

    /// Called after a `$`: returns its replacement text.
    fn dollar(&mut self) -> Result<String, ExpandError> {
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(self.lookup(&name).unwrap_or_default());
        }
        self.next();
        let name = self.name();
        let Some(ch) = self.next() else {
            return Err(ExpandError::MissingBrace);
        };
        if name.is_empty() {
            return Err(ExpandError::BadSubstitution(format!("${{{ch}")));
        }
        match ch {
            '}' => Ok(self.lookup(&name).unwrap_or_default()),
            ':' => {
                let Some(modifier) = self.next() else {
                    return Err(ExpandError::MissingBrace);
                };
                if !matches!(modifier, '-' | '+' | '?') {
                    return Err(ExpandError::UnsupportedModifier(modifier));
                }
                let word = self.modifier_word()?;
                let value = self.lookup(&name).filter(|v| !v.is_empty());
                Self::apply(&name, modifier, value, word, true)
            }
            '-' | '+' | '?' => {
                let word = self.modifier_word()?;
                let value = self.lookup(&name);
                Self::apply(&name, ch, value, word, false)
            }
            '#' | '%' => {
                let longest = self.peek() == Some(ch);
                if longest {
                    self.next();
                }
                let pattern: Vec<char> = self.modifier_word()?.chars().collect();
                let value: Vec<char> = self.lookup(&name).unwrap_or_default().chars().collect();
                let n = value.len();
                let mut cuts: Vec<usize> = (0..=n).collect();
                if longest {
                    cuts.reverse();
                }
                let kept = if ch == '#' {
                    cuts.iter()
                        .find(|&&k| glob(&pattern, &value[..k]))
                        .map(|&k| &value[k..])
                } else {
                    cuts.iter()
                        .find(|&&k| glob(&pattern, &value[n - k..]))
                        .map(|&k| &value[..n - k])
                };
                Ok(kept.unwrap_or(&value).iter().collect())
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let mut out = Out::single();
                let stop = self.process(&['/', '}'], &mut out)?;
                let pattern: Vec<char> = out.into_single().chars().collect();
                let replacement = match stop {
                    Some('/') => self.modifier_word()?,
                    Some(_) => String::new(),
                    None => return Err(ExpandError::MissingBrace),
                };
                let value = self.lookup(&name).unwrap_or_default();
                Ok(replace(&value, &pattern, &replacement, all))
            }
            other => Err(ExpandError::BadSubstitution(format!("${{{name}{other}"))),
        }
    }

    fn modifier_word(&mut self) -> Result<String, ExpandError> {
        let mut out = Out::single();
        if self.process(&['}'], &mut out)?.is_none() {
            return Err(ExpandError::MissingBrace);
        }
        Ok(out.into_single())
    }

    fn apply(
        name: &str,
        modifier: char,
        value: Option<String>,
        word: String,
        colon: bool,
    ) -> Result<String, ExpandError> {
        match modifier {
            '-' => Ok(value.unwrap_or(word)),
            '+' => Ok(if value.is_some() { word } else { String::new() }),
            _ => match value {
                Some(v) => Ok(v),
                None => Err(ExpandError::Required {
                    name: name.to_string(),
                    message: if !word.is_empty() {
                        word
                    } else if colon {
                        "is not allowed to be empty".to_string()
                    } else {
                        "is not allowed to be unset".to_string()
                    },
                }),
            },
        }
    }
}

/// A shell pattern over a whole string: `*` any run, `?` one character, `[…]` a class
/// (`[!…]` or `[^…]` negated), `\\` escapes.
fn glob(p: &[char], s: &[char]) -> bool {
    let Some(&first) = p.first() else {
        return s.is_empty();
    };
    match first {
        '*' => (0..=s.len()).any(|k| glob(&p[1..], &s[k..])),
        '?' => !s.is_empty() && glob(&p[1..], &s[1..]),
        '[' => {
            let Some(close) = p.iter().skip(2).position(|c| *c == ']').map(|i| i + 2) else {
                return s.first() == Some(&'[') && glob(&p[1..], &s[1..]);
            };
            let Some(&c) = s.first() else {
                return false;
            };
            let mut class = &p[1..close];
            let negate = matches!(class.first(), Some('!' | '^'));
            if negate {
                class = &class[1..];
            }
            let mut found = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == '-' {
                    found |= class[i] <= c && c <= class[i + 2];
                    i += 3;
                } else {
                    found |= class[i] == c;
                    i += 1;
                }
            }
            found != negate && glob(&p[close + 1..], &s[1..])
        }
        '\\' if p.len() > 1 => s.first() == Some(&p[1]) && glob(&p[2..], &s[1..]),
        c => s.first() == Some(&c) && glob(&p[1..], &s[1..]),
    }
}

/// `${v/pattern/replacement}` (first match) and `${v//pattern/replacement}` (every match),
/// each match as long as possible.
fn replace(value: &str, pattern: &[char], replacement: &str, all: bool) -> String {
    let v: Vec<char> = value.chars().collect();
    if pattern.is_empty() {
        return value.to_string();
    }
    let mut out = String::new();
    let mut i = 0;
    let mut replaced = false;
    while i < v.len() {
        if !replaced || all {
            let hit = (i + 1..=v.len())
                .rev()
                .find(|&end| glob(pattern, &v[i..end]));
            if let Some(end) = hit {
                out.push_str(replacement);
                i = end;
                replaced = true;
                continue;
            }
        }
        out.push(v[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "v" => Some("val".into()),
            "empty" => Some(String::new()),
            "spaced" => Some("a b  c".into()),
            "abc" => Some("ABC".into()),
            _ => None,
        }
    }

    fn word(text: &str) -> String {
        Lexer::default().word(text, &env).unwrap().value
    }

    fn words(text: &str) -> Vec<String> {
        Lexer::default().words(text, &env).unwrap().value
    }

    #[test]
    fn plain_and_braced_variables() {
        assert_eq!(word("$v"), "val");
        assert_eq!(word("${v}"), "val");
        assert_eq!(word("x${v}y"), "xvaly");
        assert_eq!(word("$v/bin"), "val/bin");
        assert_eq!(word("$unset"), "");
        assert_eq!(word("a $ b"), "a $ b");
        assert_eq!(word("cost$"), "cost$");
        assert_eq!(word("$1x"), "x");
    }

    #[test]
    fn modifiers_follow_the_reference() {
        assert_eq!(word("${v:-x}"), "val");
        assert_eq!(word("${unset:-x}"), "x");
        assert_eq!(word("${empty:-x}"), "x");
        assert_eq!(word("${empty-x}"), "");
        assert_eq!(word("${unset-x}"), "x");
        assert_eq!(word("${v:+x}"), "x");
        assert_eq!(word("${empty:+x}"), "");
        assert_eq!(word("${empty+x}"), "x");
        assert_eq!(word("${unset+x}"), "");
        assert_eq!(word("${unset:-$v}"), "val");
        assert_eq!(word("${unset:-'a}b'}"), "a}b");
        assert_eq!(word("${v:?must}"), "val");
        assert_eq!(
            Lexer::default()
                .word("${unset:?must be set}", &env)
                .unwrap_err()
                .to_string(),
            "unset: must be set"
        );
        assert_eq!(
            Lexer::default()
                .word("${empty:?}", &env)
                .unwrap_err()
                .to_string(),
            "empty: is not allowed to be empty"
        );
        assert_eq!(word("${empty?}"), "");
    }

    #[test]
    fn pattern_modifiers() {
        let lex = Lexer::default();
        let path = |name: &str| match name {
            "p" => Some("/usr/local/bin/tool.tar.gz".to_string()),
            _ => None,
        };
        let w = |t: &str| lex.word(t, &path).unwrap().value;
        assert_eq!(w("${p#*/}"), "usr/local/bin/tool.tar.gz");
        assert_eq!(w("${p##*/}"), "tool.tar.gz");
        assert_eq!(w("${p%.*}"), "/usr/local/bin/tool.tar");
        assert_eq!(w("${p%%.*}"), "/usr/local/bin/tool");
        assert_eq!(w("${p#nomatch}"), "/usr/local/bin/tool.tar.gz");
        assert_eq!(w("${p/local/opt}"), "/usr/opt/bin/tool.tar.gz");
        assert_eq!(w("${p//\\//:}"), ":usr:local:bin:tool.tar.gz");
        assert_eq!(w("${p/[lb]?[oc]/X}"), "/usr/Xal/bin/tool.tar.gz");
        assert_eq!(w("${p/.t*/}"), "/usr/local/bin/tool");
        assert_eq!(w("${unset##*/}"), "");
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(word("'$v'"), "$v");
        assert_eq!(word("\"$v\""), "val");
        assert_eq!(word("\\$v"), "$v");
        assert_eq!(word("\"\\$v\""), "$v");
        assert_eq!(word("\"a\\b\""), "a\\b");
        assert_eq!(word("\"a\\\"b\""), "a\"b");
        assert_eq!(word("a\\ b"), "a b");
        assert_eq!(word("'a\\b'"), "a\\b");
        assert_eq!(word("hello\\"), "hello");
        assert_eq!(word("a  b"), "a  b");
    }

    #[test]
    fn backtick_escape() {
        let lex = Lexer::new('`');
        assert_eq!(lex.word("C:\\dir\\$v", &env).unwrap().value, "C:\\dir\\val");
        assert_eq!(lex.word("`$v", &env).unwrap().value, "$v");
    }

    #[test]
    fn words_split_on_unquoted_whitespace() {
        assert_eq!(words("a b"), ["a", "b"]);
        assert_eq!(words("'a b' c"), ["a b", "c"]);
        assert_eq!(words("$spaced"), ["a", "b", "c"]);
        assert_eq!(words("\"$spaced\""), ["a b  c"]);
        assert_eq!(words("  x  "), ["x"]);
        assert_eq!(words("80/tcp ${abc}"), ["80/tcp", "ABC"]);
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let lex = Lexer::default();
        assert_eq!(
            lex.word("'abc", &env).unwrap_err(),
            ExpandError::UnterminatedSingleQuote
        );
        assert_eq!(
            lex.word("\"abc", &env).unwrap_err(),
            ExpandError::UnterminatedDoubleQuote
        );
        assert_eq!(
            lex.word("${v", &env).unwrap_err(),
            ExpandError::MissingBrace
        );
        assert_eq!(
            lex.word("${v:-x", &env).unwrap_err(),
            ExpandError::MissingBrace
        );
        assert_eq!(
            lex.word("${v/x", &env).unwrap_err(),
            ExpandError::MissingBrace
        );
        assert_eq!(
            lex.word("${v:=x}", &env).unwrap_err(),
            ExpandError::UnsupportedModifier('=')
        );
        assert!(matches!(
            lex.word("${}", &env).unwrap_err(),
            ExpandError::BadSubstitution(_)
        ));
    }

    #[test]
    fn used_variables_are_reported() {
        let e = Lexer::default()
            .word("$v ${unset:-$abc} '$quoted'", &env)
            .unwrap();
        assert_eq!(e.value, "val ABC $quoted");
        assert_eq!(
            e.used.into_iter().collect::<Vec<_>>(),
            ["abc", "unset", "v"]
        );
    }

    #[test]
    fn heredoc_content_keeps_quotes() {
        let e = Lexer::default()
            .heredoc("echo \"$v\" '$abc' \\$v\n", &env)
            .unwrap();
        assert_eq!(e.value, "echo \"val\" 'ABC' $v\n");
    }

    proptest::proptest! {
        #[test]
        fn text_without_specials_is_unchanged(s in "[a-zA-Z0-9 /._:-]{0,40}") {
            proptest::prop_assert_eq!(word(&s), s.clone());
        }

        #[test]
        fn expansion_never_panics(s in "\\PC{0,40}") {
            let _ = Lexer::default().word(&s, &env);
            let _ = Lexer::default().words(&s, &env);
        }
    }
}
