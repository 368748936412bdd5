fn main() {
    std::process::exit(asdo::cli::main());
}
