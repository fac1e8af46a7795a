//! Deployment files, checked without a Docker engine: every shipped config passes
//! `authflow check`, the compose file wires the services the way the README says, and the
//! Dockerfile builds the binary the way our scripts do.

mod support;

use std::process::Command;
use support::authflow_bin;
use yaml_rust2::{Yaml, YamlLoader};

fn check(path: &str) -> std::process::Output {
    Command::new(authflow_bin())
        .args(["check", "--config", path])
        .output()
        .expect("run check")
}

#[test]
fn every_shipped_config_passes_check() {
    for path in [
        "conf/gateway.toml",
        "conf/auth.toml",
        "conf/dev/gateway.toml",
        "conf/dev/auth.toml",
    ] {
        let out = check(path);
        assert!(
            out.status.success(),
            "{path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = check("conf/auth.toml");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("auth config"),
        "check must tell the kinds apart"
    );
    let out = check("conf/gateway.toml");
    assert!(String::from_utf8_lossy(&out.stdout).contains("gateway config"));
}

#[test]
fn production_configs_use_host_cookies_tls_and_no_inline_secrets() {
    let gw = std::fs::read_to_string("conf/gateway.toml").expect("gateway.toml");
    let auth = std::fs::read_to_string("conf/auth.toml").expect("auth.toml");
    for text in [&gw, &auth] {
        assert!(text.contains("cookie_name = \"__Host-authflow_session\""));
        assert!(text.contains("cookie_secure = true"));
        assert!(
            !text.contains("redis://:") && !text.contains("password@"),
            "a secret is inline"
        );
    }
    assert!(gw.contains("[tls]"));
    assert!(auth.contains("postgres://authflow@postgres"));
}

fn compose() -> Yaml {
    let text = std::fs::read_to_string("docker/compose.yaml").expect("compose.yaml");
    YamlLoader::load_from_str(&text)
        .expect("compose.yaml is valid YAML")
        .remove(0)
}

fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .map(|v| {
            v.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn compose_runs_every_service_with_health_checks_in_dependency_order() {
    let doc = compose();
    let services = &doc["services"];
    let names: Vec<&str> = services
        .as_hash()
        .expect("services")
        .keys()
        .filter_map(Yaml::as_str)
        .collect();
    for s in ["gateway", "auth", "demo", "redis", "postgres"] {
        assert!(names.contains(&s), "service {s} missing: {names:?}");
        assert!(
            !services[s]["healthcheck"]["test"].is_badvalue(),
            "{s} has no health check"
        );
    }
    let healthy = |svc: &str, dep: &str| {
        services[svc]["depends_on"][dep]["condition"].as_str() == Some("service_healthy")
    };
    assert!(
        healthy("gateway", "redis") && healthy("gateway", "auth") && healthy("gateway", "demo")
    );
    assert!(healthy("auth", "redis") && healthy("auth", "postgres"));
    // Container health is liveness: a Redis blip must not mark every gateway unhealthy.
    for svc in ["gateway", "auth"] {
        let test = strings(&services[svc]["healthcheck"]["test"]).join(" ");
        assert!(test.ends_with("/livez"), "{svc}: {test}");
    }
    let dockerfile = std::fs::read_to_string("docker/Dockerfile").expect("Dockerfile");
    assert!(
        dockerfile.contains("8000/livez"),
        "the image's own HEALTHCHECK"
    );

    let redis = strings(&services["redis"]["command"]).join(" ");
    assert!(
        redis.contains("--requirepass ${REDIS_PASSWORD:?"),
        "{redis}"
    );
    assert!(redis.contains("--appendonly yes"), "{redis}");
    assert!(!services["redis"]["volumes"].is_badvalue());
    assert!(services["postgres"]["environment"]["POSTGRES_PASSWORD"]
        .as_str()
        .is_some_and(|v| v.starts_with("${POSTGRES_PASSWORD")));
    assert_eq!(
        services["gateway"]["environment"]["AUTHFLOW_REDIS_PASSWORD"].as_str(),
        Some("${REDIS_PASSWORD}")
    );
    assert_eq!(
        services["auth"]["environment"]["AUTHFLOW_DATABASE_PASSWORD"].as_str(),
        Some("${POSTGRES_PASSWORD}")
    );
    assert_eq!(
        services["auth"]["build"]["dockerfile"].as_str(),
        Some("docker/Dockerfile")
    );
}

#[test]
fn compose_commands_are_real_subcommands_with_real_configs() {
    let doc = compose();
    for svc in ["gateway", "auth", "demo"] {
        let cmd = strings(&doc["services"][svc]["command"]);
        assert!(!cmd.is_empty(), "{svc}: no command");
        let help = Command::new(authflow_bin())
            .arg(&cmd[0])
            .arg("--help")
            .output()
            .expect("help");
        assert!(
            help.status.success(),
            "{svc}: `authflow {}` is not a subcommand",
            cmd[0]
        );
        if let Some(i) = cmd.iter().position(|a| a == "--config") {
            let path = cmd[i + 1].replace("/etc/authflow/conf/", "conf/");
            assert!(
                check(&path).status.success(),
                "{svc}: {path} does not pass check"
            );
        }
        let probe = strings(&doc["services"][svc]["healthcheck"]["test"]);
        assert_eq!(
            &probe[..3],
            ["CMD", "authflow", "health"],
            "{svc}: {probe:?}"
        );
    }
}

#[test]
fn dockerfile_is_multi_stage_non_root_with_a_health_check_and_our_build_command() {
    let df = std::fs::read_to_string("docker/Dockerfile").expect("Dockerfile");
    let stages = df.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(stages >= 2, "not multi-stage");
    let user = df
        .lines()
        .rfind(|l| l.starts_with("USER "))
        .expect("USER line");
    assert!(!user.contains("root") && !user.ends_with(" 0"), "{user}");
    assert!(df.contains("HEALTHCHECK") && df.contains("authflow\", \"health\""));
    let up = std::fs::read_to_string("scripts/up.sh").expect("up.sh");
    let build = up
        .lines()
        .find(|l| l.starts_with("cargo build"))
        .expect("build line in up.sh");
    assert!(
        df.contains(&format!("RUN {build}")),
        "Dockerfile does not build with `{build}`"
    );
    assert!(df.contains("COPY --from=build /src/target/release/authflow"));
    // The runtime image has no compiler, and the compose file mounts its configs read-only.
    let runtime = df.split("FROM debian").nth(1).expect("runtime stage");
    assert!(!runtime.contains("cargo "));
}

/// Every document of a multi-document YAML file.
fn yaml_docs(path: &str) -> Vec<Yaml> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn of_kind<'a>(docs: &'a [Yaml], kind: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind}"))
}

/// The port of a `host:port` listen address in a config file.
fn listen_port(config: &str, key_line: &str) -> i64 {
    config
        .lines()
        .filter(|l| l.trim_start().starts_with(key_line))
        .find_map(|l| l.split(':').next_back()?.trim_end_matches('"').parse().ok())
        .unwrap_or_else(|| panic!("no {key_line}"))
}

#[test]
fn kubernetes_manifests_agree_with_the_configs_and_the_binary() {
    let gateway_conf = std::fs::read_to_string("conf/gateway.toml").expect("conf");
    let auth_conf = std::fs::read_to_string("conf/auth.toml").expect("conf");
    let cm = yaml_docs("deploy/k8s/configmap.yaml").remove(0);
    assert_eq!(
        cm["data"]["gateway.toml"].as_str(),
        Some(gateway_conf.as_str()),
        "ConfigMap gateway.toml drifted from conf/: run scripts/k8s-configmap.sh"
    );
    assert_eq!(
        cm["data"]["auth.toml"].as_str(),
        Some(auth_conf.as_str()),
        "ConfigMap auth.toml drifted from conf/: run scripts/k8s-configmap.sh"
    );
    let secret = yaml_docs("deploy/k8s/secret.example.yaml").remove(0);
    let secret_name = secret["metadata"]["name"].as_str().expect("name");
    let kustomization = yaml_docs("deploy/k8s/kustomization.yaml").remove(0);
    let resources = strings(&kustomization["resources"]);

    for (file, service, conf_file, conf, listens) in [
        (
            "gateway.yaml",
            "gateway",
            "gateway.toml",
            &gateway_conf,
            vec![("listen =", "http"), ("listen = \"0.0.0.0:8443", "https")],
        ),
        (
            "auth.yaml",
            "auth",
            "auth.toml",
            &auth_conf,
            vec![("listen =", "http")],
        ),
    ] {
        assert!(
            resources.contains(&file.to_owned()),
            "kustomization misses {file}"
        );
        let docs = yaml_docs(&format!("deploy/k8s/{file}"));
        let deployment = of_kind(&docs, "Deployment");
        let labels = &deployment["spec"]["template"]["metadata"]["labels"];
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        // Runs the right subcommand on the mounted config file.
        let args = strings(&container["args"]);
        assert_eq!(
            args,
            vec![
                service.to_owned(),
                "--config".into(),
                format!("/etc/authflow/conf/{conf_file}")
            ]
        );
        let mounts = container["volumeMounts"].as_vec().expect("mounts");
        assert!(mounts
            .iter()
            .any(|m| m["mountPath"].as_str() == Some("/etc/authflow/conf")));
        // Container ports are the ports the config listens on.
        let ports = container["ports"].as_vec().expect("ports");
        for (key, name) in listens {
            let port = listen_port(conf, key);
            assert!(
                ports.iter().any(|p| p["name"].as_str() == Some(name)
                    && p["containerPort"].as_i64() == Some(port)),
                "{file}: no port {name} = {port}"
            );
        }
        // Liveness never depends on Redis; readiness does.
        assert_eq!(
            container["livenessProbe"]["httpGet"]["path"].as_str(),
            Some("/livez"),
            "{file}"
        );
        assert_eq!(
            container["readinessProbe"]["httpGet"]["path"].as_str(),
            Some("/readyz"),
            "{file}"
        );
        // Secrets come from the one Secret, under keys it has, into variables the binary reads.
        for env in container["env"].as_vec().expect("env") {
            let name = env["name"].as_str().expect("env name");
            let known = [
                "AUTHFLOW_REDIS_PASSWORD",
                "AUTHFLOW_DATABASE_PASSWORD",
                "AUTHFLOW_SMTP_PASSWORD",
                "RUST_LOG",
            ];
            assert!(
                known.contains(&name),
                "{file}: {name} is not read by authflow"
            );
            let r = &env["valueFrom"]["secretKeyRef"];
            if !r.is_badvalue() {
                assert_eq!(r["name"].as_str(), Some(secret_name), "{file}: {name}");
                let key = r["key"].as_str().expect("key");
                assert!(
                    !secret["stringData"][key].is_badvalue(),
                    "{file}: secret key {key} missing"
                );
            }
        }
        // The Service and the disruption budget select these pods.
        let svc = of_kind(&docs, "Service");
        assert_eq!(svc["metadata"]["name"].as_str(), Some(service));
        for selector in [
            &svc["spec"]["selector"],
            &of_kind(&docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        ] {
            for (k, v) in selector.as_hash().expect("selector") {
                assert_eq!(
                    &labels[k.as_str().expect("key")],
                    v,
                    "{file}: selector {k:?}"
                );
            }
        }
    }
    // The gateway reaches the auth service at the Service the manifests define.
    let auth_svc_port = of_kind(&yaml_docs("deploy/k8s/auth.yaml"), "Service")["spec"]["ports"][0]
        ["port"]
        .as_i64()
        .expect("port");
    assert!(gateway_conf.contains(&format!("servers = [\"auth:{auth_svc_port}\"]")));
    // The TLS secret lands where the config looks for the PEM files.
    let gw = yaml_docs("deploy/k8s/gateway.yaml");
    let tls = of_kind(&gw, "Deployment")["spec"]["template"]["spec"]["volumes"]
        .as_vec()
        .expect("volumes")
        .iter()
        .find(|v| v["name"].as_str() == Some("tls"))
        .expect("tls volume")
        .clone();
    for item in tls["secret"]["items"].as_vec().expect("items") {
        let path = format!("/etc/authflow/tls/{}", item["path"].as_str().expect("path"));
        assert!(
            gateway_conf.contains(&path),
            "conf/gateway.toml does not use {path}"
        );
    }
}

#[test]
fn the_systemd_unit_upgrades_without_downtime_and_is_hardened() {
    let unit = std::fs::read_to_string("conf/systemd/authflow-gateway.service").expect("unit");
    let values = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
            .collect()
    };
    let reload = values("ExecReload");
    assert!(
        reload.iter().any(|l| l.contains("kill -QUIT $MAINPID")),
        "{reload:?}"
    );
    let start = values("ExecStart");
    let upgrade = reload
        .iter()
        .find(|l| l.contains("--upgrade"))
        .expect("upgrade line");
    for flag in ["--upgrade-sock", "--pid-file", "--daemon"] {
        assert!(start[0].contains(flag) && upgrade.contains(flag), "{flag}");
    }
    // The old process must be told first: the new one waits for its sockets before it
    // daemonizes (a new-first order would hang the reload).
    let quit = reload
        .iter()
        .position(|l| l.contains("-QUIT"))
        .expect("quit");
    let new = reload
        .iter()
        .position(|l| l.contains("--upgrade"))
        .expect("new");
    assert!(quit < new, "{reload:?}");
    assert_eq!(values("PIDFile"), ["/run/authflow/gateway.pid"]);
    assert!(start[0].contains("/run/authflow/gateway.pid"));
    assert_eq!(values("EnvironmentFile"), ["/etc/authflow/gateway.env"]);
    assert!(values("LimitNOFILE")[0].parse::<u64>().expect("number") >= 65536);
    assert_eq!(values("AmbientCapabilities"), ["CAP_NET_BIND_SERVICE"]);
    for hardening in [
        "NoNewPrivileges",
        "ProtectSystem",
        "PrivateTmp",
        "ProtectHome",
    ] {
        assert!(!values(hardening).is_empty(), "{hardening} missing");
    }
    // The flags the unit passes exist.
    let help = std::process::Command::new(support::authflow_bin())
        .args(["gateway", "--help"])
        .output()
        .expect("help");
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in ["--upgrade", "--daemon", "--pid-file", "--upgrade-sock"] {
        assert!(help.contains(flag), "{flag} not in:\n{help}");
    }
}
