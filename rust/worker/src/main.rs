fn main() {
    eprintln!("embedfleet-worker: not built yet");
    std::process::exit(2);
}
