//! Loading and error wording: each error is one line naming key and origin.

use std::ffi::OsString;
use std::path::PathBuf;

use super::*;
use crate::config::model::{ClientCert, Distribution, Limits, Role, RouterMode, TlsVersion};

/// A TOML file in a fresh temporary directory, removed on drop.
struct TempToml {
    dir: PathBuf,
    path: PathBuf,
}

impl TempToml {
    fn new(text: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ferry-config-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ferry.toml");
        std::fs::write(&path, text).unwrap();
        Self { dir, path }
    }
}

impl Drop for TempToml {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    pairs
        .iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect()
}

fn load(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let file = TempToml::new(text);
    Config::load_with_env(Some(&file.path), env(vars))
}

/// The error for `text` + `vars`, as displayed, with the temp path replaced
/// by `F`.
fn error(text: &str, vars: &[(&str, &str)]) -> String {
    let file = TempToml::new(text);
    let error = Config::load_with_env(Some(&file.path), env(vars)).unwrap_err();
    let line = error.to_string();
    assert!(!line.contains('\n'), "one line: {line}");
    line.replace(&file.path.display().to_string(), "F")
}

const MINIMAL: &str = "[[listener]]\nhost = \"127.0.0.1\"\nport = 5672\n";

#[test]
fn embedded_default_is_a_standalone_router_on_5672() {
    let config = Config::load_with_env(None, env(&[])).unwrap();
    assert_eq!(config, Config::embedded_default());
    assert_eq!(config.router.mode, RouterMode::Standalone);
    assert!(!config.router.id.is_empty());
    assert_eq!(config.listeners.len(), 1);
    let listener = &config.listeners[0];
    assert_eq!((listener.host.as_str(), listener.port), ("127.0.0.1", 5672));
    assert_eq!(listener.role, Role::Normal);
    assert_eq!(listener.sasl_mechanisms, ["ANONYMOUS"]);
    assert!(!listener.require_sasl);
    assert_eq!(config.limits, Limits::default());
    assert_eq!(config.log.level, "info");
}

#[test]
fn a_full_file_loads() {
    let config = load(
        r#"
        [router]
        id = "A"
        mode = "interior"

        [[listener]]
        host = "127.0.0.1"
        port = 5672

        [[listener]]
        host = "0.0.0.0"
        port = 5673
        role = "inter-router"
        require_sasl = true
        tls = "mesh"
        client_cert = "required"

        [[connector]]
        host = "10.0.0.2"
        port = 5673
        cost = 4
        tls = "mesh"
        server_name = "B"

        [[tls]]
        name = "mesh"
        cert = "/etc/ferry/tls/A.pem"
        key = "/etc/ferry/tls/A.key"
        ca = "/etc/ferry/tls/ca.pem"
        min_version = "1.3"

        [auth]
        users = "/etc/ferry/users.toml"

        [[address]]
        prefix = "multicast"
        distribution = "multicast"

        [limits]
        max_frame_size = 16384

        [log]
        level = "debug"
        "#,
        &[],
    )
    .unwrap();
    assert_eq!(config.router.id, "A");
    assert_eq!(config.listeners[1].role, Role::InterRouter);
    assert!(config.listeners[1].require_sasl);
    assert_eq!(config.connectors[0].role, Role::InterRouter);
    assert_eq!(config.connectors[0].cost, 4);
    assert_eq!(config.connectors[0].server_name.as_deref(), Some("B"));
    assert_eq!(config.listeners[1].client_cert, ClientCert::Required);
    assert_eq!(config.tls[0].min_version, TlsVersion::V1_3);
    assert_eq!(
        config.auth.users.as_deref(),
        Some(std::path::Path::new("/etc/ferry/users.toml"))
    );
    assert_eq!(
        config.distribution_for("multicast.x"),
        Distribution::Multicast
    );
    assert_eq!(config.limits.max_frame_size, 16384);
    assert_eq!(
        config.limits.max_connections,
        Limits::default().max_connections
    );
    assert_eq!(config.log.level, "debug");
}

#[test]
fn a_file_replaces_the_default_listeners() {
    let config = load(
        "[[connector]]\nhost = \"localhost\"\nport = 1\nrole = \"edge\"\n[router]\nmode = \"edge\"\n",
        &[],
    )
    .unwrap();
    assert!(config.listeners.is_empty());
}

