//! Codec tests: build/validate/stamp round trips, exact size estimates,
//! corruption detection, and property tests that no input makes a decoder
//! panic.

use super::*;
use proptest::prelude::*;

fn build(n: usize) -> Bytes {
    let mut b = BatchBuilder::new(1_000);
    for i in 0..n {
        let k = format!("k{i}");
        let v = vec![i as u8; i * 3];
        b.push(
            1_000 + i as i64,
            Some(k.as_bytes()),
            Some(&v),
            &[("h", Some(b"x"))],
        );
    }
    b.finish()
}

#[test]
fn roundtrip_and_stamp() {
    let batch = build(10);
    let h = validate(&batch).unwrap();
    assert_eq!(h.records_count, 10);
    assert_eq!(h.max_timestamp, 1_009);
    let mut m = batch.to_vec();
    stamp(&mut m, 500, 7, 9);
    let m = Bytes::from(m);
    let h = validate(&m).unwrap();
    assert_eq!((h.base_offset, h.raft_term, h.raft_index), (500, 7, 9));
    let recs: Vec<_> = records(&m).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(recs.len(), 10);
    assert_eq!(recs[3].offset, 503);
    assert_eq!(recs[3].key.as_deref(), Some(&b"k3"[..]));
    assert_eq!(recs[3].value.as_deref(), Some(&[3u8; 9][..]));
    assert_eq!(
        recs[3].headers,
        vec![("h".to_string(), Some(Bytes::from_static(b"x")))]
    );
}

#[test]
fn size_estimate_is_exact() {
    let mut b = BatchBuilder::new(5);
    for i in 0..100 {
        let v = vec![0u8; i * 7];
        let want = b.size_with(5 + i as i64, Some(2), Some(v.len()));
        b.push(5 + i as i64, Some(b"ab"), Some(&v), &[]);
        assert_eq!(b.size(), want);
    }
}

#[test]
fn crc_flip_detected() {
    let batch = build(3);
    let mut m = batch.to_vec();
    let last = m.len() - 1;
    m[last] ^= 1;
    assert!(matches!(validate(&m), Err(BatchError::Crc { .. })));
}

#[test]
fn lying_length_detected() {
    let batch = build(3);
    let mut m = batch.to_vec();
    m[8..12].copy_from_slice(&(i32::MAX).to_be_bytes());
    assert!(validate(&m).is_err());
    assert!(split_validated(&Bytes::from(m)).is_err());
}

proptest! {
    #[test]
    fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let b = Bytes::from(bytes);
        let _ = split_validated(&b);
        for (_, batch) in BatchIter::new(b.clone()).flatten() {
            if let Ok(it) = records(&batch) {
                for _ in it {}
            }
        }
    }

    #[test]
    fn mutated_batches_never_panic(n in 1usize..20, pos in any::<usize>(), byte in any::<u8>()) {
        let mut m = build(n).to_vec();
        let p = pos % m.len();
        m[p] = byte;
        // Fix the CRC so mutations reach the record decoder.
        let crc = compute_crc(&m);
        if !(OFF_CRC..CRC_START).contains(&p) {
            m[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        }
        let b = Bytes::from(m);
        let _ = validate(&b);
        if let Ok(it) = records(&b) {
            for _ in it {}
        }
    }

    #[test]
    fn any_records_roundtrip(recs in proptest::collection::vec(
        (any::<i32>(), proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
         proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200))), 1..30)) {
        let mut b = BatchBuilder::new(0);
        for (ts, k, v) in &recs {
            b.push(i64::from(*ts), k.as_deref(), v.as_deref(), &[]);
        }
        let batch = b.finish();
        prop_assert!(validate(&batch).is_ok());
        let got: Vec<_> = records(&batch).unwrap().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(got.len(), recs.len());
        for (g, (ts, k, v)) in got.iter().zip(&recs) {
            prop_assert_eq!(g.timestamp, i64::from(*ts));
            prop_assert_eq!(g.key.as_deref(), k.as_deref());
            prop_assert_eq!(g.value.as_deref(), v.as_deref());
        }
    }
}
