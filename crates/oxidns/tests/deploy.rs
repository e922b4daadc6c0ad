//! The packaging in deploy/: the systemd unit, the container image and the
//! Kubernetes manifests that replace CoreDNS. No container engine, cluster or
//! network is used: the files are read, parsed and checked against each other
//! and against the real binary, its Corefile parser and its plugins.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{TempDir, require_tool};
use oxidns::plugins::PLUGINS;
use oxidns_server::corefile::{Directive, ServerBlock, parse_str};
use oxidns_server::{ConfigError, Options, build};
use yaml_rust2::{Yaml, YamlLoader};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn read(relative: &str) -> String {
    let path = deploy_dir().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------- systemd

const UNIT: &str = "systemd/oxidns.service";

/// (key, value) of every setting of the unit, in order (keys repeat).
fn unit_settings() -> Vec<(String, String)> {
    read(UNIT)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .map(|l| {
            let (key, value) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not a setting: {l}"));
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

fn unit_values(key: &str) -> Vec<String> {
    unit_settings()
        .into_iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect()
}

#[test]
fn systemd_unit_runs_the_binary_hardened() {
    let one = |key: &str| {
        let values = unit_values(key);
        assert_eq!(values.len(), 1, "{key}: {values:?}");
        values[0].clone()
    };
    assert_eq!(
        one("ExecStart"),
        "/usr/bin/oxidns -conf /etc/oxidns/Corefile"
    );
    assert_eq!(
        unit_values("ExecReload").last().map(String::as_str),
        Some("/bin/kill -USR1 $MAINPID"),
        "reload is SIGUSR1, after the check"
    );
    for (key, value) in [
        ("DynamicUser", "yes"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        (
            "RestrictAddressFamilies",
            "AF_INET AF_INET6 AF_UNIX AF_NETLINK",
        ),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("ConfigurationDirectory", "oxidns"),
        ("StateDirectory", "oxidns"),
        ("Restart", "on-failure"),
        ("KillSignal", "SIGTERM"),
    ] {
        assert_eq!(one(key), value, "{key}");
    }
    assert_eq!(
        unit_values("SystemCallFilter").first().map(String::as_str),
        Some("@system-service")
    );
    assert!(one("LimitNOFILE").parse::<u64>().unwrap() >= 65536);
    // Lameduck (5 s in the examples) and 5 s of draining must fit before SIGKILL.
    let stop = one("TimeoutStopSec");
    let seconds: u64 = stop.trim_end_matches('s').parse().unwrap();
    assert!(seconds >= 15, "TimeoutStopSec={stop}");
}

#[test]
fn systemd_unit_passes_systemd_analyze() {
    if !require_tool("systemd-analyze") {
        return;
    }
    // verify checks that the programs exist: point the unit at the binary
    // under test. It also wants the file named as the unit.
    let dir = TempDir::new("unit");
    let unit = dir.0.join("oxidns.service");
    let text = read(UNIT).replace("/usr/bin/oxidns", env!("CARGO_BIN_EXE_oxidns"));
    std::fs::write(&unit, text).unwrap();
    let unit_arg = unit.to_str().unwrap();

    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no", unit_arg])
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // Unknown keys and bad values are only warnings (exit 0): fail on any.
    let about_unit: Vec<&str> = printed
        .lines()
        .filter(|l| l.contains("oxidns.service"))
        .collect();
    assert!(
        output.status.success() && about_unit.is_empty(),
        "systemd-analyze verify:\n{printed}"
    );

    // The exposure score (lower is better; 10 is an unconfined service).
    let output = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager", unit_arg])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    let Some(score) = printed
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for oxidns.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse::<f64>().ok())
    else {
        // systemd before 250 has no --offline: nothing more to check.
        eprintln!(
            "systemd-analyze security --offline unavailable: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        return;
    };
    assert!(score <= 2.5, "exposure {score}:\n{printed}");
}

// -------------------------------------------------------------- container

#[test]
fn containerfile_builds_the_binary_and_serves_coredns_ports() {
    let text = read("container/Containerfile");
    let instructions: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let from: Vec<&&str> = instructions
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(from.len(), 2, "multi-stage: {from:?}");
    assert!(from[0].contains("rust:"), "{}", from[0]);
    assert!(
        from[1].contains("distroless/cc-debian12") || from[1].contains("debian:12-slim"),
        "{}",
        from[1]
    );
    assert!(text.contains("cargo build --release --locked -p oxidns"));
    assert!(instructions.contains(&r#"ENTRYPOINT ["/oxidns"]"#));
    assert!(instructions.contains(&r#"CMD ["-conf", "/etc/coredns/Corefile"]"#));
    assert!(instructions.contains(&"COPY --from=build /out/oxidns /oxidns"));

    let exposed: BTreeSet<&str> = instructions
        .iter()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .flat_map(str::split_whitespace)
        .collect();
    for port in ["53/udp", "53/tcp", "9153", "8080", "8181"] {
        assert!(exposed.contains(port), "EXPOSE {port}: {exposed:?}");
    }
    let user = instructions
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "USER {user}"
    );

    // The Rust image is at least the workspace's minimum Rust version.
    let image_version = instructions
        .iter()
        .find_map(|l| l.strip_prefix("ARG RUST_VERSION="))
        .expect("ARG RUST_VERSION");
    let workspace = std::fs::read_to_string(deploy_dir().join("../Cargo.toml")).unwrap();
    let minimum = workspace
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("rust-version")
        .trim_matches('"');
    let parse = |v: &str| -> Vec<u32> { v.split('.').map(|n| n.parse().unwrap()).collect() };
    assert!(
        parse(image_version) >= parse(minimum),
        "{image_version} < {minimum}"
    );

    // Build output stays out of the context.
    let ignore = read("container/Containerfile.dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target/"));
}

#[test]
fn container_corefile_is_valid_and_listens_where_the_image_says() {
    let text = read("container/Corefile");
    let blocks = parse_str(&text, "deploy/container/Corefile").unwrap();
    if let Err(errors) = build(&blocks, PLUGINS, &Options::default()) {
        panic!("{}", texts(&errors).join("\n"));
    }
    assert_eq!(http_port(&blocks, "health", 8080), Some(8080));
    assert_eq!(http_port(&blocks, "ready", 8181), Some(8181));
    assert_eq!(http_port(&blocks, "prometheus", 9153), Some(9153));
    assert!(blocks[0].keys.iter().any(|k| k.text.ends_with(":53")));
    // Reachable from outside the container: every address, not localhost.
    for plugin in ["health", "ready", "prometheus"] {
        let address = directive(&blocks, plugin).unwrap().args[0].text.clone();
        assert!(address.starts_with(':'), "{plugin} {address}");
    }
}

// ------------------------------------------------------------- kubernetes

/// Every YAML document of deploy/kubernetes, with the file it came from.
fn manifests() -> Vec<(String, Yaml)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir().join("kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let mut documents = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!docs.is_empty(), "{name}: no document");
        for doc in docs {
            assert!(doc.as_hash().is_some(), "{name}: not a mapping: {doc:?}");
            documents.push((name.clone(), doc));
        }
    }
    documents
}

/// The one object of this kind and name.
fn object(kind: &str, name: &str) -> Yaml {
    let found: Vec<Yaml> = manifests()
        .into_iter()
        .map(|(_, doc)| doc)
        .filter(|doc| doc["kind"].as_str() == Some(kind))
        .filter(|doc| doc["metadata"]["name"].as_str() == Some(name))
        .collect();
    assert_eq!(found.len(), 1, "{kind} {name}");
    found.into_iter().next().unwrap()
}

fn str_of<'y>(yaml: &'y Yaml, what: &str) -> &'y str {
    yaml.as_str()
        .unwrap_or_else(|| panic!("{what}: not a string: {yaml:?}"))
}

fn list(yaml: &Yaml) -> &[Yaml] {
    yaml.as_vec()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("not a list: {yaml:?}"))
}

fn strings(yaml: &Yaml) -> Vec<&str> {
    list(yaml).iter().map(|y| str_of(y, "item")).collect()
}

#[test]
fn every_manifest_parses_and_names_its_kind() {
    let documents = manifests();
    let mut kinds = BTreeSet::new();
    for (file, doc) in &documents {
        assert!(doc["apiVersion"].as_str().is_some(), "{file}: apiVersion");
        let kind = str_of(&doc["kind"], "kind");
        kinds.insert(kind.to_owned());
        if kind == "Kustomization" {
            continue;
        }
        let name = str_of(&doc["metadata"]["name"], "metadata.name");
        let cluster_wide = kind.starts_with("Cluster");
        assert_eq!(
            doc["metadata"]["namespace"].as_str(),
            if cluster_wide {
                None
            } else {
                Some("kube-system")
            },
            "{file}: {kind} {name}"
        );
    }
    for kind in [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "Service",
    ] {
        assert!(kinds.contains(kind), "no {kind}: {kinds:?}");
    }
}

#[test]
fn kustomization_lists_every_manifest() {
    let kustomization = object_of_kind("Kustomization");
    let listed: BTreeSet<&str> = strings(&kustomization["resources"]).into_iter().collect();
    let files: BTreeSet<String> = manifests()
        .into_iter()
        .map(|(file, _)| file)
        .filter(|f| f != "kustomization.yaml")
        .collect();
    let files: BTreeSet<&str> = files.iter().map(String::as_str).collect();
    assert_eq!(listed, files);
    // `kustomize edit set image` finds the Deployment's image by name.
    let container = deployment_container();
    let image = str_of(&container["image"], "image");
    let name = image.split(':').next().unwrap();
    let rewritten = list(&kustomization["images"])
        .iter()
        .any(|i| i["name"].as_str() == Some(name));
    assert!(rewritten, "no images: entry for {name}");
}

fn object_of_kind(kind: &str) -> Yaml {
    manifests()
        .into_iter()
        .map(|(_, doc)| doc)
        .find(|doc| doc["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind}"))
}

fn deployment_container() -> Yaml {
    let deployment = object("Deployment", "coredns");
    let containers = list(&deployment["spec"]["template"]["spec"]["containers"]);
    assert_eq!(containers.len(), 1);
    containers[0].clone()
}

/// (containerPort or port, protocol, name) of a list of ports.
fn ports(yaml: &Yaml, port_key: &str) -> BTreeSet<(i64, String, String)> {
    list(yaml)
        .iter()
        .map(|p| {
            (
                p[port_key].as_i64().expect("a port number"),
                p["protocol"].as_str().unwrap_or("TCP").to_owned(),
                str_of(&p["name"], "port name").to_owned(),
            )
        })
        .collect()
}

fn dns_ports() -> BTreeSet<(i64, String, String)> {
    [
        (53, "UDP", "dns"),
        (53, "TCP", "dns-tcp"),
        (9153, "TCP", "metrics"),
    ]
    .into_iter()
    .map(|(port, proto, name)| (port, proto.to_owned(), name.to_owned()))
    .collect()
}

#[test]
fn deployment_replaces_coredns_in_kube_system() {
    let deployment = object("Deployment", "coredns");
    assert_eq!(
        deployment["metadata"]["labels"]["k8s-app"].as_str(),
        Some("kube-dns")
    );
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"].as_i64(), Some(2));
    assert_eq!(
        spec["selector"]["matchLabels"]["k8s-app"].as_str(),
        Some("kube-dns")
    );
    let pod = &spec["template"];
    assert_eq!(
        pod["metadata"]["labels"]["k8s-app"].as_str(),
        Some("kube-dns")
    );
    assert_eq!(pod["spec"]["serviceAccountName"].as_str(), Some("coredns"));
    assert_eq!(pod["spec"]["dnsPolicy"].as_str(), Some("Default"));
    assert_eq!(
        pod["spec"]["priorityClassName"].as_str(),
        Some("system-cluster-critical")
    );

    let container = deployment_container();
    assert_eq!(
        strings(&container["args"]),
        ["-conf", "/etc/coredns/Corefile"]
    );
    assert_eq!(ports(&container["ports"], "containerPort"), dns_ports());

    let liveness = &container["livenessProbe"]["httpGet"];
    assert_eq!(liveness["path"].as_str(), Some("/health"));
    assert_eq!(liveness["port"].as_i64(), Some(8080));
    let readiness = &container["readinessProbe"]["httpGet"];
    assert_eq!(readiness["path"].as_str(), Some("/ready"));
    assert_eq!(readiness["port"].as_i64(), Some(8181));

    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(
        strings(&security["capabilities"]["add"]),
        ["NET_BIND_SERVICE"]
    );
    assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);

    assert_eq!(
        container["resources"]["limits"]["memory"].as_str(),
        Some("170Mi")
    );

    // The ConfigMap's Corefile, mounted where the args point.
    let mount = &list(&container["volumeMounts"])[0];
    assert_eq!(mount["mountPath"].as_str(), Some("/etc/coredns"));
    let volume = list(&pod["spec"]["volumes"])
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the mounted volume");
    assert_eq!(volume["configMap"]["name"].as_str(), Some("coredns"));
    let item = &list(&volume["configMap"]["items"])[0];
    assert_eq!(item["key"].as_str(), Some("Corefile"));
    assert_eq!(item["path"].as_str(), Some("Corefile"));
}

#[test]
fn service_is_kube_dns_with_dns_and_metrics_ports() {
    let service = object("Service", "kube-dns");
    let spec = &service["spec"];
    assert_eq!(spec["clusterIP"].as_str(), Some("10.96.0.10"));
    assert_eq!(spec["selector"]["k8s-app"].as_str(), Some("kube-dns"));
    assert_eq!(ports(&spec["ports"], "port"), dns_ports());
    for port in list(&spec["ports"]) {
        assert_eq!(port["targetPort"], port["port"], "{port:?}");
    }
    let annotations = &service["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/port"].as_str(), Some("9153"));
    assert_eq!(annotations["prometheus.io/scrape"].as_str(), Some("true"));
    assert_eq!(
        service["metadata"]["labels"]["k8s-app"].as_str(),
        Some("kube-dns")
    );
}

#[test]
fn rbac_grants_what_the_kubernetes_plugin_watches() {
    let account = object("ServiceAccount", "coredns");
    assert_eq!(
        account["metadata"]["namespace"].as_str(),
        Some("kube-system")
    );

    let role = object("ClusterRole", "system:coredns");
    let mut granted = BTreeSet::new();
    for rule in list(&role["rules"]) {
        let verbs: BTreeSet<&str> = strings(&rule["verbs"]).into_iter().collect();
        assert_eq!(verbs, BTreeSet::from(["list", "watch"]), "{rule:?}");
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                granted.insert(format!("{resource}.{group}"));
            }
        }
    }
    let expected: BTreeSet<String> = [
        "endpoints.",
        "services.",
        "pods.",
        "namespaces.",
        "endpointslices.discovery.k8s.io",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(granted, expected);

    let binding = object("ClusterRoleBinding", "system:coredns");
    assert_eq!(binding["roleRef"]["kind"].as_str(), Some("ClusterRole"));
    assert_eq!(binding["roleRef"]["name"].as_str(), Some("system:coredns"));
    let subject = &list(&binding["subjects"])[0];
    assert_eq!(subject["kind"].as_str(), Some("ServiceAccount"));
    assert_eq!(subject["name"].as_str(), Some("coredns"));
    assert_eq!(subject["namespace"].as_str(), Some("kube-system"));
}

