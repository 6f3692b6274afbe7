//! Black-box tests of the `ferry` command line and process shell: help,
//! configuration errors, start-up, environment overrides, and shutdown on
//! SIGTERM / SIGINT, `user add`. Each runs the real binary as a child
//! process.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use ferry_tests::{
    Ferry, Finished, TempDir, WAIT, ferry_bin, free_port, listener_config, run_ferry,
};

/// The single line of `stderr`, asserting there is exactly one.
fn one_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one stderr line, got:\n{stderr}");
    lines[0]
}

#[test]
fn the_binary_under_test_is_the_one_cargo_built() {
    if std::env::var_os("FERRY_BIN").is_none() {
        assert_eq!(
            ferry_bin(),
            std::path::Path::new(env!("CARGO_BIN_EXE_ferry-under-test"))
        );
    }
}

#[test]
fn help_explains_config_and_environment() {
    let top = run_ferry(["--help"], &[], WAIT);
    assert!(top.status.success(), "{top:?}");
    for needle in [
        "run",
        "check-config",
        "config-reference",
        "--config",
        "FERRY_LISTENER__0__PORT",
        "RUST_LOG",
        "Exit status",
    ] {
        assert!(
            top.stdout.contains(needle),
            "--help lacks {needle}:\n{}",
            top.stdout
        );
    }
    for command in ["run", "check-config"] {
        let help = run_ferry([command, "--help"], &[], WAIT);
        assert!(help.status.success(), "{help:?}");
        for needle in [
            "--config",
            "-c",
            "127.0.0.1:5672",
            "ferry --help",
            "ferry config-reference",
        ] {
            assert!(
                help.stdout.contains(needle),
                "{command} --help lacks {needle}:\n{}",
                help.stdout
            );
        }
        // The long text lives in `ferry --help` only.
        assert!(
            !help.stdout.contains("FERRY_LISTENER__0__PORT"),
            "{command} --help repeats the environment block:\n{}",
            help.stdout
        );
    }
    let run = run_ferry(["run", "--help"], &[], WAIT);
    assert!(run.stdout.contains("SIGTERM"), "{}", run.stdout);
    // Someone with only the binary cannot open a path of the source tree.
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["check-config", "--help"],
    ] {
        let help = run_ferry(args, &[], WAIT);
        assert!(
            !help.stdout.contains("CONFIG.md"),
            "{args:?}:\n{}",
            help.stdout
        );
    }
}

/// The configuration reference comes with the binary: what the container
/// image has is what the source tree has.
#[test]
fn config_reference_prints_the_reference() {
    let done = run_ferry(["config-reference"], &[], WAIT);
    assert!(done.status.success(), "{done:?}");
    let source =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../router/CONFIG.md"))
            .expect("router/CONFIG.md");
    assert_eq!(done.stdout, source);
    assert!(done.stderr.is_empty(), "{done:?}");
}

#[test]
fn no_command_is_a_usage_error() {
    let done = run_ferry(std::iter::empty::<&str>(), &[], WAIT);
    assert_eq!(done.status.code(), Some(2), "{done:?}");
    assert!(done.stderr.contains("Usage"), "{done:?}");
}

#[test]
fn a_missing_config_file_is_named() {
    let dir = TempDir::new();
    let path = dir.path().join("missing.toml");
    let done = run_ferry(["run".as_ref(), "-c".as_ref(), path.as_os_str()], &[], WAIT);
    assert_eq!(done.status.code(), Some(2), "{done:?}");
    let line = one_line(&done.stderr);
    assert!(line.starts_with("ferry: config error: "), "{line}");
    assert!(line.contains(&path.display().to_string()), "{line}");
}

#[test]
fn an_unknown_key_is_named_with_its_file() {
    let dir = TempDir::new();
    let path = dir.write(
        "x.toml",
        &format!(
            "{}[limits]\nmax_frmae_size = 1\n",
            listener_config(free_port())
        ),
    );
    let done = run_ferry(
        ["run".as_ref(), "--config".as_ref(), path.as_os_str()],
        &[],
        WAIT,
    );
    assert_eq!(done.status.code(), Some(2), "{done:?}");
    assert_eq!(
        one_line(&done.stderr),
        format!(
            "ferry: config error: unknown key 'limits.max_frmae_size' in {} (did you mean \
             'limits.max_frame_size'? valid keys: max_connections, max_frame_size, \
             max_sessions_per_connection, max_links_per_connection, max_message_size, \
             link_credit_window, max_in_flight_bytes_per_producer, handshake_timeout_ms, \
             max_connections_per_host, stuck_delivery_ms, max_buffered_bytes)",
            path.display()
        )
    );
}

