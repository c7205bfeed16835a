//! Metadata changes as fast as a broker takes them, for benchmarks of the
//! controller's log and snapshots:
//! `strata-metadata-load ENDPOINT TOPIC CHANGES [CLIENTS]`. Each change
//! sets `segment.ms` of `TOPIC` (which must exist) through AlterTopicConfig,
//! from CLIENTS concurrent connections (default 16); the last one sets
//! it to `1000 + CHANGES - 1`. Prints the changes per second.

use std::time::Instant;

use strata_proto::v1::AlterTopicConfigRequest;
use strata_proto::v1::admin_client::AdminClient;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || -> ! {
        eprintln!("usage: strata-metadata-load ENDPOINT TOPIC CHANGES [CLIENTS]");
        std::process::exit(2);
    };
    let (endpoint, topic) = match args.as_slice() {
        [e, t, _, ..] => (e.clone(), t.clone()),
        _ => usage(),
    };
    let Ok(changes) = args[2].parse::<u64>() else {
        usage()
    };
    let clients = match args.get(3).map(|c| c.parse::<u64>()) {
        None => 16,
        Some(Ok(c)) if c > 0 => c,
        Some(_) => usage(),
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..clients {
        let (endpoint, topic) = (endpoint.clone(), topic.clone());
        tasks.push(tokio::spawn(async move {
            let mut admin = AdminClient::connect(endpoint).await?;
            let mut i = t;
            // The last change is made alone, after the others.
            while i + 1 < changes {
                let set = [("segment.ms".to_string(), (1000 + i).to_string())].into();
                admin
                    .alter_topic_config(AlterTopicConfigRequest {
                        name: topic.clone(),
                        set,
                    })
                    .await?;
                i += clients;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("strata-metadata-load: {e}");
                std::process::exit(1);
            }
            Err(e) => {
                eprintln!("strata-metadata-load: {e}");
                std::process::exit(1);
            }
        }
    }
    let last = async {
        let mut admin = AdminClient::connect(endpoint).await?;
        let set = [("segment.ms".to_string(), (1000 + changes - 1).to_string())].into();
        admin
            .alter_topic_config(AlterTopicConfigRequest { name: topic, set })
            .await?;
        Ok::<_, anyhow::Error>(())
    };
    if let Err(e) = last.await {
        eprintln!("strata-metadata-load: {e}");
        std::process::exit(1);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{changes} metadata changes in {secs:.1} s: {:.0} changes/s",
        changes as f64 / secs
    );
}
