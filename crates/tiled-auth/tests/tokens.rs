//! Token issue and verification: claims, the token response, expiry, key
//! rotation, and confusing access with refresh tokens.

use std::time::Duration;

use serde_json::json;
use tiled_auth::tokens::{ACCESS_EXPIRED, INVALID_CREDENTIALS, SESSION_EXPIRED};
use tiled_auth::{AuthError, AuthStore, Identity, TokenIssuer};

fn issuer(keys: &[&str]) -> TokenIssuer {
    TokenIssuer::new(keys.iter().map(|k| k.to_string()).collect()).unwrap()
}

fn unauthenticated<T: std::fmt::Debug>(r: Result<T, AuthError>) -> String {
    match r {
        Err(e @ AuthError::Unauthenticated(_)) => {
            assert_eq!(e.status(), 401);
            e.to_string()
        }
        other => panic!("expected 401, got {other:?}"),
    }
}

#[test]
fn issue_and_verify() {
    let store = AuthStore::temporary().unwrap();
    let p = store.principal_for_identity("toy", "alice", false).unwrap();
    let session = store
        .create_session_with_state(p.uuid, Duration::from_secs(60), json!({"k": 1}))
        .unwrap();
    let tokens = issuer(&["secret-one"]);
    let body = tokens
        .issue(&p, &Identity::new("toy", "alice"), &session)
        .unwrap();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "access_token",
            "expires_in",
            "refresh_token",
            "refresh_token_expires_in",
            "token_type",
            "identity",
            "principal"
        ]
    );
    assert_eq!(body["expires_in"], json!(900.0));
    assert_eq!(body["refresh_token_expires_in"], json!(604800.0));
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["identity"], json!({"id": "alice", "provider": "toy"}));
    assert_eq!(body["principal"], p.uuid.simple().to_string());

    let access = body["access_token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(access).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::HS256);
    let claims = tokens.verify_access(access).unwrap();
    assert_eq!(claims.sub, p.uuid.simple().to_string());
    assert_eq!(claims.principal().unwrap(), p.uuid);
    assert_eq!(claims.sub_typ, "user");
    assert_eq!(claims.scp, p.scopes());
    assert_eq!(claims.state, json!({"k": 1}));
    assert_eq!(claims.ids.len(), 1);
    assert_eq!(
        (claims.ids[0].id.as_str(), claims.ids[0].idp.as_str()),
        ("alice", "toy")
    );
    assert_eq!(claims.token_type, "access");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        claims.exp >= now + 899 && claims.exp <= now + 900,
        "{}",
        claims.exp
    );

    let refresh = body["refresh_token"].as_str().unwrap();
    let rc = tokens.verify_refresh(refresh).unwrap();
    assert_eq!(rc.sid, session.uuid.simple().to_string());
    assert_eq!(rc.session().unwrap(), session.uuid);
    assert_eq!(rc.token_type, "refresh");

    // One kind is not the other.
    assert_eq!(
        unauthenticated(tokens.verify_access(refresh)),
        INVALID_CREDENTIALS
    );
    assert_eq!(
        unauthenticated(tokens.verify_refresh(access)),
        INVALID_CREDENTIALS
    );
    for junk in ["", "abc", "a.b.c", &access[..access.len() - 2]] {
        assert_eq!(
            unauthenticated(tokens.verify_access(junk)),
            INVALID_CREDENTIALS
        );
    }

    // The refresh flow: verify, slide the session, new tokens (no identity).
    let slid = store
        .refresh_session(
            rc.session().unwrap(),
            tokens.refresh_max_age,
            tokens.session_max_age,
        )
        .unwrap();
    let again = tokens.refreshed(&p, &slid).unwrap();
    assert!(again.get("identity").is_none() && again.get("principal").is_none());
    assert!(
        tokens
            .verify_access(again["access_token"].as_str().unwrap())
            .is_ok()
    );
    // Revoked sessions do not refresh, though their token still verifies.
    store.revoke_session(slid.uuid).unwrap();
    let sid = tokens
        .verify_refresh(again["refresh_token"].as_str().unwrap())
        .unwrap()
        .session()
        .unwrap();
    unauthenticated(store.refresh_session(sid, tokens.refresh_max_age, None));
}

