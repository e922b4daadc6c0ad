//! Issue #8: counting a query in CoreDNS's metrics allocates nothing, however
//! many queries are counted (a histogram keeps bucket counts, not samples).

use oxidns_server::proto::Rtype;
use oxidns_server::test_util::{CountingAllocator, allocations_per_udp_query, config};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[test]
fn counted_queries_allocate_only_the_query_copy() {
    let corefile = "example.org:0 {\n bind 127.0.0.1\n prometheus 127.0.0.1:0\n cache 300\n hosts {\n  \
                    192.0.2.1 www.example.org\n }\n}\n";
    let plugins = [
        oxidns_plugin_bind::PLUGIN,
        oxidns_plugin_prometheus::PLUGIN,
        oxidns_plugin_cache::PLUGIN,
        oxidns_plugin_hosts::PLUGIN,
    ];
    let config = config(corefile, &plugins).unwrap_or_else(|e| panic!("{}", e[0]));
    // Enough queries that storage growing by blocks of samples would show.
    let questions = [("www.example.org", Rtype::A); 512];
    let per_query = allocations_per_udp_query(config, &questions, 1);
    // The one allocation is the request's copy of the received message
    // (the cache answers: `hosts` only fills it).
    assert!(per_query <= 1.0, "{per_query} allocations per query");
}
