use proptest::prelude::*;

use super::*;

// RFC 7677 §3: the SCRAM-SHA-256 example exchange.
const USER: &str = "user";
const PASSWORD: &str = "pencil";
const CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn salt() -> Vec<u8> {
    BASE64.decode(SALT).unwrap()
}

/// The RFC user's verifier (4096 rounds of PBKDF2: derive it once).
fn verifier() -> Verifier {
    use std::sync::OnceLock;
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER
        .get_or_init(|| Verifier::derive(PASSWORD, &salt(), 4096))
        .clone()
}

/// The server side up to the client-final-message, on `client_first`.
fn server_awaiting_final(client_first: &str) -> ServerAwaitFinal {
    let first = parse_client_first(client_first.as_bytes()).unwrap();
    first.challenge(verifier(), SERVER_NONCE).unwrap().1
}

/// `text` with the client-final-message's proof replaced by `proof`.
fn with_proof(proof: &[u8; KEY_LEN]) -> String {
    let (without, _) = CLIENT_FINAL.rsplit_once(",p=").unwrap();
    format!("{without},p={}", BASE64.encode(proof))
}

#[test]
fn rfc7677_server_side() {
    let first = parse_client_first(CLIENT_FIRST.as_bytes()).unwrap();
    assert_eq!(first.username(), USER);
    assert_eq!(first.client_nonce(), CLIENT_NONCE);
    assert!(!first.client_supports_channel_binding());
    let (server_first, state) = first.challenge(verifier(), SERVER_NONCE).unwrap();
    assert_eq!(String::from_utf8(server_first).unwrap(), SERVER_FIRST);
    let server_final = state.finish(CLIENT_FINAL.as_bytes()).unwrap();
    assert_eq!(String::from_utf8(server_final).unwrap(), SERVER_FINAL);
}

#[test]
fn rfc7677_client_side() {
    let (client_first, state) = ScramClient::start(USER, PASSWORD, CLIENT_NONCE).unwrap();
    assert_eq!(String::from_utf8(client_first).unwrap(), CLIENT_FIRST);
    let (client_final, state) = state.handle(SERVER_FIRST.as_bytes()).unwrap();
    assert_eq!(String::from_utf8(client_final).unwrap(), CLIENT_FINAL);
    state.handle(SERVER_FINAL.as_bytes()).unwrap();
}

#[test]
fn client_and_server_agree_end_to_end() {
    let verifier = Verifier::derive("s3cret, =really", b"0123456789abcdef", 4096);
    let (client_first, client) = ScramClient::start("al,ice=", "s3cret, =really", "abc").unwrap();
    assert_eq!(client_first, b"n,,n=al=2Cice=3D,r=abc");
    let first = parse_client_first(&client_first).unwrap();
    assert_eq!(first.username(), "al,ice=");
    let (server_first, server) = first.challenge(verifier, "XYZ").unwrap();
    let (client_final, client) = client.handle(&server_first).unwrap();
    let server_final = server.finish(&client_final).unwrap();
    client.handle(&server_final).unwrap();
}

#[test]
fn verifier_debug_hides_the_keys() {
    let shown = format!("{:?}", verifier());
    assert!(shown.contains("4096") && shown.contains(SALT), "{shown}");
    assert!(shown.contains("<hidden>"), "{shown}");
    let key = BASE64.encode(verifier().stored_key);
    assert!(!shown.contains(&key), "{shown}");
    assert!(
        !shown.contains(&format!("{:?}", verifier().stored_key)),
        "{shown}"
    );
}

#[test]
fn plain_check_against_a_verifier() {
    let verifier = verifier();
    assert!(verifier.check_password(PASSWORD));
    assert!(!verifier.check_password("pencil "));
    assert!(!verifier.check_password(""));
    // A verifier of another salt or count for the same password differs.
    assert!(!Verifier::derive(PASSWORD, b"other", 4096).check_password("x"));
    let other_count = Verifier {
        iterations: 4097,
        ..verifier.clone()
    };
    assert!(!other_count.check_password(PASSWORD));
}

#[test]
fn derive_takes_zero_iterations_as_one() {
    let zero = Verifier::derive("p", b"s", 0);
    assert_eq!(zero, Verifier::derive("p", b"s", 1));
    assert_eq!(zero.iterations, 1);
}

