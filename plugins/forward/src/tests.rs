use super::*;
use crate::config::{To, parse_to, rcode_text};
use oxidns_server::test_util::{config, config_error};

const PLUGINS: &[PluginEntry] = &[PLUGIN, oxidns_plugin_whoami::PLUGIN];

fn to(text: &str) -> Result<Vec<To>, String> {
    parse_to(text, |p: &str| std::path::PathBuf::from(p))
}

fn addr(text: &str) -> std::net::SocketAddr {
    text.parse().unwrap()
}

#[test]
fn to_forms() {
    let plain = |a: &str| To {
        addr: addr(a),
        tls: false,
        server_name: None,
    };
    assert_eq!(to("127.0.0.1").unwrap(), vec![plain("127.0.0.1:53")]);
    assert_eq!(to("127.0.0.1:5300").unwrap(), vec![plain("127.0.0.1:5300")]);
    assert_eq!(
        to("dns://127.0.0.1:5300").unwrap(),
        vec![plain("127.0.0.1:5300")]
    );
    assert_eq!(to("::1").unwrap(), vec![plain("[::1]:53")]);
    assert_eq!(to("[::1]").unwrap(), vec![plain("[::1]:53")]);
    assert_eq!(to("[::1]:5300").unwrap(), vec![plain("[::1]:5300")]);
    let tls = to("tls://127.0.0.1").unwrap();
    assert_eq!(tls[0].addr, addr("127.0.0.1:853"));
    assert!(tls[0].tls);
    let named = to("tls://127.0.0.1%dns.example:8853").unwrap();
    assert_eq!(named[0].addr, addr("127.0.0.1:8853"));
    assert_eq!(named[0].server_name.as_deref(), Some("dns.example"));
    let named = to("tls://::1%dns.example").unwrap();
    assert_eq!(named[0].addr, addr("[::1]:853"));
}

#[test]
fn to_errors() {
    assert!(
        to("https://127.0.0.1")
            .unwrap_err()
            .contains("'https' is not supported")
    );
    assert!(
        to("dns://resolver.example")
            .unwrap_err()
            .contains("not an IP address")
    );
    assert!(
        to("/nonexistent/resolv.conf")
            .unwrap_err()
            .contains("not an IP address or file")
    );
}

#[test]
fn resolv_conf_nameservers_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resolv.conf");
    std::fs::write(
        &path,
        "# comment\nsearch example.org\nnameserver 127.0.0.1\nnameserver ::1\noptions ndots:2\n",
    )
    .unwrap();
    let tos = to(path.to_str().unwrap()).unwrap();
    let addrs: Vec<_> = tos.iter().map(|t| t.addr).collect();
    assert_eq!(addrs, vec![addr("127.0.0.1:53"), addr("[::1]:53")]);
    std::fs::write(&path, "search example.org\n").unwrap();
    assert!(
        to(path.to_str().unwrap())
            .unwrap_err()
            .contains("no nameservers")
    );
}

#[test]
fn minimal_forward_sets_up() {
    let config = config(". {\n forward . 127.0.0.1:5300\n}", PLUGINS).unwrap();
    assert_eq!(config.blocks[0].chain.len(), 1);
}

#[test]
fn every_property_parses() {
    let corefile = ". {
 forward example.org 127.0.0.1:5300 [::1]:5301 {
  except a.example.org b.example.org
  force_tcp
  prefer_udp
  expire 20s
  max_fails 3
  max_connect_attempts 4
  max_idle_conns 10
  tls
  tls_servername dns.example
  policy round_robin
  health_check 1s no_rec domain example.net
  max_concurrent 100
  next NXDOMAIN SERVFAIL
  failover REFUSED
  failfast_all_unhealthy_upstreams
 }
 whoami
}";
    let config = config(corefile, PLUGINS).unwrap();
    assert_eq!(config.blocks[0].chain.len(), 2);
}

#[test]
fn several_forwards_in_a_block_are_chained_in_order() {
    let corefile = ". {
 forward . 127.0.0.1:5300 {
  next NXDOMAIN
 }
 forward . 127.0.0.1:5301
}";
    let config = config(corefile, PLUGINS).unwrap();
    assert_eq!(config.blocks[0].chain.len(), 2);
}