#[test]
fn environment_overrides_every_kind_of_key() {
    let config = load(
        MINIMAL,
        &[
            ("FERRY_ROUTER__ID", "from-env"),
            ("FERRY_LIMITS__MAX_FRAME_SIZE", "4096"),
            ("FERRY_LOG__LEVEL", "warn"),
            ("FERRY_LISTENER__0__PORT", "6000"),
            ("FERRY_LISTENER__0__REQUIRE_SASL", "true"),
            ("FERRY_LISTENER__0__SASL_MECHANISMS", "ANONYMOUS"),
            ("FERRY_LISTENER__1__HOST", "::1"),
            ("FERRY_LISTENER__1__PORT", "6001"),
            ("FERRY_ADDRESS__0__PREFIX", "m"),
            ("FERRY_ADDRESS__0__DISTRIBUTION", "multicast"),
            ("FERRY_BIN", "/not/a/key"),
        ],
    )
    .unwrap();
    assert_eq!(config.router.id, "from-env");
    assert_eq!(config.limits.max_frame_size, 4096);
    assert_eq!(config.log.level, "warn");
    assert_eq!(config.listeners[0].port, 6000);
    assert_eq!(config.listeners[0].host, "127.0.0.1", "untouched keys stay");
    assert!(config.listeners[0].require_sasl);
    assert_eq!(config.listeners[1].host, "::1");
    assert_eq!(config.listeners[1].role, Role::Normal);
    assert_eq!(config.distribution_for("m.x"), Distribution::Multicast);
}

#[test]
fn environment_overrides_the_embedded_default_too() {
    let config = Config::load_with_env(None, env(&[("FERRY_LISTENER__0__PORT", "6000")])).unwrap();
    assert_eq!(config.listeners[0].port, 6000);
}

#[test]
fn missing_file_is_named() {
    let error =
        Config::load_with_env(Some(Path::new("/nonexistent/ferry.toml")), env(&[])).unwrap_err();
    assert_eq!(
        error.to_string(),
        "config file not found: /nonexistent/ferry.toml"
    );
}

#[test]
fn syntax_errors_name_file_and_line() {
    assert_eq!(
        error("[router]\nid = \n", &[]),
        "invalid TOML in F: line 2, column 6: string values must be quoted, expected literal string"
    );
}

#[test]
fn unquoted_strings_are_told_to_be_quoted() {
    // The parser's own words: "invalid float, expected nothing".
    assert_eq!(
        error("[[listener]]\nhost = 127.0.0.1\nport = 5672\n", &[]),
        "invalid TOML in F: line 2: 127.0.0.1 is not a TOML value; quote strings: host = \"127.0.0.1\""
    );
    assert_eq!(
        error("[[listener]]\nhost = localhost # mine\nport = 5672\n", &[]),
        "invalid TOML in F: line 2: localhost is not a TOML value; quote strings: host = \"localhost\""
    );
    // A valid value on the line: the error is about something else.
    let duplicate = error("[[listener]]\nport = 1\nport = 2\n", &[]);
    assert!(
        duplicate.contains("duplicate key") && !duplicate.contains("quote strings"),
        "{duplicate}"
    );
}

#[test]
fn unknown_keys_are_named_with_the_valid_ones() {
    // One rule everywhere: the valid keys of the section, the nearest
    // first when it looks like a typo.
    assert_eq!(
        error(&format!("{MINIMAL}[limits]\nmax_frmae_size = 1\n"), &[]),
        "unknown key 'limits.max_frmae_size' in F (did you mean 'limits.max_frame_size'? \
         valid keys: max_connections, max_frame_size, \
         max_sessions_per_connection, max_links_per_connection, max_message_size, \
         link_credit_window, max_in_flight_bytes_per_producer, handshake_timeout_ms, \
         max_connections_per_host, stuck_delivery_ms, max_buffered_bytes)"
    );
    assert_eq!(
        error(&format!("{MINIMAL}[limits]\nbogus = 1\n"), &[]),
        "unknown key 'limits.bogus' in F (valid keys: max_connections, max_frame_size, \
         max_sessions_per_connection, max_links_per_connection, max_message_size, \
         link_credit_window, max_in_flight_bytes_per_producer, handshake_timeout_ms, \
         max_connections_per_host, stuck_delivery_ms, max_buffered_bytes)"
    );
    assert_eq!(
        error(&format!("{MINIMAL}[router]\nmdoe = \"interior\"\n"), &[]),
        "unknown key 'router.mdoe' in F (did you mean 'router.mode'? valid keys: id, mode, default_vhost)"
    );
    assert_eq!(
        error(
            &format!("{MINIMAL}[[listener]]\nhost = \"h\"\nport = 1\nrol = \"normal\"\n"),
            &[]
        ),
        "unknown key 'listener[1].rol' in F (did you mean 'listener[1].role'? valid keys: \
         host, port, role, sasl_mechanisms, require_sasl, tls, client_cert, \
         allow_plain_without_tls, allow_unauthenticated_routers, transport)"
    );
    assert_eq!(
        error("[[listner]]\nhost = \"h\"\nport = 1\n", &[]),
        "unknown key 'listner' in F (did you mean 'listener'? valid keys: \
         router, listener, connector, address, broker, limits, log, tls, auth, vhost, management, http)"
    );
}