#[test]
fn wrong_password_fails_at_finish() {
    let (client_first, client) = ScramClient::start(USER, "pencil2", CLIENT_NONCE).unwrap();
    let first = parse_client_first(&client_first).unwrap();
    let (server_first, server) = first.challenge(verifier(), SERVER_NONCE).unwrap();
    let (client_final, _) = client.handle(&server_first).unwrap();
    assert_eq!(server.finish(&client_final), Err(ScramError::InvalidProof));
    assert_eq!(
        ScramError::InvalidProof.server_error_value(),
        "invalid-proof"
    );
}

#[test]
fn a_flipped_proof_bit_fails() {
    let (_, proof) = CLIENT_FINAL.rsplit_once(",p=").unwrap();
    let mut proof: [u8; KEY_LEN] = BASE64.decode(proof).unwrap().try_into().unwrap();
    proof[31] ^= 1;
    let server = server_awaiting_final(CLIENT_FIRST);
    assert_eq!(
        server.finish(with_proof(&proof).as_bytes()),
        Err(ScramError::InvalidProof)
    );
}

#[test]
fn a_tampered_nonce_fails() {
    let tampered = CLIENT_FINAL.replace("hNlF$k0", "hNlF$k1");
    let server = server_awaiting_final(CLIENT_FIRST);
    assert_eq!(
        server.finish(tampered.as_bytes()),
        Err(ScramError::NonceMismatch)
    );
    // Only the client's part of the nonce, as a replay would send.
    let replayed = format!("c=biws,r={CLIENT_NONCE},p=AAAA");
    let server = server_awaiting_final(CLIENT_FIRST);
    assert_eq!(
        server.finish(replayed.as_bytes()),
        Err(ScramError::NonceMismatch)
    );
}

#[test]
fn client_refuses_a_server_nonce_not_extending_its_own() {
    for server_first in [
        // Another client nonce.
        "r=XOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        // Exactly the client's, nothing added.
        "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        // A prefix of it.
        "r=rOprNG,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
    ] {
        let (_, client) = ScramClient::start(USER, PASSWORD, CLIENT_NONCE).unwrap();
        assert_eq!(
            client.handle(server_first.as_bytes()).unwrap_err(),
            ScramError::ServerNonceMismatch,
            "{server_first}"
        );
    }
}

#[test]
fn client_bounds_the_iteration_count() {
    let with_count = |count: &str| {
        let (_, client) = ScramClient::start(USER, PASSWORD, CLIENT_NONCE).unwrap();
        let server_first = SERVER_FIRST.replace("i=4096", &format!("i={count}"));
        client.handle(server_first.as_bytes()).map(|_| ())
    };
    assert!(
        with_count("1").is_ok(),
        "a count below 4096 is the server's choice"
    );
    let (_, client) = ScramClient::start(USER, PASSWORD, CLIENT_NONCE).unwrap();
    let no_salt = SERVER_FIRST.replace(SALT, "");
    assert_eq!(
        client.handle(no_salt.as_bytes()).unwrap_err(),
        ScramError::EmptySalt
    );
    for too_many in [
        "1000001",
        "4294967295",
        "4294967296",
        "99999999999999999999",
    ] {
        assert_eq!(
            with_count(too_many),
            Err(ScramError::TooManyIterations {
                found: too_many.into()
            })
        );
    }
    for malformed in ["0", "04096", "-1", "+4096", "4096 ", "", "1e6", "٤"] {
        assert_eq!(
            with_count(malformed),
            Err(ScramError::InvalidIterationCount {
                found: malformed.into()
            }),
            "{malformed:?}"
        );
    }
}

