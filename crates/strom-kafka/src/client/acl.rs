//! ACLs and SCRAM credentials from the client side (CreateAcls, DescribeAcls, DeleteAcls,
//! DescribeUserScramCredentials, AlterUserScramCredentials), as `strom acl` and `strom user`
//! use them. The ACL types are the broker's model (`strom_broker::acl`).

use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, ApiKey, CreateAclsRequest,
    CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse, DescribeAclsRequest,
    DescribeAclsResponse, DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;
use strom_broker::acl::model::{ANY_CODE, MATCH_CODE};
use strom_broker::acl::{
    AclBinding, AclBindingFilter, AclOperation, AclPermission, PatternFilter, PatternType,
    ResourceType,
};
use strom_broker::scram::{MAX_ITERATIONS, MIN_ITERATIONS, ScramMechanism};

use super::{Client, ClientError, kafka_error};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn pattern_code(p: PatternFilter) -> i8 {
    match p {
        PatternFilter::Any => ANY_CODE,
        PatternFilter::Match => MATCH_CODE,
        PatternFilter::Exact(t) => t.code(),
    }
}

fn protocol(e: impl std::fmt::Display) -> ClientError {
    ClientError::Protocol(e.to_string())
}

/// Builds an ACL from response fields, refusing codes this client does not know.
#[allow(clippy::too_many_arguments)]
fn binding(
    resource_type: i8,
    resource_name: &StrBytes,
    pattern_type: i8,
    principal: &StrBytes,
    host: &StrBytes,
    operation: i8,
    permission: i8,
) -> Result<AclBinding, ClientError> {
    Ok(AclBinding {
        resource_type: ResourceType::try_from(resource_type).map_err(protocol)?,
        resource_name: resource_name.to_string(),
        pattern_type: PatternType::try_from(pattern_type).map_err(protocol)?,
        principal: principal.to_string(),
        host: host.to_string(),
        operation: AclOperation::try_from(operation).map_err(protocol)?,
        permission: AclPermission::try_from(permission).map_err(protocol)?,
    })
}

/// One SCRAM credential to set: the password is salted and hashed here (PBKDF2), only the
/// salted password is sent.
#[derive(Debug, Clone)]
pub struct ScramUpsert<'a> {
    /// The user.
    pub user: &'a str,
    /// The mechanism.
    pub mechanism: ScramMechanism,
    /// Iterations (Kafka accepts 4096..=16384).
    pub iterations: i32,
    /// The salt.
    pub salt: &'a [u8],
    /// The password.
    pub password: &'a [u8],
}

/// A user's credentials as DescribeUserScramCredentials shows them: (mechanism code,
/// iterations).
pub type ScramInfo = Vec<(i8, i32)>;

impl Client {
    /// CreateAcls: one result per ACL, in order.
    pub async fn create_acls(
        &mut self,
        acls: &[AclBinding],
    ) -> Result<Vec<Result<(), ClientError>>, ClientError> {
        let v = self.version(ApiKey::CreateAcls)?;
        let request = CreateAclsRequest::default().with_creations(
            acls.iter()
                .map(|a| {
                    AclCreation::default()
                        .with_resource_type(a.resource_type.code())
                        .with_resource_name(s(&a.resource_name))
                        .with_resource_pattern_type(a.pattern_type.code())
                        .with_principal(s(&a.principal))
                        .with_host(s(&a.host))
                        .with_operation(a.operation.code())
                        .with_permission_type(a.permission.code())
                })
                .collect(),
        );
        let response: CreateAclsResponse = self.call(ApiKey::CreateAcls, v, &request).await?;
        if response.results.len() != acls.len() {
            return Err(protocol(
                "CreateAcls answered a different number of results",
            ));
        }
        Ok(response
            .results
            .iter()
            .map(|r| kafka_error("CreateAcls", r.error_code, r.error_message.as_ref()))
            .collect())
    }

    /// DescribeAcls: every ACL the filter matches.
    pub async fn describe_acls(
        &mut self,
        filter: &AclBindingFilter,
    ) -> Result<Vec<AclBinding>, ClientError> {
        let v = self.version(ApiKey::DescribeAcls)?;
        let request = DescribeAclsRequest::default()
            .with_resource_type_filter(filter.resource_type.map_or(ANY_CODE, |t| t.code()))
            .with_resource_name_filter(filter.resource_name.as_deref().map(s))
            .with_pattern_type_filter(pattern_code(filter.pattern))
            .with_principal_filter(filter.principal.as_deref().map(s))
            .with_host_filter(filter.host.as_deref().map(s))
            .with_operation(filter.operation.map_or(ANY_CODE, |o| o.code()))
            .with_permission_type(filter.permission.map_or(ANY_CODE, |p| p.code()));
        let response: DescribeAclsResponse = self.call(ApiKey::DescribeAcls, v, &request).await?;
        kafka_error(
            "DescribeAcls",
            response.error_code,
            response.error_message.as_ref(),
        )?;
        let mut out = Vec::new();
        for r in &response.resources {
            for a in &r.acls {
                out.push(binding(
                    r.resource_type,
                    &r.resource_name,
                    r.pattern_type,
                    &a.principal,
                    &a.host,
                    a.operation,
                    a.permission_type,
                )?);
            }
        }
        Ok(out)
    }

