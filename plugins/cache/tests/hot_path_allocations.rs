//! Issue #8: cache hits cost no allocation on the server's thread beyond
//! the one copy of the query the request owns.

use oxidns_server::proto::Rtype;
use oxidns_server::test_util::{CountingAllocator, allocations_per_udp_query, config};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[test]
fn cache_hits_allocate_only_the_query_copy() {
    // `hosts` behind the cache answers the first time; then the cache does.
    let corefile = "example.org:0 {\n bind 127.0.0.1\n cache 300\n hosts {\n  \
                    192.0.2.1 www.example.org\n  192.0.2.2 www.example.org\n  \
                    2001:db8::1 www.example.org\n  192.0.2.25 mail.example.org\n }\n}\n";
    let plugins = [
        oxidns_plugin_bind::PLUGIN,
        oxidns_plugin_cache::PLUGIN,
        oxidns_plugin_hosts::PLUGIN,
    ];
    let config = config(corefile, &plugins).unwrap_or_else(|e| panic!("{}", e[0]));
    let questions = [
        ("www.example.org", Rtype::A),
        ("WWW.example.org", Rtype::AAAA),
        ("mail.example.org", Rtype::A),
    ];
    let per_query = allocations_per_udp_query(config, &questions, 3);
    // The received message is copied once into the `Bytes` the request owns;
    // the hit itself is a lookup and a copy of the stored sections.
    assert!(per_query <= 1.0, "{per_query} allocations per query");
}
