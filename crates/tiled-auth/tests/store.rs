//! The whole `AuthStore` API, run on a temporary SQLite file and, when
//! `TILED_TEST_POSTGRES_URI` is set (scripts/pg start prints one), on
//! PostgreSQL in a schema of its own.

use std::time::Duration;

use serde_json::{Value, json};
use tiled_auth::{
    ADMIN_SCOPES, AuthError, AuthStore, CatalogUri, PrincipalType, USER_SCOPES, Uuid, parse_uuid,
};
use tiled_catalog::Catalog;

fn sorted(scopes: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    v.sort();
    v.dedup();
    v
}

fn keys_of(v: &Value) -> Vec<&str> {
    v.as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect()
}

/// A fresh PostgreSQL schema named after the process and time.
fn isolated_postgres(uri: &str) -> CatalogUri {
    let schema = format!(
        "auth_test_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let pool = Catalog::connect(&CatalogUri::Postgres(uri.to_string())).expect("connect");
    pool.get()
        .expect("connection")
        .batch(&format!("CREATE SCHEMA {schema}"))
        .expect("create schema");
    let sep = if uri.contains('?') { '&' } else { '?' };
    CatalogUri::Postgres(format!("{uri}{sep}options=-csearch_path%3D{schema}"))
}

fn exercise(store: &AuthStore, uri: Option<&CatalogUri>) {
    // ---------------------------------------------------------- schema
    assert_eq!(store.schema_version().unwrap(), tiled_auth::schema::LATEST);
    if let Some(uri) = uri {
        // Reopening, with or without init, finds the schema in place.
        AuthStore::open(uri, false).expect("open without init");
        AuthStore::open(uri, true).expect("open with init again");
    }

    // ---------------------------------------------------------- principals
    let alice = store.principal_for_identity("toy", "alice", false).unwrap();
    assert_eq!(alice.principal_type, PrincipalType::User);
    assert_eq!(alice.identities.len(), 1);
    assert_eq!(alice.identities[0].provider, "toy");
    assert_eq!(alice.identities[0].id, "alice");
    let first_login = alice.identities[0].latest_login.expect("login recorded");
    assert_eq!(
        alice
            .roles
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        ["user"]
    );
    assert_eq!(alice.scopes(), sorted(USER_SCOPES));
    std::thread::sleep(Duration::from_millis(5));
    let again = store.principal_for_identity("toy", "alice", false).unwrap();
    assert_eq!(again.uuid, alice.uuid, "same identity, same principal");
    assert!(again.identities[0].latest_login.unwrap() > first_login);
    // The same id at another provider is another principal.
    let other = store
        .principal_for_identity("orcid", "alice", false)
        .unwrap();
    assert_ne!(other.uuid, alice.uuid);

    let admin = store.principal_for_identity("toy", "root", true).unwrap();
    assert_eq!(
        admin
            .roles
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        ["user", "admin"]
    );
    assert_eq!(admin.scopes(), sorted(ADMIN_SCOPES));
    assert!(admin.has_scope("read:principals"));
    // Promotion of an existing user, never demotion.
    let bob = store.principal_for_identity("toy", "bob", false).unwrap();
    assert!(!bob.has_scope("metrics"));
    let bob2 = store.principal_for_identity("toy", "bob", true).unwrap();
    assert_eq!(bob2.uuid, bob.uuid);
    assert!(bob2.has_scope("metrics"));
    let bob3 = store.principal_for_identity("toy", "bob", false).unwrap();
    assert!(bob3.has_scope("metrics"));

    let service = store.create_service_principal("user").unwrap();
    assert_eq!(service.principal_type, PrincipalType::Service);
    assert!(service.identities.is_empty());
    assert_eq!(service.scopes(), sorted(USER_SCOPES));
    match store.create_service_principal("wizard") {
        Err(AuthError::BadRequest(m)) => assert!(m.contains("wizard"), "{m}"),
        other => panic!("unknown role: {other:?}"),
    }

    assert_eq!(
        store.principal(alice.uuid).unwrap().unwrap().uuid,
        alice.uuid
    );
    assert!(store.principal(Uuid::new_v4()).unwrap().is_none());
    assert_eq!(store.scopes_of(admin.uuid).unwrap(), sorted(ADMIN_SCOPES));
    assert!(store.scopes_of(Uuid::new_v4()).unwrap().is_empty());

    // alice, other, root, bob, service.
    assert_eq!(store.count_principals().unwrap(), 5);
    let all = store.list_principals(0, 100).unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(all[0].uuid, alice.uuid, "oldest first");
    let page = store.list_principals(1, 2).unwrap();
    assert_eq!(
        page.iter().map(|p| p.uuid).collect::<Vec<_>>(),
        all[1..3].iter().map(|p| p.uuid).collect::<Vec<_>>()
    );
    assert!(store.list_principals(10, 10).unwrap().is_empty());

    // Concurrent first logins of one identity make one principal.
    let uuids: Vec<Uuid> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    store
                        .principal_for_identity("toy", "carol", false)
                        .unwrap()
                        .uuid
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(uuids.windows(2).all(|w| w[0] == w[1]), "{uuids:?}");
    assert_eq!(store.count_principals().unwrap(), 6);

    // ---------------------------------------------------------- sessions
    let s = store
        .create_session(alice.uuid, Duration::from_secs(60))
        .unwrap();
    assert_eq!(s.principal, alice.uuid);
    assert!(!s.revoked);
    assert_eq!(s.refresh_count, 0);
    assert_eq!(s.state, json!({}));
    let span = s.expiration_time - s.time_created;
    assert!((span.num_seconds() - 60).abs() <= 1, "{span:?}");
    let r = store
        .refresh_session(s.uuid, Duration::from_secs(3600), None)
        .unwrap();
    assert_eq!(r.refresh_count, 1);
    assert!(r.expiration_time > s.expiration_time, "sliding expiry");
    assert!(r.time_last_refreshed.is_some());
    let r2 = store
        .refresh_session(s.uuid, Duration::from_secs(3600), None)
        .unwrap();
    assert_eq!(r2.refresh_count, 2);
    // Absolute limit: capped, then refused.
    let capped = store
        .refresh_session(
            s.uuid,
            Duration::from_secs(3600),
            Some(Duration::from_secs(30)),
        )
        .unwrap();
    assert!((capped.expiration_time - capped.time_created).num_seconds() <= 30);
    match store.refresh_session(s.uuid, Duration::from_secs(3600), Some(Duration::ZERO)) {
        Err(AuthError::Unauthenticated(m)) => {
            assert_eq!(m, "Session has expired. Please re-authenticate.")
        }
        other => panic!("past session_max_age: {other:?}"),
    }
    // Revoked: no more refreshes; revoking again is fine; unknown is 409.
    store.revoke_session(s.uuid).unwrap();
    assert!(store.session(s.uuid).unwrap().unwrap().revoked);
    assert!(matches!(
        store.refresh_session(s.uuid, Duration::from_secs(60), None),
        Err(AuthError::Unauthenticated(_))
    ));
    store.revoke_session(s.uuid).unwrap();
    let unknown = Uuid::new_v4();
    match store.revoke_session(unknown) {
        Err(e @ AuthError::Conflict(_)) => {
            assert_eq!(e.status(), 409);
            assert_eq!(e.to_string(), format!("No session {}", unknown.simple()));
        }
        other => panic!("unknown session: {other:?}"),
    }
    assert!(matches!(
        store.refresh_session(unknown, Duration::from_secs(60), None),
        Err(AuthError::Unauthenticated(_))
    ));
    // Expired: cannot be refreshed or revoked.
    let short = store.create_session(alice.uuid, Duration::ZERO).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    assert!(matches!(
        store.refresh_session(short.uuid, Duration::from_secs(60), None),
        Err(AuthError::Unauthenticated(_))
    ));
    assert!(matches!(
        store.revoke_session(short.uuid),
        Err(AuthError::Conflict(_))
    ));
    // State is kept (and copied into tokens by the issuer).
    let stateful = store
        .create_session_with_state(
            alice.uuid,
            Duration::from_secs(60),
            json!({"groups": ["a"]}),
        )
        .unwrap();
    assert_eq!(
        store.session(stateful.uuid).unwrap().unwrap().state,
        json!({"groups": ["a"]})
    );
    // A new login cleared the principal's revoked and expired sessions.
    assert!(store.session(s.uuid).unwrap().is_none());
    assert!(store.session(short.uuid).unwrap().is_none());
    assert!(matches!(
        store.create_session_with_state(alice.uuid, Duration::from_secs(60), json!([1])),
        Err(AuthError::BadRequest(_))
    ));
    assert!(matches!(
        store.create_session(Uuid::new_v4(), Duration::from_secs(60)),
        Err(AuthError::NotFound(_))
    ));
    assert!(store.session(Uuid::new_v4()).unwrap().is_none());

    // ---------------------------------------------------------- API keys
    let (info, secret) = store
        .create_api_key(alice.uuid, None, None, None, Some("inherit".into()))
        .unwrap();
    assert_eq!(secret.len(), 72);
    assert!(
        secret
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_eq!(info.first_eight, secret[..8]);
    assert_eq!(info.scopes, ["inherit"]);
    assert!(info.expiration_time.is_none());
    assert_eq!(info.note.as_deref(), Some("inherit"));
    let v = info.to_json_with_secret(&secret);
    assert_eq!(
        keys_of(&v),
        [
            "first_eight",
            "expiration_time",
            "note",
            "scopes",
            "access_tags",
            "latest_activity",
            "secret"
        ]
    );
    let (who, used, scopes) = store.authenticate_api_key(&secret).unwrap();
    assert_eq!(who.uuid, alice.uuid);
    assert_eq!(used.first_eight, info.first_eight);
    assert!(used.latest_activity.is_some());
    assert_eq!(scopes, sorted(USER_SCOPES));
    // Hex is case-insensitive (it is decoded to bytes).
    assert!(
        store
            .authenticate_api_key(&secret.to_ascii_uppercase())
            .is_ok()
    );
    assert!(
        store.api_keys(alice.uuid).unwrap()[0]
            .latest_activity
            .is_some()
    );

    // Same first eight, different secret: found by prefix, refused by the
    // constant-time hash comparison.
    let mut forged = secret.clone();
    let last = if forged.ends_with('0') { "1" } else { "0" };
    forged.replace_range(71..72, last);
    for bad in [forged.as_str(), "not hex at all", "", "abc", &secret[..70]] {
        match store.authenticate_api_key(bad) {
            Err(e @ AuthError::Unauthenticated(_)) => {
                assert_eq!(e.to_string(), "Invalid API key");
                assert_eq!(e.status(), 401);
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }

    let (scoped, scoped_secret) = store
        .create_api_key(
            alice.uuid,
            Some(vec!["read:metadata".into(), "read:data".into()]),
            Some(vec!["public".into(), "beamline".into()]),
            Some(3600.0),
            None,
        )
        .unwrap();
    assert_eq!(scoped.scopes, ["read:metadata", "read:data"]);
    assert_eq!(
        scoped.access_tags.as_deref(),
        Some(&["public".to_string(), "beamline".into()][..])
    );
    let exp = scoped.expiration_time.expect("expires");
    assert!(((exp - scoped.time_created).num_seconds() - 3600).abs() <= 1);
    let (_, k, scopes) = store.authenticate_api_key(&scoped_secret).unwrap();
    assert_eq!(scopes, ["read:data", "read:metadata"]);
    assert_eq!(k.access_tags, scoped.access_tags);

    // Beyond the principal's scopes: 403, and nothing stored.
    let before = store.api_keys(alice.uuid).unwrap().len();
    match store.create_api_key(
        alice.uuid,
        Some(vec!["read:principals".into()]),
        None,
        None,
        None,
    ) {
        Err(e @ AuthError::Forbidden(_)) => assert_eq!(e.status(), 403),
        other => panic!("scopes beyond principal: {other:?}"),
    }
    assert_eq!(store.api_keys(alice.uuid).unwrap().len(), before);
    // An admin may.
    let (_, admin_secret) = store
        .create_api_key(
            admin.uuid,
            Some(vec!["read:principals".into()]),
            None,
            None,
            None,
        )
        .unwrap();
    assert_eq!(
        store.authenticate_api_key(&admin_secret).unwrap().2,
        ["read:principals"]
    );
    // "inherit" may be spelled out.
    let (explicit, _) = store
        .create_api_key(alice.uuid, Some(vec!["inherit".into()]), None, None, None)
        .unwrap();
    assert!(explicit.inherits());

    // Expired keys are refused and deleted.
    let (expired, expired_secret) = store
        .create_api_key(alice.uuid, None, None, Some(0.0), None)
        .unwrap();
    std::thread::sleep(Duration::from_millis(5));
    assert!(matches!(
        store.authenticate_api_key(&expired_secret),
        Err(AuthError::Unauthenticated(_))
    ));
    assert!(
        store
            .api_keys(alice.uuid)
            .unwrap()
            .iter()
            .all(|k| k.first_eight != expired.first_eight)
    );
    for bad in [-1.0, f64::NAN, f64::INFINITY, 1e300] {
        assert!(
            matches!(
                store.create_api_key(alice.uuid, None, None, Some(bad), None),
                Err(AuthError::BadRequest(_))
            ),
            "expires_in {bad}"
        );
    }
    assert!(matches!(
        store.create_api_key(Uuid::new_v4(), None, None, None, None),
        Err(AuthError::NotFound(_))
    ));

    // Revoking: only the owner's, by first eight.
    assert!(matches!(
        store.revoke_api_key(bob.uuid, &info.first_eight),
        Err(AuthError::NotFound(_))
    ));
    store.revoke_api_key(alice.uuid, &secret).unwrap(); // longer input: first 8 count
    assert!(matches!(
        store.revoke_api_key(alice.uuid, &info.first_eight),
        Err(e @ AuthError::NotFound(_)) if e.status() == 404
    ));
    assert!(matches!(
        store.authenticate_api_key(&secret),
        Err(AuthError::Unauthenticated(_))
    ));
    assert!(store.authenticate_api_key(&scoped_secret).is_ok());

    // A service's keys; the per-principal limit.
    for i in 0..tiled_auth::store::API_KEY_LIMIT {
        store
            .create_api_key(service.uuid, None, None, None, Some(format!("k{i}")))
            .unwrap();
    }
    assert!(matches!(
        store.create_api_key(service.uuid, None, None, None, None),
        Err(AuthError::BadRequest(_))
    ));
    assert_eq!(
        store.api_keys(service.uuid).unwrap().len() as i64,
        tiled_auth::store::API_KEY_LIMIT
    );

    // ---------------------------------------------------------- whoami
    // (Made last: each new session clears the principal's dead ones.)
    let revoked = store
        .create_session(alice.uuid, Duration::from_secs(60))
        .unwrap();
    store.revoke_session(revoked.uuid).unwrap();
    let me = store.whoami(alice.uuid).unwrap();
    assert_eq!(
        keys_of(&me),
        [
            "uuid",
            "type",
            "identities",
            "roles",
            "api_keys",
            "sessions",
            "latest_activity"
        ]
    );
    let uuid_text = me["uuid"].as_str().unwrap();
    assert_eq!(uuid_text, alice.uuid.hyphenated().to_string());
    assert_eq!(parse_uuid(uuid_text).unwrap(), alice.uuid);
    assert_eq!(
        parse_uuid(&alice.uuid.simple().to_string()).unwrap(),
        alice.uuid
    );
    assert_eq!(me["type"], "user");
    let ids = me["identities"].as_array().unwrap();
    assert_eq!(ids.len(), 1);
    assert_eq!(keys_of(&ids[0]), ["id", "provider", "latest_login"]);
    assert_eq!(ids[0]["id"], "alice");
    assert_eq!(ids[0]["provider"], "toy");
    assert!(ids[0]["latest_login"].as_str().unwrap().ends_with("+00:00"));
    assert_eq!(
        me["roles"],
        json!([{"name": "user", "scopes": USER_SCOPES}])
    );
    let keys = me["api_keys"].as_array().unwrap();
    assert_eq!(keys.len(), store.api_keys(alice.uuid).unwrap().len());
    for k in keys {
        assert_eq!(
            keys_of(k),
            [
                "first_eight",
                "expiration_time",
                "note",
                "scopes",
                "access_tags",
                "latest_activity"
            ]
        );
    }
    assert!(
        keys.iter()
            .any(|k| k["scopes"] == json!(["read:metadata", "read:data"])
                && k["access_tags"] == json!(["public", "beamline"]))
    );
    let sessions = me["sessions"].as_array().unwrap();
    assert!(!sessions.is_empty());
    for s in sessions {
        assert_eq!(keys_of(s), ["uuid", "expiration_time", "revoked", "state"]);
        assert_eq!(s["uuid"].as_str().unwrap().len(), 36);
    }
    assert!(sessions.iter().any(|s| s["revoked"] == true));
    assert!(
        sessions
            .iter()
            .any(|s| s["state"] == json!({"groups": ["a"]}))
    );
    let latest = me["latest_activity"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(latest).is_ok(),
        "{latest}"
    );
    let svc = store.whoami(service.uuid).unwrap();
    assert_eq!(svc["type"], "service");
    assert_eq!(svc["identities"], json!([]));
    assert!(matches!(
        store.whoami(Uuid::new_v4()),
        Err(AuthError::NotFound(_))
    ));

    // ---------------------------------------------------------- purge
    let gone = store.purge_expired().unwrap();
    assert!(gone >= 1, "the revoked session: {gone}");
    assert!(store.session(revoked.uuid).unwrap().is_none());
    assert!(store.session(stateful.uuid).unwrap().is_some());
}

#[test]
fn store_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let uri = CatalogUri::parse(&format!(
        "sqlite:///{}",
        dir.path().join("auth.db").display()
    ))
    .unwrap();
    // Not initialized: refused without init.
    match AuthStore::open(&uri, false) {
        Err(AuthError::Database(m)) => assert!(m.contains("version 0"), "{m}"),
        other => panic!("uninitialized: {other:?}"),
    }
    let store = AuthStore::open(&uri, true).unwrap();
    exercise(&store, Some(&uri));
}

#[test]
fn temporary_store() {
    let store = AuthStore::temporary().unwrap();
    exercise(&store, None);
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let uri = CatalogUri::Sqlite(dir.path().join("auth.db"));
    AuthStore::open(&uri, true).unwrap();
    let pool = Catalog::connect(&uri).unwrap();
    pool.get()
        .unwrap()
        .batch("INSERT INTO auth_schema_version (version, time_applied) VALUES (99, 'x')")
        .unwrap();
    for init in [false, true] {
        match AuthStore::open(&uri, init) {
            Err(AuthError::Database(m)) => assert!(m.contains("newer"), "{m}"),
            other => panic!("newer schema, init={init}: {other:?}"),
        }
    }
}

#[test]
fn shares_a_database_with_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let uri = CatalogUri::Sqlite(dir.path().join("both.db"));
    let _catalog = Catalog::open(&uri, true).unwrap();
    let store = AuthStore::open(&uri, true).unwrap();
    let p = store.principal_for_identity("toy", "alice", false).unwrap();
    assert!(store.principal(p.uuid).unwrap().is_some());
    drop(store);
    Catalog::open(&uri, false).expect("catalog still opens");
}

#[test]
fn store_on_postgres() {
    let Ok(base) = std::env::var("TILED_TEST_POSTGRES_URI") else {
        eprintln!("TILED_TEST_POSTGRES_URI unset: PostgreSQL part skipped");
        return;
    };
    if base.is_empty() {
        eprintln!("TILED_TEST_POSTGRES_URI empty: PostgreSQL part skipped");
        return;
    }
    let uri = isolated_postgres(&base);
    match AuthStore::open(&uri, false) {
        Err(AuthError::Database(_)) => {}
        other => panic!("uninitialized: {other:?}"),
    }
    // Several processes initializing at once migrate once.
    let applied: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    let pool = Catalog::connect(&uri).unwrap();
                    tiled_auth::schema::upgrade(&pool).unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        applied.iter().filter(|a| !a.is_empty()).count(),
        1,
        "{applied:?}"
    );
    let store = AuthStore::open(&uri, true).unwrap();
    assert_eq!(store.dialect(), tiled_catalog::db::Dialect::Postgres);
    exercise(&store, Some(&uri));
}
