//! `.dockerignore`: which context paths reach the build, with Docker's rules.
//!
//! Each line is a pattern; `#` at the start of a line makes a comment; blanks are trimmed.
//! Patterns are cleaned like Go's `filepath.Clean` and a leading `/` is dropped, so every
//! pattern is relative to the context root. `*` matches within one path segment, `?` one
//! character, `[…]` a class, `**` any number of segments (none included), `\` escapes. A
//! pattern that matches a directory excludes everything below it. Patterns are evaluated in
//! order and the last one that matches decides; `!` makes an exception that re-includes.
//! A directory that is excluded must still be walked when an exception could match
//! something inside it ([`Decision::Descend`]).
//!
//! The context streamer calls [`IgnoreRules::decide`] for each path it walks.

/// What to do with one context path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send it (and, for a directory, walk it).
    Include,
    /// Leave it out (and, for a directory, do not walk it).
    Exclude,
    /// A directory that is excluded itself but may hold re-included paths: walk it, and
    /// send it only as the parent of something included.
    Descend,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgnoreError {
    #[error(".dockerignore:{line}: illegal exclusion pattern: \"!\"")]
    EmptyException { line: usize },
    #[error(".dockerignore:{line}: syntax error in pattern {pattern:?}")]
    BadPattern { line: usize, pattern: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    /// Cleaned, without the `!`.
    glob: Vec<char>,
    exception: bool,
}

/// The patterns of a `.dockerignore`, ready to match.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IgnoreRules {
    patterns: Vec<Pattern>,
}

/// Go's `filepath.Clean` for `/`-separated paths.
pub fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

impl IgnoreRules {
    /// Parses the text of a `.dockerignore`.
    pub fn parse(text: &str) -> Result<IgnoreRules, IgnoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            if raw.starts_with('#') {
                continue;
            }
            let mut pattern = raw.trim();
            if pattern.is_empty() {
                continue;
            }
            let exception = pattern.starts_with('!');
            if exception {
                pattern = pattern[1..].trim();
                if pattern.is_empty() {
                    return Err(IgnoreError::EmptyException { line });
                }
            }
            let mut cleaned = clean(pattern);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            let glob: Vec<char> = cleaned.chars().collect();
            if !valid(&glob) {
                return Err(IgnoreError::BadPattern {
                    line,
                    pattern: raw.trim().to_string(),
                });
            }
            patterns.push(Pattern { glob, exception });
        }
        Ok(IgnoreRules { patterns })
    }

    /// Whether `path` (relative to the context root, `/`-separated) is excluded: the last
    /// pattern matching it or one of its parent directories decides.
    pub fn is_excluded(&self, path: &str) -> bool {
        let path = clean(path);
        let path = path.trim_start_matches('/');
        let chars: Vec<char> = path.chars().collect();
        // Parent directories, shortest first: "a", "a/b" for "a/b/c".
        let parents: Vec<usize> = chars
            .iter()
            .enumerate()
            .filter(|(_, c)| **c == '/')
            .map(|(i, _)| i)
            .collect();
        let mut excluded = false;
        for p in &self.patterns {
            // An exclusion cannot change an excluded path, nor an exception an included one.
            if p.exception != excluded {
                continue;
            }
            let matched =
                glob(&p.glob, &chars) || parents.iter().any(|&end| glob(&p.glob, &chars[..end]));
            if matched {
                excluded = !p.exception;
            }
        }
        excluded
    }

    /// What the context streamer does with `path`.
    pub fn decide(&self, path: &str, is_dir: bool) -> Decision {
        if !self.is_excluded(path) {
            return Decision::Include;
        }
        if is_dir {
            let mut dir: Vec<char> = clean(path).trim_start_matches('/').chars().collect();
            dir.push('/');
            if self
                .patterns
                .iter()
                .any(|p| p.exception && glob_prefix(&p.glob, &dir))
            {
                return Decision::Descend;
            }
        }
        Decision::Exclude
    }

    /// Whether any pattern is an exception.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }
}

/// Brackets closed and not empty; an escape not last.
fn valid(p: &[char]) -> bool {
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' => {
                if i + 1 >= p.len() {
                    return false;
                }
                i += 2;
            }
            '[' => match class_end(p, i) {
                Some(end) => i = end + 1,
                None => return false,
            },
            _ => i += 1,
        }
    }
    true
}

