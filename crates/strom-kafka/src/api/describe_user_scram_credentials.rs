//! DescribeUserScramCredentials (key 50): the mechanisms and iteration counts of users' SCRAM
//! credentials (never salts or keys). Null or empty `users` lists every user with credentials;
//! a requested user without any gets `RESOURCE_NOT_FOUND`, one asked twice
//! `DUPLICATE_RESOURCE`.

use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};

use super::acl_common::str_bytes;
use super::{HandlerError, Outcome, decode, respond};
use crate::error_code::{error_code, scram_error};
use crate::frame::Request;
use crate::{Context, authz};
use strom_broker::acl::AclOperation;

/// Handles DescribeUserScramCredentials.
pub async fn handle(context: &Context, request: &Request) -> Result<Outcome, HandlerError> {
    let body: DescribeUserScramCredentialsRequest = decode(request)?;
    if let Err(e) = authz::check_cluster(context, request, AclOperation::Describe) {
        let response = DescribeUserScramCredentialsResponse::default()
            .with_error_code(error_code(&e))
            .with_error_message(Some(str_bytes(&e.to_string())));
        return respond(request, &response);
    }
    let users: Option<Vec<String>> = body
        .users
        .map(|u| u.into_iter().map(|n| n.name.to_string()).collect());
    let results = context
        .broker
        .describe_scram_credentials(users.as_deref())
        .into_iter()
        .map(|(user, result)| {
            let r = DescribeUserScramCredentialsResult::default().with_user(str_bytes(&user));
            match result {
                Ok(infos) => r.with_credential_infos(
                    infos
                        .into_iter()
                        .map(|(m, iterations)| {
                            CredentialInfo::default()
                                .with_mechanism(m.code())
                                .with_iterations(iterations)
                        })
                        .collect(),
                ),
                Err(why) => r
                    .with_error_code(scram_error(why).code())
                    .with_error_message(Some(str_bytes(&why.to_string()))),
            }
        })
        .collect();
    respond(
        request,
        &DescribeUserScramCredentialsResponse::default().with_results(results),
    )
}
