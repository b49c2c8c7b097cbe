use clap::Parser;

// The server's allocator. Under read load glibc's malloc and free were about a fifth of this
// server's CPU, and its per-thread arenas much of its peak RSS (BENCHMARKS.md). Only the
// binary: the library, its tests and embedders keep theirs. Built without transparent huge
// pages (`no_thp`): mimalloc asked for them on its arenas, and each 2 MiB page it touched
// stayed resident, 14 MiB of an idle server's 40 (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = billing::config::Cli::parse();
    billing::startup::init_tracing();
    match billing::startup::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("billing: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
