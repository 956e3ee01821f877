//! The Dockerfile frontend of `container build`.
//!
//! One job: turn a Dockerfile's text into a checked build plan the executor can run, and
//! decide which context files `.dockerignore` keeps. [`Dockerfile::parse`] handles the
//! syntax (directives, comments, continuations, heredocs, JSON and shell forms, flags, every
//! instruction of the Dockerfile reference); [`plan::BuildPlan::new`] picks the stages the
//! target needs, in dependency order, with ARG scoping and the predefined ARGs;
//! [`plan::BuildPlan::steps`] expands a stage's words (`$v`, `${v:-x}`, …) in its
//! environment; [`dockerignore::IgnoreRules`] matches context paths.
//!
//! It must not do I/O beyond reading the files it is handed ([`Dockerfile::read`]): no
//! registry, no VM, no context walking. Written here rather than taken from crates.io because
//! no maintained Rust parser covers heredocs, the escape directive and every instruction.
//!
//! Every error names the file and line the way Docker's do (`Dockerfile:7: unknown
//! instruction: FORM (did you mean FROM?)`); all of them are invalid-argument errors.

use std::path::Path;

pub mod dockerignore;
pub mod expand;
pub mod instruction;
pub mod mount;
pub mod parse;
pub mod plan;

pub use instruction::{Command, CommandLine, Instruction};
pub use parse::{Directives, Heredoc, Warning};
pub use plan::{BuildOptions, BuildPlan, Stage, Step};

/// Why a Dockerfile could not be parsed or planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Anything wrong on a line of the file.
    #[error("{file}:{line}: {message}")]
    At {
        file: String,
        line: usize,
        message: String,
    },
    #[error("the Dockerfile ({file}) cannot be empty")]
    Empty { file: String },
    #[error("failed to read {file}: {message}")]
    Read { file: String, message: String },
    #[error("target stage {0:?} could not be found")]
    UnknownTarget(String),
}

/// A parsed Dockerfile: its directives and instructions, in order, words unexpanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The name used in messages (`Dockerfile`, `Containerfile`, `-` for stdin).
    pub file: String,
    pub directives: Directives,
    pub instructions: Vec<Instruction>,
    pub warnings: Vec<Warning>,
}

impl Dockerfile {
    /// Parses `text`; `file` is the name errors will show.
    pub fn parse(file: &str, text: &str) -> Result<Dockerfile, Error> {
        let at = |(line, message): (usize, String)| Error::At {
            file: file.to_string(),
            line,
            message,
        };
        let lines = parse::lines(text).map_err(at)?;
        let escape = lines.directives.escape;
        let mut warnings = lines.warnings;
        let mut instructions = Vec::with_capacity(lines.nodes.len());
        for node in &lines.nodes {
            let instruction =
                instruction::instruction(node, escape).map_err(|m| at((node.line, m)))?;
            if let Command::Maintainer(_) = instruction.command {
                warnings.push(Warning {
                    line: node.line,
                    message: "MAINTAINER instruction is deprecated in favor of using label"
                        .to_string(),
                });
            }
            instructions.push(instruction);
        }
        if instructions.is_empty() {
            return Err(Error::Empty {
                file: file.to_string(),
            });
        }
        Ok(Dockerfile {
            file: file.to_string(),
            directives: lines.directives,
            instructions,
            warnings,
        })
    }

