//! The line level of a Dockerfile: parser directives, comments, line continuations,
//! heredoc bodies, and the split of each logical line into keyword, flags and arguments.
//! What the arguments mean is `instruction`'s job.

/// A heredoc attached to RUN, COPY or ADD (`<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter, quotes removed.
    pub name: String,
    /// The body, one `\n` after each line; with `<<-` leading tabs are already stripped.
    pub content: String,
    /// False when the delimiter was quoted: the body is then taken literally.
    pub expand: bool,
    /// `<<-`: leading tabs were stripped from the body and the delimiter line.
    pub chomp: bool,
    /// The file descriptor written before `<<` (`3<<EOF`), 0 when none.
    pub fd: u32,
}

/// A non-fatal finding, reported to the user as Docker warns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub line: usize,
    pub message: String,
}

/// The parser directives at the top of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    /// `# syntax=`: recorded, not acted on (the frontend is built in).
    pub syntax: Option<String>,
    /// `# escape=`: `\` (default) or `` ` ``.
    pub escape: char,
    /// `# check=`: recorded and otherwise ignored.
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            syntax: None,
            escape: '\\',
            check: None,
        }
    }
}

/// One logical line: an instruction before its arguments are interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    /// First and last physical line (1-based), heredoc bodies included.
    pub line: usize,
    pub end_line: usize,
    /// The keyword as written.
    pub keyword: String,
    /// The logical line after joining continuations, trimmed.
    pub original: String,
    /// Leading `--flag[=value]` words, quotes removed.
    pub flags: Vec<String>,
    /// Everything after the keyword and the flags, trimmed.
    pub rest: String,
    pub heredocs: Vec<Heredoc>,
}

pub(crate) struct Lines {
    pub directives: Directives,
    pub nodes: Vec<Node>,
    pub warnings: Vec<Warning>,
}

/// An error with the 1-based line it belongs to.
pub(crate) type LineError = (usize, String);

const KNOWN_DIRECTIVES: [&str; 3] = ["syntax", "escape", "check"];

/// `# name = value` at the very top of the file, or None.
fn directive(line: &str) -> Option<(String, String)> {
    let body = line.strip_prefix('#')?.trim_start();
    let eq = body.find('=')?;
    let name = body[..eq].trim_end();
    let mut chars = name.chars();
    if !chars.next()?.is_ascii_alphabetic() || !chars.all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let value = body[eq + 1..].trim();
    if value.is_empty() {
        return None;
    }
    Some((name.to_ascii_lowercase(), value.to_string()))
}

struct DirectiveParser {
    done: bool,
    seen: Vec<String>,
    directives: Directives,
}

impl DirectiveParser {
    /// Looks at a physical line while directives may still appear.
    fn line(&mut self, raw: &str, number: usize) -> Result<(), LineError> {
        if self.done {
            return Ok(());
        }
        let Some((name, value)) = directive(raw) else {
            self.done = true;
            return Ok(());
        };
        if !KNOWN_DIRECTIVES.contains(&name.as_str()) {
            // An unknown directive is a comment, and ends the directives.
            self.done = true;
            return Ok(());
        }
        if self.seen.contains(&name) {
            return Err((
                number,
                format!("only one {name} parser directive can be used"),
            ));
        }
        self.seen.push(name.clone());
        match name.as_str() {
            "escape" => {
                self.directives.escape = match value.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err((
                            number,
                            format!("invalid escape token '{value}' does not match ` or \\"),
                        ));
                    }
                }
            }
            "syntax" => self.directives.syntax = Some(value),
            _ => self.directives.check = Some(value),
        }
        Ok(())
    }
}

fn is_comment(raw: &str) -> bool {
    raw.trim_start().starts_with('#')
}

/// Strips the escape character (and trailing blanks after it) that continues a line.
/// An escape character that is itself escaped (`\\\\` at the end) does not continue the
/// line, unless it is all the line holds.
fn trim_continuation(line: &str, escape: char) -> (String, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    match trimmed.strip_suffix(escape) {
        Some(s) if s.is_empty() || !s.ends_with(escape) => (s.to_string(), false),
        _ => (line.to_string(), true),
    }
}

