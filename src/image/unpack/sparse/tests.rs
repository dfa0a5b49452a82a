//! Map parsing and validation, hostile maps included.

use super::*;

fn ext(offset: u64, len: u64) -> Extent {
    Extent { offset, len }
}

fn records(pairs: &[(&str, &str)]) -> SparseRecords {
    let mut rec = SparseRecords::default();
    for (k, v) in pairs {
        rec.record(k, v.as_bytes());
    }
    rec
}

#[test]
fn formats_are_recognised() {
    let v10 = records(&[
        ("major", "1"),
        ("minor", "0"),
        ("name", "a/b"),
        ("realsize", "4096"),
    ]);
    assert_eq!(
        plan(&v10).unwrap(),
        Some(PaxSparse {
            name: Some(b"a/b".to_vec()),
            real_size: 4096,
            map: MapSource::Data
        })
    );
    let v01 = records(&[
        ("size", "10000"),
        ("numblocks", "2"),
        ("name", "f"),
        ("map", "0,10,9000,1000"),
    ]);
    let plan01 = plan(&v01).unwrap().unwrap();
    assert_eq!(
        plan01.map,
        MapSource::Records(vec![ext(0, 10), ext(9000, 1000)])
    );
    let v00 = records(&[
        ("size", "10000"),
        ("numblocks", "2"),
        ("offset", "0"),
        ("numbytes", "10"),
        ("offset", "9000"),
        ("numbytes", "1000"),
    ]);
    let plan00 = plan(&v00).unwrap().unwrap();
    assert_eq!(plan00.map, plan01.map);
    assert_eq!(plan00.name, None);
    assert_eq!(plan(&SparseRecords::default()).unwrap(), None);
}

#[test]
fn bad_records_are_refused() {
    for (recs, want) in [
        (
            &[("major", "2"), ("minor", "0"), ("realsize", "1")][..],
            "version 2.0",
        ),
        (&[("name", "x")][..], "no sparse format"),
        (&[("major", "1"), ("minor", "0")][..], "no real size"),
        (
            &[("size", "-1"), ("numblocks", "0")][..],
            "invalid real size",
        ),
        (
            &[("size", "9223372036854775808"), ("numblocks", "0")][..],
            "past the largest",
        ),
        (
            &[("size", "99999999999999999999999")][..],
            "invalid real size",
        ),
        (&[("size", "10")][..], "numblocks is missing"),
        (
            &[("size", "10"), ("numblocks", "2"), ("map", "0,1")][..],
            "has 2 numbers",
        ),
        (
            &[("size", "10"), ("numblocks", "1"), ("map", "0,x")][..],
            "invalid map number",
        ),
        (
            &[("size", "10"), ("numblocks", "1000000000"), ("map", "0,1")][..],
            "at most",
        ),
        (
            &[
                ("size", "10"),
                ("numblocks", "1"),
                ("numbytes", "1"),
                ("offset", "0"),
            ][..],
            "out of turn",
        ),
        (
            &[
                ("size", "10"),
                ("numblocks", "1"),
                ("name", "x"),
                ("map", "0,1"),
                ("offset", "0"),
                ("numbytes", "1"),
            ][..],
            "both",
        ),
    ] {
        let err = plan(&records(recs)).unwrap_err();
        assert!(err.contains(want), "{recs:?}: {err}");
    }
}

#[test]
fn huge_record_maps_are_refused_without_allocating() {
    let mut rec = records(&[("size", "10"), ("numblocks", "1")]);
    for i in 0..(2 * MAX_EXTENTS + 10) {
        rec.record(if i % 2 == 0 { "offset" } else { "numbytes" }, b"0");
    }
    assert!(rec.pairs.len() <= 2 * MAX_EXTENTS);
    assert!(plan(&rec).unwrap_err().contains("more than"));
    let map = "0,".repeat(2 * MAX_EXTENTS + 2);
    let rec = records(&[
        ("size", "10"),
        ("numblocks", "1"),
        ("name", "x"),
        ("map", &map),
    ]);
    assert!(plan(&rec).unwrap_err().contains("more than"));
}

fn data_map(text: &[u8]) -> Result<(Vec<Extent>, u64), String> {
    read_data_map(&mut &text[..]).map_err(|f| match f {
        Fault::Invalid(reason) => reason,
        other => panic!("{other:?}"),
    })
}

fn padded(text: &str, blocks: usize) -> Vec<u8> {
    let mut v = text.as_bytes().to_vec();
    v.resize(blocks * BLOCK, 0);
    v
}

#[test]
fn data_maps_are_read() {
    let (extents, used) = data_map(&padded("2\n0\n5\n4096\n1\n", 1)).unwrap();
    assert_eq!(extents, vec![ext(0, 5), ext(4096, 1)]);
    assert_eq!(used, 512);
    // A map across blocks; what follows the last number is padding.
    let mut text = String::from("100\n");
    for i in 0..100 {
        text.push_str(&format!("{}\n1\n", i * 10));
    }
    let (extents, used) = data_map(&padded(&text, 3)).unwrap();
    assert_eq!(extents.len(), 100);
    assert_eq!(extents[99], ext(990, 1));
    // 593 bytes of map: two blocks; the third is the file's data.
    assert_eq!(used, 2 * 512);
    let (extents, _) = data_map(&padded("0\n", 1)).unwrap();
    assert!(extents.is_empty());
}

#[test]
fn bad_data_maps_are_refused() {
    for (data, want) in [
        (padded("2\n0\n5\n", 1), "something other"),
        (b"2\n0\n5\n".to_vec(), "ends inside"),
        (padded("1\n0\n", 1)[..512].to_vec(), "something other"),
        (padded("1000000000\n", 1), "at most"),
        (padded("1\n\n5\n", 1), "empty line"),
        (padded("1\n-1\n5\n", 1), "something other"),
        (
            padded("1\n123456789012345678901\n5\n", 1),
            "something other",
        ),
    ] {
        let err = data_map(&data).unwrap_err();
        assert!(
            err.contains(want),
            "{:?}: {err}",
            String::from_utf8_lossy(&data)
        );
    }
    // Endless digits and newlines stop at the size limit, not the data's end.
    let mut text = String::from(&format!("{MAX_EXTENTS}\n"));
    while text.len() < (MAX_MAP_BYTES as usize) + 4096 {
        text.push_str("1\n");
    }
    let err = data_map(&padded(&text, text.len().div_ceil(BLOCK))).unwrap_err();
    assert!(err.contains("longer than"), "{err}");
}

#[test]
fn maps_are_validated() {
    assert!(validate(&[ext(0, 5), ext(4096, 1), ext(8192, 0)], 8192, 6).is_ok());
    assert!(validate(&[], 1 << 40, 0).is_ok());
    for (extents, real, stored, want) in [
        (vec![ext(0, 10), ext(5, 10)], 100, 20, "overlaps"),
        (vec![ext(50, 10), ext(0, 10)], 100, 20, "overlaps"),
        (vec![ext(0, 10), ext(95, 10)], 100, 20, "past the real size"),
        (vec![ext(u64::MAX, 2)], u64::MAX, 2, "past the real size"),
        (vec![ext(0, 10)], 100, 11, "stores 11"),
        (vec![ext(0, 10), ext(20, 10)], 100, 10, "covers 20"),
    ] {
        let err = validate(&extents, real, stored).unwrap_err();
        assert!(err.contains(want), "{extents:?}: {err}");
    }
    let many = vec![ext(0, 0); MAX_EXTENTS + 1];
    assert!(validate(&many, 1, 0).unwrap_err().contains("at most"));
}
