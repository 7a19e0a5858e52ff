//! AlterUserScramCredentials (key 51): sets and deletes SCRAM credentials; one result per
//! user. The client sends the salted password; the broker stores only StoredKey and ServerKey
//! (see `strom_broker::scram` for the rules and their error codes).

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
};
use strom_broker::scram::{ScramDeletion, ScramUpsertion};

use super::acl_common::str_bytes;
use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::error_code;
use crate::frame::Request;
use crate::{Context, authz};
use kafka_protocol::protocol::StrBytes;
use strom_broker::acl::AclOperation;

/// Handles AlterUserScramCredentials.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: AlterUserScramCredentialsRequest = decode(request)?;
    if let Err(e) = authz::check_cluster(context, request, AclOperation::Alter) {
        let mut users: Vec<&StrBytes> = Vec::new();
        for name in body
            .deletions
            .iter()
            .map(|d| &d.name)
            .chain(body.upsertions.iter().map(|u| &u.name))
        {
            if !users.contains(&name) {
                users.push(name);
            }
        }
        let results = users
            .into_iter()
            .map(|user| {
                AlterUserScramCredentialsResult::default()
                    .with_user(user.clone())
                    .with_error_code(error_code(&e))
                    .with_error_message(Some(str_bytes(&e.to_string())))
            })
            .collect();
        return respond(
            request,
            &AlterUserScramCredentialsResponse::default().with_results(results),
        );
    }
    let deletions: Vec<ScramDeletion> = body
        .deletions
        .iter()
        .map(|d| ScramDeletion {
            user: d.name.to_string(),
            mechanism: d.mechanism,
        })
        .collect();
    let upsertions: Vec<ScramUpsertion> = body
        .upsertions
        .iter()
        .map(|u| ScramUpsertion {
            user: u.name.to_string(),
            mechanism: u.mechanism,
            iterations: u.iterations,
            salt: u.salt.to_vec(),
            salted_password: u.salted_password.to_vec(),
        })
        .collect();
    let results = context
        .broker
        .run_blocking(move |b| Ok(b.alter_scram_credentials_blocking(&deletions, &upsertions)))
        .await;
    let results = match results {
        Ok(r) => r,
        Err(e) => return Err(HandlerError::Internal(e.to_string())),
    };
    let results = results
        .into_iter()
        .map(|(user, result)| {
            let r = AlterUserScramCredentialsResult::default().with_user(str_bytes(&user));
            match result {
                Ok(()) => r,
                Err(e) => r
                    .with_error_code(error_code(&e))
                    .with_error_message(Some(str_bytes(&e.to_string()))),
            }
        })
        .collect();
    respond(
        request,
        &AlterUserScramCredentialsResponse::default().with_results(results),
    )
}
