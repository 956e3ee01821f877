//! `container`: the command line. Parsing and everything else live in the library.

fn main() {
    std::process::exit(cli::run(std::env::args_os()));
}
