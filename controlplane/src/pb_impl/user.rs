//! `User` ↔ `pb::User` (with hash, for the Watch stream) and `pb::UserInfo`
//! (without, for the admin API).

use proto::admin::UserInfo;
use proto::controlplane as pb;

use crate::state::User;

impl From<&User> for pb::User {
    fn from(user: &User) -> Self {
        pb::User {
            username: user.username.clone(),
            password_hash: user.password_hash.clone(),
            superuser: user.superuser,
            scram_sha256: user.scram.clone().unwrap_or_default(),
        }
    }
}

impl From<&User> for UserInfo {
    fn from(user: &User) -> Self {
        UserInfo { username: user.username.clone(), superuser: user.superuser }
    }
}
