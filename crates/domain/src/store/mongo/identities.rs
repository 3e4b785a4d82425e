//! Users, teams, workspaces and domains in MongoDB.

use mongodb::bson::doc;

use super::{from_doc, mongo_err, to_doc, MongoStore};
use crate::error::{Error, Result};
use crate::model::{Domain, Team, User, Workspace};

impl MongoStore {
    pub(super) async fn put_user_impl(&self, user: &User) -> Result<()> {
        self.users()
            .replace_one(doc! { "_id": &user.id }, to_doc(&user.id, user)?)
            .upsert(true)
            .await
            .map_err(mongo_err)?;
        Ok(())
    }

    pub(super) async fn user_by_token_hash_impl(&self, token_hash: &str) -> Result<Option<User>> {
        let d = self
            .users()
            .find_one(doc! { "tokenHash": token_hash })
            .await
            .map_err(mongo_err)?;
        d.map(from_doc).transpose()
    }

    pub(super) async fn get_user_impl(&self, id: &str) -> Result<Option<User>> {
        let d = self
            .users()
            .find_one(doc! { "_id": id })
            .await
            .map_err(mongo_err)?;
        d.map(from_doc).transpose()
    }

    pub(super) async fn list_users_impl(&self) -> Result<Vec<User>> {
        self.find_all(self.users(), doc! {}).await
    }

    pub(super) async fn put_team_impl(&self, team: &Team) -> Result<()> {
        self.teams()
            .replace_one(doc! { "_id": &team.id }, to_doc(&team.id, team)?)
            .upsert(true)
            .await
            .map_err(mongo_err)?;
        Ok(())
    }

    pub(super) async fn get_team_impl(&self, id: &str) -> Result<Option<Team>> {
        let d = self
            .teams()
            .find_one(doc! { "_id": id })
            .await
            .map_err(mongo_err)?;
        d.map(from_doc).transpose()
    }

    pub(super) async fn teams_of_impl(&self, user_id: &str) -> Result<Vec<Team>> {
        self.find_all(self.teams(), doc! { "members": user_id })
            .await
    }

    pub(super) async fn list_teams_impl(&self) -> Result<Vec<Team>> {
        self.find_all(self.teams(), doc! {}).await
    }

    pub(super) async fn insert_domain_impl(&self, domain: &Domain) -> Result<()> {
        self.domains()
            .insert_one(to_doc(&domain.id, domain)?)
            .await
            .map_err(mongo_err)?;
        Ok(())
    }

    pub(super) async fn update_domain_impl(&self, domain: &Domain) -> Result<()> {
        let r = self
            .domains()
            .replace_one(
                doc! { "_id": &domain.id, "name": &domain.name },
                to_doc(&domain.id, domain)?,
            )
            .await
            .map_err(mongo_err)?;
        if r.matched_count == 0 {
            return Err(Error::NotFound("domain"));
        }
        Ok(())
    }

    pub(super) async fn put_workspace_impl(&self, workspace: &Workspace) -> Result<()> {
        self.workspaces()
            .replace_one(
                doc! { "_id": &workspace.id },
                to_doc(&workspace.id, workspace)?,
            )
            .upsert(true)
            .await
            .map_err(mongo_err)?;
        Ok(())
    }

    pub(super) async fn get_workspace_impl(&self, id: &str) -> Result<Option<Workspace>> {
        let d = self
            .workspaces()
            .find_one(doc! { "_id": id })
            .await
            .map_err(mongo_err)?;
        d.map(from_doc).transpose()
    }

    pub(super) async fn list_workspaces_impl(&self) -> Result<Vec<Workspace>> {
        self.find_all(self.workspaces(), doc! {}).await
    }

    pub(super) async fn delete_workspace_impl(&self, id: &str) -> Result<()> {
        self.workspaces()
            .delete_one(doc! { "_id": id })
            .await
            .map_err(mongo_err)?;
        Ok(())
    }

    pub(super) async fn get_domain_impl(&self, id: &str) -> Result<Option<Domain>> {
        let d = self
            .domains()
            .find_one(doc! { "_id": id })
            .await
            .map_err(mongo_err)?;
        d.map(from_doc).transpose()
    }

    pub(super) async fn list_domains_impl(&self) -> Result<Vec<Domain>> {
        self.find_all(self.domains(), doc! {}).await
    }
}