// ------------------------------------------------- the ConfigMap's Corefile

fn configmap_corefile() -> String {
    let configmap = object("ConfigMap", "coredns");
    str_of(&configmap["data"]["Corefile"], "data.Corefile").to_owned()
}

fn texts(errors: &[ConfigError]) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

fn directive<'b>(blocks: &'b [ServerBlock], name: &str) -> Option<&'b Directive> {
    blocks
        .iter()
        .flat_map(|b| &b.directives)
        .find(|d| d.name.text == name)
}

/// The port a plugin's `[HOST]:PORT` argument names, or its default.
fn http_port(blocks: &[ServerBlock], plugin: &str, default: u16) -> Option<u16> {
    let found = directive(blocks, plugin)?;
    Some(match found.args.first() {
        Some(address) => address.text.rsplit_once(':')?.1.parse().ok()?,
        None => default,
    })
}

#[test]
fn configmap_corefile_loads_except_for_the_kubernetes_plugin() {
    let text = configmap_corefile();
    let blocks = parse_str(&text, "configmap.yaml").expect("the Corefile grammar");
    let result = build(&blocks, PLUGINS, &Options::default());
    if PLUGINS.iter().any(|p| p.name == "kubernetes") {
        // Once kubernetes lands, kubeadm's Corefile must load as it is.
        if let Err(errors) = result {
            panic!("{}", texts(&errors).join("\n"));
        }
        return;
    }
    let errors = result.err().expect("kubernetes is not linked: an error");
    let unexpected: Vec<String> = errors
        .iter()
        .filter(|e| e.message != "plugin 'kubernetes' is not supported yet")
        .map(ToString::to_string)
        .collect();
    assert!(unexpected.is_empty(), "{}", unexpected.join("\n"));
    assert_eq!(errors.len(), 1, "{:?}", texts(&errors));
}

