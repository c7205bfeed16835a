//! A broker whose data disk fills (a small loop-mounted ext4 under one
//! broker of three) must not crash, must not acknowledge what it cannot
//! write, must hand its leaderships to the other replicas while it keeps
//! answering, and must rejoin by itself once space is freed; nothing
//! acknowledged is lost. Its controller replica is suspended and resumed
//! the same way (a topic is created while the disk is full).
//!
//! Needs root, `mkfs.ext4` and loop mounts; otherwise it says `SKIPPED`
//! (and fails under STRATA_REQUIRE_TOOLS=1, as `.ci/run` sets).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use strata_proto::v1::*;
use strata_tests::{
    Cluster, ClusterOpts, ProduceLoad, batch_of, check_acked, describe_status, error_code,
    read_partition, wait_replicas_converged,
};

const SYNC: Duration = Duration::from_secs(90);

fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A loop-mounted ext4 image; unmounted and removed on drop.
struct SmallDisk {
    image: PathBuf,
    mount: PathBuf,
}

impl SmallDisk {
    fn mount(image: &Path, at: &Path, mib: u64) -> Result<Self, String> {
        let f = std::fs::File::create(image).map_err(|e| format!("image: {e}"))?;
        f.set_len(mib << 20).map_err(|e| format!("image: {e}"))?;
        run(
            "mkfs.ext4",
            &["-q", "-F", "-m", "0", &image.display().to_string()],
        )?;
        std::fs::create_dir_all(at).map_err(|e| format!("mount point: {e}"))?;
        run(
            "mount",
            &[
                "-o",
                "loop",
                &image.display().to_string(),
                &at.display().to_string(),
            ],
        )?;
        Ok(Self {
            image: image.to_owned(),
            mount: at.to_owned(),
        })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let m = self.mount.display().to_string();
        if run("umount", &[&m]).is_err() {
            let _ = run("umount", &["-l", &m]);
        }
        let _ = std::fs::remove_file(&self.image);
    }
}

fn tools_missing(why: &str) {
    assert!(
        std::env::var("STRATA_REQUIRE_TOOLS").is_err(),
        "STRATA_REQUIRE_TOOLS is set but {why}"
    );
    eprintln!("SKIPPED: {why}");
}

/// Writes a file of zeros into `dir` until the disk refuses (ENOSPC),
/// again after each sync (writeback releases the blocks delayed
/// allocation held in reserve), until nothing more fits.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let chunk = vec![0u8; 4096];
    loop {
        let mut wrote = 0usize;
        while f.write_all(&chunk).is_ok() {
            wrote += chunk.len();
        }
        let _ = f.sync_all();
        if wrote == 0 {
            break;
        }
    }
    path
}

