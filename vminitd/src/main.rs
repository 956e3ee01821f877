//! vminitd's entry point: picks the mode from argv, then hands over to the library.
//!
//! - `/init` (argv[0]'s base name "init"): the agent, PID 1 of the VM.
//! - `<any> __setup`: the setup helper the agent spawns for each container process.
//! - any other name (bind-mounted as /dev/vminitd-init), or `vminitd init -- CMD`: the tiny
//!   init that `--init` asks for.

use spec::error_chain;
use vminitd::{boot, process, reaper, server, setup, tinyinit};

fn agent() -> ! {
    vminitd::log::init_from_env();
    std::panic::set_hook(Box::new(|info| boot::fatal(&format!("panic: {info}"))));
    if boot::is_pid1()
        && let Err(e) = boot::boot()
    {
        boot::fatal(&error_chain(&e));
    }
    // SAFETY: integer-argument prctl; outside the VM (tests) orphans still come back to us.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => boot::fatal(&format!("starting the runtime: {e}")),
    };
    let res = rt.block_on(async {
        let reaper = reaper::Reaper::start()?;
        let procs = process::Manager::new(reaper, process::Config::default());
        server::serve(procs).await
    });
    match res {
        Ok(()) => boot::fatal("the agent server stopped"),
        Err(e) => boot::fatal(&format!("serving: {}", error_chain(&*e))),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(setup::SETUP_ARG) {
        setup::helper_main();
    }
    let base = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_default();
    if base == "init" {
        agent();
    }
    let rest = if args.get(1).map(String::as_str) == Some("init") {
        &args[2..]
    } else {
        &args[1..]
    };
    tinyinit::main(rest);
}
