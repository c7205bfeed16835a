//! Compression tests: batches round trip through every codec; batches
//! written by other Kafka clients' encoders (xerial and raw snappy, gzip
//! members, LZ4 frames, zstd frames) decode; corrupt bodies, bombs and lying
//! record counts are refused; no compressed body makes a decoder panic.

use std::io::Write;

use super::*;
use proptest::prelude::*;

type Hdrs = Vec<(String, Option<Vec<u8>>)>;

/// A record as pushed: (timestamp, key, value, headers).
type Rec = (i64, Option<Vec<u8>>, Option<Vec<u8>>, Hdrs);

fn sample_records(n: usize) -> Vec<Rec> {
    (0..n)
        .map(|i| {
            let key = (i % 4 != 1).then(|| format!("key-{}", i % 10).into_bytes());
            let value = (i % 7 != 3).then(|| format!("value {i} ").repeat(i % 20).into_bytes());
            let mut headers = vec![("trace".to_string(), Some(format!("t{i}").into_bytes()))];
            if i % 3 == 0 {
                headers.push(("empty".to_string(), None));
            }
            (1_000 + i as i64, key, value, headers)
        })
        .collect()
}

fn build_with(codec: Codec, recs: &[Rec]) -> Bytes {
    let mut b = BatchBuilder::new(1_000);
    b.set_compression(codec);
    for (ts, k, v, hs) in recs {
        let hs: Vec<(&str, Option<&[u8]>)> =
            hs.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
        b.push(*ts, k.as_deref(), v.as_deref(), &hs);
    }
    b.finish()
}

fn assert_same(got: &[Record], want: &[Rec], base_offset: i64) {
    assert_eq!(got.len(), want.len());
    for (i, (g, (ts, k, v, hs))) in got.iter().zip(want).enumerate() {
        assert_eq!(g.offset, base_offset + i as i64);
        assert_eq!(g.timestamp, *ts);
        assert_eq!(g.key.as_deref(), k.as_deref());
        assert_eq!(g.value.as_deref(), v.as_deref());
        let gh: Vec<(&str, Option<&[u8]>)> = g
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .collect();
        let wh: Vec<(&str, Option<&[u8]>)> =
            hs.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
        assert_eq!(gh, wh);
    }
}

fn decode(batch: &Bytes) -> Result<Vec<Record>, BatchError> {
    records(batch)?.collect()
}