fn copy_tree(from: &Path, to: &Path) {
    let out = Command::new("cp")
        .args([
            "-a",
            &format!("{}/.", from.display()),
            &to.display().to_string(),
        ])
        .output()
        .expect("cp");
    assert!(
        out.status.success(),
        "cp: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_hands_over_and_recovers() {
    if !nix_root() {
        return tools_missing("not running as root (loop mounts)");
    }
    if Command::new("mkfs.ext4").arg("-V").output().is_err() {
        return tools_missing("mkfs.ext4 is not installed");
    }
    let mut c = Cluster::start(
        3,
        ClusterOpts {
            extra: vec!["--segment-bytes".into(), "1048576".into()],
            ..Default::default()
        },
    )
    .await;
    // Broker 3's data moves onto a 48 MiB filesystem.
    let full = 3u64;
    let data = c.data_dir(full);
    c.kill(full);
    let saved = c.dir().join("node3.saved");
    std::fs::rename(&data, &saved).expect("move data dir");
    let disk = match SmallDisk::mount(&c.dir().join("disk.img"), &data, 48) {
        Ok(d) => d,
        Err(e) => return tools_missing(&format!("cannot loop-mount an ext4 image: {e}")),
    };
    copy_tree(&saved, &data);
    c.restart(full).await;

    c.create_topic_with("full", 1, 3, &[("fsync", "always")])
        .await
        .expect("create topic");
    c.wait_all_in_sync("full", SYNC).await;
    // Broker 3 leads the partition when its disk fills.
    let lead = c.wait_leader("full", 0, Duration::from_secs(10)).await;
    if lead != full {
        c.admin_retry(Duration::from_secs(20), |mut a| async move {
            a.transfer_leader(TransferLeaderRequest {
                topic: "full".into(),
                partition: 0,
                to: full,
            })
            .await
        })
        .await
        .expect("transfer leader");
        let t0 = Instant::now();
        while c.leader_of("full", 0).await != Some(full) {
            assert!(
                t0.elapsed() < Duration::from_secs(15),
                "broker {full} did not take the lead"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let load = ProduceLoad::start(c.client_addrs(), "full", 1);
    assert!(
        load.wait_progress(50, Duration::from_secs(20)).await,
        "no progress before the disk filled"
    );
    let filler = fill(&data);
    eprintln!(
        "filled broker {full}'s disk ({} bytes of filler)",
        std::fs::metadata(&filler).map_or(0, |m| m.len())
    );

    // The other replicas take over, and produce goes on.
    let t0 = Instant::now();
    loop {
        if c.leader_of("full", 0).await.is_some_and(|l| l != full) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "broker {full} still leads 30 s after its disk filled:\n{}",
            c.get(full).log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "leadership left broker {full} {:?} after the fill",
        t0.elapsed()
    );
    assert!(
        load.wait_progress(200, Duration::from_secs(30)).await,
        "produce stopped after broker {full}'s disk filled: {:?}\n{}",
        load.progress(),
        c.get(full).log_tail(40)
    );
    let now_leader = c.wait_leader("full", 0, Duration::from_secs(10)).await;
    assert_ne!(now_leader, full, "the broker with a full disk still leads");
    assert!(c.broken().is_none(), "a broker exited: {:?}", c.broken());
    // It still answers (metadata), and refuses what it cannot write.
    let mut admin = c.get(full).try_admin().await.expect("connect");
    admin
        .list_topics(ListTopicsRequest {
            include_internal: false,
        })
        .await
        .expect("the full broker answers metadata");
    let mut api = c.get(full).try_data().await.expect("connect");
    let r = api
        .produce(ProduceRequest {
            topic: "full".into(),
            partition: 0,
            acks: Acks::All as i32,
            records: batch_of(&["direct".to_string()]),
            timeout_ms: 2_000,
            correlation_id: 1,
        })
        .await;
    match r {
        Ok(r) => assert!(
            r.get_ref().error.as_ref().is_some_and(|e| e.code != 0),
            "the full broker acknowledged a write at {}",
            r.get_ref().base_offset
        ),
        Err(st) => {
            let code = error_code(&st);
            assert!(
                code == "STORAGE_ERROR" || code == "NOT_LEADER",
                "unexpected answer {}",
                describe_status(&st)
            );
        }
    }
    // Metadata changes go on without it (its controller replica cannot
    // write either).
    c.create_topic("later", 1, 3)
        .await
        .expect("create while full");

    // Space comes back: the broker rejoins by itself.
    std::fs::remove_file(&filler).expect("remove filler");
    eprintln!("freed broker {full}'s disk");
    c.wait_all_in_sync("full", SYNC).await;
    c.wait_all_in_sync("later", SYNC).await;
    let t0 = Instant::now();
    while !c.get(full).log().contains("replica resumed") {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "broker {full} did not resume its replica:\n{}",
            c.get(full).log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(c.get(full).log().contains("suspending the replica"));
    let report = load.stop().await;
    eprintln!(
        "acked {} records; failed attempts {:?}",
        report.total_acked(),
        report.errors
    );
    assert!(report.anomalies.is_empty(), "{:?}", report.anomalies);
    let log = read_partition(&c, "full", 0).await;
    check_acked(0, &log, &report.acked[0]);
    assert!(!log.iter().any(|(_, v)| v == "direct"));
    let hw = c.high_watermarks("full").await;
    let ids = c.ids();
    if let Err(e) = wait_replicas_converged(&c, "full", &ids, &hw, SYNC).await {
        panic!("replicas did not converge after the disk was freed: {e}");
    }
    c.assert_not_broken();
    c.terminate_all();
    drop(disk);
}

fn nix_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
