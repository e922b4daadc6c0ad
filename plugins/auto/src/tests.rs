use super::*;
use oxidns_server::proto::Rtype;
use oxidns_server::test_util::{config, config_error, request, serve_config};

const PLUGINS: &[PluginEntry] = &[PLUGIN];

fn zone(origin: &str, serial: u32) -> String {
    format!(
        "$ORIGIN {origin}.\n$TTL 60\n@ SOA ns h {serial} 1 1 1 1\n@ NS ns\nns A 192.0.2.1\nwww A 192.0.2.{serial}\n"
    )
}

struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("oxidns-auto-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.0.join(name), text).unwrap();
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn ask(config: &oxidns_server::Config, qname: &str) -> oxidns_server::proto::Response {
    let mut req = request(qname, Rtype::A);
    serve_config(config, &mut req).await.unwrap()
}

#[tokio::test]
async fn every_matching_file_in_the_directory_is_a_zone() {
    let dir = Dir::new();
    dir.write("db.example.org", &zone("example.org", 10));
    dir.write("db.example.net", &zone("example.net", 20));
    dir.write("README", "not a zone");
    let config = config(
        &format!(". {{\n auto {{\n  directory {}\n }}\n}}", dir.0.display()),
        PLUGINS,
    )
    .unwrap();
    assert_eq!(
        ask(&config, "www.example.org").await.answer[0]
            .data()
            .to_string(),
        "192.0.2.10"
    );
    assert_eq!(
        ask(&config, "www.example.net").await.answer[0]
            .data()
            .to_string(),
        "192.0.2.20"
    );
}

#[tokio::test]
async fn pattern_and_template_make_the_origin() {
    let dir = Dir::new();
    dir.write("example.org.zone", &zone("example.org", 11));
    let config = config(
        &format!(
            ". {{\n auto {{\n  directory {} ^(.*)\\.zone$ {{1}}\n }}\n}}",
            dir.0.display()
        ),
        PLUGINS,
    )
    .unwrap();
    assert_eq!(
        ask(&config, "www.example.org").await.answer[0]
            .data()
            .to_string(),
        "192.0.2.11"
    );
}

#[tokio::test]
async fn only_origins_in_the_zones_are_served() {
    let dir = Dir::new();
    dir.write("db.example.org", &zone("example.org", 10));
    dir.write("db.example.net", &zone("example.net", 20));
    let config = config(
        &format!(
            ". {{\n auto example.org {{\n  directory {}\n }}\n}}",
            dir.0.display()
        ),
        PLUGINS,
    )
    .unwrap();
    assert_eq!(ask(&config, "www.example.org").await.answer.len(), 1);
    let mut req = request("www.example.net", Rtype::A);
    assert_eq!(
        serve_config(&config, &mut req).await.unwrap().rcode,
        oxidns_server::proto::OptRcode::REFUSED,
        "no zone: passed on, and nothing follows"
    );
}

#[test]
fn zones_appear_change_and_disappear_with_their_files() {
    let dir = Dir::new();
    dir.write("db.example.org", &zone("example.org", 10));
    let served = DirectoryZones {
        directory: dir.0.clone(),
        pattern: Regex::new(DEFAULT_PATTERN).unwrap(),
        template: DEFAULT_TEMPLATE.into(),
        zones: vec![Name::root()],
        set: Arc::new(ZoneSet::default()),
    };
    served.rescan();
    assert_eq!(served.set.zones().len(), 1);
    dir.write("db.example.net", &zone("example.net", 20));
    served.rescan();
    assert_eq!(served.set.zones().len(), 2);
    dir.write("db.example.org", &zone("example.org", 12));
    served.rescan();
    let www = name_from_str("www.example.org").unwrap();
    let answer = served
        .set
        .answer(
            &www,
            Rtype::A,
            oxidns_server::proto::Class::IN,
            false,
            false,
        )
        .unwrap();
    assert_eq!(answer.answer[0].data().to_string(), "192.0.2.12");
    std::fs::remove_file(dir.0.join("db.example.net")).unwrap();
    served.rescan();
    assert_eq!(served.set.zones().len(), 1);
}

#[tokio::test]
async fn a_broken_file_is_skipped_and_others_serve() {
    let dir = Dir::new();
    dir.write("db.example.org", &zone("example.org", 10));
    dir.write("db.broken.test", "$ORIGIN broken.test.\n@ A 192.0.2.1\n");
    let config = config(
        &format!(". {{\n auto {{\n  directory {}\n }}\n}}", dir.0.display()),
        PLUGINS,
    )
    .unwrap();
    assert_eq!(ask(&config, "www.example.org").await.answer.len(), 1);
    let mut req = request("broken.test", Rtype::A);
    assert_eq!(
        serve_config(&config, &mut req).await.unwrap().rcode,
        oxidns_server::proto::OptRcode::REFUSED,
        "the broken zone is not served"
    );
}

#[test]
fn setup_mistakes_are_refused_at_their_line() {
    assert_eq!(
        config_error(". {\n auto\n}", PLUGINS),
        "Corefile:2: auto: needs a 'directory' line"
    );
    assert_eq!(
        config_error(". {\n auto {\n  directory /nonexistent-dir\n }\n}", PLUGINS),
        "Corefile:2: auto: /nonexistent-dir is not a directory"
    );
    assert_eq!(
        config_error(
            ". {\n auto {\n  directory /tmp (unclosed {1}\n }\n}",
            PLUGINS
        )
        .split(':')
        .take(3)
        .collect::<Vec<_>>()
        .join(":"),
        "Corefile:3: directory"
    );
    assert_eq!(
        config_error(". {\n auto {\n  directory /tmp\n  bogus\n }\n}", PLUGINS),
        "Corefile:4: auto: unknown property 'bogus'"
    );
}
