//! Issue #8: a cache hit behind `errors` and `loadbalance` (CoreDNS's default
//! shape) allocates no more than one without them, plus the shuffled copy of
//! an answer that has addresses to shuffle.

use oxidns_server::proto::Rtype;
use oxidns_server::test_util::{CountingAllocator, allocations_per_udp_query, config};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn per_query(addresses: &str) -> f64 {
    let corefile = format!(
        "example.org:0 {{\n bind 127.0.0.1\n errors\n loadbalance\n cache 300\n hosts {{\n{addresses} }}\n}}\n"
    );
    let plugins = [
        oxidns_plugin_bind::PLUGIN,
        oxidns_plugin_errors::PLUGIN,
        oxidns_plugin_loadbalance::PLUGIN,
        oxidns_plugin_cache::PLUGIN,
        oxidns_plugin_hosts::PLUGIN,
    ];
    let config = config(&corefile, &plugins).unwrap_or_else(|e| panic!("{}", e[0]));
    let questions = [("www.example.org", Rtype::A); 256];
    allocations_per_udp_query(config, &questions, 1)
}

#[test]
fn cache_hits_behind_loadbalance_allocate_the_query_copy_and_a_shuffled_copy() {
    // One address: nothing to shuffle; the one allocation is the query's copy.
    let one = per_query("  192.0.2.1 www.example.org\n");
    assert!(one <= 1.0, "{one} allocations per query");
    // Two: the answer's block is copied to shuffle it.
    let two = per_query("  192.0.2.1 www.example.org\n  192.0.2.2 www.example.org\n");
    assert!(two <= 2.0, "{two} allocations per query");
}
