//! Client quotas from the client side (DescribeClientQuotas, AlterClientQuotas), as
//! `strom quota` uses them. Entities and keys are the broker's model (`strom_broker::quota`).

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, ApiKey, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse,
};
use kafka_protocol::protocol::StrBytes;
use strom_broker::quota::{EntityName, QuotaEntity, QuotaMatch};

use super::{Client, ClientError, kafka_error};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

/// One change of an [`Client::alter_client_quotas`] call: set `key` to `Some(value)`, or
/// remove it with `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaEdit {
    /// The key's name (`producer_byte_rate`, …; sent as given).
    pub key: String,
    /// The value, or `None` to remove the key.
    pub value: Option<f64>,
}

/// The quotas of one entity as DescribeClientQuotas shows them.
pub type DescribedQuotas = Vec<(QuotaEntity, BTreeMap<String, f64>)>;

impl Client {
    /// DescribeClientQuotas: the entities `components` match (`(entity type, match)`), with
    /// their values; `strict` excludes entities with other types.
    pub async fn describe_client_quotas(
        &mut self,
        components: &[(&str, QuotaMatch)],
        strict: bool,
    ) -> Result<DescribedQuotas, ClientError> {
        let v = self.version(ApiKey::DescribeClientQuotas)?;
        let request = DescribeClientQuotasRequest::default()
            .with_components(
                components
                    .iter()
                    .map(|(t, m)| {
                        let (match_type, name) = match m {
                            QuotaMatch::Exact(n) => (0, Some(s(n))),
                            QuotaMatch::Default => (1, None),
                            QuotaMatch::Specified => (2, None),
                        };
                        ComponentData::default()
                            .with_entity_type(s(t))
                            .with_match_type(match_type)
                            .with_match(name)
                    })
                    .collect(),
            )
            .with_strict(strict);
        let response: DescribeClientQuotasResponse =
            self.call(ApiKey::DescribeClientQuotas, v, &request).await?;
        kafka_error(
            "DescribeClientQuotas",
            response.error_code,
            response.error_message.as_ref(),
        )?;
        let mut out = Vec::new();
        for entry in response.entries.unwrap_or_default() {
            let entity = QuotaEntity::from_components(
                entry
                    .entity
                    .iter()
                    .map(|e| (e.entity_type.as_str(), e.entity_name.as_deref())),
            )
            .map_err(|e| ClientError::Protocol(format!("DescribeClientQuotas entity: {e}")))?;
            let values = entry
                .values
                .iter()
                .map(|v| (v.key.to_string(), v.value))
                .collect();
            out.push((entity, values));
        }
        Ok(out)
    }

    /// AlterClientQuotas for one entity (`validate_only` checks without storing).
    pub async fn alter_client_quotas(
        &mut self,
        entity: &QuotaEntity,
        edits: &[QuotaEdit],
        validate_only: bool,
    ) -> Result<(), ClientError> {
        let v = self.version(ApiKey::AlterClientQuotas)?;
        let entry = EntryData::default()
            .with_entity(
                entity
                    .components()
                    .into_iter()
                    .map(|(t, n)| {
                        EntityData::default()
                            .with_entity_type(s(t))
                            .with_entity_name(n.map(s))
                    })
                    .collect(),
            )
            .with_ops(
                edits
                    .iter()
                    .map(|e| {
                        OpData::default()
                            .with_key(s(&e.key))
                            .with_value(e.value.unwrap_or(0.0))
                            .with_remove(e.value.is_none())
                    })
                    .collect(),
            );
        let request = AlterClientQuotasRequest::default()
            .with_entries(vec![entry])
            .with_validate_only(validate_only);
        let response: AlterClientQuotasResponse =
            self.call(ApiKey::AlterClientQuotas, v, &request).await?;
        let [entry] = response.entries.as_slice() else {
            return Err(ClientError::Protocol(
                "AlterClientQuotas answered a different number of entries".to_owned(),
            ));
        };
        kafka_error(
            "AlterClientQuotas",
            entry.error_code,
            entry.error_message.as_ref(),
        )
    }
}

/// An entity from the CLI's `--user`/`--client-id` values, where `<default>` (or an empty
/// flag given as `--user-default`) is the default; `None` when neither is given.
pub fn entity_from_flags(user: Option<&str>, client_id: Option<&str>) -> Option<QuotaEntity> {
    let name = |n: &str| {
        if n == "<default>" {
            EntityName::Default
        } else {
            EntityName::Named(n.to_owned())
        }
    };
    if user.is_none() && client_id.is_none() {
        return None;
    }
    Some(QuotaEntity {
        user: user.map(name),
        client_id: client_id.map(name),
    })
}
