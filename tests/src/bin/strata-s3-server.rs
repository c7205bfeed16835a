//! A standalone S3-protocol server over a local directory (the one the
//! tiered-storage tests run in process), for benchmarks:
//! `strata-s3-server ROOT BUCKET HOST:PORT`. Credentials are
//! `strata_tests::s3::{ACCESS_KEY, SECRET_KEY}`. Runs until killed.

use std::path::PathBuf;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [root, bucket, addr] = args.as_slice() else {
        eprintln!("usage: strata-s3-server ROOT BUCKET HOST:PORT");
        std::process::exit(2);
    };
    let Ok(addr) = addr.parse() else {
        eprintln!("strata-s3-server: '{addr}' is not HOST:PORT");
        std::process::exit(2);
    };
    let _server = strata_tests::s3::S3Server::start_on(&PathBuf::from(root), bucket, addr).await;
    println!(
        "serving {root} as bucket {bucket} on http://{addr} (key {}, secret {})",
        strata_tests::s3::ACCESS_KEY,
        strata_tests::s3::SECRET_KEY
    );
    std::future::pending::<()>().await;
}