/// The index of the `]` closing the class that opens at `start`.
fn class_end(p: &[char], start: usize) -> Option<usize> {
    let mut i = start + 1;
    if p.get(i) == Some(&'^') {
        i += 1;
    }
    let first = i;
    while i < p.len() {
        match p[i] {
            ']' if i > first => return Some(i),
            '\\' => i += 2,
            _ => i += 1,
        }
    }
    None
}

/// Whether `c` is in the class `p[start..=end]`.
fn in_class(p: &[char], start: usize, end: usize, c: char) -> bool {
    let mut i = start + 1;
    let negate = p[i] == '^';
    if negate {
        i += 1;
    }
    let mut found = false;
    while i < end {
        let mut lo = p[i];
        if lo == '\\' {
            i += 1;
            lo = p[i];
        }
        let mut hi = lo;
        if i + 2 < end && p[i + 1] == '-' {
            hi = p[i + 2];
            if hi == '\\' && i + 3 < end {
                hi = p[i + 3];
                i += 1;
            }
            i += 2;
        }
        if lo <= c && c <= hi {
            found = true;
        }
        i += 1;
    }
    found != negate
}

/// Matches the whole of `s` against the pattern.
fn glob(p: &[char], s: &[char]) -> bool {
    walk(p, s, false)
}

/// Whether some path that continues `s` (which ends in `/`) could match.
fn glob_prefix(p: &[char], s: &[char]) -> bool {
    walk(p, s, true)
}

