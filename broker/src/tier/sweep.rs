//! Deleting objects that no manifest names. A crash between an upload and
//! its manifest change, or between a remote compaction's swap and its
//! deletion of the replaced objects, leaves objects behind that nothing
//! reads. The leader of each tiered partition lists the partition's
//! objects every [`SWEEP_EVERY`]; an object whose upload id the manifest
//! does not name, that is older than [`MIN_AGE`] (no upload takes that
//! long) and that was already unnamed at the previous sweep, is deleted.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use object_store::ObjectStoreExt;

use super::{RemoteLoc, RemoteManifest, Tier, TierError, store_err};

/// How often a partition's objects are listed.
pub const SWEEP_EVERY: Duration = Duration::from_secs(600);
/// Objects younger than this are never deleted (an upload may be on its
/// way to the manifest).
pub const MIN_AGE: Duration = Duration::from_secs(600);

/// What the sweeps of one partition remember.
#[derive(Default)]
pub struct SweepState {
    last: Option<Instant>,
    /// Objects unnamed at the last sweep.
    suspects: HashSet<String>,
}

/// The sweeps of the partitions led here.
#[derive(Default)]
pub struct Sweeps(Mutex<HashMap<RemoteLoc, SweepState>>);

#[cfg(test)]
impl Sweeps {
    /// Makes every partition's next sweep due now.
    pub fn forget_last_sweeps(&self) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for s in map.values_mut() {
            s.last = None;
        }
    }
}

/// The upload id in an object's name: `BASE-UPLOADID.log` or `.index`
/// (`None` for other objects, such as the manifest copy).
fn upload_id(name: &str) -> Option<&str> {
    let stem = name
        .strip_suffix(".log")
        .or_else(|| name.strip_suffix(".index"))?;
    let (base, id) = stem.split_once('-')?;
    (base.len() == 20 && base.bytes().all(|b| b.is_ascii_digit())).then_some(id)
}

/// One sweep's decision over `listing` (object key, name, last modified):
/// the keys to delete now, and the suspects for the next sweep.
pub fn orphans(
    listing: &[(String, String, SystemTime)],
    named: &HashSet<&str>,
    suspects: &HashSet<String>,
    now: SystemTime,
) -> (Vec<String>, HashSet<String>) {
    let mut doomed = Vec::new();
    let mut next = HashSet::new();
    for (key, name, modified) in listing {
        let Some(id) = upload_id(name) else {
            continue;
        };
        if named.contains(id) {
            continue;
        }
        let old = now
            .duration_since(*modified)
            .is_ok_and(|age| age >= MIN_AGE);
        if old && suspects.contains(key) {
            doomed.push(key.clone());
        } else {
            next.insert(key.clone());
        }
    }
    (doomed, next)
}

impl Tier {
    /// Sweeps `loc` if its last sweep is [`SWEEP_EVERY`] old: deletes its
    /// orphaned objects (see the module doc) given the current manifest.
    /// Returns how many went.
    pub async fn sweep(&self, loc: &RemoteLoc, m: &RemoteManifest) -> Result<usize, TierError> {
        let suspects = {
            let map = self.sweeps.0.lock().unwrap_or_else(|e| e.into_inner());
            match map.get(loc) {
                Some(s) if s.last.is_some_and(|t| t.elapsed() < SWEEP_EVERY) => return Ok(0),
                Some(s) => s.suspects.clone(),
                None => HashSet::new(),
            }
        };
        let dir = self.dir(loc);
        let metas: Vec<_> = self.store.list(Some(&dir)).collect().await;
        let mut listing = Vec::with_capacity(metas.len());
        for meta in metas {
            let meta = meta.map_err(|e| store_err(&dir, e))?;
            let name = meta.location.filename().unwrap_or_default().to_owned();
            let modified = SystemTime::from(meta.last_modified);
            listing.push((meta.location.to_string(), name, modified));
        }
        let named: HashSet<&str> = m.segments.iter().map(|s| s.upload_id.as_str()).collect();
        let (doomed, next) = orphans(&listing, &named, &suspects, SystemTime::now());
        for key in &doomed {
            let path = object_store::path::Path::from(key.as_str());
            self.cache.forget(key);
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_err(&path, e)),
            }
            tracing::info!(topic = %loc.topic, partition = loc.partition, object = %key,
                "deleted an object no manifest names");
        }
        self.sweeps
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                loc.clone(),
                SweepState {
                    last: Some(Instant::now()),
                    suspects: next,
                },
            );
        Ok(doomed.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_old_objects_unnamed_twice_go() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100_000);
        let old = now - MIN_AGE - Duration::from_secs(1);
        let young = now - Duration::from_secs(5);
        let obj = |name: &str, t: SystemTime| (format!("p/{name}"), name.to_string(), t);
        let base = "00000000000000000000";
        let listing = vec![
            obj(&format!("{base}-kept.log"), old),
            obj(&format!("{base}-gone.log"), old),
            obj(&format!("{base}-gone.index"), old),
            obj(&format!("{base}-fresh.log"), young),
            obj("manifest.json", old),
            obj("notes-1.log", old),
        ];
        let named: HashSet<&str> = ["kept"].into();
        // The first sweep only suspects.
        let (doomed, suspects) = orphans(&listing, &named, &HashSet::new(), now);
        assert!(doomed.is_empty());
        assert_eq!(suspects.len(), 3, "{suspects:?}");
        // The next one deletes what is old and still unnamed.
        let (mut doomed, suspects) = orphans(&listing, &named, &suspects, now);
        doomed.sort();
        assert_eq!(
            doomed,
            [format!("p/{base}-gone.index"), format!("p/{base}-gone.log")]
        );
        assert_eq!(suspects, [format!("p/{base}-fresh.log")].into());
        // Named meanwhile (the manifest caught up): kept.
        let named: HashSet<&str> = ["kept", "gone"].into();
        let all: HashSet<String> = listing.iter().map(|l| l.0.clone()).collect();
        let (doomed, _) = orphans(&listing, &named, &all, now);
        assert!(doomed.is_empty() || doomed.iter().all(|d| d.contains("fresh")));
        assert!(doomed.is_empty(), "fresh is too young: {doomed:?}");
    }
}