#[test]
fn unknown_keys_from_the_environment_name_the_variable() {
    assert_eq!(
        error(MINIMAL, &[("FERRY_LIMITS__MAX_FRMAE_SIZE", "1")]),
        "unknown key 'limits.max_frmae_size' from environment variable FERRY_LIMITS__MAX_FRMAE_SIZE \
         (did you mean 'limits.max_frame_size'? valid keys: max_connections, max_frame_size, \
         max_sessions_per_connection, max_links_per_connection, max_message_size, \
         link_credit_window, max_in_flight_bytes_per_producer, handshake_timeout_ms, \
         max_connections_per_host, stuck_delivery_ms, max_buffered_bytes)"
    );
    assert_eq!(
        error(MINIMAL, &[("FERRY_ROUTER__MDOE", "interior")]),
        "unknown key 'router.mdoe' from environment variable FERRY_ROUTER__MDOE \
         (did you mean 'router.mode'? valid keys: id, mode, default_vhost)"
    );
}

#[test]
fn wrong_types_are_named() {
    assert_eq!(
        error("[[listener]]\nhost = \"127.0.0.1\"\nport = \"abc\"\n", &[]),
        "invalid value for 'listener[0].port' in F: must be a whole number, found string \"abc\""
    );
    assert_eq!(
        error("[[listener]]\nhost = \"127.0.0.1\"\nport = 70000\n", &[]),
        "invalid value for 'listener[0].port' in F: must be 0–65535, found 70000"
    );
    assert_eq!(
        error("[[listener]]\nhost = \"127.0.0.1\"\nport = -1\n", &[]),
        "invalid value for 'listener[0].port' in F: must be 0 or more, found -1"
    );
    assert_eq!(
        error(MINIMAL, &[("FERRY_LISTENER__0__PORT", "70000")]),
        "invalid value for 'listener[0].port' from environment variable FERRY_LISTENER__0__PORT: must be 0–65535, found 70000"
    );
    assert_eq!(
        error(MINIMAL, &[("FERRY_LISTENER__0__PORT", "abc")]),
        "invalid value for 'listener[0].port' from environment variable FERRY_LISTENER__0__PORT: must be a whole number, found string \"abc\""
    );
    assert_eq!(
        error(&format!("{MINIMAL}[router]\nmode = \"core\"\n"), &[]),
        "invalid value for 'router.mode' in F: expected one of \"standalone\", \"interior\", \"edge\", found \"core\""
    );
    // Lenient where harmless: numbers become strings, enum names ignore case.
    let config = load(
        &format!("{MINIMAL}[router]\nid = 5\nmode = \"Interior\"\n"),
        &[],
    )
    .unwrap();
    assert_eq!(
        (config.router.id.as_str(), config.router.mode),
        ("5", RouterMode::Interior)
    );
    assert_eq!(
        error(
            "[[listener]]\nhost = \"h\"\nport = 1\nrequire_sasl = \"maybe\"\n",
            &[]
        ),
        "invalid value for 'listener[0].require_sasl' in F: expected a boolean, found string \"maybe\""
    );
    assert_eq!(
        error("listener = 5\n", &[]),
        "invalid value for 'listener' in F: expected an array, found integer `5`"
    );
    assert_eq!(
        error("router = 5\n[[listener]]\nhost = \"h\"\nport = 1\n", &[]),
        "invalid value for 'router' in F: expected a table, found integer `5`"
    );
}

#[test]
fn missing_keys_are_named() {
    assert_eq!(
        error("[[listener]]\nport = 5672\n", &[]),
        "missing key 'listener[0].host' in F"
    );
    assert_eq!(
        error(MINIMAL, &[("FERRY_LISTENER__1__PORT", "5673")]),
        "missing key 'listener[1].host' in the entry created by environment variable FERRY_LISTENER__1__PORT"
    );
    assert_eq!(
        error(
            MINIMAL,
            &[
                ("FERRY_LISTENER__2__PORT", "5673"),
                ("FERRY_LISTENER__2__HOST", "h")
            ]
        ),
        "environment variable FERRY_LISTENER__2__HOST: listener[1] does not exist; number listener entries from 0 without gaps"
    );
}