#[test]
fn key_rotation() {
    let store = AuthStore::temporary().unwrap();
    let p = store.principal_for_identity("toy", "alice", false).unwrap();
    let s = store
        .create_session(p.uuid, Duration::from_secs(60))
        .unwrap();
    let old = issuer(&["old-key"]);
    let rotated = issuer(&["new-key", "old-key"]);
    let retired = issuer(&["new-key"]);

    let by_old = old.access_token(&p, &s).unwrap();
    let by_new = rotated.access_token(&p, &s).unwrap();
    assert!(
        rotated.verify_access(&by_old).is_ok(),
        "old tokens still verify"
    );
    assert!(rotated.verify_access(&by_new).is_ok());
    assert!(
        retired.verify_access(&by_new).is_ok(),
        "the first key signs"
    );
    assert_eq!(
        unauthenticated(retired.verify_access(&by_old)),
        INVALID_CREDENTIALS
    );
    assert_eq!(
        unauthenticated(old.verify_access(&by_new)),
        INVALID_CREDENTIALS
    );
    let refresh = old.refresh_token(&s).unwrap();
    assert!(rotated.verify_refresh(&refresh).is_ok());
    assert_eq!(
        unauthenticated(retired.verify_refresh(&refresh)),
        INVALID_CREDENTIALS
    );

    assert!(TokenIssuer::new(vec![]).is_err());
    assert!(TokenIssuer::new(vec![String::new()]).is_err());
    let random = TokenIssuer::random_key();
    assert_eq!(random.len(), 64);
    assert!(
        !format!("{rotated:?}").contains("old-key"),
        "keys are not printed"
    );
}

#[test]
fn expiry() {
    let store = AuthStore::temporary().unwrap();
    let p = store.principal_for_identity("toy", "alice", false).unwrap();
    let s = store
        .create_session(p.uuid, Duration::from_secs(60))
        .unwrap();
    let mut tokens = issuer(&["k"]);
    tokens.access_max_age = Duration::ZERO;
    tokens.refresh_max_age = Duration::ZERO;
    let body = tokens
        .issue(&p, &Identity::new("toy", "alice"), &s)
        .unwrap();
    assert_eq!(body["expires_in"], json!(0.0));
    // `exp` is whole seconds and checked without leeway: past it after a
    // second.
    std::thread::sleep(Duration::from_millis(1100));
    let access = body["access_token"].as_str().unwrap();
    let refresh = body["refresh_token"].as_str().unwrap();
    assert_eq!(
        unauthenticated(tokens.verify_access(access)),
        ACCESS_EXPIRED
    );
    assert_eq!(
        unauthenticated(tokens.verify_refresh(refresh)),
        SESSION_EXPIRED
    );
    // Expired and not ours: just invalid.
    assert_eq!(
        unauthenticated(issuer(&["other"]).verify_access(access)),
        INVALID_CREDENTIALS
    );
    // A rotated issuer still says "expired" for its old key's tokens.
    assert_eq!(
        unauthenticated(issuer(&["new", "k"]).verify_access(access)),
        ACCESS_EXPIRED
    );
}

#[test]
fn service_tokens() {
    let store = AuthStore::temporary().unwrap();
    let svc = store.create_service_principal("admin").unwrap();
    let s = store
        .create_session(svc.uuid, Duration::from_secs(60))
        .unwrap();
    let tokens = issuer(&["k"]);
    let c = tokens
        .verify_access(&tokens.access_token(&svc, &s).unwrap())
        .unwrap();
    assert_eq!(c.sub_typ, "service");
    assert!(c.ids.is_empty());
    assert!(c.scp.contains(&"admin:apikeys".to_string()));
}
