"""SASL on a strata broker's Kafka listener (started with
--kafka-sasl required), with confluent-kafka.

Usage: confluent_sasl.py BOOTSTRAP

Users (created by the test with `strata user create`): alice/alice-pw
(may write and read topic sasl-t and group sasl-g), bob/bob-pw (no ACL),
root/root-pw (a superuser). Checks: alice produces and consumes with
PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512; a wrong password, an unknown user
and a client without SASL are refused; bob is denied by the ACLs; root
manages ACLs through Kafka's ACL APIs, and alice may not; root gives a
new user SCRAM credentials through Kafka's SCRAM APIs, describes and
removes them (the user signs in, then no longer with the removed
mechanism), and alice may not. Exits non-zero with one line on the first
violation.
"""

import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
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

TOPIC = "sasl-t"


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def conf(bootstrap, mech, user, password):
    c = {"bootstrap.servers": bootstrap, "socket.timeout.ms": 5000}
    if mech:
        c.update(
            {
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": mech,
                "sasl.username": user,
                "sasl.password": password,
            }
        )
    return c


def refused(bootstrap, mech, user, password, what):
    errors = []
    c = conf(bootstrap, mech, user, password)
    c["error_cb"] = lambda e: errors.append(e)
    admin = AdminClient(c)
    try:
        admin.list_topics(timeout=4)
    except KafkaException:
        return
    fail(f"{what} was not refused")


def round_trip(bootstrap, mech):
    c = conf(bootstrap, mech, "alice", "alice-pw")
    p = Producer(dict(c, acks="all"))
    errors = []
    for i in range(100):
        p.produce(TOPIC, value=f"{mech}-{i}".encode(), on_delivery=lambda e, m: e and errors.append(e))
    if p.flush(30) or errors:
        fail(f"alice could not produce with {mech}: {errors[:2]}")
    cons = Consumer(dict(c, **{"group.id": "sasl-g", "auto.offset.reset": "earliest", "enable.partition.eof": True}))
    cons.assign([TopicPartition(TOPIC, 0, 0)])
    got = []
    deadline = time.time() + 20
    while time.time() < deadline:
        m = cons.poll(1.0)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                break
            fail(f"alice could not consume with {mech}: {m.error()}")
        got.append(m.value())
    cons.close()
    if f"{mech}-99".encode() not in got:
        fail(f"alice did not read back what she wrote with {mech}")


def main():
    bootstrap = sys.argv[1]
    for mech in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        round_trip(bootstrap, mech)
        refused(bootstrap, mech, "alice", "wrong", f"a wrong password ({mech})")
        refused(bootstrap, mech, "mallory", "x", f"an unknown user ({mech})")
    refused(bootstrap, None, None, None, "a client without SASL")

    # bob authenticates but the ACLs deny him the topic.
    p = Producer(dict(conf(bootstrap, "SCRAM-SHA-256", "bob", "bob-pw"), acks="all"))
    errors = []
    p.produce(TOPIC, value=b"x", on_delivery=lambda e, m: errors.append(e))
    p.flush(20)
    if not errors or errors[0] is None or errors[0].code() != KafkaError.TOPIC_AUTHORIZATION_FAILED:
        fail(f"bob was not denied: {errors}")

    # Kafka's ACL APIs: root may, alice may not.
    root = AdminClient(conf(bootstrap, "SCRAM-SHA-512", "root", "root-pw"))
    binding = AclBinding(
        ResourceType.TOPIC, "audit", ResourcePatternType.PREFIXED, "User:bob", "*",
        AclOperation.READ, AclPermissionType.ALLOW,
    )
    for f in root.create_acls([binding]).values():
        f.result(timeout=10)
    filt = AclBindingFilter(
        ResourceType.ANY, None, ResourcePatternType.ANY, "User:bob", None,
        AclOperation.ANY, AclPermissionType.ANY,
    )
    found = root.describe_acls(filt).result(timeout=10)
    if binding not in found:
        fail(f"describe_acls: {found}")
    alice = AdminClient(conf(bootstrap, "PLAIN", "alice", "alice-pw"))
    try:
        for f in alice.create_acls([binding]).values():
            f.result(timeout=10)
        fail("alice created an ACL")
    except KafkaException as e:
        if e.args[0].code() != KafkaError.CLUSTER_AUTHORIZATION_FAILED:
            fail(f"alice's ACL creation failed with {e}")
    for f in root.delete_acls([filt]).values():
        deleted = f.result(timeout=10)
        if binding not in deleted:
            fail(f"delete_acls: {deleted}")

    # Kafka's SCRAM credential APIs on the same user store: root gives
    # carol credentials from a password the client salts, carol signs in
    # with them, one is removed; alice may not change any.
    sha256, sha512 = ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512
    upserts = [
        UserScramCredentialUpsertion("carol", ScramCredentialInfo(sha256, 8192), b"carol-pw"),
        UserScramCredentialUpsertion("carol", ScramCredentialInfo(sha512, 4096), b"carol-pw", b"s" * 16),
    ]
    for f in root.alter_user_scram_credentials(upserts).values():
        f.result(timeout=10)
    for mech in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
        AdminClient(conf(bootstrap, mech, "carol", "carol-pw")).list_topics(timeout=10)
    refused(bootstrap, "SCRAM-SHA-256", "carol", "wrong", "carol with a wrong password")
    desc = root.describe_user_scram_credentials(["carol"])["carol"].result(timeout=10)
    infos = sorted((i.mechanism, i.iterations) for i in desc.scram_credential_infos)
    if infos != sorted([(sha256, 8192), (sha512, 4096)]):
        fail(f"describe carol: {infos}")
    everyone = root.describe_user_scram_credentials().result(timeout=10)
    if not {"alice", "bob", "root", "carol"} <= set(everyone):
        fail(f"describe all: {sorted(everyone)}")
    for f in root.alter_user_scram_credentials([UserScramCredentialDeletion("carol", sha512)]).values():
        f.result(timeout=10)
    refused(bootstrap, "SCRAM-SHA-512", "carol", "carol-pw", "a removed SCRAM-SHA-512 credential")
    AdminClient(conf(bootstrap, "SCRAM-SHA-256", "carol", "carol-pw")).list_topics(timeout=10)

    def code_of(future):
        try:
            future.result(timeout=10)
        except KafkaException as e:
            return e.args[0].code()
        return None

    unknown = root.describe_user_scram_credentials(["nobody"])["nobody"]
    if code_of(unknown) != KafkaError.RESOURCE_NOT_FOUND:
        fail("describing an unknown user")
    gone = root.alter_user_scram_credentials([UserScramCredentialDeletion("carol", sha512)])["carol"]
    if code_of(gone) != KafkaError.RESOURCE_NOT_FOUND:
        fail("removing a credential twice")
    weak = UserScramCredentialUpsertion("dave", ScramCredentialInfo(sha256, 100), b"pw")
    if code_of(root.alter_user_scram_credentials([weak])["dave"]) != KafkaError.UNACCEPTABLE_CREDENTIAL:
        fail("100 iterations were accepted")
    again = UserScramCredentialUpsertion("alice", ScramCredentialInfo(sha256, 4096), b"x")
    if code_of(alice.alter_user_scram_credentials([again])["alice"]) != KafkaError.CLUSTER_AUTHORIZATION_FAILED:
        fail("alice changed a credential")
    print("ok: sasl")


if __name__ == "__main__":
    main()