#[test]
fn client_checks_the_server_signature() {
    let run = |server_final: &str| {
        let (_, client) = ScramClient::start(USER, PASSWORD, CLIENT_NONCE).unwrap();
        let (_, client) = client.handle(SERVER_FIRST.as_bytes()).unwrap();
        client.handle(server_final.as_bytes())
    };
    assert_eq!(run(SERVER_FINAL), Ok(()));
    assert_eq!(run(&format!("{SERVER_FINAL},x=ext")), Ok(()));
    let forged = format!("v={}", BASE64.encode([7u8; KEY_LEN]));
    assert_eq!(run(&forged), Err(ScramError::ServerSignatureMismatch));
    assert_eq!(
        run("e=invalid-proof"),
        Err(ScramError::ServerError("invalid-proof".into()))
    );
    assert_eq!(
        run("v=AAAA"),
        Err(ScramError::InvalidKeyLength {
            message: Message::ServerFinal,
            attribute: 'v',
            len: 3
        })
    );
    assert_eq!(
        run("v=not base64"),
        Err(ScramError::InvalidBase64 {
            message: Message::ServerFinal,
            attribute: 'v'
        })
    );
    assert_eq!(
        run(""),
        Err(ScramError::MissingAttribute {
            message: Message::ServerFinal,
            attribute: 'v'
        })
    );
}

#[test]
fn gs2_header_rules() {
    let parse = |text: &str| parse_client_first(text.as_bytes());
    assert_eq!(
        parse("p=tls-unique,,n=user,r=abc"),
        Err(ScramError::ChannelBindingNotSupported)
    );
    for bad in [
        "",
        "n",
        "n,",
        "x,,n=user,r=abc",
        "n,b=user,n=user,r=abc",
        "N,,n=user,r=abc",
    ] {
        assert_eq!(parse(bad), Err(ScramError::InvalidGs2Header), "{bad:?}");
    }
    let yes = parse("y,,n=user,r=abc").unwrap();
    assert!(yes.client_supports_channel_binding());
    // The authorization identity may only be the user itself.
    assert_eq!(parse("n,a=user,n=user,r=abc").unwrap().username(), "user");
    assert_eq!(parse("n,a=a=2Cb,n=a=2Cb,r=abc").unwrap().username(), "a,b");
    assert_eq!(
        parse("n,a=admin,n=user,r=abc"),
        Err(ScramError::AuthzidMismatch {
            authzid: "admin".into(),
            username: "user".into()
        })
    );
    assert_eq!(
        parse("n,a=,n=user,r=abc"),
        Err(ScramError::InvalidName {
            field: NameField::Authzid
        })
    );
}

#[test]
fn channel_binding_must_match_the_gs2_header() {
    // y,, is sent back as c=eSws; n,, as c=biws.
    let server = server_awaiting_final(&CLIENT_FIRST.replacen("n,,", "y,,", 1));
    assert_eq!(
        server.finish(CLIENT_FINAL.as_bytes()),
        Err(ScramError::ChannelBindingMismatch {
            expected: "eSws".into()
        })
    );
    let server = server_awaiting_final(&CLIENT_FIRST.replacen("n,,", "y,,", 1));
    let proof = CLIENT_FINAL.replacen("c=biws", "c=eSws", 1);
    // The channel binding is part of AuthMessage: the RFC's proof is for c=biws.
    assert_eq!(
        server.finish(proof.as_bytes()),
        Err(ScramError::InvalidProof)
    );
    // With an authzid, c= is the base64 of "n,a=user,".
    let server = server_awaiting_final("n,a=user,n=user,r=rOprNGfwEbeRWgbNEkqO");
    assert_eq!(
        server.finish(CLIENT_FINAL.as_bytes()),
        Err(ScramError::ChannelBindingMismatch {
            expected: BASE64.encode("n,a=user,")
        })
    );
}

#[test]
fn user_name_escapes() {
    let name = |text: &str| parse_client_first(format!("n,,n={text},r=abc").as_bytes());
    assert_eq!(name("a=3Db=2Cc").unwrap().username(), "a=b,c");
    assert_eq!(name("=3D=3D").unwrap().username(), "==");
    assert_eq!(name("é=2C").unwrap().username(), "é,");
    for bad in ["", "a=", "a=2", "a=2c", "a=3d", "a=41", "a==3D", "=", "a=3"] {
        assert_eq!(
            name(bad),
            Err(ScramError::InvalidName {
                field: NameField::Username
            }),
            "{bad:?}"
        );
    }
    assert_eq!(
        ScramClient::start("", "p", "abc").unwrap_err(),
        ScramError::InvalidName {
            field: NameField::Username
        }
    );
}