#[test]
fn a_wrong_type_is_named() {
    let dir = TempDir::new();
    let path = dir.write(
        "x.toml",
        "[[listener]]\nhost = \"127.0.0.1\"\nport = \"abc\"\n",
    );
    let done = run_ferry(["run".as_ref(), "-c".as_ref(), path.as_os_str()], &[], WAIT);
    assert_eq!(done.status.code(), Some(2), "{done:?}");
    let line = one_line(&done.stderr);
    assert!(line.contains("'listener[0].port'"), "{line}");
    assert!(line.contains("\"abc\""), "{line}");
}

/// The first mistakes of someone new to TOML and to Ferry, each told in
/// one line that says what to write instead.
#[test]
fn common_mistakes_are_explained() {
    let dir = TempDir::new();
    for (toml, expected) in [
        (
            "[[listener]]\nhost = \"127.0.0.1\"\nport = 70000\n",
            "invalid value for 'listener[0].port' in {}: must be 0–65535, found 70000",
        ),
        (
            "[[listener]]\nhost = 127.0.0.1\nport = 5672\n",
            "invalid TOML in {}: line 2: 127.0.0.1 is not a TOML value; quote strings: host = \"127.0.0.1\"",
        ),
        (
            "[router]\nmdoe = \"interior\"\n[[listener]]\nhost = \"127.0.0.1\"\nport = 0\n",
            "unknown key 'router.mdoe' in {} (did you mean 'router.mode'? valid keys: id, mode, default_vhost)",
        ),
        (
            "[[listner]]\nhost = \"127.0.0.1\"\nport = 0\n",
            "unknown key 'listner' in {} (did you mean 'listener'? valid keys: router, listener, \
             connector, address, broker, limits, log, tls, auth, vhost, management, http)",
        ),
    ] {
        let path = dir.write("x.toml", toml);
        for command in ["run", "check-config"] {
            let done = run_ferry(
                [command.as_ref(), "-c".as_ref(), path.as_os_str()],
                &[],
                WAIT,
            );
            assert_eq!(done.status.code(), Some(2), "{done:?}");
            assert_eq!(
                one_line(&done.stderr),
                format!(
                    "ferry: config error: {}",
                    expected.replace("{}", &path.display().to_string())
                )
            );
        }
    }
}

/// `verbose` is no level: tracing would have read it as a target and
/// silenced every line, `listening on` included. `run` and `check-config`
/// apply the same rule to `[log] level` and to `RUST_LOG`.
#[test]
fn an_unknown_log_level_is_refused_by_run_and_check_config_alike() {
    const VALID: &str = "(valid levels: error, warn, info, debug, trace, off; \
                         or directives such as info,ferry_router=debug)";
    let dir = TempDir::new();
    let path = dir.write(
        "x.toml",
        &format!("{}[log]\nlevel = \"verbose\"\n", listener_config(0)),
    );
    for command in ["run", "check-config"] {
        let done = run_ferry(
            [command.as_ref(), "-c".as_ref(), path.as_os_str()],
            &[],
            WAIT,
        );
        assert_eq!(done.status.code(), Some(2), "{command}: {done:?}");
        assert_eq!(
            one_line(&done.stderr),
            format!(
                "ferry: config error: invalid value for 'log.level' in {}: unknown level \"verbose\" {VALID}",
                path.display()
            )
        );
        let done = run_ferry([command], &[("RUST_LOG", "verbose")], WAIT);
        assert_eq!(done.status.code(), Some(2), "{command}: {done:?}");
        assert_eq!(
            one_line(&done.stderr),
            format!(
                "ferry: config error: invalid RUST_LOG \"verbose\": unknown level \"verbose\" {VALID}"
            )
        );
    }
    // A valid RUST_LOG is accepted by both, and check-config says it wins.
    let done = run_ferry(
        ["check-config"],
        &[("RUST_LOG", "info,ferry_router=debug")],
        WAIT,
    );
    assert!(done.status.success(), "{done:?}");
    assert!(
        done.stdout
            .contains("# RUST_LOG=\"info,ferry_router=debug\" is set: it wins over [log] level"),
        "{}",
        done.stdout
    );
}

#[test]
fn a_malformed_environment_variable_is_named() {
    let done = run_ferry(["run"], &[("FERRY_LOG_LEVEL", "debug")], WAIT);
    assert_eq!(done.status.code(), Some(2), "{done:?}");
    let line = one_line(&done.stderr);
    assert!(
        line.contains("FERRY_LOG_LEVEL") && line.contains("FERRY_LOG__LEVEL"),
        "{line}"
    );
}