/// `plain`'s header with `body` as its records section, the codec bits set
/// to `codec`, and length and CRC fixed up.
fn with_body(plain: &[u8], codec: u8, body: &[u8]) -> Bytes {
    let mut m = plain[..HEADER_LEN].to_vec();
    m.extend_from_slice(body);
    let len = (m.len() - LOG_OVERHEAD) as i32;
    m[OFF_LENGTH..OFF_LENGTH + 4].copy_from_slice(&len.to_be_bytes());
    let attrs = (be_i16(&m, OFF_ATTRIBUTES) & !ATTR_CODEC_MASK) | i16::from(codec);
    m[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&attrs.to_be_bytes());
    let crc = compute_crc(&m);
    m[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(m)
}

/// An uncompressed batch of `recs` and its records section.
fn plain(recs: &[Rec]) -> (Bytes, Vec<u8>) {
    let b = build_with(Codec::None, recs);
    let area = b[HEADER_LEN..].to_vec();
    (b, area)
}

/// The xerial framing, as the Java client's `SnappyOutputStream` writes it:
/// header, then 32 KiB input blocks each as `[u32 BE length][raw block]`.
fn xerial(data: &[u8], block: usize) -> Vec<u8> {
    let mut out = b"\x82SNAPPY\x00".to_vec();
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    for chunk in data.chunks(block) {
        let c = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
        out.extend_from_slice(&(c.len() as u32).to_be_bytes());
        out.extend_from_slice(&c);
    }
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn codec_ids() {
    for c in Codec::ALL {
        assert_eq!(Codec::try_from(c.id()), Ok(c));
    }
    for id in 5..=u8::MAX {
        assert_eq!(
            Codec::try_from(id),
            Err(BatchError::UnsupportedCompression(id))
        );
    }
    assert_eq!(Codec::Zstd.to_string(), "zstd");
    assert_eq!(
        (Codec::Gzip.id(), Codec::Snappy.id(), Codec::Lz4.id()),
        (1, 2, 3)
    );
}

#[test]
fn every_codec_round_trips_keys_values_nulls_headers() {
    let recs = sample_records(200);
    let (plain_batch, _) = plain(&recs);
    for codec in Codec::ALL {
        let batch = build_with(codec, &recs);
        let h = validate(&batch).unwrap_or_else(|e| panic!("{codec}: {e}"));
        assert_eq!(h.compression(), Ok(codec));
        assert_eq!(h.records_count, 200);
        assert_eq!(h.last_offset_delta, 199);
        assert_eq!(h.max_timestamp, 1_199);
        if codec != Codec::None {
            assert!(
                batch.len() < plain_batch.len() / 2,
                "{codec}: {} bytes, plain {}",
                batch.len(),
                plain_batch.len()
            );
        }
        // Stamped, as the broker stores it: the CRC still holds.
        let mut m = batch.to_vec();
        stamp(&mut m, 7_000, 3, 4);
        let m = Bytes::from(m);
        assert!(validate(&m).is_ok());
        assert!(verify_crc(&m).is_ok());
        let got = decode(&m).unwrap_or_else(|e| panic!("{codec}: {e}"));
        assert_same(&got, &recs, 7_000);
        // BatchIter and split_validated take compressed batches as they are.
        let two = Bytes::from([&m[..], &m[..]].concat());
        let split = split_validated(&two).unwrap();
        assert_eq!(split.len(), 2);
        assert_eq!(split[1].1, m);
        let via_iter: Vec<_> = BatchIter::new(two).collect::<Result<_, _>>().unwrap();
        assert_eq!(via_iter.len(), 2);
        assert_same(&decode(&via_iter[0].1).unwrap(), &recs, 7_000);
    }
}

#[test]
fn empty_and_single_record_batches_round_trip() {
    for codec in Codec::ALL {
        let batch = build_with(codec, &[]);
        let h = validate(&batch).unwrap_or_else(|e| panic!("{codec}: {e}"));
        assert_eq!((h.records_count, h.compression()), (0, Ok(codec)));
        assert!(decode(&batch).unwrap().is_empty());
        let one = vec![(5, None, None, Vec::new())];
        let batch = build_with(codec, &one);
        validate(&batch).unwrap_or_else(|e| panic!("{codec}: {e}"));
        assert_same(&decode(&batch).unwrap(), &one, 0);
    }
}

#[test]
fn compressed_size_estimate_is_the_uncompressed_size() {
    let recs = sample_records(50);
    let mut b = BatchBuilder::new(1_000);
    b.set_compression(Codec::Lz4);
    assert_eq!(b.compression(), Codec::Lz4);
    for (ts, k, v, _) in &recs {
        let want = b.size_with(*ts, k.as_ref().map(Vec::len), v.as_ref().map(Vec::len));
        b.push(*ts, k.as_deref(), v.as_deref(), &[]);
        assert_eq!(b.size(), want);
    }
    let size = b.size();
    let batch = b.finish();
    assert!(batch.len() < size);
}

#[test]
fn decompress_is_bounded_exactly() {
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    for codec in Codec::ALL {
        let c = compress(codec, &data);
        assert_eq!(decompress(codec, &c, data.len()).unwrap(), data, "{codec}");
        assert_eq!(
            decompress(codec, &c, data.len() - 1),
            Err(BatchError::DecompressedTooLarge {
                codec,
                max: data.len() - 1
            }),
            "{codec}"
        );
        assert!(decompress(codec, &c, 0).is_err());
    }
}

#[test]
fn corrupt_bodies_with_a_good_crc_are_refused() {
    let recs = sample_records(100);
    let (plain_batch, _) = plain(&recs);
    for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
        let batch = build_with(codec, &recs);
        let body = &batch[HEADER_LEN..];
        let truncated = with_body(&plain_batch, codec.id(), &body[..body.len() - 5]);
        let garbage = with_body(&plain_batch, codec.id(), &[0xff; 64]);
        let empty = with_body(&plain_batch, codec.id(), &[]);
        for (what, bad) in [
            ("truncated", truncated),
            ("garbage", garbage),
            ("empty", empty),
        ] {
            let e = validate(&bad).expect_err(what);
            // An empty body decompresses (to nothing) in some formats: then
            // the 100 records it should hold are missing.
            let decompress_error =
                matches!(&e, BatchError::Decompress { codec: c, .. } if *c == codec);
            assert!(
                decompress_error || (what == "empty" && matches!(e, BatchError::Malformed(_))),
                "{codec} {what}: {e:?}"
            );
            assert!(decode(&bad).is_err(), "{codec} {what}");
            assert!(split_validated(&bad).is_err());
        }
    }
    // A flipped byte is caught by the CRC first, as for plain batches.
    let mut m = build_with(Codec::Zstd, &recs).to_vec();
    let mid = HEADER_LEN + (m.len() - HEADER_LEN) / 2;
    m[mid] ^= 0x40;
    assert!(matches!(validate(&m), Err(BatchError::Crc { .. })));
}

#[test]
fn decompress_error_names_the_codec() {
    let e = decompress(Codec::Gzip, b"not gzip", 1 << 20).unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("gzip records do not decompress: "), "{msg}");
}