#[test]
fn client_first_structure() {
    let parse = |text: &str| parse_client_first(text.as_bytes());
    let missing = |attribute| {
        Err(ScramError::MissingAttribute {
            message: Message::ClientFirst,
            attribute,
        })
    };
    assert_eq!(
        parse("n,,m=x,n=user,r=abc"),
        Err(ScramError::MandatoryExtension {
            message: Message::ClientFirst
        })
    );
    assert_eq!(parse("n,,r=abc,n=user"), missing('n'));
    assert_eq!(parse("n,,n=user"), missing('r'));
    assert_eq!(parse("n,,n=user,s=abc"), missing('r'));
    for nonce in ["", "a b", "ab\u{7f}", "é"] {
        assert_eq!(
            parse(&format!("n,,n=user,r={nonce}")),
            Err(ScramError::InvalidNonce {
                message: Message::ClientFirst
            }),
            "{nonce:?}"
        );
    }
    // Optional extensions are ignored when well formed.
    assert!(parse("n,,n=user,r=abc,x=1,y==").is_ok());
    for bad in [
        "n,,n=user,r=abc,",
        "n,,n=user,r=abc,x=",
        "n,,n=user,r=abc,1=a",
    ] {
        assert_eq!(
            parse(bad),
            Err(ScramError::InvalidExtension {
                message: Message::ClientFirst
            }),
            "{bad:?}"
        );
    }
    assert_eq!(
        parse("n,,n=us\0er,r=abc"),
        Err(ScramError::Nul {
            message: Message::ClientFirst
        })
    );
    assert_eq!(
        parse_client_first(b"n,,n=\xff,r=abc"),
        Err(ScramError::NotUtf8 {
            message: Message::ClientFirst
        })
    );
}

#[test]
fn messages_over_1_kib_are_refused() {
    let long_nonce = "a".repeat(MAX_MESSAGE_LEN);
    let text = format!("n,,n=user,r={long_nonce}");
    assert_eq!(
        parse_client_first(text.as_bytes()),
        Err(ScramError::TooLong {
            message: Message::ClientFirst,
            len: text.len()
        })
    );
    let just = format!("n,,n=user,r={}", "a".repeat(MAX_MESSAGE_LEN - 12));
    assert_eq!(just.len(), MAX_MESSAGE_LEN);
    assert!(parse_client_first(just.as_bytes()).is_ok());
    assert_eq!(
        ScramClient::start(USER, PASSWORD, &long_nonce).unwrap_err(),
        ScramError::TooLong {
            message: Message::ClientFirst,
            len: text.len()
        }
    );
    let (_, client) = ScramClient::start(USER, PASSWORD, CLIENT_NONCE).unwrap();
    let server_first = format!("{SERVER_FIRST},x={long_nonce}");
    assert!(matches!(
        client.handle(server_first.as_bytes()),
        Err(ScramError::TooLong {
            message: Message::ServerFirst,
            ..
        })
    ));
}

#[test]
fn client_final_structure() {
    let finish = |text: &str| server_awaiting_final(CLIENT_FIRST).finish(text.as_bytes());
    let (without, proof) = CLIENT_FINAL.rsplit_once(",p=").unwrap();
    assert_eq!(
        finish(without),
        Err(ScramError::MissingAttribute {
            message: Message::ClientFinal,
            attribute: 'p'
        })
    );
    // The proof comes last.
    assert_eq!(
        finish(&format!("{CLIENT_FINAL},x=1")),
        Err(ScramError::InvalidBase64 {
            message: Message::ClientFinal,
            attribute: 'p'
        })
    );
    assert_eq!(
        finish(&format!("{without},p=AAAA")),
        Err(ScramError::InvalidKeyLength {
            message: Message::ClientFinal,
            attribute: 'p',
            len: 3
        })
    );
    // Extensions before the proof are allowed, but are part of AuthMessage.
    assert_eq!(
        finish(&format!("{without},x=1,p={proof}")),
        Err(ScramError::InvalidProof)
    );
    assert_eq!(
        finish(&CLIENT_FINAL.replacen("c=biws,", "", 1)),
        Err(ScramError::MissingAttribute {
            message: Message::ClientFinal,
            attribute: 'c'
        })
    );
    assert_eq!(
        finish(&CLIENT_FINAL.replacen("c=biws", "c=biw", 1)),
        Err(ScramError::InvalidBase64 {
            message: Message::ClientFinal,
            attribute: 'c'
        })
    );
}

