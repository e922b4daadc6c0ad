use super::*;
use oxidns_server::proto::{Class, OptRcode, Rtype};
use oxidns_server::proto::{Rcode, Response};
use oxidns_server::test_util::{
    Fixed, config, config_error, request, request_with, serve_chain, serve_config,
};

const ZONE: &str = "$ORIGIN example.org.\n$TTL 3600\n@ SOA ns hostmaster 1 7200 900 1209600 300\n@ NS ns\nns A 192.0.2.1\nwww A 192.0.2.80\n";

struct ZoneDir(std::path::PathBuf);

impl ZoneDir {
    fn new(files: &[(&str, &str)]) -> ZoneDir {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("oxidns-file-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        ZoneDir(dir)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for ZoneDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const PLUGINS: &[PluginEntry] = &[PLUGIN, oxidns_plugin_whoami::PLUGIN];

#[tokio::test]
async fn serves_a_zone_from_its_file() {
    let dir = ZoneDir::new(&[("db.example.org", ZONE)]);
    let config = config(
        &format!("example.org {{\n file {}\n}}", dir.path("db.example.org")),
        PLUGINS,
    )
    .unwrap();
    let mut req = request("www.example.org", Rtype::A);
    let response = serve_config(&config, &mut req).await.unwrap();
    assert!(response.authoritative);
    assert_eq!(
        response.answer[0].to_string(),
        "www.example.org. 3600 IN A 192.0.2.80"
    );
}

#[tokio::test]
async fn names_outside_its_zones_go_to_the_next_plugin() {
    let dir = ZoneDir::new(&[("db", ZONE)]);
    let config = config(
        &format!(". {{\n file {} example.org\n whoami\n}}", dir.path("db")),
        PLUGINS,
    )
    .unwrap();
    let mut req = request("example.net", Rtype::A);
    let response = serve_config(&config, &mut req).await.unwrap();
    assert_eq!(response.additional.len(), 2, "whoami answered");
}

#[tokio::test]
async fn fallthrough_passes_nxdomain_on() {
    let dir = ZoneDir::new(&[("db", ZONE)]);
    let config = config(
        &format!(
            "example.org {{\n file {} {{\n  fallthrough\n }}\n whoami\n}}",
            dir.path("db")
        ),
        PLUGINS,
    )
    .unwrap();
    let mut missing = request("nope.example.org", Rtype::A);
    let response = serve_config(&config, &mut missing).await.unwrap();
    assert_eq!(
        response.additional.len(),
        2,
        "whoami answered the NXDOMAIN name"
    );
    let mut nodata = request("www.example.org", Rtype::MX);
    let response = serve_config(&config, &mut nodata).await.unwrap();
    assert_eq!(response.rcode, OptRcode::NOERROR);
    assert!(
        response.additional.is_empty(),
        "NODATA does not fall through"
    );
}

#[tokio::test]
async fn zone_transfers_and_other_classes_are_refused() {
    let dir = ZoneDir::new(&[("db", ZONE)]);
    let config = config(
        &format!("example.org {{\n file {}\n}}", dir.path("db")),
        PLUGINS,
    )
    .unwrap();
    for (qtype, qclass) in [
        (Rtype::AXFR, Class::IN),
        (Rtype::IXFR, Class::IN),
        (Rtype::A, Class::CH),
    ] {
        let mut req = request_with("example.org", qtype, qclass, None);
        let response = serve_config(&config, &mut req).await.unwrap();
        assert_eq!(response.rcode, OptRcode::REFUSED, "{qtype} {qclass}");
    }
}

#[tokio::test]
async fn several_file_lines_serve_several_zones() {
    let other = ZONE.replace("example.org.", "example.net.");
    let dir = ZoneDir::new(&[("a", ZONE), ("b", &other)]);
    let config = config(
        &format!(
            ". {{\n file {} example.org\n file {} example.net\n}}",
            dir.path("a"),
            dir.path("b")
        ),
        PLUGINS,
    )
    .unwrap();
    for name in ["www.example.org", "www.example.net"] {
        let mut req = request(name, Rtype::A);
        let response = serve_config(&config, &mut req).await.unwrap();
        assert_eq!(response.answer.len(), 1, "{name}");
    }
}

#[test]
fn a_bad_zone_file_is_a_config_error_at_its_line() {
    let dir = ZoneDir::new(&[("db", &format!("{ZONE}www CNAME ns\n"))]);
    let error = config_error(
        &format!("example.org {{\n file {}\n}}", dir.path("db")),
        PLUGINS,
    );
    assert_eq!(
        error,
        format!(
            "{}:7: CNAME at www.example.org. stands beside other data (A)",
            dir.path("db")
        )
    );
}

#[test]
fn a_missing_zone_file_is_a_config_error() {
    let error = config_error(
        "example.org {\n file /nonexistent/db.example.org\n}",
        PLUGINS,
    );
    assert!(error.starts_with("/nonexistent/db.example.org"), "{error}");
}

#[test]
fn option_mistakes_are_refused_at_their_line() {
    let dir = ZoneDir::new(&[("db", ZONE)]);
    let path = dir.path("db");
    assert_eq!(
        config_error(
            &format!("example.org {{\n file {path} {{\n  reload soon\n }}\n}}"),
            PLUGINS
        ),
        "Corefile:3: reload: invalid duration 'soon'"
    );
    assert_eq!(
        config_error(
            &format!("example.org {{\n file {path} {{\n  frobnicate\n }}\n}}"),
            PLUGINS
        ),
        "Corefile:3: file: unknown property 'frobnicate'"
    );
    assert_eq!(
        config_error("example.org {\n file\n}", PLUGINS),
        "Corefile:2: file: takes at least 1 argument(s), got 0"
    );
}

#[tokio::test]
async fn dnssec_ok_queries_get_signatures_only_when_asked() {
    // A zone with an RRSIG on www (not a valid signature: the plugin serves, it does not validate).
    let signed = format!(
        "{ZONE}@ DNSKEY 257 3 13 mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ==\nwww RRSIG A 13 3 3600 20700101000000 20240101000000 12345 example.org. AAAA\n"
    );
    let dir = ZoneDir::new(&[("db", &signed)]);
    let config = config(
        &format!("example.org {{\n file {}\n}}", dir.path("db")),
        PLUGINS,
    )
    .unwrap();
    let edns = oxidns_server::proto::Edns {
        udp_payload_size: 1232,
        version: 0,
        dnssec_ok: true,
        options: vec![],
    };
    let mut with_do = request_with("www.example.org", Rtype::A, Class::IN, Some(edns));
    let response = serve_config(&config, &mut with_do).await.unwrap();
    assert_eq!(response.answer.len(), 2);
    let mut without = request("www.example.org", Rtype::A);
    let response = serve_config(&config, &mut without).await.unwrap();
    assert_eq!(response.answer.len(), 1);
}

#[tokio::test]
async fn the_chain_ends_with_the_next_plugin_for_other_zones() {
    let dir = ZoneDir::new(&[("db", ZONE)]);
    let config = config(
        &format!(". {{\n file {} example.org\n}}", dir.path("db")),
        PLUGINS,
    )
    .unwrap();
    let fixed: Arc<dyn oxidns_server::Handler> = Arc::new(Fixed(Response::new(Rcode::NXDOMAIN)));
    let mut chain = config.blocks[0].chain.to_vec();
    chain.push(fixed);
    let mut req = request("example.com", Rtype::A);
    let response = serve_chain(&chain, &mut req).await.unwrap();
    assert_eq!(response.rcode, OptRcode::NXDOMAIN);
}

#[tokio::test]
async fn names_outside_every_zone_are_refused_when_nothing_follows() {
    let dir = ZoneDir::new(&[("db", ZONE)]);
    let config = config(
        &format!(". {{\n file {} example.org\n}}", dir.path("db")),
        PLUGINS,
    )
    .unwrap();
    let mut req = request("example.com", Rtype::A);
    let response = serve_config(&config, &mut req).await.unwrap();
    assert_eq!(response.rcode, OptRcode::REFUSED);
}
