//! The part of Go's text/template that `docker … ls --format` users type, written here
//! because no Rust crate speaks Go templates and the subset is small: text with actions
//! `{{.Field}}`, `{{.}}`, `{{json .}}`, `{{json .Field}}`, `{{.Label "key"}}`, pipes into
//! `json`, `upper`, `lower`, `title`; a leading `table` that prints a header row and aligns
//! columns; `\t` and `\n` typed literally become a tab and a newline, as the docker CLI
//! does. It does no I/O: a list command hands it values that implement [`Fields`].

use std::collections::BTreeMap;
use std::io::Write;

/// What a template can show of one listed item.
pub trait Fields {
    /// Every field a template may name, with the header `table` prints for it (Docker's).
    fn known() -> &'static [(&'static str, &'static str)];
    /// The text of a field named in `known()`.
    fn field(&self, name: &str) -> String;
    /// The value of label `key`, empty when absent (`{{.Label "key"}}`).
    fn label(&self, key: &str) -> String;
}

/// A template that did not parse or names something the items do not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{{` without its `}}`.
    #[error("invalid format: unclosed action {0:?}")]
    Unclosed(String),
    /// A field the listed items do not have.
    #[error("invalid format: unknown field .{field} (known: {known})")]
    UnknownField {
        /// The field as written, without its dot.
        field: String,
        /// The fields there are, comma separated.
        known: String,
    },
    /// An action this subset does not understand.
    #[error(
        "invalid format: cannot read {{{{{0}}}}}: supported are .Field, ., .Label \"key\", json and pipes to json, upper, lower, title"
    )]
    Unsupported(String),
}

/// What a value is before the functions of its pipe apply.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    /// `.`: the whole item.
    Dot,
    /// `.Name`.
    Field(String),
    /// `.Label "key"`.
    Label(String),
}

/// A function a pipe applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Json,
    Upper,
    Lower,
    Title,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Action { value: Value, funcs: Vec<Func> },
}

