//! Issue #8: a zone's answers cost no allocation on the server's thread
//! beyond the one copy of the query the request owns.

use oxidns_server::proto::Rtype;
use oxidns_server::test_util::{CountingAllocator, allocations_per_udp_query, config};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[test]
fn zone_answers_allocate_only_the_query_copy() {
    let dir = std::env::temp_dir().join(format!("oxidns-alloc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let zone = dir.join("example.org.zone");
    std::fs::write(
        &zone,
        "$ORIGIN example.org.\n$TTL 3600\n\
         @ SOA ns1 hostmaster 1 7200 3600 1209600 3600\n\
         @ NS ns1\nns1 A 192.0.2.53\n\
         www A 192.0.2.1\nwww A 192.0.2.2\nwww AAAA 2001:db8::1\n\
         alias CNAME www\n@ MX 10 mail\nmail A 192.0.2.25\n",
    )
    .unwrap();
    let corefile = format!(
        "example.org:0 {{\n bind 127.0.0.1\n file {}\n}}\n",
        zone.display()
    );
    let plugins = [oxidns_plugin_bind::PLUGIN, oxidns_plugin_file::PLUGIN];
    let config = config(&corefile, &plugins).unwrap_or_else(|e| panic!("{}", e[0]));
    let questions = [
        ("www.example.org", Rtype::A),
        ("WWW.Example.ORG", Rtype::AAAA),
        ("alias.example.org", Rtype::A),
        ("example.org", Rtype::MX),
        ("example.org", Rtype::NS),
    ];
    let per_query = allocations_per_udp_query(config, &questions, 3);
    std::fs::remove_dir_all(&dir).ok();
    // The received message is copied once into the `Bytes` the request owns
    // (plugins may keep parts of it); nothing else.
    assert!(per_query <= 1.0, "{per_query} allocations per query");
}