    /// Reads and parses the file at `path`; messages name it by its file name.
    pub fn read(path: &Path) -> Result<Dockerfile, Error> {
        let file = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let text = std::fs::read_to_string(path).map_err(|e| Error::Read {
            file: path.display().to_string(),
            message: e.to_string().to_lowercase(),
        })?;
        Dockerfile::parse(&file, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Base;
    use std::collections::BTreeMap;

    fn options(target: Option<&str>) -> BuildOptions {
        BuildOptions {
            target: target.map(str::to_string),
            build_args: BTreeMap::new(),
            build_platform: spec::Platform::new("linux", "amd64", None),
            target_platform: spec::Platform::new("linux", "amd64", None),
        }
    }

    #[test]
    fn multi_stage_example_from_the_reference() {
        let text = r#"# syntax=docker/dockerfile:1
FROM golang:1.23 AS build
WORKDIR /src
COPY <<EOF ./main.go
package main

import "fmt"

func main() {
  fmt.Println("hello, world")
}
EOF
RUN go build -o /bin/hello ./main.go

FROM scratch
COPY --from=build /bin/hello /bin/hello
CMD ["/bin/hello"]
"#;
        let file = Dockerfile::parse("Dockerfile", text).unwrap();
        assert_eq!(
            file.directives.syntax.as_deref(),
            Some("docker/dockerfile:1")
        );
        let lines: Vec<(usize, usize, &str)> = file
            .instructions
            .iter()
            .map(|i| (i.line, i.end_line, i.command.keyword()))
            .collect();
        assert_eq!(
            lines,
            [
                (2, 2, "FROM"),
                (3, 3, "WORKDIR"),
                (4, 12, "COPY"),
                (13, 13, "RUN"),
                (15, 15, "FROM"),
                (16, 16, "COPY"),
                (17, 17, "CMD"),
            ]
        );
        let plan = BuildPlan::new(&file, &options(None)).unwrap();
        assert_eq!(plan.stages.len(), 2);
        assert_eq!(plan.stages[0].base, Base::Image("golang:1.23".into()));
        assert_eq!(plan.stages[1].base, Base::Scratch);
        assert_eq!(plan.stages[1].dependencies, [0]);
        let steps = plan.steps(&plan.stages[0], &[]).unwrap();
        let Command::Copy(copy) = &steps[1].instruction.command else {
            panic!("not a COPY");
        };
        let instruction::Source::Heredoc(h) = &copy.sources[0] else {
            panic!("not a heredoc");
        };
        assert!(h.content.starts_with("package main\n\nimport \"fmt\"\n"));
        assert_eq!(
            steps[2].instruction.source,
            "RUN go build -o /bin/hello ./main.go"
        );
    }

    #[test]
    fn errors_name_the_file_and_line() {
        assert_eq!(
            Dockerfile::parse("Containerfile", "FROM a\nRUN ok\nCOPY <<EOF /x\nbody\n")
                .unwrap_err()
                .to_string(),
            "Containerfile:3: unterminated heredoc"
        );
        assert_eq!(
            Dockerfile::parse("Dockerfile", "# only a comment\n\n")
                .unwrap_err()
                .to_string(),
            "the Dockerfile (Dockerfile) cannot be empty"
        );
        let err = Dockerfile::read(std::path::Path::new("/nonexistent/Dockerfile"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("failed to read /nonexistent/Dockerfile: no such file"),
            "{err}"
        );
    }

    #[test]
    fn read_uses_the_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Containerfile");
        std::fs::write(&path, "FROM a\nBOGUS\n").unwrap();
        let err = Dockerfile::read(&path).unwrap_err().to_string();
        assert_eq!(err, "Containerfile:2: unknown instruction: BOGUS");
    }

    #[test]
    fn warnings() {
        let file =
            Dockerfile::parse("Dockerfile", "FROM a\nMAINTAINER me\nRUN a \\\n\n  b\n").unwrap();
        assert_eq!(
            file.warnings,
            [
                Warning {
                    line: 3,
                    message: "empty continuation line found in: RUN a   b".into()
                },
                Warning {
                    line: 2,
                    message: "MAINTAINER instruction is deprecated in favor of using label".into()
                },
            ]
        );
    }

    #[test]
    fn target_selects_and_skips() {
        let text = "FROM a AS base\nRUN x\nFROM base AS test\nRUN make test\nFROM base AS release\nRUN make\n";
        let file = Dockerfile::parse("Dockerfile", text).unwrap();
        let p = BuildPlan::new(&file, &options(Some("test"))).unwrap();
        assert_eq!(
            p.stages
                .iter()
                .map(|s| s.display_name())
                .collect::<Vec<_>>(),
            ["base", "test"]
        );
        let p = BuildPlan::new(&file, &options(None)).unwrap();
        assert_eq!(
            p.stages
                .iter()
                .map(|s| s.display_name())
                .collect::<Vec<_>>(),
            ["base", "release"]
        );
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(text in "\\PC{0,200}") {
            if let Ok(file) = Dockerfile::parse("Dockerfile", &text) {
                let _ = BuildPlan::new(&file, &options(None)).map(|p| {
                    for s in &p.stages {
                        let _ = p.steps(s, &[]);
                    }
                });
            }
        }

        #[test]
        fn instruction_lines_keep_their_line_numbers(
            blanks in proptest::collection::vec(0usize..3, 1..8)
        ) {
            let mut text = String::from("FROM a\n");
            let mut expected = vec![1];
            let mut line = 1;
            for b in &blanks {
                for _ in 0..*b {
                    text.push_str("# c\n");
                    line += 1;
                }
                text.push_str("RUN x \\\n  y\n");
                expected.push(line + 1);
                line += 2;
            }
            let file = Dockerfile::parse("Dockerfile", &text).unwrap();
            let got: Vec<usize> = file.instructions.iter().map(|i| i.line).collect();
            proptest::prop_assert_eq!(got, expected);
        }
    }
}
