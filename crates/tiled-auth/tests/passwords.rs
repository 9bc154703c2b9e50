//! Password authenticators, argon2 hashes, the users file, and the login
//! limiter.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use tiled_auth::{
    AuthError, DictionaryAuthenticator, LoginLimiter, PasswordAuthenticator,
    UsersFileAuthenticator, hash_password, verify_password,
};

#[test]
fn argon2_round_trip() {
    let h = hash_password("correct horse").unwrap();
    assert!(h.starts_with("$argon2id$v=19$"), "{h}");
    assert!(verify_password("correct horse", &h));
    assert!(!verify_password("correct horse ", &h));
    assert!(!verify_password("", &h));
    assert!(!verify_password("correct horse", "$argon2id$garbage"));
    assert_ne!(h, hash_password("correct horse").unwrap(), "random salt");
}

#[test]
fn dictionary() {
    let hashed = hash_password("s3cret").unwrap();
    let auth = DictionaryAuthenticator::new(HashMap::from([
        ("alice".to_string(), "secret1".to_string()),
        ("bob".to_string(), hashed),
        ("nobody".to_string(), String::new()),
    ]));
    assert_eq!(
        auth.authenticate("alice", "secret1").as_deref(),
        Some("alice")
    );
    assert_eq!(auth.authenticate("alice", "secret2"), None);
    assert_eq!(auth.authenticate("alice", "secret11"), None);
    assert_eq!(auth.authenticate("alice", ""), None);
    assert_eq!(auth.authenticate("bob", "s3cret").as_deref(), Some("bob"));
    assert_eq!(auth.authenticate("bob", "secret1"), None);
    assert_eq!(auth.authenticate("carol", "secret1"), None, "unknown user");
    assert_eq!(
        auth.authenticate("nobody", ""),
        None,
        "an empty password is no user"
    );
    assert!(
        !format!("{auth:?}").contains("secret1"),
        "passwords are not printed"
    );

    // Upstream's config args; YAML may give numbers.
    let auth = DictionaryAuthenticator::from_args(
        &json!({"users_to_passwords": {"alice": "a", "bob": 1234}}),
    )
    .unwrap();
    assert!(auth.authenticate("alice", "a").is_some());
    assert!(auth.authenticate("bob", "1234").is_some());
    assert!(matches!(
        DictionaryAuthenticator::from_args(&json!({"users": {}})),
        Err(AuthError::BadRequest(_))
    ));
    assert!(
        DictionaryAuthenticator::from_args(&json!({"users_to_passwords": {"a": [1]}})).is_err()
    );
}

/// Constant-time comparison must not make wrong passwords of any length or
/// prefix right (the timing itself is not measured here: `subtle` compares
/// SHA-256 digests, so lengths and common prefixes do not matter).
#[test]
fn constant_time_compare_path() {
    let auth = DictionaryAuthenticator::new(HashMap::from([(
        "alice".to_string(),
        "a-long-password-0123456789".to_string(),
    )]));
    for guess in [
        "a",
        "a-long-password-012345678",
        "a-long-password-01234567890",
        "b-long-password-0123456789",
        "a-long-password-0123456788",
    ] {
        assert_eq!(auth.authenticate("alice", guess), None, "{guess}");
    }
    assert!(
        auth.authenticate("alice", "a-long-password-0123456789")
            .is_some()
    );
}

