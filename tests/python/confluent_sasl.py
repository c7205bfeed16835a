"""SASL on a strata broker's Kafka listener (started with
--kafka-sasl required), with confluent-kafka.

Usage: confluent_sasl.py BOOTSTRAP

Users (created by the test with `strata user create`): alice/alice-pw
(may write and read topic sasl-t and group sasl-g), bob/bob-pw (no ACL),
root/root-pw (a superuser). Checks: alice produces and consumes with
PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512; a wrong password, an unknown user
and a client without SASL are refused; bob is denied by the ACLs; root
manages ACLs through Kafka's ACL APIs, and alice may not. Exits non-zero
with one line on the first violation.
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
    print("ok: sasl")


if __name__ == "__main__":
    main()
