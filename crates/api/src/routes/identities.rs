//! Users and teams.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::extract::{JsonBody, PathParams};
use crate::openapi::{Failed, Refused};
use kalpana_domain::model::{new_id, now, Team, TeamRole, User};
use kalpana_domain::secrets::{hash_token, new_token};
use kalpana_domain::teams::{self, CredentialsEnded};

/// Body of `POST /api/users`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateUser {
    name: String,
    #[serde(default)]
    admin: bool,
}

/// A user as the API shows it; `token` only in the answer that creates it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    id: String,
    name: String,
    admin: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    created_at: String,
}

fn user_view(u: User, token: Option<String>) -> UserView {
    UserView {
        id: u.id,
        name: u.name,
        admin: u.admin,
        token,
        created_at: u.created_at,
    }
}

fn check_name(name: &str, what: &str) -> Result<()> {
    let n = name.trim();
    if n.is_empty() || n.len() > 128 || n.chars().any(char::is_control) {
        return Err(Error::BadRequest(format!(
            "{what} name must be 1 to 128 characters without control characters"
        )));
    }
    Ok(())
}

/// `POST /api/users` (admin): 201 with the user's token, shown only here.
#[utoipa::path(
    post,
    path = "/api/users",
    tag = "identities",
    request_body = CreateUser,
    responses(
        (status = 201, description = "the user, with its token (shown only here)", body = UserView),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<CreateUser>,
) -> Result<(StatusCode, Json<UserView>)> {
    caller.require_admin()?;
    check_name(&req.name, "user")?;
    let token = new_token();
    let user = User {
        id: new_id(),
        name: req.name.trim().to_string(),
        admin: req.admin,
        token_hash: hash_token(&token),
        created_at: now(),
    };
    state.store.put_user(&user).await?;
    state.callers.invalidate();
    tracing::info!(user = %user.id, admin = user.admin, "user created");
    Ok((StatusCode::CREATED, Json(user_view(user, Some(token)))))
}

/// `GET /api/me`: who the token belongs to.
#[utoipa::path(
    get,
    path = "/api/me",
    tag = "identities",
    responses(
        (status = 200, description = "the caller", body = UserView),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn me(caller: Caller) -> Json<UserView> {
    Json(user_view(caller.user, None))
}

/// Body of `POST /api/teams`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateTeam {
    name: String,
}

/// The caller's teams.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TeamList {
    teams: Vec<Team>,
}

