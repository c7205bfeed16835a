//! Produce ten records and read them back.
//!
//! Start a broker (`cargo run -p strata-broker --bin stratad`), then:
//! `cargo run -p strata-client --example quickstart` (the broker address
//! comes from `STRATA_BROKERS`, default 127.0.0.1:9292).

use futures::StreamExt;
use strata_client::{
    Admin, ClientConfig, ClientError, Consumer, ConsumerConfig, ErrorCode, Producer,
    ProducerConfig, ProducerRecord, StartOffset,
};

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let brokers = std::env::var("STRATA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9292".into());
    let cfg = ClientConfig::new(brokers.split(','));
    match Admin::new(cfg.clone())?
        .create_topic("quickstart", 1, 1, Default::default())
        .await
    {
        Ok(_) => {}
        Err(e) if e.code() == Some(ErrorCode::TopicExists) => {}
        Err(e) => return Err(e),
    }

    let producer = Producer::new(cfg.clone(), ProducerConfig::default()).await?;
    let mut acks = Vec::new();
    for i in 0..10 {
        let record = ProducerRecord::new("quickstart", format!("hello {i}")).key(format!("k{i}"));
        acks.push(producer.send(record).await?);
    }
    let mut first = None;
    for ack in acks {
        let meta = ack.await?;
        println!(
            "produced to partition {} at offset {}",
            meta.partition, meta.offset
        );
        first.get_or_insert(meta.offset);
    }
    producer.close().await?;

    let mut consumer = Consumer::new(cfg, ConsumerConfig::default())?;
    consumer
        .assign("quickstart", 0, StartOffset::Offset(first.unwrap_or(0)))
        .await?;
    let mut records = consumer.records().take(10);
    while let Some(record) = records.next().await {
        let record = record?;
        let value = String::from_utf8_lossy(record.value.as_deref().unwrap_or_default());
        println!("consumed offset {}: {value}", record.offset);
    }
    Ok(())
}