/// The exec form: a JSON array of strings at the start of `rest` (text after the array is
/// ignored, as Docker's decoder does). None when it is not JSON (then it is shell form);
/// an error when it is an array holding something else than strings.
pub(crate) fn json_array(rest: &str) -> Result<Option<Vec<String>>, String> {
    if !rest.starts_with('[') {
        return Ok(None);
    }
    let mut values = serde_json::Deserializer::from_str(rest).into_iter::<Vec<serde_json::Value>>();
    let Some(Ok(values)) = values.next() else {
        return Ok(None);
    };
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(
                "when using JSON array syntax, arrays must be comprised of strings only"
                    .to_string(),
            ),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// RUN, COPY and ADD in shell form take heredocs, also as an ONBUILD trigger.
fn takes_heredocs(node: &Node) -> bool {
    let mut keyword = node.keyword.to_ascii_lowercase();
    let mut rest = node.rest.clone();
    if keyword == "onbuild" {
        let inner = node_from_line(&node.rest, node.line);
        keyword = inner.keyword.to_ascii_lowercase();
        rest = inner.rest;
    }
    matches!(keyword.as_str(), "run" | "copy" | "add") && !matches!(json_array(&rest), Ok(Some(_)))
}

pub(crate) fn lines(text: &str) -> Result<Lines, LineError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut physical: Vec<&str> = text.split('\n').collect();
    if physical.last() == Some(&"") {
        physical.pop();
    }
    let physical: Vec<&str> = physical
        .into_iter()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();

    let mut dp = DirectiveParser {
        done: false,
        seen: Vec::new(),
        directives: Directives::default(),
    };
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();
    let mut i = 0;
    while i < physical.len() {
        let start = i + 1;
        let raw = physical[i];
        i += 1;
        dp.line(raw, start)?;
        let escape = dp.directives.escape;
        let first = raw.trim_start();
        let first = if first.starts_with('#') { "" } else { first };
        let (mut line, mut complete) = trim_continuation(first, escape);
        if complete && line.trim().is_empty() {
            continue;
        }
        let mut empty_continuation = false;
        while !complete && i < physical.len() {
            let raw = physical[i];
            i += 1;
            dp.line(raw, i)?;
            if is_comment(raw) {
                continue;
            }
            if raw.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (more, end) = trim_continuation(raw, escape);
            line.push_str(&more);
            complete = end;
        }
        if line.trim().is_empty() {
            // Only a continuation character and comments or blanks after it.
            continue;
        }
        if empty_continuation {
            warnings.push(Warning {
                line: start,
                message: format!("empty continuation line found in: {}", line.trim()),
            });
        }
        let mut node = node_from_line(&line, start);
        if line.contains("<<") && takes_heredocs(&node) {
            for mut heredoc in heredoc_words(&line) {
                let mut terminated = false;
                while i < physical.len() {
                    let body = physical[i];
                    i += 1;
                    let candidate = if heredoc.chomp {
                        body.trim_start_matches('\t')
                    } else {
                        body
                    };
                    if candidate == heredoc.name {
                        terminated = true;
                        break;
                    }
                    heredoc.content.push_str(candidate);
                    heredoc.content.push('\n');
                }
                if !terminated {
                    return Err((start, "unterminated heredoc".to_string()));
                }
                node.heredocs.push(heredoc);
            }
        }
        node.end_line = i.max(start);
        nodes.push(node);
    }
    Ok(Lines {
        directives: dp.directives,
        nodes,
        warnings,
    })
}

/// Splits a logical line into keyword, flags and arguments.
pub(crate) fn node_from_line(line: &str, number: usize) -> Node {
    let trimmed = line.trim();
    let (keyword, rest) = match trimmed.find(|c: char| c.is_whitespace()) {
        Some(pos) => (&trimmed[..pos], trimmed[pos..].trim_start()),
        None => (trimmed, ""),
    };
    let (flags, rest) = extract_flags(rest);
    Node {
        line: number,
        end_line: number,
        keyword: keyword.to_string(),
        original: trimmed.to_string(),
        flags,
        rest: rest.trim().to_string(),
        heredocs: Vec::new(),
    }
}