/// A parsed `--format` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// `table …`: a header row, columns aligned.
    table: bool,
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text` for items of type `T`, refusing fields `T` does not have.
    pub fn parse<T: Fields>(text: &str) -> Result<Template, TemplateError> {
        let (table, body) = match text.strip_prefix("table") {
            Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => (true, rest),
            _ => (false, text),
        };
        let body = body
            .trim_matches(' ')
            .replace("\\t", "\t")
            .replace("\\n", "\n");
        let mut parts = Vec::new();
        let mut rest = body.as_str();
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| TemplateError::Unclosed(rest[open..].to_owned()))?;
            parts.push(parse_action::<T>(&after[..close])?);
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template { table, parts })
    }

    /// Renders every item, one per line; a `table` template first prints its header row and
    /// aligns the columns its tabs separate (Go's tabwriter: minimum width 10, padding 3).
    pub fn render<T: Fields>(&self, items: &[T]) -> String {
        let mut lines = Vec::with_capacity(items.len() + 1);
        if self.table {
            lines.push(self.render_with(|v| header_of::<T>(v)));
        }
        for item in items {
            lines.push(self.render_with(|v| value_of(item, v)));
        }
        if !self.table {
            return lines.iter().map(|l| format!("{l}\n")).collect();
        }
        let mut tw = tabwriter::TabWriter::new(Vec::new()).minwidth(7).padding(3);
        for line in &lines {
            // Writing into a Vec cannot fail.
            let _ = writeln!(tw, "{line}");
        }
        String::from_utf8_lossy(&tw.into_inner().unwrap_or_default()).into_owned()
    }

    fn render_with(&self, value: impl Fn(&Value) -> Json) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Action { value: v, funcs } => {
                    let mut cur = value(v);
                    for f in funcs {
                        cur = apply(*f, cur);
                    }
                    out.push_str(&cur.text());
                }
            }
        }
        out
    }
}

/// A value on its way through a pipe: a string, or the whole item as an object.
enum Json {
    Text(String),
    Object(BTreeMap<String, String>),
}

impl Json {
    fn text(&self) -> String {
        match self {
            Json::Text(s) => s.clone(),
            // Go prints a struct as `{a b c}`: the values in field order; Docker users ask
            // for `json .` instead, so the sorted values are close enough.
            Json::Object(m) => format!("{{{}}}", m.values().cloned().collect::<Vec<_>>().join(" ")),
        }
    }
}

fn apply(f: Func, v: Json) -> Json {
    match (f, v) {
        (Func::Json, Json::Text(s)) => Json::Text(serde_json::Value::String(s).to_string()),
        (Func::Json, Json::Object(m)) => Json::Text(
            serde_json::Value::Object(
                m.into_iter()
                    .map(|(k, v)| (k, serde_json::Value::String(v)))
                    .collect(),
            )
            .to_string(),
        ),
        (Func::Upper, v) => Json::Text(v.text().to_uppercase()),
        (Func::Lower, v) => Json::Text(v.text().to_lowercase()),
        (Func::Title, v) => Json::Text(title(&v.text())),
    }
}

fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric();
    }
    out
}

fn value_of<T: Fields>(item: &T, v: &Value) -> Json {
    match v {
        Value::Dot => Json::Object(
            T::known()
                .iter()
                .map(|(name, _)| ((*name).to_owned(), item.field(name)))
                .collect(),
        ),
        Value::Field(name) => Json::Text(item.field(name)),
        Value::Label(key) => Json::Text(item.label(key)),
    }
}

/// What a header row shows for a value: the field's header, as the docker CLI does.
fn header_of<T: Fields>(v: &Value) -> Json {
    match v {
        Value::Dot => Json::Text(String::new()),
        Value::Field(name) => Json::Text(
            T::known()
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, h)| (*h).to_owned())
                .unwrap_or_default(),
        ),
        Value::Label(key) => Json::Text(key.to_uppercase()),
    }
}

fn parse_action<T: Fields>(inner: &str) -> Result<Part, TemplateError> {
    let unsupported = || TemplateError::Unsupported(inner.to_owned());
    let mut stages = inner.split('|').map(str::trim);
    let first = stages.next().unwrap_or_default();
    let mut funcs = Vec::new();
    let words = split_words(first).ok_or_else(unsupported)?;
    let value_words: &[String] = match words.first().map(String::as_str) {
        Some("json") => {
            funcs.push(Func::Json);
            &words[1..]
        }
        Some("upper") => {
            funcs.push(Func::Upper);
            &words[1..]
        }
        Some("lower") => {
            funcs.push(Func::Lower);
            &words[1..]
        }
        Some("title") => {
            funcs.push(Func::Title);
            &words[1..]
        }
        _ => &words,
    };
    let value = match value_words {
        [dot] if dot == "." => Value::Dot,
        [label, key] if label == ".Label" => Value::Label(unquote(key).ok_or_else(unsupported)?),
        [field] if field.starts_with('.') && field.len() > 1 => {
            let name = &field[1..];
            if !T::known().iter().any(|(n, _)| *n == name) {
                return Err(TemplateError::UnknownField {
                    field: name.to_owned(),
                    known: T::known()
                        .iter()
                        .map(|(n, _)| format!(".{n}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            Value::Field(name.to_owned())
        }
        _ => return Err(unsupported()),
    };
    for stage in stages {
        funcs.push(match stage {
            "json" => Func::Json,
            "upper" => Func::Upper,
            "lower" => Func::Lower,
            "title" => Func::Title,
            _ => return Err(unsupported()),
        });
    }
    Ok(Part::Action { value, funcs })
}

/// Splits an action into words, keeping a double-quoted string whole (quotes included).
fn split_words(s: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        if rest.starts_with('"') {
            let end = rest[1..].find('"')? + 2;
            words.push(rest[..end].to_owned());
            rest = rest[end..].trim_start();
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            words.push(rest[..end].to_owned());
            rest = rest[end..].trim_start();
        }
    }
    Some(words)
}

fn unquote(s: &str) -> Option<String> {
    s.strip_prefix('"')?.strip_suffix('"').map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Box_ {
        id: &'static str,
        name: &'static str,
        labels: &'static [(&'static str, &'static str)],
    }

    impl Fields for Box_ {
        fn known() -> &'static [(&'static str, &'static str)] {
            &[("ID", "CONTAINER ID"), ("Names", "NAMES")]
        }
        fn field(&self, name: &str) -> String {
            match name {
                "ID" => self.id.to_owned(),
                _ => self.name.to_owned(),
            }
        }
        fn label(&self, key: &str) -> String {
            self.labels
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (*v).to_owned())
                .unwrap_or_default()
        }
    }

    fn items() -> Vec<Box_> {
        vec![
            Box_ {
                id: "abc",
                name: "web",
                labels: &[("tier", "front")],
            },
            Box_ {
                id: "def",
                name: "a \"quoted\" one",
                labels: &[],
            },
        ]
    }

    fn render(t: &str) -> String {
        Template::parse::<Box_>(t).unwrap().render(&items())
    }

    #[test]
    fn fields_and_text_render_one_line_per_item() {
        assert_eq!(
            render("{{.ID}}: {{.Names}}"),
            "abc: web\ndef: a \"quoted\" one\n"
        );
        assert_eq!(
            render("{{ .ID }}\\t{{.Names}}"),
            "abc\tweb\ndef\ta \"quoted\" one\n"
        );
        assert_eq!(render("plain"), "plain\nplain\n");
    }

    #[test]
    fn table_prints_docker_headers_and_aligns() {
        assert_eq!(
            render("table {{.ID}}\\t{{.Names}}"),
            "CONTAINER ID   NAMES\nabc            web\ndef            a \"quoted\" one\n"
        );
        // A bare `table` word without a space is a field-less template, not a table.
        assert_eq!(render("tablecloth"), "tablecloth\ntablecloth\n");
    }

    #[test]
    fn json_of_the_item_and_of_a_field() {
        assert_eq!(
            render("{{json .}}").lines().next().unwrap(),
            r#"{"ID":"abc","Names":"web"}"#
        );
        assert_eq!(
            render("{{json .Names}}").lines().nth(1).unwrap(),
            r#""a \"quoted\" one""#
        );
        assert_eq!(
            render("{{.Names | json}}").lines().nth(1).unwrap(),
            r#""a \"quoted\" one""#
        );
        assert_eq!(render("{{.Names | upper}}").lines().next().unwrap(), "WEB");
        assert_eq!(
            render("{{lower .ID | upper}}").lines().next().unwrap(),
            "ABC"
        );
    }

    #[test]
    fn labels_by_key() {
        assert_eq!(render("{{.Label \"tier\"}}|"), "front|\n|\n");
        assert_eq!(render("table {{.Label \"tier\"}}"), "TIER\nfront\n\n");
    }

    #[test]
    fn unknown_fields_and_syntax_are_refused_in_one_line() {
        assert_eq!(
            Template::parse::<Box_>("{{.Image}}")
                .unwrap_err()
                .to_string(),
            "invalid format: unknown field .Image (known: .ID, .Names)"
        );
        assert_eq!(
            Template::parse::<Box_>("{{.ID").unwrap_err().to_string(),
            "invalid format: unclosed action \"{{.ID\""
        );
        let e = Template::parse::<Box_>("{{range .}}")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("invalid format: cannot read {{range .}}"),
            "{e}"
        );
        assert!(Template::parse::<Box_>("{{.ID | printf}}").is_err());
        assert!(Template::parse::<Box_>("{{.Label tier}}").is_err());
    }
}
