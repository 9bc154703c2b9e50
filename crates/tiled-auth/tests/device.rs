//! The device-code flow's pending authorizations.

use std::time::Duration;

use tiled_auth::{AuthError, DeviceFlow, DevicePoll, Identity};

#[test]
fn start_approve_poll() {
    let flow = DeviceFlow::default();
    let a = flow.start("orcid").unwrap();
    assert_eq!(a.device_code.len(), 64);
    assert!(a.device_code.bytes().all(|b| b.is_ascii_hexdigit()));
    let uc = a.user_code.as_bytes();
    assert_eq!(uc.len(), 9);
    assert_eq!(uc[4], b'-');
    assert!(
        uc.iter()
            .enumerate()
            .all(|(i, b)| i == 4 || b.is_ascii_digit() || (b'A'..=b'F').contains(b))
    );
    assert_eq!((a.expires_in, a.interval), (900, 5));
    assert_eq!(flow.provider_of(&a.user_code).as_deref(), Some("orcid"));

    assert_eq!(flow.poll(&a.device_code), DevicePoll::Pending);
    // What users type is normalized: case, dash, spaces.
    let typed = format!(" {} ", a.user_code.replace('-', "").to_ascii_lowercase());
    let who = flow.approve(&typed, "0000-0002-1825-0097").unwrap();
    assert_eq!(who, Identity::new("orcid", "0000-0002-1825-0097"));
    match flow.approve(&a.user_code, "someone-else") {
        Err(e @ AuthError::NotFound(_)) => assert_eq!(e.status(), 404),
        other => panic!("approved twice: {other:?}"),
    }
    assert_eq!(
        flow.poll(&a.device_code.to_ascii_uppercase()),
        DevicePoll::Approved(who)
    );
    assert_eq!(flow.poll(&a.device_code), DevicePoll::Unknown, "used once");
    assert_eq!(flow.pending(), 0);

    assert_eq!(flow.poll("not hex"), DevicePoll::Unknown);
    assert_eq!(flow.poll(&"ab".repeat(32)), DevicePoll::Unknown);
    assert!(matches!(
        flow.approve("ABCD-1234", "x"),
        Err(AuthError::NotFound(_))
    ));

    // Codes are distinct.
    let b = flow.start("orcid").unwrap();
    let c = flow.start("other").unwrap();
    assert_ne!(b.device_code, c.device_code);
    assert_ne!(b.user_code, c.user_code);
    assert_eq!(flow.provider_of(&c.user_code).as_deref(), Some("other"));
    assert_eq!(flow.pending(), 2);
}

#[test]
fn expiry() {
    let flow = DeviceFlow::new(Duration::from_millis(100));
    let a = flow.start("p").unwrap();
    let b = flow.start("p").unwrap();
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(flow.poll(&a.device_code), DevicePoll::Expired);
    assert_eq!(flow.poll(&a.device_code), DevicePoll::Unknown);
    assert!(matches!(
        flow.approve(&b.user_code, "x"),
        Err(AuthError::NotFound(_))
    ));
    assert!(flow.provider_of(&b.user_code).is_none());
    // Starting purges what expired.
    flow.start("p").unwrap();
    assert_eq!(flow.pending(), 1);
    assert_eq!(flow.poll(&b.device_code), DevicePoll::Unknown);
}

/// Two replicas (two flows on one authentication database): a login
/// started on one is approved on another and polled on a third, and the
/// approval is handed out once.
#[test]
fn replicas_share_pending_logins_through_the_store() {
    use std::sync::Arc;
    use tiled_auth::AuthStore;

    let dir = tempfile::tempdir().unwrap();
    let uri = tiled_auth::CatalogUri::parse(&format!(
        "sqlite:///{}",
        dir.path().join("auth.db").display()
    ))
    .unwrap();
    let replica = || {
        DeviceFlow::in_store(
            Arc::new(AuthStore::open(&uri, true).unwrap()),
            Duration::from_secs(900),
        )
    };
    let (a, b, c) = (replica(), replica(), replica());
    let started = a.start("orcid").unwrap();
    assert_eq!(b.provider_of(&started.user_code).as_deref(), Some("orcid"));
    assert_eq!(c.poll(&started.device_code), DevicePoll::Pending);
    let who = b
        .approve(&started.user_code.to_ascii_lowercase(), "0000-0001")
        .unwrap();
    assert_eq!(who, Identity::new("orcid", "0000-0001"));
    assert!(matches!(
        a.approve(&started.user_code, "someone-else"),
        Err(AuthError::NotFound(_))
    ));
    assert_eq!(c.poll(&started.device_code), DevicePoll::Approved(who));
    assert_eq!(
        a.poll(&started.device_code),
        DevicePoll::Unknown,
        "used once"
    );
    assert_eq!(a.pending(), 0);
    // Expiry, through the store.
    let short = DeviceFlow::in_store(
        Arc::new(AuthStore::open(&uri, true).unwrap()),
        Duration::from_millis(100),
    );
    let s = short.start("p").unwrap();
    std::thread::sleep(Duration::from_millis(150));
    assert!(short.provider_of(&s.user_code).is_none());
    assert!(short.approve(&s.user_code, "x").is_err());
    assert_eq!(short.poll(&s.device_code), DevicePoll::Expired);
    assert_eq!(short.poll(&s.device_code), DevicePoll::Unknown);
}