#[test]
fn challenge_refuses_a_bad_server_nonce() {
    for nonce in ["", "a,b", "a b", "é"] {
        let first = parse_client_first(CLIENT_FIRST.as_bytes()).unwrap();
        assert_eq!(
            first.challenge(verifier(), nonce).unwrap_err(),
            ScramError::InvalidNonce {
                message: Message::ServerFirst
            },
            "{nonce:?}"
        );
    }
}

#[test]
fn errors_say_what_was_expected() {
    let shown = ScramError::MissingAttribute {
        message: Message::ClientFinal,
        attribute: 'p',
    }
    .to_string();
    assert_eq!(
        shown,
        "client-final-message: expected attribute \"p=\" here"
    );
    assert!(
        ScramError::ChannelBindingNotSupported
            .to_string()
            .contains("expected")
    );
    assert_eq!(
        ScramError::ChannelBindingMismatch {
            expected: "biws".into()
        }
        .server_error_value(),
        "channel-bindings-dont-match"
    );
}

/// Bytes drawn mostly from SCRAM's own alphabet, so that the parsers get
/// past their first checks.
fn scram_like() -> impl Strategy<Value = Vec<u8>> {
    let alphabet: Vec<u8> = b"nypmracsiev=,2C3D biwsAZaz09+/\0\xff".to_vec();
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..1200),
        proptest::collection::vec(proptest::sample::select(alphabet), 0..80),
    ]
}

proptest! {
    #[test]
    fn random_client_first_never_panics(bytes in scram_like()) {
        if let Ok(first) = parse_client_first(&bytes) {
            // Whatever parsed can be challenged.
            let _ = first.challenge(Verifier::derive("p", b"s", 1), "n");
        }
    }

    #[test]
    fn random_client_final_never_panics(bytes in scram_like()) {
        let first = parse_client_first(b"n,,n=u,r=a").unwrap();
        let (_, server) = first.challenge(Verifier::derive("p", b"s", 1), "b").unwrap();
        prop_assert!(server.finish(&bytes).is_err());
    }

    #[test]
    fn random_server_messages_never_panic(first in scram_like(), last in scram_like()) {
        let (_, client) = ScramClient::start("u", "p", "a").unwrap();
        if let Ok((_, client)) = client.handle(&first) {
            let _ = client.handle(&last);
        }
    }

    #[test]
    fn random_prefixed_client_final_never_panics(tail in scram_like()) {
        // Past the channel binding and nonce checks, into the proof.
        let first = parse_client_first(b"n,,n=u,r=a").unwrap();
        let (_, server) = first.challenge(Verifier::derive("p", b"s", 1), "b").unwrap();
        let mut message = b"c=biws,r=ab,".to_vec();
        message.extend_from_slice(&tail);
        prop_assert!(server.finish(&message).is_err());
    }

    #[test]
    fn any_user_name_round_trips(name in "[^\0]{1,40}", nonce in "[!-+\\--~]{1,30}") {
        let (client_first, _) = ScramClient::start(&name, "p", &nonce).unwrap();
        let first = parse_client_first(&client_first).unwrap();
        prop_assert_eq!(first.username(), name.as_str());
        prop_assert_eq!(first.client_nonce(), nonce.as_str());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_one_byte_change_of_the_client_final_fails(at in 0..CLIENT_FINAL.len(), byte in any::<u8>()) {
        let mut message = CLIENT_FINAL.as_bytes().to_vec();
        prop_assume!(message[at] != byte);
        message[at] = byte;
        let server = server_awaiting_final(CLIENT_FIRST);
        prop_assert!(server.finish(&message).is_err());
    }

    #[test]
    fn any_one_byte_change_of_the_server_messages_never_panics(
        first_at in 0..SERVER_FIRST.len(),
        final_at in 0..SERVER_FINAL.len(),
        byte in any::<u8>(),
    ) {
        let (_, client) = ScramClient::start(USER, PASSWORD, CLIENT_NONCE).unwrap();
        let mut server_first = SERVER_FIRST.as_bytes().to_vec();
        server_first[first_at] = byte;
        if let Ok((_, client)) = client.handle(&server_first) {
            let mut server_final = SERVER_FINAL.as_bytes().to_vec();
            server_final[final_at] = byte;
            let _ = client.handle(&server_final);
        }
    }
}
