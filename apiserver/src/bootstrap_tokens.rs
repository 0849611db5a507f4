//! The bootstrap-token authenticator (`--enable-bootstrap-token-auth`): a bearer token
//! `<id>.<secret>` names the user `system:bootstrap:<id>` when the Secret
//! `kube-system/bootstrap-token-<id>` holds it (rules in [`skiff_api::bootstrap_token`]).
//! The Secret is read from the watch cache, so a request never costs a store read.

use jiff::Timestamp;
use skiff_api::bootstrap_token::{self as bt, TokenSecret};
use skiff_api::resources;

use crate::app::App;
use crate::auth::{AUTHENTICATED, UserInfo};

impl App {
    /// The user a bootstrap token stands for; `None` when bootstrap tokens are off, the token
    /// is not one, or its Secret refuses it (logged, as upstream does at its verbosity 3).
    pub fn bootstrap_token_user(&self, token: &str) -> Option<UserInfo> {
        if !self.bootstrap_token_auth {
            return None;
        }
        let (id, secret) = bt::parse_token(token)?;
        let info = resources::find("", "v1", "secrets").expect("secrets are a core resource");
        let name = format!("{}{id}", bt::SECRET_PREFIX);
        let Some(obj) = self
            .registry
            .cache
            .for_resource(info)?
            .get(&info.storage_key(Some(bt::NAMESPACE), &name))
        else {
            tracing::debug!(secret = %name, "no secret to match a bootstrap bearer token");
            return None;
        };
        match TokenSecret::from_value(&obj).authenticate(id, secret, Timestamp::now()) {
            Ok((name, mut groups)) => {
                groups.push(AUTHENTICATED.into());
                Some(UserInfo {
                    name,
                    groups,
                    ..Default::default()
                })
            }
            Err(why) => {
                tracing::debug!(
                    "bootstrap secret {}/{name} matching bearer token {why}",
                    bt::NAMESPACE
                );
                None
            }
        }
    }
}
