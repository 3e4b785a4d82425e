//! Who a caller is and the access rule: an admin may do anything; the owner of a
//! personal bucket may do anything with it; a team bucket is read by the team's viewers,
//! written by its members and managed by its admins and owner. A bucket the caller cannot see
//! is 404; one they see but may not act on that way is 403.

use std::collections::HashMap;

use crate::context::Core;
use crate::error::{Error, Result};
use crate::model::{now, BucketRecord, Team, TeamRole, User};
use crate::secrets::hash_token;

/// The authenticated user of a request, with the teams they belong to.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    /// Ids of the teams the user is a member of.
    pub teams: Vec<String>,
    /// The user's role in each of those teams.
    pub roles: HashMap<String, TeamRole>,
}

/// What a caller may do with a bucket, from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// See it and read its objects.
    Read,
    /// Also write and delete objects.
    Write,
    /// Also change, start, stop, rotate, link and delete it.
    Manage,
}

impl Access {
    fn verb(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write to",
            Access::Manage => "manage",
        }
    }
}

impl Caller {
    /// What the caller may do with the bucket: everything for an admin and for the owner of a
    /// personal bucket; for a team bucket, what their role in that team allows (its creator
    /// included, so removing a member from the team takes the bucket from them too).
    pub fn access(&self, b: &BucketRecord) -> Option<Access> {
        if self.user.admin {
            return Some(Access::Manage);
        }
        match &b.team_id {
            None => (b.user_id == self.user.id).then_some(Access::Manage),
            Some(team) => self.roles.get(team).map(|r| match r {
                TeamRole::Owner | TeamRole::Admin => Access::Manage,
                TeamRole::Member => Access::Write,
                TeamRole::Viewer => Access::Read,
            }),
        }
    }

    /// Whether the caller may see the bucket.
    pub fn can_see(&self, b: &BucketRecord) -> bool {
        self.access(b).is_some()
    }

    /// 403 unless the caller may do `needed` with a bucket they can see.
    pub fn require(&self, b: &BucketRecord, needed: Access) -> Result<()> {
        match self.access(b) {
            Some(a) if a >= needed => Ok(()),
            Some(_) => Err(Error::Forbidden(format!(
                "your role in this bucket's team does not let you {} it",
                needed.verb()
            ))),
            None => Err(Error::NotFound("bucket")),
        }
    }

    /// The caller's role in `team`, if a member (admins count as owners).
    pub fn role_in(&self, team: &str) -> Option<TeamRole> {
        if self.user.admin {
            return Some(TeamRole::Owner);
        }
        self.roles.get(team).copied()
    }

    /// Whether the caller may see the team.
    pub fn can_see_team(&self, t: &Team) -> bool {
        self.user.admin || t.members.contains(&self.user.id)
    }

    /// Fails with 403 unless the caller is an admin.
    pub fn require_admin(&self) -> Result<()> {
        if self.user.admin {
            Ok(())
        } else {
            Err(Error::Forbidden("only an admin may do this".into()))
        }
    }
}

/// Makes sure the bootstrap admin exists and holds `token` (rotating it when it changed).
pub async fn bootstrap_admin(state: &Core, token: &str) -> Result<()> {
    let hash = hash_token(token);
    let existing = state.store.get_user("admin").await?;
    if existing
        .as_ref()
        .is_some_and(|u| u.token_hash == hash && u.admin)
    {
        return Ok(());
    }
    let user = User {
        id: "admin".into(),
        name: "admin".into(),
        admin: true,
        token_hash: hash,
        created_at: existing.map(|u| u.created_at).unwrap_or_else(now),
    };
    state.store.put_user(&user).await?;
    tracing::info!("bootstrap admin ready");
    Ok(())
}
