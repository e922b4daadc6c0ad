use super::*;
use oxidns_server::proto::name_from_str;
use oxidns_zone::zonefile::parse_zone_text;

fn apex() -> Name {
    name_from_str("example.org").unwrap()
}

fn zone(text: &str) -> Zone {
    let records = parse_zone_text(text, "test", &apex()).unwrap();
    Zone::build(&apex(), records).unwrap().0
}

const V1: &str = "$ORIGIN example.org.\n$TTL 300\n@ SOA ns1 hostmaster 1 60 30 600 60\n@ NS ns1\nns1 A 192.0.2.1\nwww A 192.0.2.80\nold TXT \"goes away\"\n";

#[test]
fn addresses_take_an_optional_port() {
    assert_eq!(
        parse_address("192.0.2.1"),
        Some("192.0.2.1:53".parse().unwrap())
    );
    assert_eq!(
        parse_address("192.0.2.1:5300"),
        Some("192.0.2.1:5300".parse().unwrap())
    );
    assert_eq!(parse_address("::1"), Some("[::1]:53".parse().unwrap()));
    assert_eq!(
        parse_address("[::1]:5300"),
        Some("[::1]:5300".parse().unwrap())
    );
    assert_eq!(parse_address("[::1]"), Some("[::1]:53".parse().unwrap()));
    assert_eq!(parse_address("primary.example"), None);
}

