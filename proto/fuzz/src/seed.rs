//! Writes the seed corpus for the `frame` target into the directory given
//! as the only argument (default `corpus/frame`).

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "corpus/frame".to_string());
    std::fs::create_dir_all(&dir)?;
    let seeds = ferry_proto_fuzz::seeds();
    for (i, seed) in seeds.iter().enumerate() {
        std::fs::write(format!("{dir}/seed-{i:03}"), seed)?;
    }
    // Check the seeds themselves pass, so a broken seed fails here.
    seeds.iter().for_each(|s| ferry_proto_fuzz::check(s));
    println!("wrote {} seeds to {dir}", seeds.len());
    Ok(())
}
