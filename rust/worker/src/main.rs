//! `embedfleet-worker`: see `lib.rs` and `--help`.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;
use embedfleet_worker::{cli, logging, supervision};

fn main() -> ExitCode {
    let args = cli::Args::parse();
    logging::init(&args.log_level);
    if let Some(n) = args.threads {
        // tokenizers parallelises over rayon's global pool: keep it to --threads.
        std::env::set_var("RAYON_NUM_THREADS", n.max(1).to_string());
    }
    let stop = Arc::new(AtomicBool::new(false));
    if let Err(e) = supervision::install_stop_signals(&stop) {
        eprintln!("embedfleet-worker: error: cannot install signal handlers: {e}");
        return ExitCode::from(2);
    }
    match cli::build(&args, stop) {
        Ok(mut worker) => ExitCode::from(worker.run().clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("embedfleet-worker: error: {e}");
            ExitCode::from(2)
        }
    }
}
