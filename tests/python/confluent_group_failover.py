"""A confluent-kafka group across the death of its coordinator's broker.

Usage: confluent_group_failover.py BOOTSTRAP STRATEGY TOPIC READY_FILE KILLED_FILE

Three members (STRATEGY as in confluent_groups.py) share TOPIC's 12
partitions; once they are balanced and have read 3,000 records this writes
READY_FILE and waits for KILLED_FILE (the test kills the coordinator's
broker meanwhile); then 3,000 more records are produced and every record
must be read, with no partition ever owned by two members at once.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from confluent_groups import Member, Ownership, fail, finish, produce, wait_for  # noqa: E402


def main():
    bootstrap, strategy, topic, ready, killed = sys.argv[1:6]
    own, seen = Ownership(), {}
    group = f"fo-{strategy}"
    members = [Member(f"m{i}", bootstrap, group, topic, strategy, own, seen) for i in range(3)]
    for m in members:
        m.start()
    wait_for(
        lambda: all(len(own.of(f"m{i}")) == 4 for i in range(3)) and len(own.owner) == 12,
        "3 members with 4 partitions each",
        60,
    )
    produce(bootstrap, topic, 0, 3000)
    wait_for(lambda: len(seen) >= 3000, "3000 records read", 60)
    open(ready, "w").close()
    deadline = time.time() + 60
    while not os.path.exists(killed):
        if time.time() > deadline:
            fail("the coordinator was never killed")
        time.sleep(0.1)
    produce(bootstrap, topic, 3000, 3000)
    wait_for(lambda: len(seen) >= 6000, "6000 records read after the failover", 90)
    finish(own, seen, members, 6000, strategy)


if __name__ == "__main__":
    main()