#[test]
fn a_saved_zone_reads_back_the_same() {
    let text = format!(
        "{V1}t TXT \"with \\\"quotes\\\" and spaces\" \"two\"\nm MX 10 mail\nmail AAAA 2001:db8::1\n\
         s SRV 1 2 3 target\nc CAA 0 issue \"ca.example\"\nw CNAME www\nh HINFO \"a b\" c\n\
         x TYPE65300 \\# 3 010203\ne TYPE65301 \\# 0\nds DS 12345 8 2 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\nn NAPTR 100 10 \"S\" \"SIP+D2U\" \"\" _sip._udp\nhs HTTPS 1 . alpn=h2\n*.wild A 192.0.2.9\nsub NS ns.sub\nns.sub A 192.0.2.53\n"
    );
    let original = zone(&text);
    let mut saved = Vec::new();
    let mut written = RecordDigest::default();
    write_zone(&mut saved, &apex(), &original, &mut written).unwrap();
    let saved = String::from_utf8(saved).unwrap();
    let again = zone(&saved);
    let a: Vec<String> = original.records().map(|r| r.to_string()).collect();
    let b: Vec<String> = again.records().map(|r| r.to_string()).collect();
    assert_eq!(a, b, "{saved}");
    // And its digest read back is the one taken while writing.
    let dir = std::env::temp_dir().join(format!("oxidns-digest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("db.saved");
    std::fs::write(&path, &saved).unwrap();
    assert_eq!(written.records(), a.len() as u64);
    assert_eq!(digest_zone_file(&path, &apex()).unwrap(), written);
    std::fs::write(&path, saved.replace("192.0.2.53", "192.0.2.54")).unwrap();
    assert_ne!(digest_zone_file(&path, &apex()).unwrap(), written);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn differences_apply_in_order() {
    let v1 = zone(V1);
    let v3 = zone(
        &V1.replace(" 1 60", " 3 60")
            .replace("192.0.2.80", "192.0.2.81")
            .replace("old TXT \"goes away\"", "new TXT \"arrives\""),
    );
    let soa = |z: &Zone| oxidns_zone::journal::soa(z).unwrap();
    let v2 = zone(
        &V1.replace(" 1 60", " 2 60")
            .replace("192.0.2.80", "192.0.2.81"),
    );
    let find = |z: &Zone, owner: &str| {
        z.records()
            .find(|r| r.owner().to_string().starts_with(owner) && r.rtype() != Rtype::SOA)
            .unwrap()
            .clone()
    };
    let diffs = vec![
        IxfrDiff {
            from_soa: soa(&v1),
            removed: vec![find(&v1, "www")],
            to_soa: soa(&v2),
            added: vec![find(&v2, "www")],
        },
        IxfrDiff {
            from_soa: soa(&v2),
            removed: vec![find(&v2, "old")],
            to_soa: soa(&v3),
            added: vec![find(&v3, "new")],
        },
    ];
    let records = apply(&v1, &diffs).unwrap();
    let mut got: Vec<String> = records.iter().map(|r| r.to_string()).collect();
    let mut want: Vec<String> = v3.records().map(|r| r.to_string()).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    // Differences for another version do not apply.
    assert!(apply(&v2, &diffs).is_err());
    // Nor does removing what is not there.
    let bad = vec![IxfrDiff {
        from_soa: soa(&v1),
        removed: vec![find(&v3, "new")],
        to_soa: soa(&v3),
        added: vec![],
    }];
    assert!(apply(&v1, &bad).is_err());
}

#[test]
fn serials_compare_across_the_wrap() {
    // RFC 1982: 0 follows 4294967295; a transfer must bring a newer serial.
    assert!(serial_newer(0, u32::MAX));
    assert!(serial_newer(10, u32::MAX - 10));
    assert!(!serial_newer(u32::MAX, 0));
    assert!(!serial_newer(5, 5));
    assert!(!serial_newer(0x8000_0000, 0));
}

#[test]
fn timers_come_from_the_soa_and_have_a_floor() {
    let t = timers(&zone(V1));
    assert_eq!(t.refresh, Duration::from_secs(60));
    assert_eq!(t.retry, Duration::from_secs(30));
    assert_eq!(t.expire, Duration::from_secs(600));
    let t = timers(&zone(&V1.replace("1 60 30 600 60", "1 0 0 0 60")));
    assert_eq!(t.refresh, MIN_TIMER);
    assert_eq!(t.expire, MIN_TIMER);
}

#[test]
fn a_transfer_is_saved_atomically_and_only_when_valid() {
    let dir = std::env::temp_dir().join(format!("oxidns-secondary-unit-{}", std::process::id()));
    let path = dir.join("db.example.org");
    let v1 = zone(V1);
    let records: Vec<Record> = v1.records().collect();
    let (serial, fresh) = install_blocking(
        &apex(),
        &path,
        transferred(records.clone()).unwrap(),
        None,
        None,
    )
    .unwrap();
    assert_eq!(serial, 1);
    let served = fresh.unwrap();
    // Not newer: refused, nothing written.
    assert!(
        install_blocking(
            &apex(),
            &path,
            transferred(records.clone()).unwrap(),
            Some(1),
            Some(served.clone())
        )
        .is_err()
    );
    // Invalid (a CNAME beside other data): refused, the old zone stays.
    let v2 = zone(&V1.replace(" 1 60", " 2 60"));
    let mut broken: Vec<Record> = v2.records().collect();
    let www = broken
        .iter()
        .find(|r| r.owner().to_string().starts_with("www"))
        .unwrap()
        .clone();
    broken.push(Record::new(
        www.owner().clone(),
        www.class(),
        www.ttl(),
        RecordData::Cname(oxidns_server::proto::domain::rdata::Cname::new(apex())),
    ));
    assert!(
        install_blocking(
            &apex(),
            &path,
            transferred(broken).unwrap(),
            Some(1),
            Some(served.clone())
        )
        .is_err()
    );
    assert_eq!(served.current().serial().into_int(), 1);
    let good: Vec<Record> = v2.records().collect();
    let (serial, fresh) = install_blocking(
        &apex(),
        &path,
        transferred(good).unwrap(),
        Some(1),
        Some(served.clone()),
    )
    .unwrap();
    assert_eq!((serial, fresh.is_none()), (2, true));
    assert_eq!(served.current().serial().into_int(), 2);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
