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
