//! `skiff-proxy`: not implemented yet. It exits with status 1 so that nothing mistakes it for a working
//! component; see the open issues for when it arrives.

fn main() {
    eprintln!("skiff-proxy: not implemented yet");
    std::process::exit(1);
}
