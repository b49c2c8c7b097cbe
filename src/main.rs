use clap::Parser;

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