/// `GET /api/teams`: the teams the caller is a member of.
#[utoipa::path(
    get,
    path = "/api/teams",
    tag = "identities",
    responses(
        (status = 200, description = "the caller's teams", body = TeamList),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn list_teams(State(state): State<AppState>, caller: Caller) -> Result<Json<TeamList>> {
    Ok(Json(TeamList {
        teams: state.store.teams_of(&caller.user.id).await?,
    }))
}

/// `POST /api/teams`: the caller becomes owner and first member.
#[utoipa::path(
    post,
    path = "/api/teams",
    tag = "identities",
    request_body = CreateTeam,
    responses(
        (status = 201, description = "the team", body = Team),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn create_team(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<CreateTeam>,
) -> Result<(StatusCode, Json<Team>)> {
    check_name(&req.name, "team")?;
    let _cap =
        kalpana_domain::caps::reserve(&state, &caller, kalpana_domain::caps::Kind::Teams).await?;
    let team = Team {
        id: new_id(),
        name: req.name.trim().to_string(),
        owner_id: caller.user.id.clone(),
        members: vec![caller.user.id.clone()],
        roles: Default::default(),
        created_at: now(),
    };
    state.store.put_team(&team).await?;
    state.callers.invalidate();
    tracing::info!(team = %team.id, owner = %team.owner_id, "team created");
    Ok((StatusCode::CREATED, Json(team)))
}

/// Body of `POST /api/teams/{id}/members`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddMember {
    user_id: String,
    /// `viewer`, `member` (default) or `admin`; a member already in the team gets this role.
    role: Option<TeamRole>,
}

/// A team the caller may change the members of: its owner, a team admin, or a daemon admin.
async fn managed_team(state: &AppState, caller: &Caller, id: &str) -> Result<Team> {
    let team = state
        .store
        .get_team(id)
        .await?
        .filter(|t| caller.can_see_team(t))
        .ok_or(Error::NotFound("team"))?;
    match caller.role_in(&team.id) {
        Some(TeamRole::Owner | TeamRole::Admin) => Ok(team),
        _ => Err(Error::Forbidden(
            "only the team's owner or admins may change its members".into(),
        )),
    }
}

/// 403 unless the caller may give or take `role`: only the owner names or removes admins.
fn may_handle(caller: &Caller, team: &Team, role: TeamRole) -> Result<()> {
    match role {
        TeamRole::Owner => Err(Error::Conflict("a team has one owner".into())),
        TeamRole::Admin if caller.role_in(&team.id) != Some(TeamRole::Owner) => Err(
            Error::Forbidden("only the team's owner may name or remove admins".into()),
        ),
        _ => Ok(()),
    }
}

/// `POST /api/teams/{id}/members` (team owner or admin): adds a member, or changes the role of
/// one already in the team. A demotion ends the member's credentials of the team's buckets as a
/// removal does (the answer says what was rotated and revoked).
#[utoipa::path(
    post,
    path = "/api/teams/{id}/members",
    tag = "identities",
    params(("id" = String, Path, description = "team id")),
    request_body = AddMember,
    responses(
        (status = 200, description = "the team, and for a demotion the rotated credentials", body = MemberChanged),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn add_member(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(req): JsonBody<AddMember>,
) -> Result<Json<MemberChanged>> {
    let mut team = managed_team(&state, &caller, &id).await?;
    if state.store.get_user(&req.user_id).await?.is_none() {
        return Err(Error::NotFound("user"));
    }
    let role = req.role.unwrap_or(TeamRole::Member);
    may_handle(&caller, &team, role)?;
    if let Some(current) = team.role_of(&req.user_id) {
        may_handle(&caller, &team, current)?;
    }
    let before = team.role_of(&req.user_id);
    if !team.members.contains(&req.user_id) {
        team.members.push(req.user_id.clone());
    }
    team.roles.insert(req.user_id.clone(), role);
    state.store.put_team(&team).await?;
    state.callers.invalidate();
    tracing::info!(team = %team.id, user = %req.user_id, role = role.as_str(), "team member added or changed");
    // A demotion ends what the higher role let them make or see, as a removal does.
    let ended = match before {
        Some(was) if was > role => {
            teams::end_credentials(&state, &team, &req.user_id, was >= TeamRole::Admin).await?
        }
        _ => CredentialsEnded::default(),
    };
    Ok(Json(MemberChanged { team, ended }))
}

/// Answer of `DELETE /api/teams/{id}/members/{userId}`: the team, and what was done to the
/// member's credentials of its buckets.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberRemoved {
    team: Team,
    #[serde(flatten)]
    ended: CredentialsEnded,
}

/// Answer of `POST /api/teams/{id}/members`: the team's fields, and for a demotion what was done
/// to the member's credentials of its buckets (empty lists otherwise).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberChanged {
    #[serde(flatten)]
    team: Team,
    #[serde(flatten)]
    ended: CredentialsEnded,
}

/// `DELETE /api/teams/{id}/members/{userId}` (team owner or admin): the member loses access to
/// the team's buckets at once, and every credential of them they could have made or seen ends:
/// root secrets rotated, their scoped keys revoked, their attachments detached, identities the
/// daemon did not make removed from the engines.
#[utoipa::path(
    delete,
    path = "/api/teams/{id}/members/{user_id}",
    tag = "identities",
    params(("id" = String, Path, description = "team id"), ("user_id" = String, Path, description = "member user id")),
    responses(
        (status = 200, description = "the team and the rotated credentials", body = MemberRemoved),
        (status = "4XX", response = Refused),
        (status = "5XX", response = Failed)
    )
)]
pub async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((id, user_id)): PathParams<(String, String)>,
) -> Result<Json<MemberRemoved>> {
    let mut team = managed_team(&state, &caller, &id).await?;
    let Some(role) = team.role_of(&user_id) else {
        return Err(Error::NotFound("member"));
    };
    if role == TeamRole::Owner {
        return Err(Error::Conflict("the owner cannot leave their team".into()));
    }
    may_handle(&caller, &team, role)?;
    team.members.retain(|m| *m != user_id);
    team.roles.remove(&user_id);
    state.store.put_team(&team).await?;
    state.callers.invalidate();
    tracing::info!(team = %team.id, user = %user_id, "team member removed; ending their credentials of the team's buckets");
    let ended = teams::end_credentials(&state, &team, &user_id, role >= TeamRole::Admin).await?;
    Ok(Json(MemberRemoved { team, ended }))
}