    /// DeleteAcls: per filter, the ACLs it deleted (or its error).
    pub async fn delete_acls(
        &mut self,
        filters: &[AclBindingFilter],
    ) -> Result<Vec<Result<Vec<AclBinding>, ClientError>>, ClientError> {
        let v = self.version(ApiKey::DeleteAcls)?;
        let request = DeleteAclsRequest::default().with_filters(
            filters
                .iter()
                .map(|f| {
                    DeleteAclsFilter::default()
                        .with_resource_type_filter(f.resource_type.map_or(ANY_CODE, |t| t.code()))
                        .with_resource_name_filter(f.resource_name.as_deref().map(s))
                        .with_pattern_type_filter(pattern_code(f.pattern))
                        .with_principal_filter(f.principal.as_deref().map(s))
                        .with_host_filter(f.host.as_deref().map(s))
                        .with_operation(f.operation.map_or(ANY_CODE, |o| o.code()))
                        .with_permission_type(f.permission.map_or(ANY_CODE, |p| p.code()))
                })
                .collect(),
        );
        let response: DeleteAclsResponse = self.call(ApiKey::DeleteAcls, v, &request).await?;
        if response.filter_results.len() != filters.len() {
            return Err(protocol(
                "DeleteAcls answered a different number of results",
            ));
        }
        Ok(response
            .filter_results
            .iter()
            .map(|r| {
                kafka_error("DeleteAcls", r.error_code, r.error_message.as_ref())?;
                r.matching_acls
                    .iter()
                    .map(|m| {
                        binding(
                            m.resource_type,
                            &m.resource_name,
                            m.pattern_type,
                            &m.principal,
                            &m.host,
                            m.operation,
                            m.permission_type,
                        )
                    })
                    .collect()
            })
            .collect())
    }

    /// DescribeUserScramCredentials: `None` for every user; per user, the credentials'
    /// mechanisms and iterations (or the user's error).
    pub async fn describe_scram_credentials(
        &mut self,
        users: Option<&[&str]>,
    ) -> Result<Vec<(String, Result<ScramInfo, ClientError>)>, ClientError> {
        let v = self.version(ApiKey::DescribeUserScramCredentials)?;
        let request = DescribeUserScramCredentialsRequest::default().with_users(users.map(|u| {
            u.iter()
                .map(|n| UserName::default().with_name(s(n)))
                .collect()
        }));
        let response: DescribeUserScramCredentialsResponse = self
            .call(ApiKey::DescribeUserScramCredentials, v, &request)
            .await?;
        kafka_error(
            "DescribeUserScramCredentials",
            response.error_code,
            response.error_message.as_ref(),
        )?;
        Ok(response
            .results
            .iter()
            .map(|r| {
                let result = kafka_error(
                    format!("DescribeUserScramCredentials {}", r.user),
                    r.error_code,
                    r.error_message.as_ref(),
                )
                .map(|()| {
                    r.credential_infos
                        .iter()
                        .map(|c| (c.mechanism, c.iterations))
                        .collect()
                });
                (r.user.to_string(), result)
            })
            .collect())
    }

    /// AlterUserScramCredentials: deletions (user, mechanism) and upsertions; one result per
    /// user.
    pub async fn alter_scram_credentials(
        &mut self,
        deletions: &[(&str, ScramMechanism)],
        upsertions: &[ScramUpsert<'_>],
    ) -> Result<Vec<(String, Result<(), ClientError>)>, ClientError> {
        let v = self.version(ApiKey::AlterUserScramCredentials)?;
        let request = AlterUserScramCredentialsRequest::default()
            .with_deletions(
                deletions
                    .iter()
                    .map(|(user, m)| {
                        ScramCredentialDeletion::default()
                            .with_name(s(user))
                            .with_mechanism(m.code())
                    })
                    .collect(),
            )
            .with_upsertions(
                upsertions
                    .iter()
                    .map(|u| {
                        // A count the broker will refuse is not worth hashing for (and could be
                        // huge): one round, the broker answers UNACCEPTABLE_CREDENTIAL.
                        let rounds = if (MIN_ITERATIONS..=MAX_ITERATIONS).contains(&u.iterations) {
                            u32::try_from(u.iterations).unwrap_or(1)
                        } else {
                            1
                        };
                        let salted = strom_broker::scram::salted_password(
                            u.mechanism,
                            u.password,
                            u.salt,
                            rounds,
                        );
                        ScramCredentialUpsertion::default()
                            .with_name(s(u.user))
                            .with_mechanism(u.mechanism.code())
                            .with_iterations(u.iterations)
                            .with_salt(bytes::Bytes::copy_from_slice(u.salt))
                            .with_salted_password(salted.into())
                    })
                    .collect(),
            );
        let response: AlterUserScramCredentialsResponse = self
            .call(ApiKey::AlterUserScramCredentials, v, &request)
            .await?;
        Ok(response
            .results
            .iter()
            .map(|r| {
                (
                    r.user.to_string(),
                    kafka_error(
                        format!("AlterUserScramCredentials {}", r.user),
                        r.error_code,
                        r.error_message.as_ref(),
                    ),
                )
            })
            .collect())
    }
}