#[test]
fn a_port_in_use_stops_start_up_naming_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = TempDir::new();
    let path = dir.write("x.toml", &listener_config(port));
    let done = run_ferry(["run".as_ref(), "-c".as_ref(), path.as_os_str()], &[], WAIT);
    assert_eq!(done.status.code(), Some(1), "{done:?}");
    let line = one_line(&done.stderr);
    assert!(line.starts_with("ferry: error: "), "{line}");
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
    drop(taken);
}

#[test]
fn serves_tcp_and_exits_0_on_sigterm() {
    let port = free_port();
    let mut ferry = Ferry::start(&listener_config(port));
    assert!(
        ferry
            .stderr()
            .contains(&format!("listening on 127.0.0.1:{port} (normal)")),
        "{}",
        ferry.stderr()
    );
    let mut clients: Vec<_> = (0..3)
        .map(|_| ferry.connect(format!("127.0.0.1:{port}").parse().unwrap(), WAIT))
        .collect();
    for client in &mut clients {
        client.write_all(b"AMQP\0\x01\0\0").unwrap();
    }

    ferry.terminate();
    let status = ferry
        .wait_exit(Duration::from_secs(10))
        .expect("exits within 10 s of SIGTERM");
    assert_eq!(status.code(), Some(0), "stderr:\n{}", ferry.stderr());
    // Open connections were closed (after whatever the router said last),
    // not left hanging.
    for mut client in clients {
        client.set_read_timeout(Some(WAIT)).unwrap();
        let mut rest = Vec::new();
        if let Err(error) = client.read_to_end(&mut rest) {
            assert!(
                !matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                "connection still open {WAIT:?} after the router exited"
            );
        }
    }
}

#[test]
fn exits_0_on_sigint() {
    let mut ferry = Ferry::start(&listener_config(0));
    ferry.interrupt();
    let status = ferry
        .wait_exit(Duration::from_secs(10))
        .expect("exits within 10 s of SIGINT");
    assert_eq!(status.code(), Some(0), "stderr:\n{}", ferry.stderr());
}

#[test]
fn environment_overrides_the_listener_port() {
    let port = free_port();
    let port_text = port.to_string();
    // No file: the built-in default (127.0.0.1:5672) with its port replaced.
    let mut ferry = Ferry::spawn(["run"], &[("FERRY_LISTENER__0__PORT", &port_text)]);
    let addrs = ferry.wait_listening(1, WAIT);
    assert_eq!(addrs, [format!("127.0.0.1:{port}").parse().unwrap()]);
    ferry.connect(addrs[0], WAIT);
    ferry.terminate();
    assert_eq!(
        ferry
            .wait_exit(Duration::from_secs(10))
            .and_then(|s| s.code()),
        Some(0)
    );
}

#[test]
fn environment_adds_a_listener_on_port_0() {
    let dir = TempDir::new();
    let path = dir.write("x.toml", &listener_config(0));
    let mut ferry = Ferry::spawn(
        ["run".as_ref(), "-c".as_ref(), path.as_os_str()],
        &[
            ("FERRY_LISTENER__1__HOST", "127.0.0.1"),
            ("FERRY_LISTENER__1__PORT", "0"),
        ],
    );
    let addrs = ferry.wait_listening(2, WAIT);
    assert_ne!(addrs[0], addrs[1]);
    for addr in addrs {
        ferry.connect(addr, WAIT);
    }
}

#[test]
fn check_config_prints_the_effective_config() {
    let done = run_ferry(
        ["check-config"],
        &[
            ("FERRY_ROUTER__ID", "from-env"),
            ("FERRY_LIMITS__MAX_FRAME_SIZE", "4096"),
        ],
        WAIT,
    );
    assert!(done.status.success(), "{done:?}");
    for needle in [
        "id = \"from-env\"",
        "mode = \"standalone\"",
        "port = 5672",
        "max_frame_size = 4096",
        "sasl_mechanisms = [\"ANONYMOUS\"]",
    ] {
        assert!(
            done.stdout.contains(needle),
            "lacks {needle}:\n{}",
            done.stdout
        );
    }
    assert!(done.stderr.is_empty(), "{done:?}");
}

