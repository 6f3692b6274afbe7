use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ferry_proto::scram::{ScramClient, ScramError, parse_client_first};

use super::command::{UserAddError, first_line};
use super::*;

/// A fresh directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "ferry-auth-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `[[user]]` table for `name` with `password`.
fn entry(name: &str, password: &str, iterations: u32) -> String {
    let v = Verifier::derive(password, format!("salt of {name}").as_bytes(), iterations);
    format!(
        "[[user]]\nname = {name:?}\niterations = {iterations}\nsalt = \"{}\"\nstored_key = \"{}\"\nserver_key = \"{}\"\n\n",
        BASE64.encode(&v.salt),
        BASE64.encode(v.stored_key),
        BASE64.encode(v.server_key)
    )
}

/// A hand-written entry with the given fields.
fn raw_entry(
    name: &str,
    iterations: i64,
    salt: &str,
    stored_key: &str,
    server_key: &str,
) -> String {
    format!(
        "[[user]]\nname = {name:?}\niterations = {iterations}\nsalt = {salt:?}\nstored_key = {stored_key:?}\nserver_key = {server_key:?}\n\n"
    )
}

fn key() -> String {
    BASE64.encode([1u8; 32])
}

/// The error of loading `text`, and the file's path as displayed.
fn load_error(text: &str) -> (UsersError, String) {
    let dir = TempDir::new();
    let path = dir.write("users.toml", text);
    let error = UserStore::load(&path).unwrap_err();
    (error, path.display().to_string())
}

/// A SCRAM exchange of `password` against `verifier`.
fn scram(name: &str, password: &str, verifier: Verifier) -> Result<(), ScramError> {
    let (client_first, client) = ScramClient::start(name, password, "cnonce").unwrap();
    let first = parse_client_first(&client_first)?;
    let (server_first, server) = first.challenge(verifier, "snonce")?;
    let (client_final, client) = client.handle(&server_first)?;
    let server_final = server.finish(&client_final)?;
    client.handle(&server_final)
}

#[test]
fn loads_users_and_checks_their_passwords() {
    let dir = TempDir::new();
    let text = format!(
        "# comment\n{}{}",
        entry("alice", "wonderland", 4096),
        entry("bob, = the builder", "can we fix it", 5000)
    );
    let path = dir.write("users.toml", &text);
    let store = UserStore::load(&path).unwrap();
    assert_eq!(store.len(), 2);
    let mut names: Vec<_> = store.names().collect();
    names.sort();
    assert_eq!(names, ["alice", "bob, = the builder"]);
    let alice = store.lookup("alice").unwrap();
    assert_eq!(alice.iterations, 4096);
    assert_eq!(alice.salt, b"salt of alice");
    assert!(store.lookup("carol").is_none());
    assert!(store.lookup("Alice").is_none());

    assert!(store.check_plain("alice", "wonderland"));
    assert!(!store.check_plain("alice", "Wonderland"));
    assert!(!store.check_plain("alice", ""));
    assert!(store.check_plain("bob, = the builder", "can we fix it"));
    assert!(!store.check_plain("bob, = the builder", "wonderland"));
    assert!(!store.check_plain("carol", "wonderland"));
    assert!(!store.check_plain("", ""));

    scram(
        "bob, = the builder",
        "can we fix it",
        store.verifier_or_decoy("bob, = the builder"),
    )
    .unwrap();
    assert_eq!(
        scram("alice", "wrong", store.verifier_or_decoy("alice")),
        Err(ScramError::InvalidProof)
    );
}

#[test]
fn an_empty_file_has_no_users() {
    for text in ["", "# nobody yet\n", "user = []\n"] {
        let dir = TempDir::new();
        let store = UserStore::load(&dir.write("users.toml", text)).unwrap();
        assert!(store.is_empty(), "{text:?}");
        assert_eq!(store.decoy("x").iterations, DEFAULT_ITERATIONS);
        assert_eq!(store.decoy("x").salt.len(), SALT_LEN);
    }
}