#[test]
fn config_errors() {
    let cases = [
        (
            ". {\n forward .\n}",
            "Corefile:2: forward: takes at least 2 argument(s), got 1",
        ),
        (
            ". {\n forward . https://127.0.0.1\n}",
            "Corefile:2: forward: 'https' is not supported as a destination protocol in forward: https://127.0.0.1",
        ),
        (
            ". {\n forward . 127.0.0.1 {\n  bogus\n }\n}",
            "Corefile:3: forward: unknown property 'bogus'",
        ),
        (
            ". {\n forward . 127.0.0.1 {\n  policy fastest\n }\n}",
            "Corefile:3: policy: unknown policy 'fastest'",
        ),
        (
            ". {\n forward . 127.0.0.1 {\n  expire 10\n }\n}",
            "Corefile:3: expire: invalid duration '10'",
        ),
        (
            ". {\n forward . 127.0.0.1 {\n  max_fails -1\n }\n}",
            "Corefile:3: max_fails: invalid number '-1'",
        ),
        (
            ". {\n forward . 127.0.0.1 {\n  max_concurrent lots\n }\n}",
            "Corefile:3: max_concurrent: invalid number 'lots'",
        ),
        (
            ". {\n forward . 127.0.0.1 {\n  health_check 1s sometimes\n }\n}",
            "Corefile:3: health_check: unknown option sometimes",
        ),
        (
            ". {\n forward . 127.0.0.1 {\n  next NOTANRCODE\n }\n}",
            "Corefile:3: next: 'NOTANRCODE' is not a valid rcode",
        ),
        (
            ". {\n forward . 127.0.0.1 {\n  failover NOERROR\n }\n}",
            "Corefile:3: failover: NOERROR cannot be used",
        ),
        (
            ". {\n forward . 127.0.0.1 {\n  force_tcp yes\n }\n}",
            "Corefile:3: force_tcp: takes no arguments, got 1",
        ),
        (
            ". {\n forward . 127.0.0.1 {\n  tls a b c d\n }\n}",
            "Corefile:3: tls: takes 0 to 3 arguments, got 4",
        ),
        (
            ". {\n forward . tls://127.0.0.1%a.example {\n  tls_servername b.example\n }\n}",
            "Corefile:2: forward: both tls_servername and server name in the TO (tls://IP%NAME) are specified",
        ),
    ];
    for (corefile, expected) in cases {
        assert_eq!(config_error(corefile, PLUGINS), expected, "{corefile}");
    }
}

#[test]
fn more_than_15_upstreams_are_refused() {
    let tos: Vec<String> = (0..16).map(|i| format!("127.0.0.1:{}", 5300 + i)).collect();
    let corefile = format!(". {{\n forward . {}\n}}", tos.join(" "));
    assert_eq!(
        config_error(&corefile, PLUGINS),
        "Corefile:2: forward: more than 15 TOs configured: 16"
    );
}

#[test]
fn missing_tls_files_are_config_errors() {
    let error = config_error(
        ". {\n forward . tls://127.0.0.1 {\n  tls /nonexistent/ca.pem\n }\n}",
        PLUGINS,
    );
    assert!(error.contains("cannot read CA file"), "{error}");
}

#[test]
fn rcode_labels_are_go_s() {
    assert_eq!(rcode_text(0), "NOERROR");
    assert_eq!(rcode_text(3), "NXDOMAIN");
    assert_eq!(rcode_text(99), "99");
}

#[test]
fn rebinding_protection_reads_its_allowed_zones() {
    let config = config(
        ". {\n forward . 127.0.0.1 {\n  rebinding_protection corp.example 10.0.0.0/8\n }\n}",
        PLUGINS,
    );
    assert!(config.is_ok());
    assert!(
        config_error(
            ". {\n forward . 127.0.0.1 {\n  rebinding_protection bad..name\n }\n}",
            PLUGINS
        )
        .starts_with("Corefile:3:")
    );
}