fn write_users(path: &std::path::Path, lines: &[(&str, &str)]) {
    let mut text = String::from("# users: name:argon2 hash\n\n");
    for (name, pw) in lines {
        text.push_str(&format!("{name}:{}\n", hash_password(pw).unwrap()));
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn users_file_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.txt");
    write_users(&path, &[("alice", "pw-a")]);
    let auth = UsersFileAuthenticator::from_args(&json!({"path": path})).unwrap();
    assert_eq!(auth.path(), path);
    assert_eq!(auth.authenticate("alice", "pw-a").as_deref(), Some("alice"));
    assert_eq!(auth.authenticate("alice", "pw-b"), None);
    assert_eq!(auth.authenticate("bob", "pw-b"), None);

    // Adding a user takes effect without a restart.
    write_users(&path, &[("alice", "pw-a2"), ("bob", "pw-b")]);
    assert_eq!(auth.authenticate("bob", "pw-b").as_deref(), Some("bob"));
    assert_eq!(
        auth.authenticate("alice", "pw-a"),
        None,
        "alice's new password"
    );
    assert!(auth.authenticate("alice", "pw-a2").is_some());

    // A broken file admits nobody until fixed.
    std::fs::write(&path, "alice:plaintext-password\n").unwrap();
    assert_eq!(auth.authenticate("alice", "plaintext-password"), None);
    assert_eq!(auth.authenticate("bob", "pw-b"), None);
    write_users(&path, &[("bob", "pw-b")]);
    assert!(auth.authenticate("bob", "pw-b").is_some());
    // A vanished file too.
    std::fs::remove_file(&path).unwrap();
    assert_eq!(auth.authenticate("bob", "pw-b"), None);

    // Refused at start: missing file, clear-text or malformed lines.
    assert!(UsersFileAuthenticator::new(dir.path().join("missing")).is_err());
    std::fs::write(&path, "alice:secret\n").unwrap();
    match UsersFileAuthenticator::new(&path) {
        Err(AuthError::BadRequest(m)) => assert!(m.contains(":1:"), "{m}"),
        other => panic!("clear-text line: {other:?}"),
    }
    std::fs::write(&path, "# only a comment\nno-colon-here\n").unwrap();
    match UsersFileAuthenticator::new(&path) {
        Err(AuthError::BadRequest(m)) => assert!(m.contains(":2:"), "{m}"),
        other => panic!("malformed line: {other:?}"),
    }
    assert!(UsersFileAuthenticator::from_args(&json!({})).is_err());
}

#[test]
fn authenticators_are_trait_objects() {
    let auths: Vec<Box<dyn PasswordAuthenticator>> = vec![Box::new(DictionaryAuthenticator::new(
        HashMap::from([("a".to_string(), "b".to_string())]),
    ))];
    assert!(auths[0].authenticate("a", "b").is_some());
}

#[test]
fn login_limiter() {
    let limiter = LoginLimiter::new(3, Duration::from_millis(400));
    for _ in 0..3 {
        limiter.check("alice", "10.0.0.1").unwrap();
        limiter.record_failure("alice", "10.0.0.1");
    }
    match limiter.check("alice", "10.0.0.1") {
        Err(e @ AuthError::TooManyAttempts { .. }) => {
            assert_eq!(e.status(), 403);
            assert!(e.to_string().contains("Try again in 1 seconds"), "{e}");
        }
        other => panic!("over the limit: {other:?}"),
    }
    // Per username and address.
    limiter.check("alice", "10.0.0.2").unwrap();
    limiter.check("bob", "10.0.0.1").unwrap();
    assert_eq!(limiter.tracked(), 1);
    // The window passes.
    std::thread::sleep(Duration::from_millis(450));
    limiter.check("alice", "10.0.0.1").unwrap();
    assert_eq!(limiter.tracked(), 0);
    // A success clears the count.
    limiter.record_failure("bob", "10.0.0.1");
    limiter.record_failure("bob", "10.0.0.1");
    limiter.record_success("bob", "10.0.0.1");
    limiter.record_failure("bob", "10.0.0.1");
    limiter.record_failure("bob", "10.0.0.1");
    limiter.check("bob", "10.0.0.1").unwrap();
    limiter.record_failure("bob", "10.0.0.1");
    assert!(limiter.check("bob", "10.0.0.1").is_err());

    let default = LoginLimiter::default();
    for _ in 0..9 {
        default.record_failure("u", "ip");
    }
    default.check("u", "ip").unwrap();
    default.record_failure("u", "ip");
    assert!(
        default.check("u", "ip").is_err(),
        "10 failures per 5 minutes"
    );
}
