fn main() { eprintln!("skiff-bench: not implemented yet"); std::process::exit(1); }
