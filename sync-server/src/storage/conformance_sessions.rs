//! The behaviour every backend's [`SessionStore`](super::sessions::SessionStore)
//! must show. Each check takes a fresh, empty `Arc<dyn Storage>`; a backend runs
//! them all with [`conformance_sessions_suite!`](crate::conformance_sessions_suite).

use super::access::NewUser;
use super::conformance::NOW;
use super::sessions::Session;
use super::{Storage, StorageError};
use crate::http::auth::Role;
use std::sync::Arc;
use uuid::Uuid;

const H: i64 = 3_600_000;

async fn user(storage: &Arc<dyn Storage>, tenant: Uuid, email: &str) -> Uuid {
    storage
        .create_user(
            tenant,
            NewUser {
                email: email.into(),
                name: email.into(),
                role: Role::Dispatcher,
            },
            None,
            NOW,
        )
        .await
        .unwrap()
        .user_id
}

fn session(tenant: Uuid, user: Uuid, expires_at_ms: i64) -> Session {
    Session {
        tenant_id: tenant,
        session_id: Uuid::new_v4(),
        user_id: user,
        created_at_ms: NOW,
        expires_at_ms,
    }
}

pub async fn a_password_is_found_by_email_and_replaced(storage: Arc<dyn Storage>) {
    let t = storage.create_tenant("a").await.unwrap().tenant_id;
    let u = user(&storage, t, "ann@example.com").await;
    assert_eq!(
        storage.login_user(t, "ann@example.com").await.unwrap(),
        Some((u, None))
    );
    storage
        .set_password(t, u, "$argon2id$one", NOW)
        .await
        .unwrap();
    storage
        .set_password(t, u, "$argon2id$two", NOW + 1)
        .await
        .unwrap();
    assert_eq!(
        storage.login_user(t, "ann@example.com").await.unwrap(),
        Some((u, Some("$argon2id$two".into())))
    );
    assert_eq!(
        storage.login_user(t, "bob@example.com").await.unwrap(),
        None
    );
    assert!(matches!(
        storage.set_password(t, Uuid::new_v4(), "x", NOW).await,
        Err(StorageError::UnknownUser)
    ));
}

pub async fn sessions_are_found_by_hash_in_their_tenant_only(storage: Arc<dyn Storage>) {
    let t = storage.create_tenant("a").await.unwrap().tenant_id;
    let other = storage.create_tenant("b").await.unwrap().tenant_id;
    let u = user(&storage, t, "ann@example.com").await;
    let s = session(t, u, NOW + H);
    storage.create_session([1; 32], &s, NOW).await.unwrap();
    assert_eq!(
        storage.session_by_hash(t, [1; 32]).await.unwrap(),
        Some(s.clone())
    );
    assert_eq!(storage.session_by_hash(t, [2; 32]).await.unwrap(), None);
    assert_eq!(storage.session_by_hash(other, [1; 32]).await.unwrap(), None);
    assert!(!storage.delete_session(other, [1; 32]).await.unwrap());
    // Another tenant's user cannot be given a session here.
    let stranger = user(&storage, other, "eve@example.com").await;
    assert!(matches!(
        storage
            .create_session([3; 32], &session(t, stranger, NOW + H), NOW)
            .await,
        Err(StorageError::UnknownUser)
    ));
    assert!(storage.delete_session(t, [1; 32]).await.unwrap());
    assert_eq!(storage.session_by_hash(t, [1; 32]).await.unwrap(), None);
    assert!(!storage.delete_session(t, [1; 32]).await.unwrap());
}

pub async fn a_new_password_ends_the_users_sessions_and_expired_ones_are_dropped(
    storage: Arc<dyn Storage>,
) {
    let t = storage.create_tenant("a").await.unwrap().tenant_id;
    let ann = user(&storage, t, "ann@example.com").await;
    let bob = user(&storage, t, "bob@example.com").await;
    storage
        .create_session([1; 32], &session(t, ann, NOW + H), NOW)
        .await
        .unwrap();
    storage
        .create_session([2; 32], &session(t, bob, NOW + H), NOW)
        .await
        .unwrap();
    storage
        .set_password(t, ann, "$argon2id$x", NOW)
        .await
        .unwrap();
    assert_eq!(storage.session_by_hash(t, [1; 32]).await.unwrap(), None);
    assert!(storage.session_by_hash(t, [2; 32]).await.unwrap().is_some());
    // Bob's next login clears his session that has expired by then.
    storage
        .create_session([3; 32], &session(t, bob, NOW + 3 * H), NOW + 2 * H)
        .await
        .unwrap();
    assert_eq!(storage.session_by_hash(t, [2; 32]).await.unwrap(), None);
    assert!(storage.session_by_hash(t, [3; 32]).await.unwrap().is_some());
}

#[macro_export]
macro_rules! conformance_sessions_suite {
    (optional $make:expr) => {
        $crate::conformance_sessions_suite!(@optional $make;
            a_password_is_found_by_email_and_replaced,
            sessions_are_found_by_hash_in_their_tenant_only,
            a_new_password_ends_the_users_sessions_and_expired_ones_are_dropped,
        );
    };
    (@optional $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some((storage, _guard)) = $make.await else { return };
                $crate::storage::conformance_sessions::$name(storage).await;
            }
        )*
    };
    ($make:expr) => {
        $crate::conformance_sessions_suite!(@tests $make;
            a_password_is_found_by_email_and_replaced,
            sessions_are_found_by_hash_in_their_tenant_only,
            a_new_password_ends_the_users_sessions_and_expired_ones_are_dropped,
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (storage, _guard) = $make.await;
                $crate::storage::conformance_sessions::$name(storage).await;
            }
        )*
    };
}
