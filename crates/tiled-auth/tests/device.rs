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