#[test]
fn validation_errors_name_the_key_and_origin() {
    assert_eq!(
        error(&format!("{MINIMAL}[limits]\nmax_frame_size = 100\n"), &[]),
        "invalid value for 'limits.max_frame_size' in F: must be at least 512 (AMQP's minimum), found 100"
    );
    assert_eq!(
        error(MINIMAL, &[("FERRY_ROUTER__ID", "")]),
        "invalid value for 'router.id' from environment variable FERRY_ROUTER__ID: must be 1 to 64 ASCII letters, digits, '.', '-' or '_', found \"\""
    );
    assert_eq!(
        error(
            MINIMAL,
            &[
                ("FERRY_LISTENER__1__HOST", "127.0.0.1"),
                ("FERRY_LISTENER__1__PORT", "5672")
            ]
        ),
        "invalid value for 'listener[1]' in the entry created by environment variable FERRY_LISTENER__1__HOST: same host and port as listener[0] (127.0.0.1:5672)"
    );
}

#[test]
fn keys_are_normalized() {
    assert_eq!(normalize_key("listener[0]port"), "listener[0].port");
    assert_eq!(normalize_key("a[0][1]b.c"), "a[0][1].b.c");
    assert_eq!(normalize_key("a[0].b"), "a[0].b");
}

#[test]
fn ancestors_walk_up_the_key() {
    assert_eq!(
        ancestors("a.b[1].c").collect::<Vec<_>>(),
        ["a.b[1].c", "a.b[1]", "a.b", "a"]
    );
}

#[test]
fn edit_distance_counts_edits() {
    assert_eq!(edit_distance("max_frmae_size", "max_frame_size"), 1);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(edit_distance("role", "role"), 0);
    assert_eq!(edit_distance("mdoe", "mode"), 1);
    assert_eq!(edit_distance("listner", "listener"), 1);
}

const BROKER: &str = "[[broker]]\nname = \"rabbit\"\nhost = \"127.0.0.1\"\nport = 5672\n";

#[test]
fn a_brokered_address_names_its_broker() {
    let config = load(
        &format!(
            "{MINIMAL}{BROKER}user = \"u\"\npassword = \"p\"\nrouters = [\"A\"]\n\n\
             [[address]]\nprefix = \"queue.orders\"\ndistribution = \"queue\"\nbroker = \"rabbit\"\n"
        ),
        &[],
    )
    .unwrap();
    let a = &config.addresses[0];
    assert_eq!(a.brokered, Some(crate::config::Brokered::Queue));
    assert_eq!(a.broker.as_deref(), Some("rabbit"));
    // Producers go to the closest link to the broker; the entry matches
    // like any prefix, on token boundaries.
    assert_eq!(
        config.distribution_for("queue.orders"),
        Distribution::Closest
    );
    let entry = |a: &str| crate::config::brokered_entry(&config.addresses, a).map(|e| &e.prefix);
    assert_eq!(entry("queue.orders.eu"), Some(&"queue.orders".to_string()));
    assert_eq!(entry("queue.orderside"), None);
    assert_eq!(
        config.distribution_for("queue.orderside"),
        Distribution::Balanced
    );
    assert!(config.brokers[0].dialed_by("A"));
    assert!(!config.brokers[0].dialed_by("B"));
    assert_eq!(
        config.brokers[0].node(crate::config::Brokered::Queue, "queue.orders"),
        "/queue/queue.orders"
    );
    // What check-config prints loads back (the password is not printed).
    let printed = config.to_string();
    assert!(printed.contains("distribution = \"queue\"\nbroker = \"rabbit\""));
    assert!(!printed.contains("password = \"p\""));
}

#[test]
fn a_bad_brokered_address_stops_start_up_with_one_line() {
    assert_eq!(
        error(
            &format!("{MINIMAL}[[address]]\nprefix = \"q\"\ndistribution = \"queue\"\n"),
            &[]
        ),
        "invalid value for 'address[0].broker' in F: distribution \"queue\" needs broker, \
         the name of a [[broker]] that stores its messages"
    );
    assert_eq!(
        error(
            &format!(
                "{MINIMAL}{BROKER}[[address]]\nprefix = \"t\"\ndistribution = \"topic\"\nbroker = \"rabit\"\n"
            ),
            &[]
        ),
        "invalid value for 'address[0].broker' in F: no [[broker]] is named \"rabit\""
    );
    assert_eq!(
        error(
            &format!(
                "{MINIMAL}{BROKER}[[address]]\nprefix = \"q\"\ndistribution = \"closest\"\nbroker = \"rabbit\"\n"
            ),
            &[]
        ),
        "invalid value for 'address[0].broker' in F: only a \"queue\" or \"topic\" address \
         has a broker (distribution is \"closest\")"
    );
    assert_eq!(
        error(&format!("{MINIMAL}{BROKER}tls = \"nope\"\n"), &[]),
        "invalid value for 'broker[0].tls' in F: no [[tls]] profile is named \"nope\""
    );
    assert_eq!(
        error(&format!("{MINIMAL}{BROKER}password = \"p\"\n"), &[]),
        "invalid value for 'broker[0].user' in F: a password needs a user"
    );
}
