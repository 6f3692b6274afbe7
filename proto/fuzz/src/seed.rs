//! Writes the seed corpora: for the `frame` target into the directory
//! given as the first argument (default `corpus/frame`), for the `engine`
//! target into the second (default `corpus/engine`).

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let frame_dir = args.next().unwrap_or_else(|| "corpus/frame".to_string());
    let engine_dir = args.next().unwrap_or_else(|| "corpus/engine".to_string());
    let seeds = ferry_proto_fuzz::seeds();
    write(&frame_dir, &seeds)?;
    // Check the seeds themselves pass, so a broken seed fails here.
    seeds.iter().for_each(|s| ferry_proto_fuzz::check(s));
    let seeds = ferry_proto_fuzz::engine::seeds();
    write(&engine_dir, &seeds)?;
    seeds.iter().for_each(|s| ferry_proto_fuzz::engine::run(s));
    Ok(())
}

fn write(dir: &str, seeds: &[Vec<u8>]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (i, seed) in seeds.iter().enumerate() {
        std::fs::write(format!("{dir}/seed-{i:03}"), seed)?;
    }
    println!("wrote {} seeds to {dir}", seeds.len());
    Ok(())
}