#[test]
fn a_missing_file_is_named() {
    let dir = TempDir::new();
    let path = dir.path("missing.toml");
    let error = UserStore::load(&path).unwrap_err();
    assert!(matches!(error, UsersError::NotFound { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!("users file not found: {}", path.display())
    );
    assert!(error.is_config());
}

#[test]
fn errors_name_the_file_and_the_entry() {
    let good = entry("alice", "pw", 4096);
    let cases = [
        (
            raw_entry("bob", 4096, "c2FsdA==", "AAAA", &key()),
            "user[1] (bob): stored_key is not 32 bytes of base64 (found 3 bytes)",
        ),
        (
            raw_entry("bob", 4096, "c2FsdA==", &key(), "%%%"),
            "user[1] (bob): server_key is not base64",
        ),
        (
            raw_entry("bob", 4096, "c2Fsd", &key(), &key()),
            "user[1] (bob): salt is not base64",
        ),
        (
            raw_entry("bob", 4096, "", &key(), &key()),
            "user[1] (bob): salt must be 1 to 64 bytes of base64 (found 0 bytes)",
        ),
        (
            raw_entry("bob", 4095, "c2FsdA==", &key(), &key()),
            "user[1] (bob): iterations must be between 4096 (RFC 7677) and 1000000, found 4095",
        ),
        (
            raw_entry("bob", 1_000_001, "c2FsdA==", &key(), &key()),
            "user[1] (bob): iterations must be between 4096 (RFC 7677) and 1000000, found 1000001",
        ),
        (
            raw_entry("bob", -1, "c2FsdA==", &key(), &key()),
            "user[1] (bob): iterations must be between 4096 (RFC 7677) and 1000000, found -1",
        ),
        (
            raw_entry("", 4096, "c2FsdA==", &key(), &key()),
            "user[1] (): invalid name: empty",
        ),
        (
            raw_entry("bo\nb", 4096, "c2FsdA==", &key(), &key()),
            "user[1] (bo\\nb): invalid name: contains a control character",
        ),
        (
            raw_entry(&"b".repeat(256), 4096, "c2FsdA==", &key(), &key()),
            "invalid name: 256 bytes long, at most 255 allowed",
        ),
        (
            raw_entry("alice", 4096, "c2FsdA==", &key(), &key()),
            "user[1] (alice): duplicate name, already used by user[0]",
        ),
    ];
    for (second, expected) in cases {
        let (error, path) = load_error(&format!("{good}{second}"));
        let shown = error.to_string();
        assert!(
            shown.starts_with(&format!("{path}: ")) && shown.ends_with(expected),
            "{shown}\nexpected {path}: …{expected}"
        );
        assert_eq!(shown.lines().count(), 1, "{shown}");
        assert!(error.is_config());
    }
}

#[test]
fn unknown_and_missing_keys_are_named_with_their_place() {
    let good = entry("alice", "pw", 4096);
    let typo = good.replace("stored_key", "stored_kye");
    let (error, path) = load_error(&format!("{good}{typo}"));
    let shown = error.to_string();
    assert!(
        shown.starts_with(&format!(
            "{path}: line 12, column 1 (user[1]): unknown field `stored_kye`"
        )),
        "{shown}"
    );
    assert_eq!(shown.lines().count(), 1, "{shown}");

    let (error, _) = load_error("users = []\n");
    assert!(
        error.to_string().contains("unknown field `users`"),
        "{error}"
    );
    assert!(error.to_string().contains("line 1, column 1:"), "{error}");

    let missing = good.replace("server_key", "# server_key");
    let (error, _) = load_error(&missing);
    assert!(
        error.to_string().contains("missing field `server_key`"),
        "{error}"
    );

    let (error, _) = load_error("[[user]\n");
    assert!(matches!(error, UsersError::Syntax { .. }), "{error:?}");

    let (error, _) = load_error("decoy_key = \"AAAA\"\n");
    assert!(
        error
            .to_string()
            .ends_with("decoy_key is not 32 bytes of base64"),
        "{error}"
    );
}

#[test]
fn a_file_over_16_mib_or_not_utf8_is_refused() {
    let dir = TempDir::new();
    let path = dir.path("users.toml");
    let mut text = "#".repeat(MAX_FILE_LEN as usize - 1);
    text.push('\n');
    std::fs::write(&path, &text).unwrap();
    assert!(UserStore::load(&path).unwrap().is_empty());
    text.push('\n');
    std::fs::write(&path, &text).unwrap();
    let error = UserStore::load(&path).unwrap_err();
    assert!(matches!(error, UsersError::TooLarge { .. }), "{error:?}");
    assert!(error.to_string().contains(&path.display().to_string()));

    std::fs::write(&path, b"# \xff\n").unwrap();
    let error = UserStore::load(&path).unwrap_err();
    assert!(matches!(error, UsersError::NotUtf8 { .. }), "{error:?}");
}

#[test]
fn decoys_are_stable_per_name_and_differ_across_names() {
    let dir = TempDir::new();
    let text = format!(
        "{}{}{}",
        entry("alice", "a", 4096),
        entry("bob", "b", 10_000),
        entry("carol", "c", 10_000)
    );
    let path = dir.write("users.toml", &text);
    let store = UserStore::load(&path).unwrap();
    let decoy = store.decoy("mallory");
    assert_eq!(decoy, store.decoy("mallory"));
    assert_eq!(decoy, store.verifier_or_decoy("mallory"));
    // Like the real ones: the most common count and salt length.
    assert_eq!(decoy.iterations, 10_000);
    assert_eq!(decoy.salt.len(), "salt of carol".len()); // and of alice
    let other = store.decoy("trudy");
    assert_ne!(decoy.salt, other.salt);
    assert_ne!(decoy.stored_key, other.stored_key);
    assert_ne!(decoy.stored_key, decoy.server_key);
    assert_ne!(store.decoy("Mallory").salt, decoy.salt);
    // No password opens a decoy, in SCRAM (failing only at the proof) or
    // PLAIN.
    assert_eq!(
        scram("mallory", "a", store.verifier_or_decoy("mallory")),
        Err(ScramError::InvalidProof)
    );
    assert!(!store.check_plain("mallory", "a"));
    // Stable across loads of the same file (a router restart).
    assert_eq!(UserStore::load(&path).unwrap().decoy("mallory"), decoy);
    // Another file (other keys) gives other decoys.
    let other_file = dir.write("other.toml", &entry("alice", "a2", 4096));
    assert_ne!(
        UserStore::load(&other_file).unwrap().decoy("mallory").salt,
        decoy.salt
    );
    // The file's decoy_key, when present, is the key.
    let keyed = format!("decoy_key = \"{}\"\n{text}", key());
    let keyed = dir.write("keyed.toml", &keyed);
    let keyed_decoy = UserStore::load(&keyed).unwrap().decoy("mallory");
    assert_ne!(keyed_decoy.salt, decoy.salt);
    let keyed_alone = dir.write("keyed-alone.toml", &format!("decoy_key = \"{}\"\n", key()));
    assert_eq!(
        UserStore::load(&keyed_alone)
            .unwrap()
            .decoy("mallory")
            .stored_key,
        keyed_decoy.stored_key
    );
}

#[test]
fn debug_shows_no_secrets() {
    let store =
        UserStore::from_verifiers([("alice".to_owned(), Verifier::derive("pw", b"salt", 4096))])
            .unwrap();
    let shown = format!("{store:?}");
    assert!(shown.contains("users: 1"), "{shown}");
    assert!(
        !shown.contains("alice") && !shown.contains("key"),
        "{shown}"
    );
}

#[test]
fn add_creates_a_file_that_loads() {
    let dir = TempDir::new();
    let path = dir.path("users.toml");
    assert_eq!(
        add_user(&path, "alice", "wonderland", 4096).unwrap(),
        Added::New
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with(
            "# Ferry users: SCRAM-SHA-256 verifiers (RFC 5802, RFC 7677), never passwords.\n"
        ),
        "{text}"
    );
    assert!(!text.contains("wonderland"), "{text}");
    assert!(text.contains("decoy_key = "), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let store = UserStore::load(&path).unwrap();
    let alice = store.lookup("alice").unwrap();
    assert_eq!(alice.iterations, 4096);
    assert_eq!(alice.salt.len(), SALT_LEN);
    assert!(store.check_plain("alice", "wonderland"));
    assert!(!store.check_plain("alice", "wonderlan"));
    scram("alice", "wonderland", store.verifier_or_decoy("alice")).unwrap();
    // No temporary file is left behind.
    let files: Vec<_> = std::fs::read_dir(&dir.0).unwrap().collect();
    assert_eq!(files.len(), 1);
}

#[test]
fn replacing_a_user_keeps_the_others() {
    let dir = TempDir::new();
    let path = dir.path("users.toml");
    add_user(&path, "alice", "a", 4096).unwrap();
    add_user(&path, "bob", "b", 4096).unwrap();
    add_user(&path, "carol", "c", 5000).unwrap();
    let before = std::fs::read_to_string(&path).unwrap();
    let decoy_before = UserStore::load(&path).unwrap().decoy("mallory");
    assert_eq!(add_user(&path, "bob", "b2", 6000).unwrap(), Added::Replaced);
    let after = std::fs::read_to_string(&path).unwrap();
    let store = UserStore::load(&path).unwrap();
    assert_eq!(store.len(), 3);
    assert!(store.check_plain("alice", "a"));
    assert!(store.check_plain("carol", "c"));
    assert!(store.check_plain("bob", "b2"));
    assert!(!store.check_plain("bob", "b"));
    assert_eq!(store.lookup("bob").unwrap().iterations, 6000);
    // In place, the others' text untouched.
    let block = |text: &str, name: &str| {
        text.split("[[user]]")
            .find(|block| block.contains(&format!("name = \"{name}\"")))
            .unwrap()
            .to_owned()
    };
    assert_eq!(block(&before, "alice"), block(&after, "alice"));
    assert_eq!(block(&before, "carol"), block(&after, "carol"));
    assert_ne!(block(&before, "bob"), block(&after, "bob"));
    let order: Vec<_> = ["alice", "bob", "carol"]
        .iter()
        .map(|name| after.find(&format!("name = \"{name}\"")).unwrap())
        .collect();
    assert!(order.is_sorted(), "{after}");
    // The decoy key stays: unknown users look the same as before.
    assert_eq!(store.decoy("mallory").salt, decoy_before.salt);
}

#[test]
fn add_keeps_a_hand_written_file_and_gives_it_a_decoy_key() {
    let dir = TempDir::new();
    let path = dir.write(
        "users.toml",
        &entry("ünïcode \"quoted\" \\ name", "x", 4096),
    );
    assert_eq!(add_user(&path, "dave", "d", 4096).unwrap(), Added::New);
    let store = UserStore::load(&path).unwrap();
    assert!(store.check_plain("ünïcode \"quoted\" \\ name", "x"));
    assert!(store.check_plain("dave", "d"));
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("decoy_key")
    );
}

#[test]
fn add_refuses_bad_input_and_broken_files() {
    let dir = TempDir::new();
    let path = dir.path("users.toml");
    let refused = |name: &str, password: &str, iterations: u32| {
        let error = add_user(&path, name, password, iterations).unwrap_err();
        assert!(error.is_config(), "{error:?}");
        error.to_string()
    };
    assert_eq!(refused("", "pw", 4096), "invalid user name \"\": empty");
    assert_eq!(
        refused("a\0b", "pw", 4096),
        "invalid user name \"a\\0b\": contains a control character"
    );
    assert!(refused(&"x".repeat(256), "pw", 4096).ends_with("256 bytes long, at most 255 allowed"));
    assert!(add_user(&path, &"é".repeat(127), "pw", 4096).is_ok());
    assert_eq!(
        refused("alice", "", 4096),
        "invalid password: the password is empty"
    );
    assert!(refused("alice", "a\0b", 4096).contains("NUL"));
    assert!(refused("alice", &"p".repeat(MAX_PASSWORD_LEN + 1), 4096).contains("longer than 1024"));
    assert_eq!(
        refused("alice", "pw", 4095),
        "iterations must be between 4096 (RFC 7677) and 1000000, found 4095"
    );
    assert!(refused("alice", "pw", 1_000_001).ends_with("found 1000001"));

    let broken = format!("{}stray = 1\n", entry("alice", "a", 4096));
    let path = dir.write("broken.toml", &broken);
    let error = add_user(&path, "bob", "b", 4096).unwrap_err();
    assert!(
        error.to_string().contains("unknown field `stray`"),
        "{error}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), broken);

    let missing_dir = dir.path("no/such/dir/users.toml");
    let error = add_user(&missing_dir, "bob", "b", 4096).unwrap_err();
    assert!(matches!(error, UsersError::Write { .. }), "{error:?}");
    assert!(!error.is_config());
}

#[test]
fn the_password_is_the_first_line() {
    let line = |input: &[u8]| first_line(input).map_err(|e| e.to_string());
    assert_eq!(line(b"secret\n").unwrap(), "secret");
    assert_eq!(line(b"secret\r\n").unwrap(), "secret");
    assert_eq!(line(b"secret").unwrap(), "secret");
    assert_eq!(line(b"secret\nsecond line\n").unwrap(), "secret");
    assert_eq!(line(b" spaced \n").unwrap(), " spaced ");
    assert_eq!(line(b"\n").unwrap(), "");
    assert_eq!(line(b"").unwrap(), "");
    let longest = "p".repeat(MAX_PASSWORD_LEN);
    assert_eq!(line(format!("{longest}\r\n").as_bytes()).unwrap(), longest);
    assert!(
        line(format!("{longest}p\n").as_bytes())
            .unwrap_err()
            .contains("longer than")
    );
    assert!(matches!(
        first_line(&b"\xff\n"[..]),
        Err(UserAddError::NotUtf8)
    ));
}

#[test]
fn user_add_errors_say_which_exit_status() {
    assert!(UserAddError::Mismatch.is_usage());
    assert!(!UserAddError::Read(std::io::Error::other("gone")).is_usage());
    assert!(UserAddError::from(UsersError::Iterations { found: 1 }).is_usage());
    assert!(!UserAddError::from(UsersError::Random("none".into())).is_usage());
}

#[test]
fn the_documented_example_loads() {
    let doc = include_str!("../../CONFIG.md");
    let format = doc.split("### Format").nth(1).expect("a Format section");
    let example = format
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a toml block");
    let dir = TempDir::new();
    let store = UserStore::load(&dir.write("users.toml", example)).unwrap();
    assert_eq!(store.len(), 1);
    assert_eq!(store.lookup("alice").unwrap().iterations, 4096);
}
