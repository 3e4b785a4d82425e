//! Users (with their token-hash index), teams, workspaces and domains in the embedded store.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::{db_err, decode, encode, EmbeddedStore};
use crate::error::{Error, Result};
use crate::model::{Domain, Team, User, Workspace};

pub(super) const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
pub(super) const TOKENS: TableDefinition<&str, &str> = TableDefinition::new("token_hashes");
pub(super) const TEAMS: TableDefinition<&str, &[u8]> = TableDefinition::new("teams");
pub(super) const DOMAINS: TableDefinition<&str, &[u8]> = TableDefinition::new("domains");
pub(super) const WORKSPACES: TableDefinition<&str, &[u8]> = TableDefinition::new("workspaces");
pub(super) const DOMAIN_NAMES: TableDefinition<&str, &str> = TableDefinition::new("domain_names");

impl EmbeddedStore {
    pub(super) async fn put_user_impl(&self, user: &User) -> Result<()> {
        let user = user.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(db_err)?;
            {
                let mut users = txn.open_table(USERS).map_err(db_err)?;
                let mut tokens = txn.open_table(TOKENS).map_err(db_err)?;
                if let Some(holder) = tokens.get(user.token_hash.as_str()).map_err(db_err)? {
                    if holder.value() != user.id {
                        return Err(Error::Conflict("token already in use".into()));
                    }
                }
                let old: Option<User> = users
                    .get(user.id.as_str())
                    .map_err(db_err)?
                    .map(|v| decode(v.value()))
                    .transpose()?;
                if let Some(old) = old {
                    tokens.remove(old.token_hash.as_str()).map_err(db_err)?;
                }
                tokens
                    .insert(user.token_hash.as_str(), user.id.as_str())
                    .map_err(db_err)?;
                users
                    .insert(user.id.as_str(), encode(&user)?.as_slice())
                    .map_err(db_err)?;
            }
            txn.commit().map_err(db_err)
        })
        .await
    }

    pub(super) async fn user_by_token_hash_impl(&self, token_hash: &str) -> Result<Option<User>> {
        let hash = token_hash.to_string();
        self.blocking(move |db| {
            let id = {
                let txn = db.begin_read().map_err(db_err)?;
                let tokens = txn.open_table(TOKENS).map_err(db_err)?;
                let id = tokens.get(hash.as_str()).map_err(db_err)?;
                id.map(|v| v.value().to_string())
            };
            match id {
                Some(id) => Self::get(db, USERS, &id),
                None => Ok(None),
            }
        })
        .await
    }

    pub(super) async fn get_user_impl(&self, id: &str) -> Result<Option<User>> {
        let id = id.to_string();
        self.blocking(move |db| Self::get(db, USERS, &id)).await
    }

    pub(super) async fn list_users_impl(&self) -> Result<Vec<User>> {
        self.blocking(|db| Self::all(db, USERS)).await
    }

    pub(super) async fn put_team_impl(&self, team: &Team) -> Result<()> {
        let team = team.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(db_err)?;
            {
                let mut teams = txn.open_table(TEAMS).map_err(db_err)?;
                teams
                    .insert(team.id.as_str(), encode(&team)?.as_slice())
                    .map_err(db_err)?;
            }
            txn.commit().map_err(db_err)
        })
        .await
    }

    pub(super) async fn get_team_impl(&self, id: &str) -> Result<Option<Team>> {
        let id = id.to_string();
        self.blocking(move |db| Self::get(db, TEAMS, &id)).await
    }

    pub(super) async fn teams_of_impl(&self, user_id: &str) -> Result<Vec<Team>> {
        let user_id = user_id.to_string();
        self.blocking(move |db| {
            let all: Vec<Team> = Self::all(db, TEAMS)?;
            Ok(all
                .into_iter()
                .filter(|t| t.members.contains(&user_id))
                .collect())
        })
        .await
    }

    pub(super) async fn list_teams_impl(&self) -> Result<Vec<Team>> {
        self.blocking(|db| Self::all(db, TEAMS)).await
    }

    pub(super) async fn insert_domain_impl(&self, domain: &Domain) -> Result<()> {
        let d = domain.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(db_err)?;
            {
                let mut names = txn.open_table(DOMAIN_NAMES).map_err(db_err)?;
                if names.get(d.name.as_str()).map_err(db_err)?.is_some() {
                    return Err(Error::Conflict(format!(
                        "domain {} is registered already",
                        d.name
                    )));
                }
                names
                    .insert(d.name.as_str(), d.id.as_str())
                    .map_err(db_err)?;
                let mut domains = txn.open_table(DOMAINS).map_err(db_err)?;
                domains
                    .insert(d.id.as_str(), encode(&d)?.as_slice())
                    .map_err(db_err)?;
            }
            txn.commit().map_err(db_err)
        })
        .await
    }

    pub(super) async fn update_domain_impl(&self, domain: &Domain) -> Result<()> {
        let d = domain.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(db_err)?;
            {
                let mut domains = txn.open_table(DOMAINS).map_err(db_err)?;
                let old: Option<Domain> = {
                    let v = domains.get(d.id.as_str()).map_err(db_err)?;
                    v.map(|v| decode(v.value())).transpose()?
                };
                match old {
                    Some(old) if old.name == d.name => {}
                    Some(_) => return Err(Error::Conflict("a domain's name cannot change".into())),
                    None => return Err(Error::NotFound("domain")),
                }
                domains
                    .insert(d.id.as_str(), encode(&d)?.as_slice())
                    .map_err(db_err)?;
            }
            txn.commit().map_err(db_err)
        })
        .await
    }

    pub(super) async fn get_domain_impl(&self, id: &str) -> Result<Option<Domain>> {
        let id = id.to_string();
        self.blocking(move |db| Self::get(db, DOMAINS, &id)).await
    }

    pub(super) async fn put_workspace_impl(&self, workspace: &Workspace) -> Result<()> {
        let w = workspace.clone();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(db_err)?;
            {
                let mut t = txn.open_table(WORKSPACES).map_err(db_err)?;
                t.insert(w.id.as_str(), encode(&w)?.as_slice())
                    .map_err(db_err)?;
            }
            txn.commit().map_err(db_err)
        })
        .await
    }

    pub(super) async fn get_workspace_impl(&self, id: &str) -> Result<Option<Workspace>> {
        let id = id.to_string();
        self.blocking(move |db| Self::get(db, WORKSPACES, &id))
            .await
    }

    pub(super) async fn list_workspaces_impl(&self) -> Result<Vec<Workspace>> {
        self.blocking(|db| Self::all(db, WORKSPACES)).await
    }

    pub(super) async fn delete_workspace_impl(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(db_err)?;
            {
                let mut t = txn.open_table(WORKSPACES).map_err(db_err)?;
                t.remove(id.as_str()).map_err(db_err)?;
            }
            txn.commit().map_err(db_err)
        })
        .await
    }

    pub(super) async fn list_domains_impl(&self) -> Result<Vec<Domain>> {
        self.blocking(|db| Self::all(db, DOMAINS)).await
    }
}