fn walk(p: &[char], s: &[char], prefix: bool) -> bool {
    if prefix && s.is_empty() {
        return true;
    }
    let Some(&first) = p.first() else {
        return s.is_empty();
    };
    match first {
        '*' if p.get(1) == Some(&'*') => {
            let mut rest = p;
            while rest.first() == Some(&'*') {
                rest = &rest[1..];
            }
            if let Some(r) = rest.strip_prefix(&['/']) {
                rest = r;
            }
            if rest.is_empty() {
                return true;
            }
            // `**` stands for any run of whole directories, none included.
            (0..=s.len())
                .filter(|&k| k == 0 || s[k - 1] == '/')
                .any(|k| walk(rest, &s[k..], prefix))
        }
        '*' => {
            let rest = &p[1..];
            for k in 0..=s.len() {
                if walk(rest, &s[k..], prefix) {
                    return true;
                }
                if k < s.len() && s[k] == '/' {
                    break;
                }
            }
            false
        }
        '?' => s.first().is_some_and(|c| *c != '/') && walk(&p[1..], &s[1..], prefix),
        '[' => match class_end(p, 0) {
            Some(end) => {
                s.first().is_some_and(|&c| in_class(p, 0, end, c))
                    && walk(&p[end + 1..], &s[1..], prefix)
            }
            None => false,
        },
        '\\' if p.len() > 1 => s.first() == Some(&p[1]) && walk(&p[2..], &s[1..], prefix),
        c => s.first() == Some(&c) && walk(&p[1..], &s[1..], prefix),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> IgnoreRules {
        IgnoreRules::parse(text).unwrap()
    }

    #[test]
    fn clean_like_go() {
        for (input, want) in [
            ("", "."),
            ("a/b/../c", "a/c"),
            ("./a//b/", "a/b"),
            ("/../a", "/a"),
            ("../a", "../a"),
            ("a/..", "."),
            ("/", "/"),
        ] {
            assert_eq!(clean(input), want, "{input:?}");
        }
    }

    #[test]
    fn patterns_are_cleaned_and_anchored_at_the_root() {
        let r = rules("# comment\n  /node_modules/  \n./build//out\n\n");
        assert!(r.is_excluded("node_modules"));
        assert!(r.is_excluded("node_modules/x/y.js"));
        assert!(r.is_excluded("build/out/a"));
        assert!(!r.is_excluded("src/node_modules"));
        assert!(!r.is_excluded("build"));
    }

    #[test]
    fn reference_examples() {
        // From the Dockerfile reference's .dockerignore section.
        let r = rules("# comment\n*/temp*\n*/*/temp*\ntemp?\n");
        assert!(r.is_excluded("somedir/temporary.txt"));
        assert!(r.is_excluded("somedir/temp"));
        assert!(r.is_excluded("somedir/subdir/temporary.txt"));
        assert!(r.is_excluded("tempa"));
        assert!(r.is_excluded("tempb/inner"));
        assert!(!r.is_excluded("temp"));
        assert!(!r.is_excluded("temporary.txt"));

        let r = rules("*.md\n!README*.md\nREADME-secret.md\n");
        assert!(r.is_excluded("CHANGES.md"));
        assert!(!r.is_excluded("README.md"));
        assert!(r.is_excluded("README-secret.md"));

        let r = rules("*.md\nREADME-secret.md\n!README*.md\n");
        assert!(!r.is_excluded("README-secret.md"));
    }

    #[test]
    fn double_star() {
        let r = rules("**/*.go\n");
        assert!(r.is_excluded("main.go"));
        assert!(r.is_excluded("a/b/c.go"));
        assert!(!r.is_excluded("a/b/c.rs"));
        let r = rules("a/**/z\n");
        assert!(r.is_excluded("a/z"));
        assert!(r.is_excluded("a/b/c/z"));
        assert!(!r.is_excluded("a/bz"));
        let r = rules("a/**\n");
        assert!(r.is_excluded("a/x"));
        assert!(r.is_excluded("a/x/y"));
        let r = rules("**\n!keep\n");
        assert!(r.is_excluded("x"));
        assert!(!r.is_excluded("keep"));
    }

    #[test]
    fn single_star_stays_in_one_segment() {
        let r = rules("*.txt\n");
        assert!(r.is_excluded("a.txt"));
        assert!(!r.is_excluded("dir/a.txt"));
        // A pattern matching a parent directory excludes its content.
        let r = rules("d?r\n");
        assert!(r.is_excluded("dir/a.txt"));
    }

    #[test]
    fn classes_and_escapes() {
        let r = rules("file[0-9].log\nx[^a]\n\\*star\n");
        assert!(r.is_excluded("file3.log"));
        assert!(!r.is_excluded("filex.log"));
        assert!(r.is_excluded("xb"));
        assert!(!r.is_excluded("xa"));
        assert!(r.is_excluded("*star"));
        assert!(!r.is_excluded("bstar"));
        assert_eq!(
            IgnoreRules::parse("ok\n[abc\n").unwrap_err().to_string(),
            ".dockerignore:2: syntax error in pattern \"[abc\""
        );
        assert_eq!(
            IgnoreRules::parse("!\n").unwrap_err().to_string(),
            ".dockerignore:1: illegal exclusion pattern: \"!\""
        );
    }

    #[test]
    fn excluded_directories_with_exceptions_below_are_walked() {
        let r = rules("docs\n!docs/keep.md\nvendor\n!**/*.go\n");
        assert_eq!(r.decide("docs", true), Decision::Descend);
        assert_eq!(r.decide("docs/keep.md", false), Decision::Include);
        assert_eq!(r.decide("docs/other.md", false), Decision::Exclude);
        assert_eq!(r.decide("vendor", true), Decision::Descend);
        assert_eq!(r.decide("vendor/x/y.go", false), Decision::Include);
        assert_eq!(r.decide("vendor/x/y.c", false), Decision::Exclude);
        assert_eq!(r.decide("src", true), Decision::Include);

        let r = rules("build\n!src/keep\n");
        assert_eq!(r.decide("build", true), Decision::Exclude);
        assert!(r.has_exceptions());
        let r = rules("*\n!*/keep\n");
        assert_eq!(r.decide("a", true), Decision::Descend);
        assert_eq!(r.decide("a/keep", false), Decision::Include);
        assert_eq!(r.decide("a/b/keep", false), Decision::Exclude);
    }

    #[test]
    fn exception_with_leading_slash_and_dot_segments() {
        let r = rules("*\n!/src/../src/main.rs\n");
        assert!(!r.is_excluded("src/main.rs"));
        assert!(r.is_excluded("src/lib.rs"));
    }

    proptest::proptest! {
        #[test]
        fn a_literal_pattern_matches_itself_and_its_content(
            name in "[a-z]{1,8}(/[a-z]{1,8}){0,3}",
            child in "[a-z]{1,8}",
        ) {
            let r = rules(&name);
            proptest::prop_assert!(r.is_excluded(&name));
            let below = format!("{name}/{child}");
            proptest::prop_assert!(r.is_excluded(&below));
            let beside = format!("{name}x");
            proptest::prop_assert!(!r.is_excluded(&beside));
        }

        #[test]
        fn matching_never_panics(p in "\\PC{0,12}", s in "\\PC{0,12}") {
            if let Ok(r) = IgnoreRules::parse(&p) {
                let _ = r.decide(&s, true);
            }
        }
    }
}