#[test]
fn unknown_codec_ids_are_refused() {
    let (plain_batch, area) = plain(&sample_records(3));
    for id in 5..=7u8 {
        let b = with_body(&plain_batch, id, &area);
        assert_eq!(validate(&b), Err(BatchError::UnsupportedCompression(id)));
        assert!(matches!(
            records(&b),
            Err(BatchError::UnsupportedCompression(i)) if i == id
        ));
    }
}

#[test]
fn zstd_bomb_is_refused() {
    // 300 MiB of zeros: a few KiB of zstd.
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..300 {
        enc.write_all(&zeros).unwrap();
    }
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 1 << 20);
    let (plain_batch, _) = plain(&sample_records(1));
    let b = with_body(&plain_batch, Codec::Zstd.id(), &bomb);
    assert_eq!(
        validate(&b),
        Err(BatchError::DecompressedTooLarge {
            codec: Codec::Zstd,
            max: MAX_DECOMPRESSED
        })
    );
    assert!(matches!(
        records(&b),
        Err(BatchError::DecompressedTooLarge { .. })
    ));
    // With a small bound it stops at the bound.
    assert_eq!(
        decompress(Codec::Zstd, &bomb, 1 << 20),
        Err(BatchError::DecompressedTooLarge {
            codec: Codec::Zstd,
            max: 1 << 20
        })
    );
}

#[test]
fn gzip_and_lz4_bombs_stop_at_the_bound() {
    let zeros = vec![0u8; 16 << 20];
    for codec in [Codec::Gzip, Codec::Lz4, Codec::Snappy] {
        let bomb = compress(codec, &zeros);
        assert!(bomb.len() < zeros.len() / 16, "{codec}: {}", bomb.len());
        assert_eq!(
            decompress(codec, &bomb, 1 << 20),
            Err(BatchError::DecompressedTooLarge {
                codec,
                max: 1 << 20
            })
        );
    }
}

#[test]
fn snappy_block_claiming_a_huge_length_is_refused_before_allocating() {
    let (plain_batch, _) = plain(&sample_records(1));
    // varint 0xffff_ffff (4 GiB - 1), then a literal of 4 bytes.
    let mut lie = vec![0xff, 0xff, 0xff, 0xff, 0x0f];
    lie.extend_from_slice(&[0x0c, b'a', b'b', b'c', b'd']);
    let b = with_body(&plain_batch, Codec::Snappy.id(), &lie);
    assert_eq!(
        validate(&b),
        Err(BatchError::DecompressedTooLarge {
            codec: Codec::Snappy,
            max: MAX_DECOMPRESSED
        })
    );
    // Under the bound but more than the block can encode: refused too,
    // without allocating the 200 MiB it claims.
    let mut lie = Vec::new();
    let claim: u64 = 200 << 20;
    let mut v = claim;
    while v >= 0x80 {
        lie.push((v as u8) | 0x80);
        v >>= 7;
    }
    lie.push(v as u8);
    lie.extend_from_slice(&[0x0c, b'a', b'b', b'c', b'd']);
    let b = with_body(&plain_batch, Codec::Snappy.id(), &lie);
    assert!(
        matches!(validate(&b), Err(BatchError::Decompress { codec: Codec::Snappy, ref why }) if why.contains("claims")),
        "{:?}",
        validate(&b)
    );
    // The same lie inside a xerial chunk.
    let mut x = xerial(b"", 1);
    x.extend_from_slice(&(lie.len() as u32).to_be_bytes());
    x.extend_from_slice(&lie);
    assert!(matches!(
        decompress(Codec::Snappy, &x, MAX_DECOMPRESSED),
        Err(BatchError::Decompress { .. })
    ));
}

#[test]
fn xerial_chunk_longer_than_the_input_is_refused() {
    let (plain_batch, area) = plain(&sample_records(20));
    let mut x = xerial(&area, 32 * 1024);
    // A last chunk that claims 1 GiB, with 3 bytes present.
    x.extend_from_slice(&(1u32 << 30).to_be_bytes());
    x.extend_from_slice(b"abc");
    let b = with_body(&plain_batch, Codec::Snappy.id(), &x);
    let e = validate(&b).unwrap_err();
    assert!(
        matches!(&e, BatchError::Decompress { why, .. } if why.contains("chunk")),
        "{e:?}"
    );
    // A truncated chunk length and a truncated header.
    let mut x = xerial(&area, 32 * 1024);
    x.extend_from_slice(&[0, 0]);
    assert!(decompress(Codec::Snappy, &x, MAX_DECOMPRESSED).is_err());
    assert!(decompress(Codec::Snappy, b"\x82SNAPPY\x00\x00\x00", MAX_DECOMPRESSED).is_err());
}