/// Takes the leading `--name[=value]` words off `line`, removing their quotes (a word of
/// just `--` ends the flags). Returns the flags and the remaining text.
pub(crate) fn extract_flags(line: &str) -> (Vec<String>, &str) {
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut flags = Vec::new();
    let mut i = 0;
    loop {
        while i < chars.len() && chars[i].1.is_whitespace() {
            i += 1;
        }
        if i >= chars.len() {
            return (flags, "");
        }
        let starts_flag = chars[i].1 == '-' && chars.get(i + 1).map(|c| c.1) == Some('-');
        if !starts_flag {
            return (flags, &line[chars[i].0..]);
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        let mut quoted = false;
        while i < chars.len() {
            let ch = chars[i].1;
            match quote {
                None if ch.is_whitespace() => break,
                None if ch == '\'' || ch == '"' => {
                    quote = Some(ch);
                    quoted = true;
                }
                Some(q) if ch == q => quote = None,
                _ if ch == '\\' => {
                    if i + 1 < chars.len() {
                        i += 1;
                        word.push(chars[i].1);
                    }
                }
                _ => word.push(ch),
            }
            i += 1;
        }
        if word == "--" {
            let rest = chars.get(i).map_or("", |c| &line[c.0..]);
            return (flags, rest);
        }
        if quoted || !word.is_empty() {
            flags.push(word);
        }
    }
}

/// Splits text on whitespace outside quotes, keeping quotes and escapes in the words (the
/// expansion step removes them later).
pub(crate) fn split_words(rest: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        match quote {
            None => {
                if ch.is_whitespace() {
                    if in_word {
                        words.push(std::mem::take(&mut word));
                        in_word = false;
                    }
                } else {
                    in_word = true;
                    if ch == '\'' || ch == '"' {
                        quote = Some(ch);
                    }
                    if ch == escape && i + 1 < chars.len() {
                        word.push(ch);
                        i += 1;
                        word.push(chars[i]);
                    } else if ch != escape || i + 1 < chars.len() {
                        word.push(ch);
                    }
                }
            }
            Some(q) => {
                if ch == q {
                    quote = None;
                    word.push(ch);
                } else if ch == escape && q != '\'' {
                    // An escape at the very end is dropped, as Docker does.
                    if i + 1 < chars.len() {
                        word.push(ch);
                        i += 1;
                        word.push(chars[i]);
                    }
                } else {
                    word.push(ch);
                }
            }
        }
        i += 1;
    }
    if in_word {
        words.push(word);
    }
    words
}

/// A word that opens a heredoc, as `(\d*)<<(-?)(name)`.
pub(crate) fn heredoc_word(word: &str) -> Option<Heredoc> {
    let digits = word.chars().take_while(char::is_ascii_digit).count();
    let after = word[digits..].strip_prefix("<<")?;
    let (chomp, name) = match after.strip_prefix('-') {
        Some(n) => (true, n),
        None => (false, after),
    };
    if name.is_empty() || name.contains('<') {
        return None;
    }
    let fd = if digits == 0 {
        0
    } else {
        word[..digits].parse().ok()?
    };
    // Quotes anywhere in the delimiter disable expansion of the body.
    let mut unquoted = String::new();
    let mut quoted = false;
    let mut quote: Option<char> = None;
    let mut chars = name.chars();
    while let Some(ch) = chars.next() {
        match quote {
            None if ch == '\'' || ch == '"' => {
                quote = Some(ch);
                quoted = true;
            }
            Some(q) if ch == q => quote = None,
            None if ch == '\\' => {
                quoted = true;
                unquoted.extend(chars.next());
            }
            _ => unquoted.push(ch),
        }
    }
    if quote.is_some() || unquoted.is_empty() || unquoted.contains(char::is_whitespace) {
        return None;
    }
    Some(Heredoc {
        name: unquoted,
        content: String::new(),
        expand: !quoted,
        chomp,
        fd,
    })
}