#[test]
fn check_config_rejects_invalid_values() {
    let done = run_ferry(
        ["check-config"],
        &[("FERRY_LIMITS__MAX_FRAME_SIZE", "100")],
        WAIT,
    );
    assert_eq!(done.status.code(), Some(2), "{done:?}");
    let line = one_line(&done.stderr);
    assert!(
        line.contains("'limits.max_frame_size'") && line.contains("FERRY_LIMITS__MAX_FRAME_SIZE"),
        "{line}"
    );
}

/// Run `ferry user add NAME --users FILE EXTRA…` with `stdin` as its
/// standard input (not a terminal), killing it after [`WAIT`].
fn user_add(name: &str, users: &std::path::Path, stdin: &[u8], extra: &[&str]) -> Finished {
    use std::process::{Command, Stdio};
    let mut child = Command::new(ferry_bin())
        .args(["user", "add", name, "--users"])
        .arg(users)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferry");
    // The child may exit before reading (a usage error): ignore EPIPE.
    let _ = child.stdin.take().expect("stdin").write_all(stdin);
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ferry user add still running after {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .unwrap();
    Finished {
        status,
        stdout,
        stderr,
    }
}

#[test]
fn user_add_reads_the_password_from_stdin_and_writes_a_verifier() {
    use ferry_router::auth::UserStore;
    let dir = TempDir::new();
    let users = dir.path().join("users.toml");

    let done = user_add("alice", &users, b"wonderland\n", &[]);
    assert!(done.status.success(), "{done:?}");
    assert_eq!(
        done.stdout,
        format!("user alice added to {}\n", users.display())
    );
    assert!(done.stderr.is_empty(), "{done:?}");
    let text = std::fs::read_to_string(&users).unwrap();
    assert!(!text.contains("wonderland"), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&users).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let store = UserStore::load(&users).unwrap();
    assert_eq!(store.len(), 1);
    assert_eq!(store.lookup("alice").unwrap().iterations, 4096);
    assert!(store.check_plain("alice", "wonderland"));
    assert!(!store.check_plain("alice", "wonderland\n"));

    // A second user, then alice again: replaced, bob kept.
    let done = user_add("bob", &users, b"builder", &["--iterations", "5000"]);
    assert!(done.status.success(), "{done:?}");
    let done = user_add("alice", &users, b"looking-glass\r\n", &[]);
    assert!(done.status.success(), "{done:?}");
    assert_eq!(
        done.stdout,
        format!("user alice updated in {}\n", users.display())
    );
    let store = UserStore::load(&users).unwrap();
    assert_eq!(store.len(), 2);
    assert!(store.check_plain("alice", "looking-glass"));
    assert!(!store.check_plain("alice", "wonderland"));
    assert!(store.check_plain("bob", "builder"));
    assert_eq!(store.lookup("bob").unwrap().iterations, 5000);
}

#[test]
fn user_add_refuses_an_empty_password_and_bad_arguments() {
    let dir = TempDir::new();
    let users = dir.path().join("users.toml");
    for (name, stdin, extra, needle) in [
        ("alice", &b"\n"[..], &[][..], "the password is empty"),
        ("alice", b"", &[], "the password is empty"),
        ("", b"pw\n", &[], "invalid user name"),
        ("al\tice", b"pw\n", &[], "control character"),
        ("alice", b"pw\n", &["--iterations", "1000"], "found 1000"),
        ("alice", b"\xff\n", &[], "not UTF-8"),
    ] {
        let done = user_add(name, &users, stdin, extra);
        assert_eq!(done.status.code(), Some(2), "{name:?}: {done:?}");
        let line = one_line(&done.stderr);
        assert!(
            line.starts_with("ferry: error: ") && line.contains(needle),
            "{line}"
        );
        assert!(done.stdout.is_empty(), "{done:?}");
        assert!(!users.exists(), "{name:?} created {}", users.display());
    }

    // A broken users file is reported, not overwritten.
    let broken = "[[user]]\nname = \"x\"\n";
    std::fs::write(&users, broken).unwrap();
    let done = user_add("alice", &users, b"pw\n", &[]);
    assert_eq!(done.status.code(), Some(2), "{done:?}");
    let line = one_line(&done.stderr);
    assert!(
        line.contains(&users.display().to_string()) && line.contains("missing field"),
        "{line}"
    );
    assert_eq!(std::fs::read_to_string(&users).unwrap(), broken);

    // A file that cannot be written: a runtime error.
    let nowhere = dir.path().join("missing-dir").join("users.toml");
    let done = user_add("alice", &nowhere, b"pw\n", &[]);
    assert_eq!(done.status.code(), Some(1), "{done:?}");
    assert!(one_line(&done.stderr).starts_with("ferry: error: cannot write users file"));
}