#[test]
fn record_count_disagreeing_with_the_decompressed_records_is_refused() {
    let recs = sample_records(10);
    for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
        let batch = build_with(codec, &recs);
        for count in [9i32, 11, 1_000_000] {
            let mut m = batch.to_vec();
            m[OFF_COUNT..OFF_COUNT + 4].copy_from_slice(&count.to_be_bytes());
            m[OFF_LAST_DELTA..OFF_LAST_DELTA + 4].copy_from_slice(&(count - 1).to_be_bytes());
            let crc = compute_crc(&m);
            m[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
            let e = validate(&m).unwrap_err();
            assert!(
                matches!(e, BatchError::Malformed(_)),
                "{codec} {count}: {e:?}"
            );
            assert!(decode(&Bytes::from(m)).is_err(), "{codec} {count}");
        }
    }
}

#[test]
fn java_xerial_snappy_decodes() {
    let recs = sample_records(1_000);
    let (plain_batch, area) = plain(&recs);
    assert!(area.len() > 64 * 1024, "several chunks: {}", area.len());
    for block in [32 * 1024, 1_000] {
        let b = with_body(&plain_batch, Codec::Snappy.id(), &xerial(&area, block));
        validate(&b).unwrap();
        assert_same(&decode(&b).unwrap(), &recs, 0);
    }
    // Concatenated xerial streams (a header between chunks).
    let (a, z) = area.split_at(area.len() / 3);
    let both = [xerial(a, 32 * 1024), xerial(z, 32 * 1024)].concat();
    let b = with_body(&plain_batch, Codec::Snappy.id(), &both);
    validate(&b).unwrap();
    assert_same(&decode(&b).unwrap(), &recs, 0);
}

#[test]
fn raw_snappy_decodes() {
    let recs = sample_records(100);
    let (plain_batch, area) = plain(&recs);
    let raw = snap::raw::Encoder::new().compress_vec(&area).unwrap();
    let b = with_body(&plain_batch, Codec::Snappy.id(), &raw);
    validate(&b).unwrap();
    assert_same(&decode(&b).unwrap(), &recs, 0);
    // What the builder writes is raw snappy too (no xerial magic).
    let ours = build_with(Codec::Snappy, &recs);
    assert!(!ours[HEADER_LEN..].starts_with(b"\x82SNAPPY"));
    assert_eq!(
        snap::raw::Decoder::new()
            .decompress_vec(&ours[HEADER_LEN..])
            .unwrap(),
        area
    );
}

#[test]
fn multi_member_gzip_decodes() {
    let recs = sample_records(100);
    let (plain_batch, area) = plain(&recs);
    let (a, z) = area.split_at(area.len() / 2);
    let body = [gzip(a), gzip(z)].concat();
    let b = with_body(&plain_batch, Codec::Gzip.id(), &body);
    validate(&b).unwrap();
    assert_same(&decode(&b).unwrap(), &recs, 0);
    // Trailing garbage after the members is not gzip.
    let mut body = gzip(&area);
    body.extend_from_slice(b"junk");
    let b = with_body(&plain_batch, Codec::Gzip.id(), &body);
    assert!(matches!(validate(&b), Err(BatchError::Decompress { .. })));
}

#[test]
fn lz4_frames_decode() {
    use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};
    let recs = sample_records(300);
    let (plain_batch, area) = plain(&recs);
    let infos = [
        // What Kafka's Java client writes: 64 KiB independent blocks.
        FrameInfo::new()
            .block_size(BlockSize::Max64KB)
            .block_mode(BlockMode::Independent),
        // What other LZ4F writers may add.
        FrameInfo::new()
            .block_size(BlockSize::Max256KB)
            .block_mode(BlockMode::Linked)
            .block_checksums(true)
            .content_checksum(true)
            .content_size(Some(area.len() as u64)),
    ];
    for info in infos {
        let mut e = FrameEncoder::with_frame_info(info, Vec::new());
        e.write_all(&area).unwrap();
        let body = e.finish().unwrap();
        let b = with_body(&plain_batch, Codec::Lz4.id(), &body);
        validate(&b).unwrap();
        assert_same(&decode(&b).unwrap(), &recs, 0);
    }
    // The builder's frames: magic, then a descriptor with independent blocks.
    let ours = build_with(Codec::Lz4, &recs);
    assert_eq!(&ours[HEADER_LEN..HEADER_LEN + 4], &[0x04, 0x22, 0x4d, 0x18]);
    assert_ne!(ours[HEADER_LEN + 4] & 0x20, 0, "block independence flag");
}