#[test]
fn configmap_corefile_agrees_with_the_probes_and_ports() {
    let blocks = parse_str(&configmap_corefile(), "configmap.yaml").unwrap();
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].keys[0].text, ".:53");
    // health and ready at their defaults, as the probes expect.
    assert_eq!(http_port(&blocks, "health", 8080), Some(8080));
    assert_eq!(http_port(&blocks, "ready", 8181), Some(8181));
    assert_eq!(http_port(&blocks, "prometheus", 9153), Some(9153));
    let health = directive(&blocks, "health").unwrap();
    assert_eq!(health.block[0].name.text, "lameduck");
    for plugin in [
        "errors",
        "kubernetes",
        "forward",
        "cache",
        "loop",
        "reload",
        "loadbalance",
    ] {
        assert!(directive(&blocks, plugin).is_some(), "{plugin}");
    }
}

#[test]
fn the_binary_checks_the_shipped_corefiles() {
    let binary = env!("CARGO_BIN_EXE_oxidns");
    let container = deploy_dir().join("container/Corefile");
    let output = Command::new(binary)
        .args(["-conf", container.to_str().unwrap(), "-check"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let dir = TempDir::new("configmap");
    let corefile = dir.0.join("Corefile");
    let text = configmap_corefile();
    std::fs::write(&corefile, &text).unwrap();
    let output = Command::new(binary)
        .args(["-conf", corefile.to_str().unwrap(), "-check"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if PLUGINS.iter().any(|p| p.name == "kubernetes") {
        assert!(output.status.success(), "{stderr}");
    } else {
        assert!(!output.status.success());
        let problems: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(problems.len(), 1, "{stderr}");
        let line = 1 + text
            .lines()
            .position(|l| l.trim_start().starts_with("kubernetes "))
            .expect("a kubernetes line");
        let expected = format!(":{line}: plugin 'kubernetes' is not supported yet");
        assert!(problems[0].ends_with(&expected), "{stderr}");
    }
}