fn heredoc_words(line: &str) -> Vec<Heredoc> {
    split_words(line, '\\')
        .iter()
        .filter_map(|w| heredoc_word(w))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Lines {
        lines(text).unwrap()
    }

    fn originals(text: &str) -> Vec<(usize, String)> {
        parse(text)
            .nodes
            .into_iter()
            .map(|n| (n.line, n.original))
            .collect()
    }

    #[test]
    fn directives_only_at_the_top() {
        let l = parse("# syntax=docker/dockerfile:1\n# escape=`\n# check=skip=all\nFROM a\n");
        assert_eq!(l.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(l.directives.escape, '`');
        assert_eq!(l.directives.check.as_deref(), Some("skip=all"));

        // After a comment, a blank line or an instruction they are comments.
        for text in [
            "# a comment\n# escape=`\nFROM a\n",
            "\n# escape=`\nFROM a\n",
            "FROM a\n# escape=`\n",
            "# unknowndirective=x\n# escape=`\nFROM a\n",
        ] {
            assert_eq!(parse(text).directives.escape, '\\', "{text:?}");
        }
        // Whitespace is allowed around the parts; names are case-insensitive.
        assert_eq!(parse("#\tESCAPE = `\nFROM a").directives.escape, '`');
        // A continuation does not make a directive.
        assert_eq!(parse("# esc \\\n# ape=`\nFROM a").directives.escape, '\\');
    }

    #[test]
    fn reference_directive_examples() {
        // Whitespace the reference allows.
        for text in [
            "#escape=`\nFROM a\n",
            "# escape =`\nFROM a\n",
            "#\tescape= `\nFROM a\n",
            "# escape = `\nFROM a\n",
            "#\t  eScApE=`\nFROM a\n",
        ] {
            assert_eq!(parse(text).directives.escape, '`', "{text:?}");
        }
        // The reference's escape example: without the directive, `c:\` continues the line.
        let windows = "FROM microsoft/nanoserver\nCOPY testfile.txt c:\\\nRUN dir c:\\\n";
        assert_eq!(
            originals(windows),
            [
                (1, "FROM microsoft/nanoserver".into()),
                (2, "COPY testfile.txt c:RUN dir c:".into())
            ]
        );
        assert_eq!(
            originals(&format!("# escape=`\n\n{windows}")),
            [
                (3, "FROM microsoft/nanoserver".into()),
                (4, "COPY testfile.txt c:\\".into()),
                (5, "RUN dir c:\\".into())
            ]
        );
    }

    #[test]
    fn directive_errors() {
        assert_eq!(
            lines("# escape=x\nFROM a").err().unwrap(),
            (
                1,
                "invalid escape token 'x' does not match ` or \\".to_string()
            )
        );
        assert_eq!(
            lines("# escape=\\\n# escape=`\nFROM a").err().unwrap(),
            (
                2,
                "only one escape parser directive can be used".to_string()
            )
        );
    }

    #[test]
    fn continuations_comments_and_blank_lines() {
        let text = "FROM busybox\n\n# comment\n  # indented comment\nRUN echo a \\\n  # dropped\n    b \\\n\n    c\nRUN x\\  \nyz\n";
        let l = parse(text);
        assert_eq!(
            l.nodes
                .iter()
                .map(|n| (n.line, n.end_line, n.original.as_str()))
                .collect::<Vec<_>>(),
            [
                (1, 1, "FROM busybox"),
                (5, 9, "RUN echo a     b     c"),
                (10, 11, "RUN xyz"),
            ]
        );
        assert_eq!(l.warnings.len(), 1);
        assert_eq!(l.warnings[0].line, 5);
    }

    #[test]
    fn an_escaped_escape_does_not_continue() {
        assert_eq!(
            originals("RUN echo a\\\\\nRUN b\n\\\nRUN c\n"),
            [
                (1, "RUN echo a\\\\".into()),
                (2, "RUN b".into()),
                (3, "RUN c".into())
            ]
        );
    }

    #[test]
    fn json_arrays() {
        assert_eq!(
            json_array("[\"a\", \"b\"]"),
            Ok(Some(vec!["a".into(), "b".into()]))
        );
        assert_eq!(json_array("[\"a\"] trailing"), Ok(Some(vec!["a".into()])));
        assert_eq!(json_array("['a']"), Ok(None));
        assert_eq!(json_array("[\"a\""), Ok(None));
        assert_eq!(json_array("echo [x]"), Ok(None));
        assert!(json_array("[1]").is_err());
    }

    #[test]
    fn escape_directive_changes_the_continuation_character() {
        assert_eq!(
            originals("# escape=`\nFROM w\nCOPY testfile.txt c:\\ `\n  d:\\\n"),
            [
                (2, "FROM w".into()),
                (3, "COPY testfile.txt c:\\   d:\\".into())
            ]
        );
    }

    #[test]
    fn crlf_and_bom_are_accepted() {
        assert_eq!(
            originals("\u{feff}FROM a\r\nRUN b \\\r\n c\r\n"),
            [(1, "FROM a".into()), (2, "RUN b  c".into())]
        );
    }

    #[test]
    fn flags_are_split_off() {
        let (flags, rest) = extract_flags("--from=build --chown='a b' src dst");
        assert_eq!(flags, ["--from=build", "--chown=a b"]);
        assert_eq!(rest, "src dst");
        let (flags, rest) = extract_flags("--link -- --notaflag");
        assert_eq!(flags, ["--link"]);
        assert_eq!(rest, " --notaflag");
        let (flags, rest) = extract_flags("echo --x");
        assert!(flags.is_empty());
        assert_eq!(rest, "echo --x");
    }

    #[test]
    fn words_keep_quotes() {
        assert_eq!(
            split_words(r#"a="b c" d='e f' g\ h"#, '\\'),
            [r#"a="b c""#, "d='e f'", r"g\ h"]
        );
    }

    #[test]
    fn heredoc_words() {
        assert_eq!(
            heredoc_word("<<EOF"),
            Some(Heredoc {
                name: "EOF".into(),
                content: String::new(),
                expand: true,
                chomp: false,
                fd: 0
            })
        );
        let h = heredoc_word("<<-'END'").unwrap();
        assert_eq!((h.name.as_str(), h.expand, h.chomp), ("END", false, true));
        let h = heredoc_word("3<<\"X\"Y").unwrap();
        assert_eq!((h.name.as_str(), h.expand, h.fd), ("XY", false, 3));
        assert_eq!(heredoc_word("<<"), None);
        assert_eq!(heredoc_word("a<<b"), None);
        assert_eq!(heredoc_word("<<<x"), None);
    }

    #[test]
    fn heredoc_bodies_are_not_instructions() {
        let text = "FROM a\nRUN <<EOF\nFROM b\n# not a comment\n\nEOF\nRUN <<-EOT bash && 3<<'B' cat\n\t\techo $x\n\tEOT\nraw $y\nB\nCMD x\n";
        let l = parse(text);
        let keywords: Vec<_> = l.nodes.iter().map(|n| n.keyword.as_str()).collect();
        assert_eq!(keywords, ["FROM", "RUN", "RUN", "CMD"]);
        assert_eq!(
            l.nodes[1].heredocs[0].content,
            "FROM b\n# not a comment\n\n"
        );
        assert_eq!((l.nodes[1].line, l.nodes[1].end_line), (2, 6));
        let h = &l.nodes[2].heredocs;
        assert_eq!(h.len(), 2);
        assert_eq!(
            (h[0].name.as_str(), h[0].content.as_str()),
            ("EOT", "echo $x\n")
        );
        assert_eq!(
            (
                h[1].name.as_str(),
                h[1].content.as_str(),
                h[1].expand,
                h[1].fd
            ),
            ("B", "raw $y\n", false, 3)
        );
        assert_eq!(l.nodes[3].line, 12);
    }

    #[test]
    fn heredocs_only_for_run_copy_add_shell_form() {
        let l = parse("FROM a\nRUN [\"echo\", \"<<EOF\"]\nEOF\n");
        assert_eq!(l.nodes.len(), 3);
        assert!(l.nodes[1].heredocs.is_empty());
        let l = parse("FROM a\nCOPY <<EOF /dst\nhello\nEOF\n");
        assert_eq!(l.nodes[1].heredocs[0].content, "hello\n");
    }

    #[test]
    fn unterminated_heredoc() {
        assert_eq!(
            lines("FROM a\nRUN <<EOF\necho\n").err().unwrap(),
            (2, "unterminated heredoc".to_string())
        );
    }
}