#[test]
fn zstd_frames_decode() {
    let recs = sample_records(300);
    let (plain_batch, area) = plain(&recs);
    // With the content size (bulk), and streamed without it and with a
    // checksum, as zstd-jni's stream writes.
    let bulk = zstd::bulk::compress(&area, 3).unwrap();
    let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    e.include_checksum(true).unwrap();
    e.write_all(&area).unwrap();
    let streamed = e.finish().unwrap();
    for body in [bulk, streamed] {
        let b = with_body(&plain_batch, Codec::Zstd.id(), &body);
        validate(&b).unwrap();
        assert_same(&decode(&b).unwrap(), &recs, 0);
    }
}

fn any_record() -> impl Strategy<Value = Rec> {
    (
        any::<i32>(),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        proptest::option::of(proptest::collection::vec(0u8..4, 0..300)),
        proptest::collection::vec(
            (
                "[a-z]{0,8}",
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
            ),
            0..3,
        ),
    )
        .prop_map(|(ts, k, v, h)| (i64::from(ts), k, v, h))
}

fn any_codec() -> impl Strategy<Value = Codec> {
    proptest::sample::select(Codec::ALL.to_vec())
}

proptest! {
    #[test]
    fn any_records_round_trip_every_codec(recs in proptest::collection::vec(any_record(), 0..40)) {
        for codec in Codec::ALL {
            let mut b = BatchBuilder::new(0);
            b.set_compression(codec);
            for (ts, k, v, hs) in &recs {
                let hs: Vec<(&str, Option<&[u8]>)> =
                    hs.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
                b.push(*ts, k.as_deref(), v.as_deref(), &hs);
            }
            let batch = b.finish();
            let h = validate(&batch);
            prop_assert!(h.is_ok(), "{}: {:?}", codec, h);
            let got = decode(&batch);
            prop_assert!(got.is_ok(), "{}: {:?}", codec, got);
            let got = got.unwrap_or_default();
            prop_assert_eq!(got.len(), recs.len());
            for (g, (ts, k, v, hs)) in got.iter().zip(&recs) {
                prop_assert_eq!(g.timestamp, *ts);
                prop_assert_eq!(g.key.as_deref(), k.as_deref());
                prop_assert_eq!(g.value.as_deref(), v.as_deref());
                prop_assert_eq!(g.headers.len(), hs.len());
                for ((gk, gv), (wk, wv)) in g.headers.iter().zip(hs) {
                    prop_assert_eq!(gk, wk);
                    prop_assert_eq!(gv.as_deref(), wv.as_deref());
                }
            }
        }
    }

    #[test]
    fn any_compressed_body_never_panics(
        codec in any_codec(),
        count in 0i32..50,
        body in proptest::collection::vec(any::<u8>(), 0..600),
        xerial_magic in any::<bool>(),
    ) {
        let (plain_batch, _) = plain(&sample_records(1));
        let body = if xerial_magic {
            [&b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01"[..], &body].concat()
        } else {
            body
        };
        let mut m = with_body(&plain_batch, codec.id(), &body).to_vec();
        m[OFF_COUNT..OFF_COUNT + 4].copy_from_slice(&count.to_be_bytes());
        m[OFF_LAST_DELTA..OFF_LAST_DELTA + 4].copy_from_slice(&(count - 1).to_be_bytes());
        let crc = compute_crc(&m);
        m[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        let b = Bytes::from(m);
        let _ = validate(&b);
        let _ = split_validated(&b);
        if let Ok(it) = records(&b) {
            for _ in it {}
        }
        for c in Codec::ALL {
            let _ = decompress(c, &body, 1 << 16);
        }
    }

    #[test]
    fn mutated_compressed_batches_never_panic(
        codec in any_codec(),
        n in 1usize..30,
        pos in any::<usize>(),
        byte in any::<u8>(),
    ) {
        let mut m = build_with(codec, &sample_records(n)).to_vec();
        let p = HEADER_LEN + pos % (m.len() - HEADER_LEN);
        m[p] = byte;
        let crc = compute_crc(&m);
        m[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        let b = Bytes::from(m);
        let _ = validate(&b);
        if let Ok(it) = records(&b) {
            for _ in it {}
        }
    }
}
