#!/usr/bin/env python3
"""ACLs and SCRAM credentials against Strom (started by compat/run.sh with the authorizer on).

confluent-kafka (librdkafka in the wheel, built with SSL, so it can salt passwords): CreateAcls
with a valid and an invalid binding, DescribeAcls with a MATCH filter, DeleteAcls;
AlterUserScramCredentials (upsert, refused iteration count, delete) and
DescribeUserScramCredentials (unknown user, all users). kafka-python (its own protocol code):
create_acls, describe_acls, delete_acls.

Run by compat/run.sh with COMPAT_BOOTSTRAP=host:port. Exits 1 if a check failed.
"""

from __future__ import annotations

import uuid

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from compat_check import Suite, expect, expect_eq

s = Suite("acls")
RUN = uuid.uuid4().hex[:8]
TIMEOUT = 20.0
admin = AdminClient({"bootstrap.servers": s.bootstrap})


def ck_create_describe_delete() -> None:
    topic = f"acl-{RUN}"
    good = AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL,
                      "User:alice", "*", AclOperation.READ, AclPermissionType.ALLOW)
    prefixed = AclBinding(ResourceType.TOPIC, "acl-", ResourcePatternType.PREFIXED,
                          "User:bob", "*", AclOperation.WRITE, AclPermissionType.DENY)
    bad = AclBinding(ResourceType.BROKER, "not-kafka-cluster", ResourcePatternType.LITERAL,
                     "User:alice", "*", AclOperation.ALTER, AclPermissionType.ALLOW)
    futures = admin.create_acls([good, prefixed, bad], request_timeout=TIMEOUT)
    futures[good].result()
    futures[prefixed].result()
    try:
        futures[bad].result()
        raise AssertionError("a CLUSTER ACL not on kafka-cluster was accepted")
    except KafkaException as e:
        expect_eq(e.args[0].name(), "INVALID_REQUEST", "bad cluster resource error")
    match = AclBindingFilter(ResourceType.TOPIC, topic, ResourcePatternType.MATCH,
                             None, None, AclOperation.ANY, AclPermissionType.ANY)
    found = admin.describe_acls(match, request_timeout=TIMEOUT).result()
    expect_eq(sorted(str(a) for a in found), sorted(str(a) for a in [good, prefixed]),
              "ACLs matching the topic")
    by_principal = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY,
                                    "User:bob", None, AclOperation.ANY, AclPermissionType.ANY)
    deleted = admin.delete_acls([by_principal], request_timeout=TIMEOUT)[by_principal].result()
    expect_eq([str(a) for a in deleted], [str(prefixed)], "deleted ACLs")
    left = admin.describe_acls(match, request_timeout=TIMEOUT).result()
    expect_eq([str(a) for a in left], [str(good)], "ACLs left")


def ck_scram() -> None:
    user = f"scram-{RUN}"
    described = admin.describe_user_scram_credentials([user], request_timeout=TIMEOUT)
    try:
        described[user].result()
        raise AssertionError("an unknown user was described")
    except KafkaException as e:
        expect_eq(e.args[0].name(), "RESOURCE_NOT_FOUND", "unknown user error")
    upsert = UserScramCredentialUpsertion(
        user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), b"password", b"salt-salt")
    admin.alter_user_scram_credentials([upsert], request_timeout=TIMEOUT)[user].result()
    too_few = UserScramCredentialUpsertion(
        f"{user}-x", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 1000), b"pw", b"salt")
    try:
        admin.alter_user_scram_credentials([too_few], request_timeout=TIMEOUT)[f"{user}-x"].result()
        raise AssertionError("1000 iterations were accepted")
    except KafkaException as e:
        expect_eq(e.args[0].name(), "UNACCEPTABLE_CREDENTIAL", "too few iterations error")
    description = admin.describe_user_scram_credentials([user], request_timeout=TIMEOUT)[user].result()
    infos = [(i.mechanism, i.iterations) for i in description.scram_credential_infos]
    expect_eq(infos, [(ScramMechanism.SCRAM_SHA_512, 8192)], "credential infos")
    everyone = admin.describe_user_scram_credentials(request_timeout=TIMEOUT).result()
    expect(user in everyone, f"{user} missing from all users: {list(everyone)}")
    deletion = UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_512)
    admin.alter_user_scram_credentials([deletion], request_timeout=TIMEOUT)[user].result()
    try:
        admin.alter_user_scram_credentials([deletion], request_timeout=TIMEOUT)[user].result()
        raise AssertionError("deleting a missing credential succeeded")
    except KafkaException as e:
        expect_eq(e.args[0].name(), "RESOURCE_NOT_FOUND", "second deletion error")


def ck_kafka_python() -> None:
    from kafka.admin import ACL, ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType
    from kafka.admin import KafkaAdminClient, ResourcePattern, ResourcePatternFilter
    from kafka.admin import ResourceType as KResourceType

    client = KafkaAdminClient(bootstrap_servers=s.bootstrap, request_timeout_ms=int(TIMEOUT * 1000))
    try:
        group = f"kp-group-{RUN}"
        acl = ACL("User:carol", "*", ACLOperation.READ, ACLPermissionType.ALLOW,
                  ResourcePattern(KResourceType.GROUP, group, ACLResourcePatternType.LITERAL))
        result = client.create_acls([acl])
        expect_eq(len(result["succeeded"]), 1, f"created ({result})")
        flt = ACLFilter("User:carol", None, ACLOperation.ANY, ACLPermissionType.ANY,
                        ResourcePatternFilter(KResourceType.GROUP, group, ACLResourcePatternType.ANY))
        acls, error = client.describe_acls(flt)
        expect_eq(error.errno, 0, "describe error")
        expect_eq([(a.principal, a.resource_pattern.resource_name) for a in acls],
                  [("User:carol", group)], "described")
        deleted = client.delete_acls([flt])
        (_, matched, err), = deleted
        expect(err is None or getattr(err, "errno", 0) == 0, f"delete error {err}")
        expect_eq(len(matched), 1, "deleted count")
        acls, _ = client.describe_acls(flt)
        expect_eq(acls, [], "after delete")
    finally:
        client.close()


s.check("confluent_kafka_acls", ck_create_describe_delete,
        what="CreateAcls (one on a CLUSTER resource not named kafka-cluster), DescribeAcls MATCH, DeleteAcls by principal")
s.check("confluent_kafka_scram", ck_scram,
        what="Describe/AlterUserScramCredentials: unknown user, upsert, 1000 iterations, delete")
s.check("kafka_python_acls", ck_kafka_python, what="kafka-python create/describe/delete_acls")
s.finish()
